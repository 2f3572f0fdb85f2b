"""Calibration: expected calibration error, the reliability curve, and temperature scaling (fit, apply).
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import expit, log_softmax, softmax

from lepton_apps.errors import ConfigError, DataError

from .inputs import _binary_labels, _class_ids, _finite, _probs, _same_length, _scores


T_MIN, T_MAX = 0.05, 20.0  # temperature clamp: beyond this range the logits carry no signal


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
