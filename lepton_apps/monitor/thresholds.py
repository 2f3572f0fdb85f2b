"""The thresholds of a drift report and how a number is judged against them: :class:`DriftConfig` (every test's
bands, alphas and sample sizes; :mod:`lepton_apps.monitor.drift` says why these defaults), the statuses
("ok" < "warn" < "drift", and "n/a" for what could not be tested), the status of a distance or a p-value, the worst
of several statuses, Holm's correction, and the blank row and number format shared by every check of a report.
"""
from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from lepton_apps.config import LeptonConfig

STATUSES = ("ok", "warn", "drift")
NOT_TESTED = "n/a"


class DriftConfig(LeptonConfig):
    """Tests and thresholds of a drift report (the module docstring says why these defaults)."""

    small_window: int = Field(1000, ge=2, description="below this many current rows: KS / chi-squared, else PSI")
    min_rows: int = Field(30, ge=2, description="fewer current values than this: the feature is not tested")
    alpha_warn: float = Field(0.01, gt=0, lt=1, description="family-wise, over the p-value tests of a report")
    alpha_drift: float = Field(0.001, gt=0, lt=1)
    correction: Literal["holm", "none"] = "holm"
    psi_warn: float = Field(0.1, gt=0)
    psi_drift: float = Field(0.25, gt=0)
    psi_epsilon: float = Field(1e-4, gt=0, description="floor of a bin share in PSI (an empty bin)")
    wasserstein_warn: float = Field(0.15, gt=0, description="in reference standard deviations")
    wasserstein_drift: float = Field(0.3, gt=0)
    js_warn: float = Field(0.15, gt=0, le=1)
    js_drift: float = Field(0.25, gt=0, le=1)
    max_categories: int = Field(20, ge=2, description="buckets of a categorical column in PSI / Jensen–Shannon")
    min_category_count: int = Field(10, ge=1, description="reference rows a value needs for its own bucket")
    widen_to_reference: bool = Field(True, description="widen a large window's PSI / Wasserstein bands to the "
                                     "reference's own variation between consecutive windows, where it measured one")
    embedding_method: Literal["classifier", "mmd"] = "classifier"
    auc_warn: float = Field(0.55, gt=0.5, lt=1)
    auc_drift: float = Field(0.6, gt=0.5, lt=1)
    cv_folds: int = Field(5, ge=2)
    embedding_sample: int = Field(1000, ge=10, description="current embedding rows used (a seeded sample)")
    mmd_sample: int = Field(300, ge=10, description="rows per side in the MMD test")
    permutations: int = Field(1000, ge=19, le=10_000, description="MMD permutations (p-values from 1/(n+1))")
    new_category_warn: float = Field(0.01, ge=0, le=1)
    new_category_drift: float = Field(0.05, ge=0, le=1)
    missing_warn: float = Field(0.05, gt=0, le=1, description="rise of the missing rate, absolute")
    missing_drift: float = Field(0.10, gt=0, le=1)
    range_margin: float = Field(0.05, ge=0, description="reference min-max widened by this share of its range")
    out_of_range_warn: float = Field(0.01, ge=0, le=1)
    out_of_range_drift: float = Field(0.05, ge=0, le=1)
    bad_input_warn: float = Field(0.01, ge=0, le=1, description="unparseable values / unreadable inputs")
    bad_input_drift: float = Field(0.05, ge=0, le=1)
    seed: int = 0

    @model_validator(mode="after")
    def _consistent(self) -> "DriftConfig":
        for warn, drift in (("alpha_drift", "alpha_warn"), ("psi_warn", "psi_drift"),
                            ("wasserstein_warn", "wasserstein_drift"), ("js_warn", "js_drift"),
                            ("auc_warn", "auc_drift"), ("new_category_warn", "new_category_drift"),
                            ("missing_warn", "missing_drift"), ("out_of_range_warn", "out_of_range_drift"),
                            ("bad_input_warn", "bad_input_drift")):
            if getattr(self, warn) > getattr(self, drift):
                raise ValueError(f"{warn}={getattr(self, warn)} must not be above {drift}={getattr(self, drift)}")
        if self.embedding_method == "mmd" and 1.0 / (self.permutations + 1) >= self.alpha_drift:
            raise ValueError(f"permutations={self.permutations} cannot give a p-value below alpha_drift="
                             f"{self.alpha_drift}; use at least {int(1 / self.alpha_drift)} permutations")
        return self


def worst(statuses) -> str:
    """Return the worst of ``statuses`` (``drift`` > ``warn`` > ``ok``); "n/a" ones are ignored; "ok" if none."""
    ranked = [STATUSES.index(s) for s in statuses if s in STATUSES]
    return STATUSES[max(ranked)] if ranked else "ok"


def band(value: float, warn: float, drift: float) -> str:
    """Return the status of a distance ``value`` for bands ``warn`` ≤ … < ``drift`` ≤ …"""
    return "drift" if value >= drift else "warn" if value >= warn else "ok"


def p_band(p: float, config: DriftConfig) -> str:
    """Return the status of a p-value: drift below ``alpha_drift``, warn below ``alpha_warn``."""
    return "drift" if p < config.alpha_drift else "warn" if p < config.alpha_warn else "ok"


def holm(pvalues: list[float]) -> list[float]:
    """Return Holm's step-down adjusted p-values (family-wise error), in the order given."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p)
    adjusted = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adjusted
    return out.tolist()


def fmt_number(x: float) -> str:
    return f"{x:.2g}" if x < 0.01 else f"{x:.3f}".rstrip("0").rstrip(".") if x < 1 else f"{x:.3g}"


def blank_row(section: str, name: str, **fields) -> dict[str, Any]:
    base = {"section": section, "name": name, "test": None, "statistic": None, "p_value": None,
            "p_adjusted": None, "psi": None, "distance": None, "distance_kind": None,
            "n_reference": None, "n_current": None, "status": NOT_TESTED, "reason": ""}
    base.update(fields)
    return base
