"""The execution engines: which process scores the chunks (``engine="local"`` or ``engine="ray"``).

* **Engines.** ``engine="local"`` scores chunk after chunk in this process; ``engine="ray"``
  sends the same chunks through Ray Data ``map_batches`` (one block per chunk) and writes the
  same parts, so output, order, error rows and resume behave identically.

The local engine is just :func:`~.scoring.score_chunk` called by the driver's loop; this module
holds the Ray side (:func:`_score_with_ray`, a window of chunks at a time) and the engine check.
"""
from __future__ import annotations

from typing import Iterator

import pandas as pd

from ..errors import ConfigError, require
from .scoring import ScoreFn, ScoreFunctionError, score_chunk

_RAY_WINDOW_CHUNKS = 16  # chunks handed to Ray at once: bounds driver memory, keeps parts flowing


class _RayScorer:
    """Picklable map_batches function: strips the bookkeeping columns, scores, adds them back."""

    def __init__(self, score_fn: ScoreFn):
        self.score_fn = score_fn

    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame:
        pos = batch.pop("__pos__")
        chunk_ids = batch.pop("__chunk__")
        batch.index = pd.Index(pos.to_numpy(), dtype="int64")
        scored = score_chunk(self.score_fn, batch)
        scored = scored.reset_index(drop=True)
        scored["__pos__"] = pos.to_numpy()
        scored["__chunk__"] = chunk_ids.to_numpy()
        return scored


def _score_with_ray(window: list[tuple[int, pd.DataFrame]], score_fn: ScoreFn,
                    progress: bool) -> Iterator[tuple[int, pd.DataFrame]]:
    """Score a window of chunks with Ray Data; yield (chunk index, scored frame) in chunk order."""
    ray = require("ray", feature="--engine ray", extra="ray")
    import ray.data  # noqa: F401  (the submodule is not imported by `import ray`)

    ray.data.DataContext.get_current().enable_progress_bars = progress
    frames = []
    for index, chunk in window:
        frame = chunk.reset_index(drop=True)
        frame["__pos__"] = chunk.index.to_numpy()
        frame["__chunk__"] = index
        frames.append(frame)
    # one block per chunk, and batch_size=None hands each block to one call, as the local engine would
    ds = ray.data.from_pandas(frames).map_batches(
        _RayScorer(score_fn), batch_format="pandas", batch_size=None)
    by_chunk: dict[int, list[pd.DataFrame]] = {}
    for batch in ds.iter_batches(batch_format="pandas", batch_size=None):
        # Ray may re-block or reorder; the bookkeeping columns put every row back in its place
        for index, rows in batch.groupby("__chunk__", sort=False):
            by_chunk.setdefault(int(index), []).append(rows)
    for index, chunk in window:
        pieces = by_chunk.pop(index, [])
        rows = pd.concat(pieces) if len(pieces) > 1 else (pieces[0] if pieces else pd.DataFrame())
        if len(rows) != len(chunk):
            raise ScoreFunctionError(
                f"Ray returned {len(rows)} rows for chunk {index} of {len(chunk)} rows",
                fix="check that score_fn returns one row per input row")
        rows = rows.sort_values("__pos__", kind="stable")
        rows.index = pd.Index(rows.pop("__pos__").to_numpy(), dtype="int64")
        yield index, rows.drop(columns="__chunk__")


def _check_engine(engine: str) -> None:
    if engine not in ("local", "ray"):
        raise ConfigError(f"unknown batch engine '{engine}'", where="engine", fix="use 'local' or 'ray'")
    if engine == "ray":
        require("ray", feature="--engine ray", extra="ray")
