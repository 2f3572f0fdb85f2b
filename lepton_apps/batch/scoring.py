"""Scoring one chunk: the ``score_fn`` contract, error rows and the halving retry.

:func:`score_chunk` hands a chunk to a domain's ``score_fn`` and checks its answer; both
engines (``engine="local"`` in :mod:`.driver`, ``engine="ray"`` in :mod:`.engines`) score
every chunk through it, so error rows and contract checks are the same whichever runs.

* **Bad rows become error rows.** The output always ends with an ``error`` column (null where
  the row was scored). If ``score_fn`` raises on a chunk, the chunk is split in halves and
  re-scored until the failing rows are isolated (one-row calls at the bottom), so the good
  rows of that chunk still get their scores with few extra calls. ``score_fn`` may also mark
  rows itself by returning an ``error`` column. Returning a different number of rows than it
  was given is a bug in the domain and raises :class:`ScoreFunctionError`.
"""
from __future__ import annotations

import logging
from typing import Any, Callable

import pandas as pd

from ..errors import LeptonError

log = logging.getLogger("lepton_apps.batch")  # one logger for the package, named as before the split

ScoreFn = Callable[[pd.DataFrame], pd.DataFrame]

ERROR_COLUMN = "error"


class ScoreFunctionError(LeptonError):
    """A domain's ``score_fn`` broke the batch contract (a bug in code, not in the data)."""

    kind = "score function error"


def _fn_name(fn: Callable) -> str:
    name = getattr(fn, "__qualname__", None) or type(fn).__qualname__
    module = getattr(fn, "__module__", None)
    return f"{module}.{name}" if module else name


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip() or repr(exc)
    return f"{type(exc).__name__}: {text}"


def _normalise_errors(values: pd.Series) -> pd.Series:
    def one(v: Any) -> Any:
        if v is None or (isinstance(v, float) and v != v) or v is pd.NA or v is pd.NaT:
            return None
        text = str(v)
        return text if text.strip() else None
    return pd.Series([one(v) for v in values], index=values.index, dtype=object)


def _align(result: Any, chunk: pd.DataFrame, score_fn: Callable) -> pd.DataFrame:
    """Check ``score_fn``'s answer and return it indexed like ``chunk``, with an error column."""
    name = _fn_name(score_fn)
    if isinstance(result, pd.Series):
        result = result.to_frame(name=result.name if result.name is not None else "score")
    if not isinstance(result, pd.DataFrame):
        raise ScoreFunctionError(
            f"score_fn {name} returned {type(result).__name__}, not a pandas DataFrame",
            fix="return a DataFrame with one row per input row")
    if len(result) != len(chunk):
        raise ScoreFunctionError(
            f"score_fn {name} returned {len(result)} rows for a chunk of {len(chunk)} rows",
            fix="return exactly one row per input row, in input order; mark rows you cannot "
                "score with a non-null 'error' column instead of dropping them")
    result = result.copy()
    result.columns = [str(c) for c in result.columns]
    if result.columns.duplicated().any():
        dup = sorted(set(result.columns[result.columns.duplicated()]))
        raise ScoreFunctionError(f"score_fn {name} returned duplicate columns {dup}",
                                 fix="give every output column a distinct name")
    if not result.index.equals(chunk.index):
        if result.index.is_unique and result.index.sort_values().equals(chunk.index.sort_values()):
            result = result.reindex(chunk.index)  # same rows, other order: align by index
        else:
            result.index = chunk.index  # a fresh index: rows are taken to be in input order
    if ERROR_COLUMN in result.columns:
        result[ERROR_COLUMN] = _normalise_errors(result[ERROR_COLUMN])
    else:
        result[ERROR_COLUMN] = pd.Series([None] * len(result), index=result.index, dtype=object)
    return result


def score_chunk(score_fn: ScoreFn, chunk: pd.DataFrame) -> pd.DataFrame:
    """Score ``chunk``; return one row per input row (same index) ending in an ``error`` column.

    If ``score_fn`` raises, the chunk is halved and each half re-scored, down to single rows,
    so only the rows that really fail get an error message and the rest keep their scores.
    """
    try:
        # a shallow copy: score_fn may add or drop columns without touching our keys
        result = score_fn(chunk.copy(deep=False))
    except Exception as exc:
        if len(chunk) <= 1:
            log.debug("score_fn failed on row %s", list(chunk.index), exc_info=True)
            return pd.DataFrame({ERROR_COLUMN: [_error_text(exc)] * len(chunk)},
                                index=chunk.index, dtype=object)
        mid = len(chunk) // 2
        halves = [score_chunk(score_fn, chunk.iloc[:mid]), score_chunk(score_fn, chunk.iloc[mid:])]
        merged = pd.concat(halves, axis=0)
        cols = [c for c in merged.columns if c != ERROR_COLUMN] + [ERROR_COLUMN]
        merged = merged[cols]
        merged[ERROR_COLUMN] = _normalise_errors(merged[ERROR_COLUMN])
        return merged
    return _align(result, chunk, score_fn)
