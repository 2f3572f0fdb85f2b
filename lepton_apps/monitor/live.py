"""Live performance: the predictions a service answered (its audit log) joined with the outcomes returned
for them later (``lepton-apps monitor labels``, ``POST /v1/{domain}/outcomes``), measured per week with the
domain's own metrics.

Domain-free: a domain names, in its ``DomainSpec``, the function that measures one window of labelled
predictions (``live_metrics``, e.g. finance's AUC-PR and card-level precision, medical's sensitivity and
specificity at the operating point, support's answered accuracy and hand-off rate) and the result field an
outcome may be matched on besides the request id (``outcome_key``, e.g. finance's ``transaction_id``).

A week whose predictions are younger than the domain's label delay (finance: chargebacks arrive days
later) is reported with ``labels_complete = False``: its numbers use the labels known so far.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any, Callable

import pandas as pd

SERVED_ENDPOINTS = ("predict", "score_one")


def served_items(audit: pd.DataFrame, endpoints: tuple[str, ...] = SERVED_ENDPOINTS) -> pd.DataFrame:
    """Return one row per item answered with 200 by a predict / score_one request (or the ``endpoints`` given:
    ``("shadow",)`` for a challenger's logged answers): request_id, item (its position in the request),
    created_at, model_version, endpoint and the item's audited result fields (a field holding a mapping, such as
    medical ``probabilities``, also as one ``field.key`` column per key)."""
    rows: list[dict[str, Any]] = []
    if len(audit):
        ok = audit[(audit["status"] == 200) & audit["endpoint"].isin(endpoints)]
        for r in ok.itertuples(index=False):
            result = json.loads(r.result) if isinstance(r.result, str) and r.result else r.result
            items = result if isinstance(result, list) else [result]
            for i, it in enumerate(items):
                if isinstance(it, dict):
                    flat = {f"{k}.{sub}": v for k, d in it.items() if isinstance(d, dict) for sub, v in d.items()}
                    rows.append({**it, **flat, "request_id": r.request_id, "item": i, "created_at": r.created_at,
                                 "model_version": r.model_version, "endpoint": r.endpoint})
    base = ["request_id", "item", "created_at", "model_version", "endpoint"]
    out = pd.DataFrame(rows)
    return out if len(out) else pd.DataFrame(columns=base)


def attach(served: pd.DataFrame, outcomes: pd.DataFrame, key_field: str | None = None,
           ratings: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Return (served items with a ``label`` column — None where no outcome came back — and a ``rating``
    column from ``ratings`` (request_id, rating ±1) when given, counts). An outcome matches its prediction by
    (request_id, item), else by ``key_field`` (the item's result field equal to the outcome's ``key``); the
    latest outcome wins. ``counts``: outcomes, matched, unmatched (outcomes that name no served item — kept in
    the database, reported here, never dropped silently)."""
    served = served.copy()
    labels: list[Any] = [None] * len(served)
    used: set[int] = set()
    by_request: dict[tuple[str, int], tuple[int, str]] = {}
    by_key: dict[str, tuple[int, str]] = {}
    for o in outcomes.itertuples(index=False):
        if isinstance(o.request_id, str) and o.request_id:
            item = 0 if o.item is None or pd.isna(o.item) else int(o.item)
            by_request[(o.request_id, item)] = (o.id, o.label)
        if isinstance(o.key, str) and o.key:
            by_key[o.key] = (o.id, o.label)
    keys = served[key_field].tolist() if key_field and key_field in served.columns else [None] * len(served)
    for i, (rid, item, key) in enumerate(zip(served["request_id"], served["item"], keys)):
        hit = by_request.get((rid, int(item)))
        if hit is None and key is not None and not (isinstance(key, float) and pd.isna(key)):
            hit = by_key.get(str(key))
        if hit is not None:
            used.add(hit[0])
            labels[i] = hit[1]
    served["label"] = labels
    if ratings is not None and len(ratings):
        latest = ratings.dropna(subset=["request_id"]).groupby("request_id")["rating"].last()
        served["rating"] = served["request_id"].map(latest)
    else:
        served["rating"] = None
    counts = {"outcomes": int(len(outcomes)), "matched": len(used), "unmatched": int(len(outcomes)) - len(used)}
    return served, counts


def weekly(joined: pd.DataFrame, metrics: Callable[[pd.DataFrame], dict[str, Any]], *,
           label_delay_days: float = 0.0, now: dt.datetime | None = None) -> pd.DataFrame:
    """Return one row per (week, model_version): served, labelled, rated counts, ``labels_complete`` and the
    domain's ``metrics(items)`` of that week's items (all of them, labelled or not: the function decides
    which numbers need labels). Weeks start on Monday (UTC)."""
    if not len(joined):
        return pd.DataFrame(columns=["week", "model_version", "served", "labelled", "labels_complete"])
    now = now or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    frame = joined.copy()
    created = pd.to_datetime(frame["created_at"])
    frame["week"] = (created - pd.to_timedelta(created.dt.weekday, unit="D")).dt.normalize()
    rows = []
    for (week, version), g in frame.groupby(["week", "model_version"], sort=True):
        week_end = week + pd.Timedelta(days=7)
        row = {"week": week.date().isoformat(), "model_version": version, "served": int(len(g)),
               "labelled": int(g["label"].notna().sum()),
               "rated": int(g["rating"].notna().sum()) if "rating" in g else 0,
               "labels_complete": bool(week_end + pd.Timedelta(days=label_delay_days) <= pd.Timestamp(now))}
        row.update(metrics(g))
        rows.append(row)
    return pd.DataFrame(rows)


def live_report(store, domain: str, metrics: Callable[[pd.DataFrame], dict[str, Any]], *,
                key_field: str | None = None, since: dt.datetime | None = None, label_delay_days: float = 0.0,
                now: dt.datetime | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Return (the weekly table of :func:`weekly`, the outcome counts of :func:`attach`) for ``domain`` from the
    service database ``store`` (a :class:`lepton_apps.store.Store`)."""
    served = served_items(store.audit_frame(since=since, domain=domain))
    outcomes = store.outcomes_frame(domain=domain)
    ratings = store.feedback_frame(since=since)
    joined, counts = attach(served, outcomes, key_field, ratings[["request_id", "rating"]] if len(ratings) else None)
    return weekly(joined, metrics, label_delay_days=label_delay_days, now=now), counts
