"""Bootstrap confidence intervals of any metric (stratified on request).
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np
import sklearn

from lepton_apps.errors import ConfigError, DataError, LeptonError

from .inputs import _array, _same_length


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
