"""The JSON-ready summary of a binary classifier (:func:`binary_report`) and :func:`json_ready`, which turns
numpy values into strict-JSON Python ones.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np
from sklearn import metrics as skm

from .inputs import _binary_inputs
from .auc import _sk_roc_auc
from .thresholds import threshold_metrics
from .bootstrap import bootstrap_ci


def json_ready(x: Any) -> Any:
    """numpy scalars/arrays -> Python floats/ints/lists; NaN -> None, so json.dumps gives strict JSON."""
    if isinstance(x, dict):
        return {k: json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple, np.ndarray)):
        return [json_ready(v) for v in x]
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
    return json_ready(report)
