"""Validation splits: train / delay / test in time (the Handbook's default), prequential folds,
and a stratified split only when the data has no time column.

Periods are whole days counted back from the midnight after the last transaction::

    |------ train (fit | val) ------|--- delay ---|--- test ---|
                                                  ^ end - test_days

The delay gap mirrors the label delay: a model trained today cannot know the labels of the
last ``delay_days`` of transactions. Validation (early stopping, imbalance, threshold) is the
last ``val_days`` of the train period.
"""
from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from lepton_apps.errors import DataError

DAY_S = 86_400


@dataclasses.dataclass
class Split:
    """Row index arrays of one split plus a description for the report."""

    fit: np.ndarray
    val: np.ndarray
    test: np.ndarray
    kind: str
    description: str
    bounds: dict[str, str] = dataclasses.field(default_factory=dict)


def time_split(t: np.ndarray, *, test_days: float = 7, delay_days: float = 7, train_days: Optional[float] = None,
               val_days: Optional[float] = None, shift_days: float = 0) -> Split:
    """Return the train / delay / test split of epoch-second times ``t``, shifted back by ``shift_days``.

    Raises DataError when a period would be empty (too little history for these lengths).
    """
    import pandas as pd

    end = (int(t.max()) // DAY_S + 1) * DAY_S - int(shift_days * DAY_S)
    test_start = end - int(test_days * DAY_S)
    train_end = test_start - int(delay_days * DAY_S)
    first = (int(t.min()) // DAY_S) * DAY_S
    train_start = max(first, train_end - int(train_days * DAY_S)) if train_days else first
    train_len_days = (train_end - train_start) / DAY_S
    if train_len_days < 2:
        raise DataError(f"the data span is too short for a {test_days:g}-day test period after a {delay_days:g}-day "
                        f"delay (train period would be {train_len_days:g} days)", where="split",
                        fix="lower test_days / delay_days, or use split: fraction")
    vdays = val_days if val_days else max(1, round(train_len_days * 0.25))
    val_start = train_end - int(vdays * DAY_S)
    fit = np.flatnonzero((t >= train_start) & (t < val_start))
    val = np.flatnonzero((t >= val_start) & (t < train_end))
    test = np.flatnonzero((t >= test_start) & (t < end))
    iso = lambda s: str(pd.Timestamp(s, unit="s").date())  # noqa: E731
    bounds = {"train_start": iso(train_start), "val_start": iso(val_start), "delay_start": iso(train_end),
              "test_start": iso(test_start), "test_end": iso(end)}
    for name, rows in (("fit", fit), ("validation", val), ("test", test)):
        if len(rows) == 0:
            raise DataError(f"the {name} period {bounds} has no transactions", where="split",
                            fix="adjust test_days / delay_days / train_days to the data's time span")
    desc = (f"time-based: train {bounds['train_start']}..{bounds['val_start']} (fit), "
            f"{bounds['val_start']}..{bounds['delay_start']} (validation), {delay_days:g}-day delay gap, "
            f"test {bounds['test_start']}..{bounds['test_end']}")
    return Split(fit, val, test, "time", desc, bounds)


def fraction_split(t: np.ndarray, fractions=(0.6, 0.2, 0.2)) -> Split:
    """Return a time-ordered split by row fractions (for data too short for day periods)."""
    order = np.argsort(t, kind="stable")
    a = int(len(t) * fractions[0])
    b = int(len(t) * (fractions[0] + fractions[1]))
    return Split(np.sort(order[:a]), np.sort(order[a:b]), np.sort(order[b:]), "time-fraction",
                 f"time-ordered by fraction: first {fractions[0]:.0%} fit, next {fractions[1]:.0%} validation, "
                 f"last {fractions[2]:.0%} test (no delay gap: the data spans too few days for day periods)")


def stratified_split(y: np.ndarray, seed: int = 0, fractions=(0.6, 0.2, 0.2)) -> Split:
    """Return a stratified random split (used only when there is no time column)."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    rest, test = train_test_split(idx, test_size=fractions[2], stratify=y, random_state=seed)
    fit, val = train_test_split(rest, test_size=fractions[1] / (fractions[0] + fractions[1]),
                                stratify=y[rest], random_state=seed)
    return Split(np.sort(fit), np.sort(val), np.sort(test), "stratified",
                 "stratified random 60/20/20 (the data has no time column, so no time-based split is possible)")


def prequential_splits(t: np.ndarray, n_folds: int, **kw) -> list[Split]:
    """Return up to ``n_folds`` time splits, each shifted one test period further back."""
    out = []
    for k in range(n_folds):
        try:
            out.append(time_split(t, shift_days=k * kw.get("test_days", 7), **kw))
        except DataError:
            break
    return out
