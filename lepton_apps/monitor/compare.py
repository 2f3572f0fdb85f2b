"""Champion / challenger: the served model's answers against a challenger's, scored in shadow on the same
requests (``lepton-apps serve --challenger REF``: its answers are logged as ``<request_id>-shadow`` audit rows,
never returned). Reports how often they agree and, where outcomes came back, which is better on the domain's
primary metric with a paired bootstrap confidence interval (``lepton-apps monitor compare``); ``models
promote`` uses it to refuse a challenger that is worse on the latest labelled window.
"""
from __future__ import annotations

import datetime as dt
from typing import Any, Callable

import numpy as np
import pandas as pd

from .live import attach, served_items

SHADOW_SUFFIX = "-shadow"
BOOKKEEPING = {"request_id", "item", "created_at", "model_version", "endpoint", "error", "label", "rating"}


def pairs(store, domain: str, *, since: dt.datetime | None = None, challenger: str | None = None) -> pd.DataFrame:
    """Return the served items that a challenger also answered: the champion's result fields suffixed
    ``_champion``, the challenger's ``_challenger``, on (request_id, item). ``challenger``: only shadow answers of
    model versions starting with it (a bundle name)."""
    audit = store.audit_frame(since=since, domain=domain)
    champ = served_items(audit)
    shadow = served_items(audit, endpoints=("shadow",))
    if not len(champ) or not len(shadow):
        return pd.DataFrame()
    shadow = shadow.assign(request_id=shadow["request_id"].str.removesuffix(SHADOW_SUFFIX))
    if challenger:
        shadow = shadow[shadow["model_version"].astype(str).str.startswith(challenger)]
    return champ.merge(shadow, on=["request_id", "item"], suffixes=("_champion", "_challenger"))


def _scalar(series: pd.Series) -> bool:
    return series.map(lambda v: v is None or isinstance(v, (bool, int, float, str, np.bool_, np.number))).all()


def agreement(paired: pd.DataFrame) -> dict[str, dict[str, float]]:
    """Return per result field both models answer: ``agreement`` (share equal) for yes/no and text fields,
    ``mean_abs_difference`` and ``correlation`` for numbers."""
    out: dict[str, dict[str, float]] = {}
    fields = sorted({c[: -len("_champion")] for c in paired.columns if c.endswith("_champion")} - BOOKKEEPING)
    for f in fields:
        a, b = paired.get(f"{f}_champion"), paired.get(f"{f}_challenger")
        if a is None or b is None or not (_scalar(a) and _scalar(b)):
            continue
        if a.map(lambda v: isinstance(v, (bool, np.bool_))).all() or a.map(lambda v: isinstance(v, str)).all():
            out[f] = {"agreement": float((a.astype(str) == b.astype(str)).mean())}
        else:
            x, y = pd.to_numeric(a, errors="coerce"), pd.to_numeric(b, errors="coerce")
            ok = x.notna() & y.notna()
            if ok.sum() >= 2:
                r = float(np.corrcoef(x[ok], y[ok])[0, 1]) if x[ok].std() > 0 and y[ok].std() > 0 else float("nan")
                out[f] = {"mean_abs_difference": float((x[ok] - y[ok]).abs().mean()), "correlation": r}
    return out


def side(paired: pd.DataFrame, which: str) -> pd.DataFrame:
    """Return one model's items with their original field names (and the shared label / rating)."""
    suffix = f"_{which}"
    cols = {c: c[: -len(suffix)] for c in paired.columns if c.endswith(suffix)}
    frame = paired[list(cols)].rename(columns=cols)
    for shared in ("request_id", "item", "label", "rating"):
        if shared in paired:
            frame[shared] = paired[shared].to_numpy()
    return frame


def compare_models(store, domain: str, metrics: Callable[[pd.DataFrame], dict[str, Any]], primary: str, *,
                   key_field: str | None = None, since: dt.datetime | None = None, challenger: str | None = None,
                   n_boot: int = 500, seed: int = 0) -> dict[str, Any]:
    """Return the comparison: pairs, versions, agreement, labelled pairs, each model's live metrics, the
    difference challenger − champion on ``primary`` with a 95 % paired bootstrap interval, and a verdict:
    "challenger better" / "challenger worse" (the interval excludes 0), "no clear difference", "no labels" or
    "no shadow answers"."""
    paired = pairs(store, domain, since=since, challenger=challenger)
    out: dict[str, Any] = {"domain": domain, "primary_metric": primary, "pairs": int(len(paired))}
    if not len(paired):
        return {**out, "verdict": "no shadow answers"}
    out["champion_versions"] = sorted(set(paired["model_version_champion"].astype(str)))
    out["challenger_versions"] = sorted(set(paired["model_version_challenger"].astype(str)))
    out["agreement"] = agreement(paired)
    champion_items = side(paired, "champion")
    joined, _ = attach(champion_items, store.outcomes_frame(domain=domain), key_field)
    paired = paired.assign(label=joined["label"].to_numpy())
    labelled = paired[paired["label"].notna()].reset_index(drop=True)
    out["labelled"] = int(len(labelled))
    if not len(labelled):
        return {**out, "verdict": "no labels"}
    champ, chall = side(labelled, "champion"), side(labelled, "challenger")
    out["metrics"] = {"champion": metrics(champ), "challenger": metrics(chall)}
    a, b = out["metrics"]["champion"].get(primary), out["metrics"]["challenger"].get(primary)
    if a is None or b is None or np.isnan(a) or np.isnan(b):
        return {**out, "verdict": f"{primary} not measurable on the labelled pairs"}
    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labelled), len(labelled))
        da, db = metrics(champ.iloc[idx]).get(primary), metrics(chall.iloc[idx]).get(primary)
        if da is not None and db is not None and not (np.isnan(da) or np.isnan(db)):
            diffs.append(db - da)
    lo, hi = (np.percentile(diffs, [2.5, 97.5]).tolist() if len(diffs) >= n_boot // 2 else [float("nan")] * 2)
    out["difference"], out["ci95"] = float(b - a), [float(lo), float(hi)]
    out["verdict"] = ("challenger better" if lo > 0 else "challenger worse" if hi < 0 else "no clear difference")
    return out
