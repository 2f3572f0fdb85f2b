"""The per-column distribution tests of a drift report, for a feature or a score column against its reference
profile: numbers get the Kolmogorov–Smirnov test on a small window and PSI with the normalised Wasserstein
distance (bands widened to the reference's own variation) on a large one, categories the chi-squared test or PSI
with the Jensen–Shannon distance over buckets of the frequent reference values; the p-value tests of a report are
then settled together, after Holm's correction (:func:`settle_pvalues`).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd

from lepton_apps.monitor.bands import MIN_SPREAD_ROWS, sampling_level, variation_level, widened
from lepton_apps.monitor.profile import OTHER, bin_counts, psi

from .thresholds import STATUSES, DriftConfig, fmt_number, blank_row, band, holm, p_band, worst


def compare_numeric(name: str, ref: Mapping[str, Any], values: np.ndarray, config: DriftConfig,
                    section: str = "feature") -> dict[str, Any]:
    """Return the drift row of one numeric column (``values``: float array, NaN = missing).

    A small window gets the KS test (status set later, after the p-value correction); a large one PSI
    and the std-normalised Wasserstein distance, the worse of the two bands.
    """
    from scipy import stats

    finite = values[np.isfinite(values)]
    sample = np.asarray(ref.get("sample") or [], dtype=np.float64)
    row = blank_row(section, name, n_reference=int(ref.get("n_finite", len(sample))), n_current=int(finite.size))
    if sample.size < 2 or not ref.get("counts"):
        row["reason"] = f"{name}: the reference has no finite values to compare with (n/a)"
        return row
    if finite.size < config.min_rows:
        row["reason"] = f"{name}: {finite.size} finite values in the window, fewer than {config.min_rows} (n/a)"
        return row
    std = ref.get("std") or 0.0
    wd = float(stats.wasserstein_distance(sample, finite)) / (std if std > 0 else 1.0)
    row.update(distance=wd, distance_kind="wasserstein/std" if std > 0 else "wasserstein")
    row["psi"] = psi(ref["counts"], bin_counts(values, ref["edges"]), config.psi_epsilon)
    if finite.size < config.small_window:
        ks = stats.ks_2samp(sample, finite)
        row.update(test="ks", statistic=float(ks.statistic), p_value=float(ks.pvalue),
                   ks_level=variation_level(ref, "ks", finite.size) if config.widen_to_reference else None)
        return row  # status after the correction over the whole report
    levels = {"psi": None, "wasserstein": None}
    if config.widen_to_reference:
        noise = sampling_level(ref, sample, finite.size, seed=config.seed, epsilon=config.psi_epsilon)
        for kind in levels:
            found = [v for v in (variation_level(ref, kind, finite.size), noise[kind]) if v is not None]
            levels[kind] = max(found) if found else None
    psi_warn, psi_drift = widened(config.psi_warn, config.psi_drift, levels["psi"])
    wd_warn, wd_drift = widened(config.wasserstein_warn, config.wasserstein_drift, levels["wasserstein"])
    status_psi = band(row["psi"], psi_warn, psi_drift)
    spread = int(np.sum(sample != np.median(sample)))
    status_wd = band(wd, wd_warn, wd_drift) if spread >= MIN_SPREAD_ROWS else "ok"
    status = worst([status_psi, status_wd])
    unit = " std" if std > 0 else ""
    parts = [f"PSI {fmt_number(row['psi'])} {'≥' if status_psi != 'ok' else '<'} "
             f"{fmt_number(psi_drift if status_psi == 'drift' else psi_warn)}",
             f"Wasserstein {fmt_number(wd)}{unit} {'≥' if status_wd != 'ok' else '<'} "
             f"{fmt_number(wd_drift if status_wd == 'drift' else wd_warn)}" if spread >= MIN_SPREAD_ROWS else
             f"Wasserstein {fmt_number(wd)}{unit} not judged (the reference's spread rests on {spread} of its "
             f"{sample.size} sampled rows; PSI judges the share)"]
    if status_wd != status_psi:  # lead with the one that decided
        parts = parts[::-1] if STATUSES.index(status_wd) > STATUSES.index(status_psi) else parts
    row.update(test="psi", statistic=row["psi"], status=status, reason=f"{name}: {', '.join(parts)} ({status})")
    if (psi_warn, wd_warn) != (config.psi_warn, config.wasserstein_warn):
        row["reason"] = row["reason"][:-len(f" ({status})")] + (
            f"; bands widened to what windows of the reference itself vary by ({status})")
    return row


# ------------------------------------------------------------------------------------- categorical

def category_buckets(ref: Mapping[str, Any], strings: pd.Series, missing: pd.Series, top: int, min_count: int):
    """Return (bucket names, reference counts, current counts, new-category facts).

    Buckets: up to ``top`` of the most frequent reference values seen at least ``min_count`` times, and
    "(other)" for everything else — rarer values and values never seen. Rare values do not get their own
    bucket because their reference share overstates their probability (a value seen twice in 5,000 rows
    was lucky; the winner's curse), and that bias alone makes a test reject on a window of 1,000 rows;
    the share of all of them together is unbiased. New values are counted for the data-quality check
    (only when the profile stored the vocabulary; otherwise nothing can be called new).
    """
    freqs = dict(ref.get("frequencies") or {})
    kept = [k for k in list(freqs)[:top] if freqs[k] >= min_count]
    n_ref = int(ref.get("n_nonmissing", sum(freqs.values()) + ref.get("other", 0)))
    ref_counts = np.array([freqs[k] for k in kept] + [n_ref - sum(freqs[k] for k in kept)], dtype=np.float64)
    counts = strings[~missing].value_counts()
    has_vocab = ref.get("vocabulary") is not None
    vocab = set(ref["vocabulary"]) if has_vocab else set()
    index = {k: i for i, k in enumerate(kept)}
    cur = np.zeros(len(kept) + 1)
    new_count = 0
    for value, c in counts.items():
        if value in index:
            cur[index[value]] += c
        else:
            cur[-1] += c
            new_count += int(c) if has_vocab and value not in vocab else 0
    n1, n2 = ref.get("singletons", 0), ref.get("doubletons", 0)
    unseen = n1 / n_ref if n_ref and has_vocab else 0.0
    # Esty (1983): the variance of the Good–Turing estimate of the unseen mass
    unseen_var = (unseen * (1 - unseen) + 2 * n2 / n_ref) / n_ref if n_ref and has_vocab else 0.0
    facts = {"new": new_count, "n": int(cur.sum()), "unseen": unseen, "unseen_var": unseen_var,
             "vocabulary": has_vocab}
    return kept + [OTHER], ref_counts, cur, facts


def chi2_table(ref_counts: np.ndarray, cur_counts: np.ndarray, min_expected: float = 5.0):
    """Return the chi-squared test (statistic, p) of the 2×k table, pooling buckets whose expected
    current count is below ``min_expected`` into one, and dropping buckets empty on both sides."""
    from scipy import stats

    keep = (ref_counts + cur_counts) > 0
    ref_counts, cur_counts = ref_counts[keep], cur_counts[keep]
    share = cur_counts.sum() / (ref_counts.sum() + cur_counts.sum())
    rare = (ref_counts + cur_counts) * share < min_expected
    if rare.any():
        ref_counts = np.append(ref_counts[~rare], ref_counts[rare].sum())
        cur_counts = np.append(cur_counts[~rare], cur_counts[rare].sum())
    if len(ref_counts) < 2:
        return 0.0, 1.0
    res = stats.chi2_contingency(np.vstack([ref_counts, cur_counts]), correction=False)
    return float(res.statistic), float(res.pvalue)


def compare_categorical(name: str, ref: Mapping[str, Any], strings: pd.Series, missing: pd.Series,
                        config: DriftConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (drift row, new-category facts) of one categorical column.

    A small window gets the chi-squared test over every stored category (pooled only where the expected
    count is below 5, a choice that depends on the margins alone); a large one PSI and the Jensen–Shannon
    distance over ``max_categories`` buckets. Buckets are not cut to the top few for the test, because
    the most frequent reference values overstate their share (the winner's curse) and on a window of
    1,000 rows that bias alone would reject.
    """
    from scipy.spatial.distance import jensenshannon

    n_cur = int((~missing).sum())
    row = blank_row("feature", name, n_reference=int(ref.get("n_nonmissing", 0)), n_current=n_cur)
    small = n_cur < config.small_window
    top = len(ref.get("frequencies") or {}) if small else config.max_categories - 1
    buckets, ref_counts, cur, facts = category_buckets(ref, strings, missing, top, config.min_category_count)
    if ref_counts.sum() <= 0:
        row["reason"] = f"{name}: the reference has no values to compare with (n/a)"
        return row, facts
    if n_cur < config.min_rows:
        row["reason"] = f"{name}: {n_cur} values in the window, fewer than {config.min_rows} (n/a)"
        return row, facts
    if small:
        stat, p = chi2_table(ref_counts, cur)
        row.update(test="chi2", statistic=stat, p_value=p)
        return row, facts
    row["psi"] = psi(ref_counts, cur, config.psi_epsilon)
    js = float(jensenshannon(ref_counts / ref_counts.sum(), cur / n_cur, base=2))
    row.update(distance=js, distance_kind="jensen-shannon")
    status_psi = band(row["psi"], config.psi_warn, config.psi_drift)
    status_js = band(js, config.js_warn, config.js_drift)
    status = worst([status_psi, status_js])
    parts = [f"PSI {fmt_number(row['psi'])} {'≥' if status_psi != 'ok' else '<'} "
             f"{config.psi_drift if status_psi == 'drift' else config.psi_warn}",
             f"Jensen–Shannon {fmt_number(js)} {'≥' if status_js != 'ok' else '<'} "
             f"{config.js_drift if status_js == 'drift' else config.js_warn}"]
    if STATUSES.index(status_js) > STATUSES.index(status_psi):
        parts = parts[::-1]
    row.update(test="psi", statistic=row["psi"], status=status, reason=f"{name}: {', '.join(parts)} ({status})")
    return row, facts


def settle_pvalues(rows: list[dict[str, Any]], config: DriftConfig) -> None:
    """Give every row tested by a p-value (KS, chi-squared) its adjusted p-value, status and reason."""
    tested = [r for r in rows if r["p_value"] is not None and r["test"] in ("ks", "chi2")]
    if not tested:
        return
    adjusted = holm([r["p_value"] for r in tested]) if config.correction == "holm" else [r["p_value"] for r in tested]
    label = {"ks": "KS D", "chi2": "chi-squared"}
    for r, p_adj in zip(tested, adjusted):
        status = p_band(p_adj, config)
        threshold = config.alpha_drift if status == "drift" else config.alpha_warn
        adj = f" (Holm-adjusted {fmt_number(p_adj)} over {len(tested)} tests)" if config.correction == "holm" else ""
        reason = (f"{r['name']}: {label[r['test']]} {fmt_number(r['statistic'])}, p {fmt_number(r['p_value'])}{adj} "
                  f"{'<' if status != 'ok' else '≥'} {threshold}")
        level = r.get("ks_level")
        if status != "ok" and level is not None and r["statistic"] < level:
            # consecutive windows of the reference itself differ this much: not independent draws, and not drift
            status = "ok"
            reason += f", but D < {fmt_number(level)}, what consecutive windows of the reference differ by"
        r.update(p_adjusted=float(p_adj), status=status, reason=f"{reason} ({status})")
