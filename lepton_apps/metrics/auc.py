"""Ranking metrics: ROC-AUC, PR-AUC (average precision), per-class and macro AUCs, the confusion matrix.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn import metrics as skm

from lepton_apps.errors import DataError

from .inputs import _array, _binary_inputs, _binary_labels, _class_ids, _kind, _same_length, _scores


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
