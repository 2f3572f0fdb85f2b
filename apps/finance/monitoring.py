"""Monitoring windows of the fraud model: a window's features computed as production computes them, and the rows
on which each feature can be judged fairly against the reference profile.

A window feature is what production computes only when the transactions before the row are there: a customer's
30-day count needs the 30 days before each transaction, a terminal's 30-day fraud rate the 37 days before it (30 +
the label delay) *and* the labels of those transactions. A window scored on its own rows starts cold — the first
row of a customer has a 30-day count of 1 — and such a window looks like drift although nothing changed (the
monitoring false alarm of issue 25). So a window's features are built after the transactions before it, taken
from, in this order:

1. the ``history`` the caller passes (``monitor drift … --history FILE``): its rows earlier than the window's
   first transaction;
2. the bundle's saved per-entity history (the end of the training data, ``state.parquet``), when the window starts
   after it (within :data:`GAP_TOLERANCE_S`), or its part earlier than the window when the window lies inside it;
3. nothing: the window's own earlier rows only.

Then each row of each feature is *judged* only where its inputs are complete: the history reaches back far enough
(:func:`history_needed`) and, for the fraud rates, every label it counts is known. The other rows are left out of
that feature's comparison, with the reason (:func:`judged_rows`); the score is judged on rows where every feature
is complete. The night-time share depends on the hours a window spans (half a day of transactions has none or all
of the night), so ``is_night`` is judged on whole UTC days only. The reference profile, written at training, is
built the same way from the test period (:func:`reference_judged`).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError
from lepton_apps.predictor import MonitorWindow

from .features import (DAY_S, FeatureSpec, Stream, concat_streams, encode_user_columns, entity_set, feature_matrix,
                       make_stream)

# Not monitored: the weekend flag's share is set by the calendar days a window spans (a daily window is all
# or nothing), and few windows or test periods span whole weeks.
NOT_MONITORED = ("is_weekend",)
GAP_TOLERANCE_S = 3600  # a window starting this soon after the saved history ends continues it
WHOLE_DAY_TOLERANCE_S = 3600  # a day whose first and last hour the window reaches counts as whole
NEVER = np.iinfo(np.int64).max


def monitor_names(spec: FeatureSpec) -> dict[str, str]:
    """Return ``{model feature name: monitoring column name}`` of the monitored features (all but
    :data:`NOT_MONITORED`): the feature names with the ``col:`` prefix of the user's columns dropped (kept
    where the bare name would clash with a built feature)."""
    built = {n for n in spec.names if not n.startswith("col:")}
    return {n: (n[4:] if n.startswith("col:") and n[4:] not in built else n) for n in spec.names
            if n not in NOT_MONITORED}


def monitor_columns(spec: FeatureSpec) -> tuple[list[str], list[str]]:
    """Return (numeric, categorical) monitoring column names of :func:`monitor_features`."""
    names = monitor_names(spec)
    categorical = [names[f"col:{c}"] for c in spec.categorical]
    return [n for n in names.values() if n not in categorical], categorical


def monitor_features(spec: FeatureSpec, x: np.ndarray, frame: pd.DataFrame) -> pd.DataFrame:
    """Return the model's features ``x`` of the rows of ``frame`` as a table for drift monitoring: one column
    per feature (:func:`monitor_names`), the categorical user columns as their text from ``frame`` (so a
    category the model never saw is a new value, not a missing one; missing stays missing)."""
    names = monitor_names(spec)
    x = np.asarray(x, dtype=float).reshape(len(frame), len(spec.names))
    keep = [j for j, n in enumerate(spec.names) if n in names]
    out = pd.DataFrame(x[:, keep], columns=[names[spec.names[j]] for j in keep])
    for c in spec.categorical:
        text = frame[c].astype("string").reset_index(drop=True)
        out[names[f"col:{c}"]] = text.astype(object).where(text.notna(), None)
    return out


# ------------------------------------------------------------------------------------------ judged rows

@dataclasses.dataclass
class Coverage:
    """What a window's features could see: every transaction from ``complete_from`` on (epoch seconds), every
    label before ``labels_until`` (exclusive; :data:`NEVER` = all known), and where the history came from."""

    complete_from: int
    labels_until: int
    history: str
    labels: str = ""
    trained: tuple[int, int] | None = None  # the shipped model's training rows span these times (in-sample scores)


def history_needed(spec: FeatureSpec, name: str) -> tuple[int, bool]:
    """Return (seconds of transactions a row needs before it, whether it needs their labels) for the model
    feature ``name``: a customer window ``w`` days, a terminal window ``w`` days + the label delay (and labels
    for the fraud rate), nothing for the rest."""
    if name.startswith(("customer_nb_tx_", "customer_avg_amount_")):
        return int(name.rsplit("_", 1)[1][:-1]) * DAY_S, False
    if name.startswith(("terminal_nb_tx_", "terminal_risk_")):
        return int(name.rsplit("_", 1)[1][:-1]) * DAY_S + spec.delay_s, name.startswith("terminal_risk_")
    return 0, False


def whole_days(t: np.ndarray) -> tuple[np.ndarray, int]:
    """Return (mask of the rows on whole UTC days of the span of ``t``, the number of those days). A day is whole
    when the rows reach within :data:`WHOLE_DAY_TOLERANCE_S` of both its midnights."""
    if not len(t):
        return np.zeros(0, bool), 0
    start = -(-(int(t.min()) - WHOLE_DAY_TOLERANCE_S) // DAY_S) * DAY_S
    end = ((int(t.max()) + WHOLE_DAY_TOLERANCE_S) // DAY_S) * DAY_S
    return (t >= start) & (t < end), max(0, (end - start) // DAY_S)


def _when(t: int) -> str:
    return dt.datetime.fromtimestamp(int(t), dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


def judged_rows(spec: FeatureSpec, t: np.ndarray, coverage: Coverage, *,
                what: str = "window") -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Return ({monitoring name: mask of the rows judged}, {name: why the other rows are not}) for rows at times
    ``t`` with ``coverage``; only names with rows left out appear. ``score`` is judged where every feature is."""
    names = monitor_names(spec)
    t = np.asarray(t, dtype=np.int64)
    judged: dict[str, np.ndarray] = {}
    why: dict[str, str] = {}
    most, labels_needed = 0, False
    for name, column in names.items():
        need, labels = history_needed(spec, name)
        most, labels_needed = max(most, need), labels_needed or labels
        mask = t - need >= coverage.complete_from if need else np.ones(len(t), bool)
        if labels:
            mask &= t - spec.delay_s < coverage.labels_until
        if not mask.all():
            judged[column] = mask
            why[column] = _why(spec, need, labels, coverage)
    mask = t - most >= coverage.complete_from
    if labels_needed:
        mask &= t - spec.delay_s < coverage.labels_until
    reasons = ["the score uses every feature: " + _why(spec, most, labels_needed, coverage)] if not mask.all() else []
    if coverage.trained is not None:
        seen = (t >= coverage.trained[0]) & (t <= coverage.trained[1])
        if seen.any():
            mask &= ~seen
            reasons.append(f"the model trained on the transactions from {_when(coverage.trained[0])} to "
                           f"{_when(coverage.trained[1])}, so its scores of those rows are in-sample (too sure)")
    if not mask.all():
        judged["score"] = mask
        why["score"] = "; ".join(reasons)
    if "is_night" in names.values() and len(t):
        days, n_days = whole_days(t)
        if not days.all():
            judged["is_night"] = days
            why["is_night"] = (f"the night-time share depends on the hours a {what} spans: judged on whole UTC days "
                               f"only (this {what} has {n_days} whole day{'s' if n_days != 1 else ''})")
    return judged, why


def judge_hint(spec: FeatureSpec) -> str:
    """Return what a caller passes so that every row of a window can be judged."""
    most = max([history_needed(spec, n)[0] for n in spec.names] + [0]) / DAY_S
    return (f"pass --history FILE with the transactions of at least the {most:g} days before the window (with their "
            f"labels), and keep the label column in the window for the labels that have arrived")


def _why(spec: FeatureSpec, need: int, labels: bool, coverage: Coverage) -> str:
    parts = []
    if need:
        parts.append(f"needs the {need / DAY_S:g} days of transactions before each row, and {coverage.history} "
                     f"starts {_when(coverage.complete_from)}")
    if labels and coverage.labels_until != NEVER:
        parts.append(f"needs the labels of the transactions older than {spec.label_delay_days:g} days, and they are "
                     f"unknown from {_when(coverage.labels_until)} ({coverage.labels})")
    return "; ".join(parts)


def reference_judged(spec: FeatureSpec, stream: Stream, rows: np.ndarray):
    """Return :func:`judged_rows` of the training ``rows`` (the test period) of ``stream``: the training data
    starts the history; labels are known up to the first training row without one."""
    t = stream.t
    unknown = stream.label < 0 if stream.label is not None else np.zeros(len(t), bool)
    coverage = Coverage(int(t.min()), int(t[unknown].min()) if unknown.any() else NEVER,
                        "the training data", "training rows without a label")
    return judged_rows(spec, t[rows], coverage, what="test period")


# ------------------------------------------------------------------------------------------ the window

def _take(s: Stream, mask: np.ndarray) -> Stream:
    return Stream(*(None if a is None else a[mask] for a in (s.t, s.cents, s.customer, s.terminal, s.label, s.tx_id)))


def _history(scorer, stream: Stream, history: pd.DataFrame | None, window_labels: bool) -> tuple[Stream | None, Coverage]:
    """Return (the transactions before the window, its :class:`Coverage`) — see the module docstring."""
    spec = scorer.spec
    first = int(stream.t.min())
    if history is not None:
        if not len(history):
            raise DataError("the history has no transactions", where="--history",
                            fix="pass the transactions before the window (CSV / Parquet with the model's columns), "
                                "or leave --history out")
        try:
            hv = scorer.validate_table(history)
        except DataError as exc:  # say that it is the history, not the window, that is wrong
            raise DataError(f"the history: {exc.what}", where=f"--history ({exc.where})" if exc.where else
                            "--history", fix=exc.fix) from None
        keep = hv.valid & (hv.seconds < first)
        frame = history.loc[keep].reset_index(drop=True)
        labels = hv.labels[keep] if hv.labels is not None else np.full(int(keep.sum()), -1, np.int8)
        hist = make_stream(frame, hv.roles, hv.seconds[keep], labels, with_ids=False)
        source = f"the history file ({len(hist):,} rows before the window"
        source += f", {hv.n_invalid:,} unreadable rows left out)" if hv.n_invalid else ")"
        start = int(hist.t.min()) if len(hist) else first
        if len(hist) and first - int(hist.t.max()) > GAP_TOLERANCE_S:
            source = (f"the window (it starts {(first - int(hist.t.max())) / DAY_S:.1f} days after the history file "
                      f"ends; what happened in between is not known)")
            start = first
        label_text = "the history file has no label column" if hv.labels is None else ""
    elif not scorer.state.empty():
        latest = int(scorer.state.latest)
        start = latest - (int(max(spec.windows_days) * DAY_S) + spec.delay_s if spec.windows_days else 0) + 1
        hist = scorer.state.history(entity_set(stream.customer), entity_set(stream.terminal))
        if first <= latest:  # a window inside the training data: the saved history before it
            hist = _take(hist, hist.t < first)
            source = "the bundle's saved history (the end of its training data)"
            start = min(start, first)
        elif first - latest <= GAP_TOLERANCE_S:
            source = "the bundle's saved history (the end of its training data)"
        else:
            source = (f"the window (it starts {(first - latest) / DAY_S:.1f} days after the bundle's saved history "
                      f"ends, {_when(latest)}; what happened in between is not known)")
            start = first
        label_text = ""
    else:
        hist, start, source, label_text = None, first, "the window (no history before it)", ""
    if not window_labels and spec.has("label"):
        label_text = "the window has no label column"
    pieces = [s.label for s in (hist, stream) if s is not None and s.label is not None]
    times = [s.t for s in (hist, stream) if s is not None and s.label is not None]
    unknown = [t[lab < 0] for t, lab in zip(times, pieces)]
    until = min((int(u.min()) for u in unknown if len(u)), default=NEVER)
    return hist, Coverage(start, until, source, label_text or "rows without a label")


def trained_span(scorer) -> tuple[int, int] | None:
    """Return (first, last) time of the rows the scorer's model trained on, from its bundle's ``profile/info.json``
    (None when the bundle does not say: older bundles, a scorer built in memory)."""
    bundle = getattr(scorer, "bundle", None)
    if bundle is None or not bundle.has("profile/info.json"):
        return None
    span = bundle.load_json("profile/info.json").get("model_trained_on")
    return (int(span[0]), int(span[1])) if span else None


def monitor_table(data: Any, id_column: str | None = None, what: str = "monitor_window") -> pd.DataFrame:
    """Return the transactions of ``data`` (a table, a list of column: value dicts, or a CSV / Parquet file read
    with :func:`~lepton_apps.finance.data.read_table`, ``id_column`` as text) as a table."""
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, (list, tuple)):
        bad = [i for i, t in enumerate(data) if not isinstance(t, dict)]
        if bad:
            raise DataError(f"item {bad[0]} is a {type(data[bad[0]]).__name__}, not a transaction dict",
                            where=what, fix="pass a table, a file, or a list of column: value dicts")
        return pd.DataFrame(list(data))
    if isinstance(data, (str, Path)):
        from .data import read_table

        return read_table(data, id_column=id_column)
    raise DataError(f"cannot read transactions from a {type(data).__name__}", where=what,
                    fix="pass a CSV / Parquet path, a DataFrame or a list of transaction dicts")


def window(scorer, df: pd.DataFrame, history: pd.DataFrame | None = None) -> MonitorWindow:
    """Return the :class:`~lepton_apps.predictor.MonitorWindow` of transactions ``df`` for ``scorer`` (a
    :class:`~lepton_apps.finance.predict.FraudScorer`): the monitored features and scores of every valid row, built
    after the transactions before the window (see the module docstring), the rows each can be judged on, and the
    count of rows that could not be scored."""
    spec = scorer.spec
    v = scorer.validate_table(df)
    ok = np.asarray(v.valid, dtype=bool)
    frame = df.loc[ok].reset_index(drop=True) if not ok.all() else df.reset_index(drop=True)
    seconds = v.seconds[ok] if v.seconds is not None else None
    labels = v.labels[ok] if v.labels is not None else np.full(int(ok.sum()), -1, np.int8)
    stream = make_stream(frame, v.roles, seconds, labels, with_ids=False)
    user = encode_user_columns(frame, spec)
    judged, why = {}, {}
    if spec.has_time and len(stream):
        hist, coverage = _history(scorer, stream, history, v.labels is not None)
        coverage.trained = trained_span(scorer)
        if hist is not None and len(hist):
            x = feature_matrix(concat_streams(hist, stream), user, spec, skip=len(hist))
        else:
            x = feature_matrix(stream, user, spec)
        judged, why = judged_rows(spec, stream.t, coverage)
    elif history is not None:
        raise DataError("--history was given, but the model has no time-window features", where="history",
                        fix="leave --history out: this model's features need no earlier transactions")
    else:
        x = feature_matrix(stream, user, spec)
    scores = scorer.predict_matrix(x, valid=np.ones(len(x), dtype=bool))
    return MonitorWindow(features=monitor_features(spec, x, frame), scores=scores, unreadable=int((~ok).sum()),
                         judged=judged, not_judged=why, judge_hint=judge_hint(spec) if set(judged) - {"is_night"} else "")
