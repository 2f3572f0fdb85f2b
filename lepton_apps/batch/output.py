"""The batch job's files on disk: per-chunk parts, the work folder with its ``job.json``, the final output.

* **Crash safety.** Each chunk is written atomically to ``<output>.parts/part-NNNNNN.parquet``
  next to a ``job.json`` holding a fingerprint of the job. The final file is assembled under
  a temporary name and renamed, then the parts folder is removed: a killed run never leaves a
  half-written output. A re-run with ``resume=True`` reuses the finished parts; if the
  fingerprint differs the old parts are discarded, with a warning. The fingerprint covers the
  input (path + size + mtime for files, a content hash for DataFrames), chunk_size,
  id_column, the output format and the score function's qualified name; it cannot see a
  model's weights, so pass ``resume=False`` after swapping the model behind the same function.
* **Stable schema.** Parts are concatenated with pyarrow after unifying their schemas, so a
  chunk whose rows all failed (score columns missing) or a column that is all-null or int in
  one chunk and float in another still gives one well-typed output file.
"""
from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any, Callable

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import ConfigError
from ..io import atomic_path, atomic_write_json
from .scoring import ERROR_COLUMN, ScoreFunctionError, _fn_name
from .sources import _Source

log = logging.getLogger("lepton_apps.batch")  # one logger for the package, named as before the split

OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


# --------------------------------------------------------------------------- parts


def _part_path(parts_dir: Path, index: int) -> Path:
    return parts_dir / f"part-{index:06d}.parquet"


def _to_arrow(frame: pd.DataFrame, score_fn: Callable) -> pa.Table:
    try:
        table = pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise ScoreFunctionError(
            f"the output of score_fn {_fn_name(score_fn)} cannot be stored as a table: {exc}",
            fix="return numbers, strings, booleans, timestamps or lists of them") from exc
    table = table.replace_schema_metadata(None)
    i = table.schema.get_field_index(ERROR_COLUMN)
    return table.set_column(i, pa.field(ERROR_COLUMN, pa.string()), table.column(i).cast(pa.string()))


def _build_part(chunk: pd.DataFrame, scored: pd.DataFrame, source: _Source, id_column: str,
                generated_ids: bool) -> pd.DataFrame:
    """Key columns (id [, path]) from the input + the scored columns, in chunk order."""
    keys = pd.DataFrame(index=chunk.index)
    keys[id_column] = (pd.Series(chunk.index, index=chunk.index, dtype="int64") if generated_ids
                       else source.prepare_ids(chunk, id_column))
    for col in source.key_columns:
        if col != id_column:
            keys[col] = chunk[col]
    scored = scored.drop(columns=[c for c in keys.columns if c in scored.columns])
    return pd.concat([keys, scored], axis=1).reset_index(drop=True)


def _unify_schemas(schemas: list[pa.Schema], first: list[str]) -> pa.Schema:
    """One schema for all parts: key columns first, ``error`` last, types promoted."""
    names: list[str] = []
    for s in schemas:
        names += [n for n in s.names if n not in names]
    order = [n for n in first if n in names] + [n for n in names if n not in first and n != ERROR_COLUMN]
    fields = []
    for name in order + [ERROR_COLUMN]:
        candidates = [pa.schema([s.field(name)]) for s in schemas if name in s.names]
        try:
            field = pa.unify_schemas(candidates, promote_options="permissive").field(name)
        except (pa.ArrowTypeError, pa.ArrowInvalid):
            types = sorted({str(c.field(name).type) for c in candidates})
            log.warning("column %r has incompatible types across chunks (%s); writing it as text",
                        name, ", ".join(types))
            field = pa.field(name, pa.string())
        if name == ERROR_COLUMN:
            field = pa.field(ERROR_COLUMN, pa.string())
        fields.append(field)
    return pa.schema(fields)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    columns = []
    for field in schema:
        if field.name in table.column_names:
            col = table.column(field.name)
            if col.type != field.type and pa.types.is_nested(col.type):  # fell back to text
                col = pa.array([None if v is None else json.dumps(v, default=str)
                                for v in col.to_pylist()], pa.string())
            columns.append(col.cast(field.type))
        else:
            columns.append(pa.nulls(len(table), field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _csv_safe(table: pa.Table) -> pa.Table:
    """CSV cannot hold nested values: write lists/structs as JSON text."""
    for i, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            values = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(field.name, pa.string()), pa.array(values, pa.string()))
    return table


def _finalise(parts: list[Path], output: Path, fmt: str, empty: pd.DataFrame,
              key_columns: list[str], id_column: str) -> tuple[int, int, int]:
    """Concatenate parts into ``output`` atomically; return (rows, errors, duplicate ids)."""
    if parts:
        schema = _unify_schemas([pq.read_schema(p).remove_metadata() for p in parts], key_columns)
    else:
        schema = pa.Table.from_pandas(empty, preserve_index=False).schema.remove_metadata()
        # an empty object column has no type yet: ids of unknown type, paths and errors are text
        schema = pa.schema([pa.field(f.name, pa.string()) if pa.types.is_null(f.type) else f
                            for f in schema])
    n_rows = n_errors = 0
    ids: list[pa.ChunkedArray] = []
    with atomic_path(output) as tmp:
        writer: Any = None
        try:
            if fmt == "parquet":
                writer = pq.ParquetWriter(tmp, schema)
            else:
                import pyarrow.csv as pacsv
                writer = pacsv.CSVWriter(tmp, _csv_safe(schema.empty_table()).schema)
            tables = (_conform(pq.read_table(p), schema) for p in parts) if parts else [schema.empty_table()]
            for table in tables:
                n_rows += table.num_rows
                n_errors += table.num_rows - table.column(ERROR_COLUMN).null_count
                ids.append(table.column(id_column))
                writer.write_table(table if fmt == "parquet" else _csv_safe(table))
        finally:
            if writer is not None:
                writer.close()
    all_ids = pa.chunked_array([c for a in ids for c in a.chunks], type=schema.field(id_column).type)
    n_dup = int(all_ids.to_pandas().dropna().duplicated().sum())  # pandas' hash table: ~10x faster than pc.count_distinct here
    return n_rows, n_errors, n_dup


# --------------------------------------------------------------------------- job state


def _output_format(output: Path) -> str:
    fmt = OUTPUT_SUFFIXES.get(output.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"cannot tell the output format from '{output.name}'", where="output",
            fix="name the output file with .parquet or .csv")
    return fmt


def _prepare_work_dir(parts_dir: Path, job: dict[str, Any], resume: bool) -> str | None:
    """Make ``parts_dir`` belong to ``job``; return why earlier parts were discarded, if they were."""
    job_file = parts_dir / "job.json"
    reason = None
    if parts_dir.exists():
        try:
            previous = json.loads(job_file.read_text())
        except (OSError, ValueError):
            previous = None
        if not resume:
            reason = None  # the caller asked for a fresh run; nothing to warn about
        elif previous is None:
            reason = "the work folder has no readable job.json"
        elif previous.get("fingerprint") != job["fingerprint"]:
            changed = sorted(k for k in set(previous.get("fingerprint", {})) | set(job["fingerprint"])
                             if previous.get("fingerprint", {}).get(k) != job["fingerprint"].get(k))
            reason = f"the job changed since the interrupted run ({', '.join(changed)} differ)"
        if not resume or reason:
            if reason:
                log.warning("Discarding the parts in %s and starting over: %s.", parts_dir, reason)
            shutil.rmtree(parts_dir)
    parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in parts_dir.glob(".*.tmp"):  # atomic writes cut short by a kill
        stale.unlink(missing_ok=True)
    if not job_file.exists():
        atomic_write_json(job_file, job)
    return reason


def _finished_part(path: Path, n_rows: int) -> bool:
    try:
        return pq.read_metadata(path).num_rows == n_rows
    except (OSError, pa.ArrowException):
        return False
