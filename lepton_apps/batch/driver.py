"""The batch-scoring driver: :func:`run_batch` opens the input, scores it chunk by chunk, writes the output.

It ties the other modules together: the input comes from :mod:`.sources`, each chunk is scored
by :mod:`.scoring` (in this process, or through Ray by :mod:`.engines`), and the parts, the
work folder and the final file are handled by :mod:`.output`.

What it guarantees (the other guarantees are described in the modules that keep them:
error rows in :mod:`.scoring`, crash safety and the stable schema in :mod:`.output`, the
engines in :mod:`.engines`, CSV id dtypes in :mod:`.sources`):

* **One row per input row, in input order.** The first output column is the id
  (``id_column``, or ``row_id`` = 0-based input row number). Duplicate ids are kept, never
  dropped or merged; :attr:`BatchResult.n_duplicate_ids` counts them and a warning is logged.
  For folder / file-list inputs the second column is ``path``.

Empty input (a header-only CSV, an empty folder, a zero-row table) gives an output file with
zero rows and the key columns + ``error``; ``score_fn`` is not called.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from ..errors import ConfigError, DataError
from ..io import atomic_path
from .engines import _RAY_WINDOW_CHUNKS, _check_engine, _score_with_ray
from .output import _build_part, _finalise, _finished_part, _output_format, _part_path, _prepare_work_dir, _to_arrow
from .scoring import ERROR_COLUMN, ScoreFn, _fn_name, score_chunk
from .sources import _describe, _open_source

log = logging.getLogger("lepton_apps.batch")  # one logger for the package, named as before the split

JOB_VERSION = 1
ROW_ID_COLUMN = "row_id"


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """What :func:`run_batch` did: where the output is and how many rows/errors/chunks."""

    output: Path
    n_rows: int
    n_errors: int
    n_chunks: int
    resumed_chunks: int
    seconds: float
    n_duplicate_ids: int = 0
    restarted_because: str | None = None  # set when stale parts of another job were discarded


def run_batch(
    source: Any,
    output: str | os.PathLike,
    score_fn: ScoreFn,
    *,
    id_column: str | None = None,
    chunk_size: int = 10_000,
    resume: bool = True,
    engine: str = "local",
    progress: bool = True,
    file_glob: Sequence[str] | str = ("*",),
    on_chunk_done: Callable[[int, int], None] | None = None,
) -> BatchResult:
    """Score ``source`` chunk by chunk with ``score_fn`` and write one row per input row.

    ``source`` is a .csv / .parquet / .pq path, a folder (files matching ``file_glob``,
    recursive, sorted), a list of file paths, or a DataFrame. File inputs reach ``score_fn``
    as a frame with one ``path`` column. ``output`` ends in .parquet or .csv. Returns a
    :class:`BatchResult` with the output path and the row, error and chunk counts.
    """
    started = time.perf_counter()
    output = Path(output)
    fmt = _output_format(output)
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ConfigError(f"chunk_size must be a positive integer, not {chunk_size!r}",
                          where="chunk_size", fix="use e.g. chunk_size=10000")
    _check_engine(engine)
    parts_dir = output.with_name(output.name + ".parts")
    src = _open_source(source, id_column, file_glob, exclude=(output, parts_dir))
    if id_column is not None and id_column not in src.columns():
        raise DataError(f"id column '{id_column}' is not in the input", where=_describe(source),
                        fix=f"pick one of {src.columns()[:20]} or leave id_column unset to use row numbers")
    generated_ids = id_column is None
    id_col = ROW_ID_COLUMN if generated_ids else id_column
    key_columns = [id_col] + [c for c in src.key_columns if c != id_col]

    for stale in output.parent.glob(f".{output.name}.*.tmp"):  # a finalise cut short by a kill
        stale.unlink(missing_ok=True)
    job = {
        "version": JOB_VERSION,
        "fingerprint": {
            "source": src.fingerprint(),
            "chunk_size": chunk_size,
            "id_column": id_column,
            "output_format": fmt,
            "score_fn": _fn_name(score_fn),
        },
        "output": str(output.resolve()),
    }
    restarted = _prepare_work_dir(parts_dir, job, resume)

    total = src.total_rows()
    bar = tqdm(total=total, unit="row", desc=f"scoring {output.name}", disable=not progress,
               dynamic_ncols=True)
    done_rows = n_chunks = resumed = 0
    parts: list[Path] = []

    def finish(index: int, n: int, reused: bool) -> None:
        nonlocal done_rows, n_chunks, resumed
        parts.append(_part_path(parts_dir, index))
        done_rows += n
        n_chunks += 1
        resumed += int(reused)
        bar.update(n)
        if on_chunk_done is not None:
            on_chunk_done(done_rows, total)

    def write(index: int, chunk: pd.DataFrame, scored: pd.DataFrame) -> None:
        part = _build_part(chunk, scored, src, id_col, generated_ids)
        table = _to_arrow(part, score_fn)
        with atomic_path(_part_path(parts_dir, index)) as tmp:
            pq.write_table(table, tmp, compression="none")  # a temporary part: skip compression work
        finish(index, len(chunk), reused=False)

    try:
        window: list[tuple[int, pd.DataFrame]] = []
        for index, chunk in enumerate(src.chunks(chunk_size)):
            if resume and _finished_part(_part_path(parts_dir, index), len(chunk)):
                finish(index, len(chunk), reused=True)
                continue
            if engine == "local":
                write(index, chunk, score_chunk(score_fn, chunk))
                continue
            window.append((index, chunk))
            if len(window) >= _RAY_WINDOW_CHUNKS:
                chunks = dict(window)
                for i, scored in _score_with_ray(window, score_fn, progress):
                    write(i, chunks[i], scored)
                window = []
        if window:
            chunks = dict(window)
            for i, scored in _score_with_ray(window, score_fn, progress):
                write(i, chunks[i], scored)
    finally:
        bar.close()

    parts.sort()
    empty = _build_part(src.empty_frame(), pd.DataFrame({ERROR_COLUMN: pd.Series([], dtype=object)}),
                        src, id_col, generated_ids)
    n_rows, n_errors, n_dup = _finalise(parts, output, fmt, empty, key_columns, id_col)
    shutil.rmtree(parts_dir, ignore_errors=True)
    if n_dup:
        log.warning("%d rows share an id with an earlier row in column %r; all rows were kept.",
                    n_dup, id_col)
    if n_errors:
        log.warning("%d of %d rows could not be scored; see the 'error' column of %s.",
                    n_errors, n_rows, output)
    return BatchResult(output=output, n_rows=n_rows, n_errors=n_errors, n_chunks=n_chunks,
                       resumed_chunks=resumed, seconds=time.perf_counter() - started,
                       n_duplicate_ids=n_dup, restarted_because=restarted)
