"""The data-quality checks of a drift report, one row per finding: a missing rate that rose significantly, values
outside the reference range, unparseable values, categories never seen in the reference beyond the Good–Turing
expectation, and any share of bad rows (unreadable inputs, non-finite embeddings) banded by its warn / drift
thresholds. A check that finds nothing returns None.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .thresholds import DriftConfig, fmt_number, band


def quality_row(name: str, check: str, count: int, n: int, value: float, reference: float | None, status: str,
             reason: str) -> dict[str, Any]:
    return {"section": "quality", "name": name, "check": check, "count": int(count), "n": int(n),
            "value": float(value), "reference": None if reference is None else float(reference),
            "status": status, "reason": reason}


def _pct(x: float) -> str:
    return f"{100 * x:.2g} %" if x < 0.1 else f"{100 * x:.0f} %"


def missing_check(name: str, ref: Mapping[str, Any], missing: int, n: int, config: DriftConfig):
    """Return the missing-rate row of a column, or None when its rate did not rise.

    Flagged when the rate rose by at least ``missing_warn`` / ``missing_drift`` (absolute) and the rise is
    significant (one-sided binomial test against the reference rate, p < ``alpha_drift``).
    """
    from scipy import stats

    if n == 0 or missing == 0:
        return None
    r0 = float(ref.get("missing_rate", 0.0))
    r1 = missing / n
    rise = r1 - r0
    if rise <= 0:
        return None
    p = 0.0 if r0 <= 0 else float(stats.binomtest(missing, n, r0, alternative="greater").pvalue)
    status = band(rise, config.missing_warn, config.missing_drift) if p < config.alpha_drift else "ok"
    limit = {"drift": f" ≥ {100 * config.missing_drift:g}", "warn": f" ≥ {100 * config.missing_warn:g}",
             "ok": ""}[status]
    reason = (f"{name}: missing in {_pct(r1)} of {n:,} rows vs {_pct(r0)} in the reference "
              f"(+{100 * rise:.1f}{limit} points, binomial p {fmt_number(p)}) ({status})")
    return quality_row(name, "missing rate", missing, n, r1, r0, status, reason)


def share_check(name: str, check: str, count: int, n: int, warn: float, drift: float, what: str):
    """Return a row for ``count`` of ``n`` rows that are ``what`` (None when there are none), its share
    banded by ``warn`` / ``drift``."""
    if count == 0 or n == 0:
        return None
    share = count / n
    status = band(share, warn, drift)
    limit = {"drift": f" ≥ {_pct(drift)}", "warn": f" ≥ {_pct(warn)}", "ok": ""}[status]
    return quality_row(name, check, count, n, share, None, status,
                    f"{name}: {count:,} of {n:,} rows {what} ({_pct(share)}{limit}) ({status})")


def new_category_check(name: str, facts: Mapping[str, Any], config: DriftConfig):
    """Return the new-category row of a column (None when the window has no unseen value).

    Flagged when the share of rows with a value outside the reference vocabulary exceeds the Good–Turing
    expectation by ``new_category_warn`` / ``new_category_drift`` and significantly (one-sided z-test with
    the binomial variance of the window plus the variance of the estimate, p < ``alpha_drift``).
    """
    from scipy import stats

    new, n, u = facts["new"], facts["n"], facts["unseen"]
    if not new or not n:
        return None
    share = new / n
    sd = float(np.sqrt(u * (1 - u) / n + facts["unseen_var"]))
    p = float(stats.norm.sf((share - u) / sd)) if sd > 0 else 0.0
    excess = share - u
    significant = excess > 0 and p < config.alpha_drift
    status = band(excess, config.new_category_warn, config.new_category_drift) if significant else "ok"
    limit = {"drift": f" ≥ {_pct(config.new_category_drift)}", "warn": f" ≥ {_pct(config.new_category_warn)}",
             "ok": ""}[status]
    exp = f"; {_pct(u)} expected from the reference's values seen once, p {fmt_number(p)}" if u else ""
    above = f", {_pct(max(excess, 0.0))} above expected" if u else ""
    return quality_row(name, "new categories", new, n, share, u, status,
                    f"{name}: {new:,} of {n:,} rows have a value never seen in the reference "
                    f"({_pct(share)}{exp}{above}{limit}) ({status})")


def numeric_quality(name: str, ref: Mapping[str, Any], values: np.ndarray, counts: dict[str, int],
                    config: DriftConfig) -> list[dict[str, Any]]:
    """Return the data-quality rows of one numeric column: missing rate, unparseable, out of range (flagged
    only when significant: a value of the reference distribution falls outside the reference's own
    min-max with probability 2 / (n + 1), whatever the distribution)."""
    from scipy import stats

    n = int(values.size)
    rows = [missing_check(name, ref, counts["missing"] + counts["unparseable"], n, config),
            share_check(name, "unparseable", counts["unparseable"], n, config.bad_input_warn,
                        config.bad_input_drift, "are not numbers")]
    lo, hi = ref.get("min"), ref.get("max")
    present = values[~np.isnan(values)]
    if lo is not None and present.size:
        width = (hi - lo) or max(abs(hi), 1.0)
        lo_m, hi_m = lo - config.range_margin * width, hi + config.range_margin * width
        outside = int(((present < lo_m) | (present > hi_m)).sum())
        what = f"outside the reference range [{lo:.4g}, {hi:.4g}] ± {_pct(config.range_margin)} of it"
        if counts["nonfinite"]:
            what += f" (of them {counts['nonfinite']:,} ±inf)"
        row = share_check(name, "out of range", outside, int(present.size), config.out_of_range_warn,
                          config.out_of_range_drift, what)
        if row is not None and row["status"] != "ok":
            # a value from the reference distribution falls outside its min-max with chance 2 / (n + 1)
            p = float(stats.binomtest(outside, int(present.size), min(1.0, 2.0 / (ref.get("n_finite", 0) + 1)),
                                      alternative="greater").pvalue)
            if p >= config.alpha_drift:
                row.update(status="ok", reason=row["reason"].rsplit(" ≥ ", 1)[0] + f", binomial p {fmt_number(p)}) (ok)")
        rows.append(row)
    return [r for r in rows if r is not None]
