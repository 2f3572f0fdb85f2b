"""The checks every metric runs on its inputs at the boundary: arrays of the right shape, finite scores,
probabilities in [0, 1], 0/1 labels, class ids, equal lengths; each raises DataError naming the argument.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
from sklearn import metrics as skm

from lepton_apps.errors import ConfigError, DataError



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


def _finite(value: Any, name: str) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}", where=name) from exc
    if not math.isfinite(value):
        raise ConfigError(f"{name} must be finite, got {value}", where=name, fix="pass a real number")
    return value
