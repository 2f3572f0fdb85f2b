"""Evaluation metrics on top of scikit-learn: AUCs, operating points, calibration, bootstrap CIs.

Every public function takes array-likes (lists, numpy arrays, pandas Series), checks them at
the boundary and raises :class:`~lepton_apps.errors.DataError` naming the offending argument.
Binary labels are 0/1 (or bool); scores are any finite numbers, probabilities lie in [0, 1].
A threshold ``t`` flags a row as positive when ``score >= t``.

Each part in its module: inputs.py (the checks), auc.py, thresholds.py, calibration.py, bootstrap.py,
report.py. Numbers only: the figures drawn from them (ROC, PR, reliability, confusion) are in :mod:`lepton_apps.plots`.
"""
from __future__ import annotations

from .auc import confusion, macro_auc, per_class_auc, pr_auc, roc_auc
from .bootstrap import bootstrap_ci
from .calibration import apply_temperature, expected_calibration_error, fit_temperature, reliability_curve
from .report import binary_report, json_ready
from .thresholds import (THRESHOLD_METHODS, choose_threshold, precision_at_k, threshold_for_precision,
                         threshold_for_sensitivity, threshold_metrics, threshold_min_cost, threshold_top_k,
                         threshold_youden)

__all__ = [
    "roc_auc", "pr_auc", "per_class_auc", "macro_auc", "confusion", "threshold_metrics",
    "threshold_youden", "threshold_for_sensitivity", "threshold_for_precision",
    "threshold_min_cost", "threshold_top_k", "choose_threshold", "THRESHOLD_METHODS",
    "precision_at_k", "expected_calibration_error", "reliability_curve", "fit_temperature",
    "apply_temperature", "bootstrap_ci", "binary_report", "json_ready",
]
