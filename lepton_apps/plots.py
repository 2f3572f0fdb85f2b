"""Plots of the evaluation metrics: ROC and precision-recall curves, the reliability diagram and the confusion
matrix, each a :class:`matplotlib.figure.Figure` (never pyplot, so safe to make from Streamlit's worker
threads), and :func:`save_figure`, which writes one as a PNG atomically. The numbers and the input checks
(a bad argument raises :class:`~lepton_apps.errors.DataError` naming it) come from :mod:`lepton_apps.metrics`,
which imports nothing from here."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from sklearn import metrics as skm

from .errors import DataError
from .io import atomic_path
from .metrics import expected_calibration_error, reliability_curve, threshold_metrics
from .metrics.inputs import _array, _binary_inputs

__all__ = ["plot_roc", "plot_pr", "plot_calibration", "plot_confusion", "save_figure"]


def _figure(size: tuple[float, float] = (5.0, 4.5)):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    return fig, fig.add_subplot()


def _named_scores(y_score: Any) -> dict[str, Any]:
    return dict(y_score) if isinstance(y_score, Mapping) else {"model": y_score}


def plot_roc(y_true: Any, y_score: Any, threshold: float | None = None, title: str = "ROC curve"):
    """Return a Figure with the ROC curve of ``y_score`` (or of each ``{name: scores}``), AUC in the legend.

    ``threshold`` marks that operating point on every curve.
    """
    fig, ax = _figure()
    for name, scores in _named_scores(y_score).items():
        y, s = _binary_inputs(y_true, scores)
        fpr, tpr, _ = skm.roc_curve(y, s)
        (line,) = ax.plot(fpr, tpr, lw=2, label=f"{name} (AUC {skm.roc_auc_score(y, s):.3f})")
        if threshold is not None:
            m = threshold_metrics(y, s, threshold)
            ax.plot(1 - m["specificity"], m["sensitivity"], "o", color=line.get_color(), ms=8)
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance")
    ax.set(xlabel="False positive rate (1 − specificity)", ylabel="True positive rate (sensitivity)",
           title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="lower right")
    return fig


def plot_pr(y_true: Any, y_score: Any, threshold: float | None = None, title: str = "Precision-recall curve"):
    """Return a Figure with the precision-recall curve(s), AP in the legend, the prevalence baseline,
    and ``threshold`` marked as an operating point when given."""
    fig, ax = _figure()
    prevalence = None
    for name, scores in _named_scores(y_score).items():
        y, s = _binary_inputs(y_true, scores)
        precision, recall, _ = skm.precision_recall_curve(y, s)
        (line,) = ax.step(recall, precision, where="post", lw=2,
                          label=f"{name} (AP {skm.average_precision_score(y, s):.3f})")
        if threshold is not None:
            m = threshold_metrics(y, s, threshold)
            ax.plot(m["sensitivity"], m["precision"], "o", color=line.get_color(), ms=8,
                    label=f"threshold {threshold:.3g}")
        prevalence = y.mean()
    ax.axhline(prevalence, ls="--", color="grey", lw=1, label=f"prevalence {prevalence:.3f}")
    ax.set(xlabel="Recall (sensitivity)", ylabel="Precision (PPV)", title=title, xlim=(0, 1), ylim=(0, 1.01))
    ax.legend(loc="best")
    return fig


def plot_calibration(y_true: Any, y_prob: Any, y_prob_after: Any | None = None, n_bins: int = 10,
                     title: str = "Reliability diagram", after_label: str = "after temperature scaling"):
    """Return a Figure with the reliability diagram (observed vs predicted per bin), the diagonal,
    and the ECE in the title; ``y_prob_after`` adds a second curve (e.g. after temperature scaling)."""
    fig, ax = _figure()
    ax.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfect calibration")
    eces = []
    for label, probs in (("model", y_prob), (after_label, y_prob_after)):
        if probs is None:
            continue
        curve = reliability_curve(y_true, probs, n_bins=n_bins)
        full = curve["count"] > 0
        ece = expected_calibration_error(y_true, probs, n_bins=n_bins)
        eces.append(ece)
        ax.plot(curve["mean_predicted"][full], curve["observed_frequency"][full], "o-", lw=2,
                label=f"{label} (ECE {ece:.3f})")
    ax.set(xlabel="Mean predicted probability", ylabel="Observed frequency", xlim=(0, 1), ylim=(0, 1),
           title=f"{title} — ECE " + " → ".join(f"{e:.3f}" for e in eces))
    ax.legend(loc="upper left")
    return fig


def plot_confusion(cm: Any, labels: Sequence[str] | None = None, title: str = "Confusion matrix"):
    """Return a Figure showing the confusion matrix ``cm`` (rows true, columns predicted) with counts annotated."""
    m = _array(cm, "cm", ndim=(2,))
    if m.shape[0] != m.shape[1]:
        raise DataError(f"cm must be square, got shape {m.shape}", where="cm", fix="pass the output of confusion()")
    names = [str(c) for c in (labels if labels is not None else range(len(m)))]
    if len(names) != len(m):
        raise DataError(f"labels has {len(names)} names but cm has {len(m)} classes", where="labels",
                        fix="pass one name per row of cm")
    size = max(4.0, 0.6 * len(m) + 2.5)
    fig, ax = _figure((size + 1, size))
    image = ax.imshow(m, cmap="Blues")
    fig.colorbar(image, ax=ax)
    cut = m.max() / 2 if m.size else 0
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:,}" if np.issubdtype(m.dtype, np.integer) else f"{v:.2f}", ha="center", va="center",
                color="white" if v > cut else "black")
    ax.set(xticks=range(len(m)), yticks=range(len(m)), xticklabels=names, yticklabels=names,
           xlabel="Predicted", ylabel="True", title=title)
    return fig


def save_figure(fig: Any, path: str | Path, dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically and return the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return path
