"""Evaluation metrics on top of scikit-learn: AUCs, operating points, calibration, bootstrap CIs.

Every public function takes array-likes (lists, numpy arrays, pandas Series), checks them at
the boundary and raises :class:`~lepton_apps.errors.DataError` naming the offending argument.
Binary labels are 0/1 (or bool); scores are any finite numbers, probabilities lie in [0, 1].
A threshold ``t`` flags a row as positive when ``score >= t``.

Numbers only: the figures drawn from them (ROC, PR, reliability, confusion) are in :mod:`lepton_apps.plots`.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np
from scipy.optimize import minimize_scalar
import sklearn
from scipy.special import expit, log_softmax, softmax
from sklearn import metrics as skm

from .errors import ConfigError, DataError, LeptonError

__all__ = [
    "roc_auc", "pr_auc", "per_class_auc", "macro_auc", "confusion", "threshold_metrics",
    "threshold_youden", "threshold_for_sensitivity", "threshold_for_precision",
    "threshold_min_cost", "threshold_top_k", "choose_threshold", "THRESHOLD_METHODS",
    "precision_at_k", "expected_calibration_error", "reliability_curve", "fit_temperature",
    "apply_temperature", "bootstrap_ci", "binary_report",
]

T_MIN, T_MAX = 0.05, 20.0  # temperature clamp: beyond this range the logits carry no signal


# --------------------------------------------------------------------------- validation

def _array(x: Any, name: str, ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise DataError(f"{name} could not be read as an array ({exc})", where=name,
                        fix="pass a list, numpy array or pandas Series of numbers") from exc
    if arr.ndim == 2 and arr.shape[1] == 1 and 1 in ndim and 2 not in ndim:
        arr = arr[:, 0]
    if arr.ndim not in ndim:
        want = " or ".join(f"{d}-D" for d in ndim)
        raise DataError(f"{name} must be {want}, got shape {arr.shape}", where=name,
                        fix="pass one value per row" if ndim == (1,) else "pass an (n_rows, n_classes) array")
    if arr.shape[0] == 0:
        raise DataError(f"{name} is empty", where=name, fix="pass at least one row")
    return arr


def _scores(x: Any, name: str = "y_score", ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    arr = _array(x, name, ndim)
    try:
        arr = arr.astype(float)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name} must be numeric ({exc})", where=name,
                        fix="convert the column to numbers") from exc
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.unique(np.nonzero(bad)[0])
        raise DataError(f"{name} has {int(bad.sum())} missing or infinite values (rows {rows[:5].tolist()}…)",
                        where=name, fix="drop or impute those rows before scoring")
    return arr


def _probs(x: Any, name: str = "y_prob", ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    arr = _scores(x, name, ndim)
    lo, hi = float(arr.min()), float(arr.max())
    if lo < -1e-9 or hi > 1 + 1e-9:
        raise DataError(f"{name} must hold probabilities in [0, 1], found values in [{lo:.4g}, {hi:.4g}]",
                        where=name, fix="pass probabilities (apply a sigmoid/softmax to logits first)")
    return np.clip(arr, 0.0, 1.0)


def _binary_labels(x: Any, name: str = "y_true", ndim: tuple[int, ...] = (1,)) -> np.ndarray:
    arr = _array(x, name, ndim)
    if arr.dtype == bool:
        return arr.astype(int)
    values = np.unique(arr)
    try:
        ok = np.isin(values.astype(float), [0.0, 1.0]).all()
    except (TypeError, ValueError):
        ok = False
    if not ok:
        shown = [v.item() if hasattr(v, "item") else v for v in values[:6]]
        raise DataError(f"{name} must hold binary labels 0/1, found values {shown}", where=name,
                        fix="encode the positive class as 1 and every other class as 0")
    return arr.astype(float).astype(int)


def _class_ids(x: Any, n_classes: int, name: str = "y_true") -> np.ndarray:
    arr = _array(x, name)
    try:
        ids = arr.astype(float)
    except (TypeError, ValueError):
        ids = np.array([np.nan])
    if not (np.isfinite(ids).all() and (ids == np.round(ids)).all() and ids.min() >= 0 and ids.max() < n_classes):
        raise DataError(f"{name} must hold integer class ids in 0..{n_classes - 1} (one per probability column)",
                        where=name, fix="map class names to column indices of the probability matrix")
    return ids.astype(int)


def _same_length(**arrays: np.ndarray) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise DataError(f"inputs have different numbers of rows ({listed})", where=", ".join(lengths),
                        fix="pass one label and one score per row, aligned in the same order")


def _both_classes(y: np.ndarray, name: str = "y_true") -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "positives" if n_pos else "negatives"
        raise DataError(f"{name} contains only {only} ({len(y)} rows), so the metric is undefined",
                        where=name, fix="evaluate on data with at least one positive and one negative row")


def _binary_inputs(y_true: Any, y_score: Any, need_both: bool = True) -> tuple[np.ndarray, np.ndarray]:
    y = _binary_labels(y_true)
    s = _scores(y_score)
    _same_length(y_true=y, y_score=s)
    if need_both:
        _both_classes(y)
    return y, s


def _kind(kind: str) -> Callable[..., float]:
    scorers = {"roc": skm.roc_auc_score, "pr": skm.average_precision_score}
    if kind not in scorers:
        raise ConfigError(f"unknown AUC kind {kind!r}", where="kind", fix="use 'roc' or 'pr'")
    return scorers[kind]


# --------------------------------------------------------------------------- AUCs

def _sk_roc_auc(y: np.ndarray, s: np.ndarray) -> float:
    """sklearn's ROC AUC via roc_curve + auc: the same number as roc_auc_score, with less per-call overhead."""
    fpr, tpr, _ = skm.roc_curve(y, s)
    return float(skm.auc(fpr, tpr))


def roc_auc(y_true: Any, y_score: Any) -> float:
    """Return the area under the ROC curve for binary labels and scores."""
    y, s = _binary_inputs(y_true, y_score)
    return _sk_roc_auc(y, s)


def pr_auc(y_true: Any, y_score: Any) -> float:
    """Return the area under the precision-recall curve (average precision) for binary labels."""
    y, s = _binary_inputs(y_true, y_score)
    return float(skm.average_precision_score(y, s))


def per_class_auc(y_true: Any, y_prob: Any, labels: Sequence[str] | None = None,
                  kind: str = "roc") -> dict[str, float]:
    """Return ``{class name: one-vs-rest AUC}`` for multi-class or multi-label data.

    ``y_prob`` is (n, k). ``y_true`` is either n integer class ids (multi-class) or an (n, k)
    0/1 matrix (multi-label). A class whose column holds a single value gets NaN.
    ``kind`` is "roc" (ROC AUC) or "pr" (average precision).
    """
    scorer = _kind(kind)
    p = _scores(y_prob, "y_prob", ndim=(2,))
    k = p.shape[1]
    raw = np.asarray(y_true)
    if raw.ndim == 2:
        y = _binary_labels(raw, "y_true", ndim=(2,))
        if y.shape != p.shape:
            raise DataError(f"multi-label y_true has shape {y.shape} but y_prob has shape {p.shape}",
                            where="y_true, y_prob", fix="pass one 0/1 column per class, aligned with y_prob")
    else:
        ids = _class_ids(raw, k)
        _same_length(y_true=ids, y_prob=p)
        y = np.eye(k, dtype=int)[ids]
    names = [str(c) for c in (labels if labels is not None else range(k))]
    if len(names) != k:
        raise DataError(f"labels has {len(names)} names but y_prob has {k} columns", where="labels",
                        fix="pass one name per probability column")
    out: dict[str, float] = {}
    for j, name in enumerate(names):
        col = y[:, j]
        out[name] = float(scorer(col, p[:, j])) if 0 < col.sum() < len(col) else float("nan")
    return out


def macro_auc(y_true: Any, y_prob: Any, labels: Sequence[str] | None = None, kind: str = "roc") -> float:
    """Return the unweighted mean of :func:`per_class_auc` over classes where it is defined."""
    values = np.array(list(per_class_auc(y_true, y_prob, labels=labels, kind=kind).values()))
    if np.isnan(values).all():
        raise DataError("no class has both positive and negative rows, so no AUC is defined",
                        where="y_true", fix="evaluate on data that contains more than one class")
    return float(np.nanmean(values))


def confusion(y_true: Any, y_pred: Any, labels: Sequence[Any] | None = None) -> np.ndarray:
    """Return the confusion matrix (rows = true class, columns = predicted class) as an int array."""
    t = _array(y_true, "y_true")
    p = _array(y_pred, "y_pred")
    _same_length(y_true=t, y_pred=p)
    return skm.confusion_matrix(t, p, labels=labels).astype(int)


# --------------------------------------------------------------------------- operating points

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


def _finite(value: Any, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}", where=name) from exc
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}", where=name, fix="pass a real number")
    return value


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


# --------------------------------------------------------------------------- calibration

def _confidence_and_outcome(y_true: Any, y_prob: Any) -> tuple[np.ndarray, np.ndarray]:
    """Binary: (P(positive), label). Multi-class (n, k): (max probability, argmax is right)."""
    p = _probs(y_prob, "y_prob", ndim=(1, 2))
    if p.ndim == 1:
        y = _binary_labels(y_true)
        _same_length(y_true=y, y_prob=p)
        return p, y.astype(float)
    ids = _class_ids(y_true, p.shape[1])
    _same_length(y_true=ids, y_prob=p)
    return p.max(axis=1), (p.argmax(axis=1) == ids).astype(float)


def _bins(n_bins: int) -> int:
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ConfigError(f"n_bins must be a positive integer, got {n_bins!r}", where="n_bins", fix="pass e.g. 10")
    return int(n_bins)


def _binned(conf: np.ndarray, outcome: np.ndarray, n_bins: int) -> dict[str, np.ndarray]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    idx = np.clip(np.floor(conf * n_bins).astype(int), 0, n_bins - 1)  # 1.0 falls in the last bin
    count = np.bincount(idx, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_pred = np.bincount(idx, weights=conf, minlength=n_bins) / count
        observed = np.bincount(idx, weights=outcome, minlength=n_bins) / count
    return {"bin_edges": edges, "bin_center": (edges[:-1] + edges[1:]) / 2, "mean_predicted": mean_pred,
            "observed_frequency": observed, "count": count}


def expected_calibration_error(y_true: Any, y_prob: Any, n_bins: int = 15) -> float:
    """Return the expected calibration error: Σ_bins (n_bin / n) · |observed − mean predicted|.

    Binary (``y_prob`` is P(positive)): calibration of P(positive) against the positive rate.
    Multi-class (``y_prob`` is (n, k), ``y_true`` class ids): top-label confidence against accuracy.
    Bins are ``n_bins`` equal-width intervals of [0, 1].
    """
    conf, outcome = _confidence_and_outcome(y_true, y_prob)
    b = _binned(conf, outcome, _bins(n_bins))
    full = b["count"] > 0
    gap = np.abs(b["observed_frequency"][full] - b["mean_predicted"][full])
    return float((b["count"][full] * gap).sum() / len(conf))


def reliability_curve(y_true: Any, y_prob: Any, n_bins: int = 10) -> dict[str, np.ndarray]:
    """Return the reliability diagram data as arrays of length ``n_bins`` (``bin_edges``: n_bins + 1).

    Keys: bin_edges, bin_center, mean_predicted, observed_frequency (NaN for empty bins), count.
    Inputs are read as in :func:`expected_calibration_error`.
    """
    conf, outcome = _confidence_and_outcome(y_true, y_prob)
    return _binned(conf, outcome, _bins(n_bins))


def _logit_task(logits: Any, y_true: Any, multilabel: bool) -> tuple[np.ndarray, np.ndarray, str]:
    z = _scores(logits, "logits", ndim=(1, 2))
    if z.ndim == 2 and z.shape[1] == 1 and not multilabel:
        z = z[:, 0]  # binary logits given as a column
    if z.ndim == 1 or multilabel:
        y = _binary_labels(y_true, "y_true", ndim=(z.ndim,))
        if y.shape != z.shape:
            raise DataError(f"y_true has shape {y.shape} but logits have shape {z.shape}",
                            where="y_true, logits", fix="pass one label per logit")
        return z, y.astype(float), "sigmoid"
    ids = _class_ids(y_true, z.shape[1])
    _same_length(y_true=ids, logits=z)
    return z, ids, "softmax"


def _nll(z: np.ndarray, y: np.ndarray, link: str, T: float) -> float:
    if link == "sigmoid":
        zt = z / T  # log sigmoid(x) = -log(1 + exp(-x)), written stably
        return float((y * np.logaddexp(0, -zt) + (1 - y) * np.logaddexp(0, zt)).mean())
    return float(-log_softmax(z / T, axis=1)[np.arange(len(y)), y].mean())


def fit_temperature(logits: Any, y_true: Any, multilabel: bool = False) -> float:
    """Return the temperature T in [0.05, 20] minimising the NLL of ``logits / T`` on validation data.

    Binary: logits (n,) or (n, 1), sigmoid. Multi-class: (n, k) with class ids, softmax.
    Multi-label (``multilabel=True``): (n, k) with a 0/1 matrix, one sigmoid per column.
    T > 1 softens over-confident predictions.
    """
    z, y, link = _logit_task(logits, y_true, multilabel)
    res = minimize_scalar(lambda log_t: _nll(z, y, link, math.exp(log_t)),
                          bounds=(math.log(T_MIN), math.log(T_MAX)), method="bounded",
                          options={"xatol": 1e-6})
    return float(np.clip(math.exp(res.x), T_MIN, T_MAX))


def apply_temperature(logits: Any, T: float, multilabel: bool = False) -> np.ndarray:
    """Return probabilities from ``logits / T``, same shape as ``logits``.

    Sigmoid for binary ((n,) or (n, 1)) and multi-label logits, softmax over columns otherwise.
    """
    T = _finite(T, "T")
    if T <= 0:
        raise ConfigError(f"temperature must be positive, got {T}", where="T", fix="use fit_temperature()")
    z = _scores(logits, "logits", ndim=(1, 2))
    if z.ndim == 1 or multilabel or z.shape[1] == 1:
        return expit(z / T)
    return softmax(z / T, axis=1)


# --------------------------------------------------------------------------- bootstrap

def _resample_indices(n: int, n_boot: int, rng: np.random.Generator, strata: np.ndarray | None) -> np.ndarray:
    """(n_boot, n) row indices; with strata each group keeps its size in every resample."""
    if strata is None:
        return rng.integers(0, n, size=(n_boot, n))
    parts = []
    for group in np.unique(strata):
        members = np.flatnonzero(strata == group)
        parts.append(members[rng.integers(0, len(members), size=(n_boot, len(members)))])
    return np.concatenate(parts, axis=1)


def bootstrap_ci(metric_fn: Callable[..., float], *arrays: Any, n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0, stratify: Any | None = None) -> tuple[float, float, float]:
    """Return ``(point, low, high)``: ``metric_fn(*arrays)`` and its percentile bootstrap interval.

    Rows of all arrays are resampled jointly (within each group of ``stratify`` if given).
    Resamples where the metric is undefined (it raises ValueError/DataError or returns NaN) are
    skipped; if fewer than half succeed a DataError is raised. Deterministic for a given seed.
    """
    if not arrays:
        raise ConfigError("bootstrap_ci needs at least one array", where="arrays", fix="pass e.g. y_true, y_score")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer, got {n_boot!r}", where="n_boot", fix="pass e.g. 1000")
    if not 0 < float(alpha) < 1:
        raise ConfigError(f"alpha must lie in (0, 1), got {alpha}", where="alpha", fix="pass 0.05 for a 95% interval")
    data = [_array(a, f"arrays[{i}]", ndim=(1, 2, 3)) for i, a in enumerate(arrays)]
    strata = None if stratify is None else _array(stratify, "stratify")
    _same_length(**{f"arrays[{i}]": a for i, a in enumerate(data)},
                 **({} if strata is None else {"stratify": strata}))
    point = float(metric_fn(*data))
    idx = _resample_indices(len(data[0]), int(n_boot), np.random.default_rng(seed), strata)
    values = []
    # The inputs were checked once above; sklearn's per-call checks would dominate the loop.
    with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        for rows in idx:
            try:
                v = float(metric_fn(*(a[rows] for a in data)))
            except (ValueError, LeptonError):
                continue
            if math.isfinite(v):
                values.append(v)
    if len(values) < n_boot / 2:
        raise DataError(f"the metric was undefined in {n_boot - len(values)} of {n_boot} bootstrap resamples",
                        where="bootstrap_ci",
                        fix="use more rows (especially of the rarer class) or pass stratify=y_true")
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return point, float(low), float(high)


def _plain(x: Any) -> Any:
    """numpy scalars/arrays -> Python floats/ints/lists; NaN -> None, so json.dumps gives strict JSON."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [_plain(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x


def binary_report(y_true: Any, y_score: Any, threshold: float, n_boot: int = 1000, seed: int = 0,
                  alpha: float = 0.05) -> dict[str, Any]:
    """Return a JSON-ready summary of a binary classifier.

    Keys: n, n_positive, prevalence, roc_auc, roc_auc_ci [low, high], pr_auc, pr_auc_ci,
    confidence, n_boot, plus every key of :func:`threshold_metrics`. Only Python floats, ints,
    lists and None (for undefined rates) appear.
    """
    y, s = _binary_inputs(y_true, y_score)
    # Inputs are validated above; the bootstrap calls sklearn directly to keep 2×n_boot fits cheap.
    # Stratifying on the label keeps every resample's prevalence, so AUC is always defined.
    roc = bootstrap_ci(_sk_roc_auc, y, s, n_boot=n_boot, alpha=alpha, seed=seed, stratify=y)
    pr = bootstrap_ci(skm.average_precision_score, y, s, n_boot=n_boot, alpha=alpha, seed=seed, stratify=y)
    report = {
        "n": len(y), "n_positive": int(y.sum()), "prevalence": float(y.mean()),
        "roc_auc": roc[0], "roc_auc_ci": [roc[1], roc[2]],
        "pr_auc": pr[0], "pr_auc_ci": [pr[1], pr[2]],
        "confidence": 1 - alpha, "n_boot": int(n_boot),
        **threshold_metrics(y, s, threshold),
    }
    return _plain(report)
