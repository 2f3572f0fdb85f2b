"""Chunked, resumable, atomic batch scoring shared by every domain.

:func:`run_batch` reads a table (CSV / Parquet / DataFrame) or a set of files in chunks,
hands each chunk to a domain's ``score_fn`` and writes one output row per input row::

    result = run_batch("questions.parquet", "answers.parquet", predictor.predict_frame,
                       id_column="ticket_id", chunk_size=1_000)

This package face re-exports the public names; the code lives in one module per concern,
each importing only those below it: :mod:`.scoring` (the ``score_fn`` contract, error rows),
:mod:`.sources` (reading the input in chunks), :mod:`.output` (parts, ``job.json``, the final
file), :mod:`.engines` (local / Ray) and :mod:`.driver` (:func:`run_batch`, :class:`BatchResult`).
"""
from .driver import BatchResult, run_batch
from .scoring import ScoreFunctionError, score_chunk

__all__ = ["BatchResult", "ScoreFunctionError", "run_batch", "score_chunk"]
