"""Operating points: the metrics at a threshold and the ways of choosing one (Youden, a target sensitivity or
precision, the least expected cost, the top k), and precision at k.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
from sklearn import metrics as skm

from lepton_apps.errors import ConfigError, DataError

from .inputs import _binary_inputs, _finite, _same_length, _scores


def _ratio(num: int, den: int) -> float:
    return num / den if den else float("nan")


def threshold_metrics(y_true: Any, y_score: Any, threshold: float) -> dict[str, float | int]:
    """Return the confusion counts and rates at ``threshold`` (``score >= threshold`` is positive).

    Keys: threshold, tp, fp, tn, fn, sensitivity (= recall), specificity, precision (= ppv),
    npv, f1, accuracy. A rate whose denominator is zero is NaN.
    """
    y, s = _binary_inputs(y_true, y_score, need_both=False)
    threshold = _finite(threshold, "threshold")
    pred = (s >= threshold).astype(int)
    tn, fp, fn, tp = (int(v) for v in skm.confusion_matrix(y, pred, labels=[0, 1]).ravel())
    return {
        "threshold": threshold, "tp": tp, "fp": fp, "tn": tn, "fn": fn,
        "sensitivity": _ratio(tp, tp + fn), "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, tp + fp), "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn), "accuracy": _ratio(tp + tn, len(y)),
    }




def _target(value: Any, name: str) -> float:
    value = _finite(value, name)
    if not 0 < value <= 1:
        raise ConfigError(f"{name} must lie in (0, 1], got {value}", where=name,
                          fix="pass a fraction such as 0.95")
    return value


def _above_max(s: np.ndarray) -> float:
    """The smallest float above every score: a threshold that flags nothing."""
    return float(np.nextafter(s.max(), np.inf))


def threshold_youden(y_true: Any, y_score: Any) -> float:
    """Return the threshold maximising Youden's J = sensitivity + specificity - 1.

    Candidates are the observed scores; among equal J the highest threshold wins.
    """
    y, s = _binary_inputs(y_true, y_score)
    fpr, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    finite = np.isfinite(thr)  # sklearn prepends +inf (flag nothing)
    j = (tpr - fpr)[finite]
    return float(thr[finite][int(np.argmax(j))])


def threshold_for_sensitivity(y_true: Any, y_score: Any, target: float) -> float:
    """Return the highest threshold whose sensitivity (recall) is at least ``target``."""
    target = _target(target, "target")
    y, s = _binary_inputs(y_true, y_score)
    _, tpr, thr = skm.roc_curve(y, s, drop_intermediate=False)
    ok = np.isfinite(thr) & (tpr >= target - 1e-12)
    return float(thr[np.argmax(ok)])  # thresholds decrease, so the first hit is the highest


def threshold_for_precision(y_true: Any, y_score: Any, target: float) -> float:
    """Return the lowest threshold whose precision is at least ``target`` (the most recall at that precision).

    Raises DataError, stating the best precision any threshold reaches, when none reaches ``target``.
    """
    target = _target(target, "target")
    y, s = _binary_inputs(y_true, y_score)
    precision, _, thr = skm.precision_recall_curve(y, s)
    precision = precision[:-1]  # the last point (recall 0) has no threshold
    ok = precision >= target - 1e-12
    if not ok.any():
        raise DataError(f"no threshold reaches precision {target:g}; the highest reachable is {precision.max():.4g}",
                        where="target", fix=f"ask for a precision of at most {precision.max():.4g}")
    return float(thr[np.argmax(ok)])  # thresholds increase, so the first hit is the lowest


def _cost_curve(y: np.ndarray, s: np.ndarray, cost_fn: float, cost_fp: float,
                amounts: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Return (thresholds, expected cost) for every distinct score, descending, plus 'flag nothing' first."""
    miss_cost = cost_fn * (amounts if amounts is not None else np.ones_like(s)) * y
    order = np.argsort(-s, kind="mergesort")
    s_sorted = s[order]
    caught = np.cumsum(miss_cost[order])
    flagged = np.arange(1, len(s) + 1)
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    thresholds = np.r_[_above_max(s), s_sorted[last_of_tie]]
    cost = miss_cost.sum() - np.r_[0.0, caught[last_of_tie]] + cost_fp * np.r_[0, flagged[last_of_tie]]
    return thresholds, cost


def threshold_min_cost(y_true: Any, y_score: Any, cost_fn: float, cost_fp: float,
                       amounts: Any | None = None) -> float:
    """Return the threshold minimising the total cost of a decision rule.

    Cost = ``cost_fn`` × (the row's amount, or 1) for every positive left unflagged, plus
    ``cost_fp`` for every flagged row (the review cost of an alert, paid for true positives too).
    If flagging nothing is cheapest, the result lies just above the highest score. Among equal
    costs the highest threshold (fewest flags) wins.
    """
    y, s = _binary_inputs(y_true, y_score, need_both=False)
    cost_fn, cost_fp = _finite(cost_fn, "cost_fn"), _finite(cost_fp, "cost_fp")
    if cost_fn < 0 or cost_fp < 0:
        raise ConfigError("cost_fn and cost_fp must be non-negative", where="cost_fn, cost_fp",
                          fix="pass costs as positive amounts")
    amt = None
    if amounts is not None:
        amt = _scores(amounts, "amounts")
        _same_length(y_true=y, amounts=amt)
        if (amt < 0).any():
            raise DataError("amounts must be non-negative", where="amounts", fix="pass absolute amounts")
    thresholds, cost = _cost_curve(y, s, cost_fn, cost_fp, amt)
    return float(thresholds[int(np.argmin(cost))])


def threshold_top_k(y_score: Any, k: int, ties: str = "include") -> float:
    """Return the threshold that flags the ``k`` highest scores.

    It is the k-th highest score. When that score is tied with rows below it, no threshold
    flags exactly k: ``ties="include"`` (default) flags all the tied rows (more than k),
    ``ties="exclude"`` returns a threshold just above the tie (fewer than k, never over budget).
    ``k=0`` returns a threshold above every score.
    """
    s = _scores(y_score)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= len(s):
        raise ConfigError(f"k must be an integer between 0 and the number of rows ({len(s)}), got {k!r}",
                          where="k", fix="pass how many rows to flag")
    if ties not in ("include", "exclude"):
        raise ConfigError(f"unknown ties policy {ties!r}", where="ties", fix="use 'include' or 'exclude'")
    if k == 0:
        return _above_max(s)
    kth = float(np.sort(s)[::-1][k - 1])
    if ties == "exclude" and int((s >= kth).sum()) > k:
        return float(np.nextafter(kth, np.inf))
    return kth


THRESHOLD_METHODS: dict[str, tuple[Callable[..., float], tuple[str, ...]]] = {
    "youden": (threshold_youden, ()),
    "sensitivity": (threshold_for_sensitivity, ("target",)),
    "precision": (threshold_for_precision, ("target",)),
    "cost": (threshold_min_cost, ("cost_fn", "cost_fp")),
    "top_k": (lambda y_true, y_score, **kw: threshold_top_k(y_score, **kw), ("k",)),
}


def choose_threshold(y_true: Any, y_score: Any, method: str, **kwargs: Any) -> float:
    """Return the threshold chosen by ``method`` (one of :data:`THRESHOLD_METHODS`) with its kwargs.

    youden: none · sensitivity/precision: ``target`` · cost: ``cost_fn``, ``cost_fp``,
    optional ``amounts`` · top_k: ``k``, optional ``ties`` (``y_true`` is ignored).
    """
    if method not in THRESHOLD_METHODS:
        raise ConfigError(f"unknown threshold method {method!r}", where="method",
                          fix=f"use one of {', '.join(THRESHOLD_METHODS)}")
    fn, required = THRESHOLD_METHODS[method]
    missing = [name for name in required if name not in kwargs]
    if missing:
        raise ConfigError(f"threshold method {method!r} needs {', '.join(missing)}", where="method",
                          fix=f"pass {', '.join(f'{m}=…' for m in missing)}")
    try:
        return fn(y_true, y_score, **kwargs)
    except TypeError as exc:  # an unexpected keyword
        raise ConfigError(f"bad options for threshold method {method!r}: {exc}", where="method",
                          fix=f"pass only {', '.join(required) or 'no options'}") from exc


def precision_at_k(y_true: Any, y_score: Any, k: int) -> float:
    """Return the fraction of positives among the ``k`` highest-scored rows (ties broken by row order)."""
    y, s = _binary_inputs(y_true, y_score, need_both=False)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= len(y):
        raise ConfigError(f"k must be an integer between 1 and the number of rows ({len(y)}), got {k!r}",
                          where="k", fix="pass how many top-scored rows to inspect")
    top = np.argsort(-s, kind="mergesort")[:k]
    return float(y[top].mean())
