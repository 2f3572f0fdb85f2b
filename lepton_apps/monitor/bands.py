"""How far a distance between a window and its reference goes without any change: the bands of a drift report,
widened to what the reference itself varies by (:mod:`lepton_apps.monitor.drift` says when each applies).

* :func:`window_variation` — at profile time, for a reference in time order: how much its *consecutive* windows
  (chunks of 250 … 50,000 rows) differ from the whole (mean + 3 std of PSI, Wasserstein / std and KS D over the
  chunks, NannyML's reference-chunk threshold); :func:`variation_level` reads it back for a window's size.
* :func:`sampling_level` — at compare time: how far a window of the same size drawn from the reference itself goes
  by sampling noise alone (seeded bootstrap).
* :func:`widened` — the (warn, drift) bands widened to such a level.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np


def bin_counts(values: np.ndarray, edges: list[float] | np.ndarray) -> np.ndarray:
    """Return the count of ``values`` in each bin ``(-inf, e0], (e0, e1], …, (e_last, inf)``; NaN is not counted."""
    values = values[~np.isnan(values)]
    return np.bincount(np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="left"),
                       minlength=len(edges) + 1)


def psi(expected: np.ndarray, actual: np.ndarray, epsilon: float = 1e-4) -> float:
    """Return the population stability index of two count (or share) vectors over the same bins."""
    e = np.maximum(np.asarray(expected, dtype=np.float64) / max(np.sum(expected), 1e-300), epsilon)
    a = np.maximum(np.asarray(actual, dtype=np.float64) / max(np.sum(actual), 1e-300), epsilon)
    return float(np.sum((a - e) * np.log(a / e)))


CHUNK_SIZES = (250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000)
MIN_CHUNKS = 4  # a chunk size is measured only when the reference holds at least this many chunks of it
MAX_CHUNKS = 50  # at most this many (evenly spaced) chunks of one size are measured (4x fewer: 10.9 -> ~3 s on the demo)


def window_variation(values: np.ndarray, prof: Mapping[str, Any], *, sizes=CHUNK_SIZES) -> dict[str, Any]:
    """Return how much consecutive windows of the reference itself differ from the whole reference: for each chunk
    size in ``sizes`` that fits :data:`MIN_CHUNKS` times into ``values`` (in time order, NaN = missing), the level
    ``mean + 3 std`` of the chunks' PSI, Wasserstein distance (in reference stds) and KS statistic — NannyML's default threshold
    over reference chunks. Consecutive windows of real traffic are not independent draws: a day differs from the
    next, a fraud campaign moves a week, so ordinary windows vary more than sampling noise alone."""
    from scipy import stats

    values = np.asarray(values, dtype=np.float64)
    sample = np.asarray(prof.get("sample") or [], dtype=np.float64)
    std = prof.get("std") or 0.0
    out: dict[str, list] = {"sizes": [], "psi": [], "wasserstein": [], "ks": [], "chunks": []}
    if sample.size < 2 or not prof.get("counts"):
        return out
    for size in sizes:
        n_chunks = len(values) // size
        if n_chunks < MIN_CHUNKS:
            break
        starts = np.linspace(0, len(values) - size, min(n_chunks, MAX_CHUNKS)).astype(int)
        psis, wds, kss = [], [], []
        for s in starts:
            chunk = values[s:s + size]
            finite = chunk[np.isfinite(chunk)]
            if finite.size < 2:
                continue
            psis.append(psi(prof["counts"], bin_counts(chunk, prof["edges"])))
            wds.append(float(stats.wasserstein_distance(sample, finite)) / (std if std > 0 else 1.0))
            kss.append(float(stats.ks_2samp(sample, finite, method="asymp").statistic))  # D only: no exact p needed
        if len(psis) < MIN_CHUNKS:
            break
        out["sizes"].append(size)
        out["chunks"].append(len(psis))
        out["psi"].append(float(np.mean(psis) + 3 * np.std(psis)))
        out["wasserstein"].append(float(np.mean(wds) + 3 * np.std(wds)))
        out["ks"].append(float(np.mean(kss) + 3 * np.std(kss)))
    return out


def variation_level(prof: Mapping[str, Any], kind: str, n: int) -> float | None:
    """Return the reference's own variation level (``kind``: "psi", "wasserstein" or "ks") between consecutive windows of
    about ``n`` rows: the measured chunk size nearest ``n`` on a log scale (the largest measured one for a window
    larger than every chunk); None when the profile holds no such measurement (unordered references)."""
    var = prof.get("variation") or {}
    sizes = var.get("sizes") or []
    if not sizes or n <= 0 or kind not in var:
        return None
    i = int(np.argmin(np.abs(np.log(np.asarray(sizes, dtype=float)) - np.log(n))))
    return float(var[kind][i])


SAMPLING_DRAWS = 50
# A distance in reference stds needs a spread measured on more rows than this: a feature that is the same value in
# all but a handful of reference rows (medical ``saturated_share``: 2 of 500 images above 0) has a std set by those
# few, and a window's Wasserstein distance in that unit is noise; PSI over its bins judges the share instead.
MIN_SPREAD_ROWS = 20
SAMPLING_CAP = 10_000  # windows drawn at most this large: a larger window's noise is lower, so this errs on the safe side


def sampling_level(ref: Mapping[str, Any], sample: np.ndarray, n: int, *, seed: int = 0,
                   epsilon: float = 1e-4) -> dict[str, float]:
    """Return the level (mean + 3 std over :data:`SAMPLING_DRAWS` seeded draws) that PSI and the Wasserstein distance
    reach between the reference and a window of ``n`` rows drawn from the reference itself: the window drawn from
    the reference sample, the reference's counts redrawn (multinomial) and its sample redrawn at its size. For most
    features this is far below the bands; for a zero-inflated, heavy-tailed one (medical ``saturated_share``: almost
    every image 0, a few large) a 1,000-image window reaches a Wasserstein distance of 0.3 std by chance alone, and
    the bands must not call that drift."""
    from scipy import stats

    rng = np.random.default_rng(seed)
    counts = np.asarray(ref["counts"], dtype=np.float64)
    n_ref = int(counts.sum())
    std = ref.get("std") or 0.0
    psis, wds = [], []
    for _ in range(SAMPLING_DRAWS):
        window = rng.choice(sample, size=min(n, SAMPLING_CAP), replace=True)
        again = rng.choice(sample, size=len(sample), replace=True)
        psis.append(psi(rng.multinomial(n_ref, counts / n_ref), bin_counts(window, ref["edges"]), epsilon))
        wds.append(float(stats.wasserstein_distance(again, window)) / (std if std > 0 else 1.0))
    return {"psi": float(np.mean(psis) + 3 * np.std(psis)), "wasserstein": float(np.mean(wds) + 3 * np.std(wds))}


def widened(warn: float, drift: float, level: float | None) -> tuple[float, float]:
    """Return the (warn, drift) bands of a distance, widened to the reference's own ``level`` of variation between
    consecutive windows of the current size (:func:`~lepton_apps.monitor.profile.variation_level`) when that is
    higher than ``warn``: warn at the level, drift at the level times ``drift / warn`` (the bands' own ratio)."""
    if level is None or level <= warn:
        return warn, drift
    return level, level * drift / warn
