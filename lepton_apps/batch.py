"""Chunked, resumable, atomic batch scoring shared by every domain.

:func:`run_batch` reads a table (CSV / Parquet / DataFrame) or a set of files in chunks,
hands each chunk to a domain's ``score_fn`` and writes one output row per input row::

    result = run_batch("questions.parquet", "answers.parquet", predictor.predict_frame,
                       id_column="ticket_id", chunk_size=1_000)

What it guarantees:

* **One row per input row, in input order.** The first output column is the id
  (``id_column``, or ``row_id`` = 0-based input row number). Duplicate ids are kept, never
  dropped or merged; :attr:`BatchResult.n_duplicate_ids` counts them and a warning is logged.
  For folder / file-list inputs the second column is ``path``.
* **Bad rows become error rows.** The output always ends with an ``error`` column (null where
  the row was scored). If ``score_fn`` raises on a chunk, the chunk is split in halves and
  re-scored until the failing rows are isolated (one-row calls at the bottom), so the good
  rows of that chunk still get their scores with few extra calls. ``score_fn`` may also mark
  rows itself by returning an ``error`` column. Returning a different number of rows than it
  was given is a bug in the domain and raises :class:`ScoreFunctionError`.
* **Crash safety.** Each chunk is written atomically to ``<output>.parts/part-NNNNNN.parquet``
  next to a ``job.json`` holding a fingerprint of the job. The final file is assembled under
  a temporary name and renamed, then the parts folder is removed: a killed run never leaves a
  half-written output. A re-run with ``resume=True`` reuses the finished parts; if the
  fingerprint differs the old parts are discarded, with a warning. The fingerprint covers the
  input (path + size + mtime for files, a content hash for DataFrames), chunk_size,
  id_column, the output format and the score function's qualified name; it cannot see a
  model's weights, so pass ``resume=False`` after swapping the model behind the same function.
* **Engines.** ``engine="local"`` scores chunk after chunk in this process; ``engine="ray"``
  sends the same chunks through Ray Data ``map_batches`` (one block per chunk) and writes the
  same parts, so output, order, error rows and resume behave identically.
* **Stable schema.** Parts are concatenated with pyarrow after unifying their schemas, so a
  chunk whose rows all failed (score columns missing) or a column that is all-null or int in
  one chunk and float in another still gives one well-typed output file.

CSV dtypes: CSV chunks are read with pandas ``read_csv(chunksize=...)``, which infers the
dtypes of each chunk on its own. That is harmless for the feature columns (they only reach
``score_fn``, which must cope with pandas input anyway), but not for the id, which is copied
to the output: "00123" would become 123 and an int id column could turn float in a chunk
with a blank. So the id column is always read as text, and a cheap first pass over that one
column (which also counts the rows for the progress bar) decides once for the whole file
whether every id is a canonical integer; if so the ids are written as (nullable) int64,
otherwise as strings exactly as they appear in the file.

Empty input (a header-only CSV, an empty folder, a zero-row table) gives an output file with
zero rows and the key columns + ``error``; ``score_fn`` is not called.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from .errors import ConfigError, DataError, LeptonError, require
from .io import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

ScoreFn = Callable[[pd.DataFrame], pd.DataFrame]

JOB_VERSION = 1
ERROR_COLUMN = "error"
ROW_ID_COLUMN = "row_id"
PATH_COLUMN = "path"
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
CSV_COMPRESSED = (".gz", ".bz2", ".zip", ".xz")
OUTPUT_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
ACCEPTED_INPUTS = (
    "a .csv (optionally .gz/.bz2/.zip/.xz) or .parquet/.pq table, a folder of files, "
    "a list of file paths, or a pandas DataFrame"
)
_CANONICAL_INT = re.compile(r"^-?(0|[1-9][0-9]{0,18})$")
_RAY_WINDOW_CHUNKS = 16  # chunks handed to Ray at once: bounds driver memory, keeps parts flowing


class ScoreFunctionError(LeptonError):
    """A domain's ``score_fn`` broke the batch contract (a bug in code, not in the data)."""

    kind = "score function error"


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


# --------------------------------------------------------------------------- sources


class _Source:
    """A chunked view of the input. Chunks carry a RangeIndex of global row numbers."""

    kind = "?"
    key_columns: tuple[str, ...] = ()

    def columns(self) -> list[str]:
        raise NotImplementedError

    def total_rows(self) -> int:
        raise NotImplementedError

    def fingerprint(self) -> dict[str, Any]:
        raise NotImplementedError

    def empty_frame(self) -> pd.DataFrame:
        """Zero-row frame with the input's columns and dtypes (for empty outputs)."""
        raise NotImplementedError

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        raise NotImplementedError

    def prepare_ids(self, frame: pd.DataFrame, id_column: str) -> pd.Series:
        """The id values of a chunk, in a dtype that is the same for every chunk."""
        return frame[id_column]


def _stat(path: Path) -> dict[str, Any]:
    st = path.stat()
    return {"path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


class _ParquetSource(_Source):
    kind = "parquet"

    def __init__(self, path: Path):
        self.path = path
        try:
            self.file = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for non-parquet bytes
            raise DataError(
                f"cannot read Parquet file: {exc}", where=str(path),
                fix="check that the file is a complete Parquet file (re-export it if it was cut short)",
            ) from exc

    def columns(self) -> list[str]:
        return list(self.file.schema_arrow.names)

    def total_rows(self) -> int:
        return self.file.metadata.num_rows

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": self.kind, **_stat(self.path)}

    def empty_frame(self) -> pd.DataFrame:
        return self.file.schema_arrow.empty_table().to_pandas()

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        start = 0
        for batch in self.file.iter_batches(batch_size=chunk_size):
            frame = batch.to_pandas()
            frame.index = pd.RangeIndex(start, start + len(frame))
            start += len(frame)
            if len(frame):
                yield frame


class _CsvSource(_Source):
    kind = "csv"

    def __init__(self, path: Path, id_column: str | None):
        self.path = path
        self.id_column = id_column
        try:
            header = pd.read_csv(path, nrows=0)
        except pd.errors.EmptyDataError as exc:
            raise DataError(
                "the CSV file is empty (not even a header row)", where=str(path),
                fix="write a header row with the column names, then one row per record",
            ) from exc
        except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
            raise DataError(f"cannot read CSV file: {exc}", where=str(path),
                            fix="save the file as UTF-8 comma-separated values") from exc
        self._columns = [str(c) for c in header.columns]
        self._n_rows: int | None = None
        self._int_ids = False

    def columns(self) -> list[str]:
        return self._columns

    def _scan(self) -> None:
        # One pass over a single column: row count (progress bar) + id dtype decision.
        col = self.id_column if self.id_column is not None else 0
        n, all_int = 0, self.id_column is not None
        try:
            for part in pd.read_csv(self.path, usecols=[col], dtype=str, chunksize=1 << 18, skip_blank_lines=False):
                n += len(part)
                if all_int:
                    values = part.iloc[:, 0].dropna()
                    all_int = bool(values.str.fullmatch(_CANONICAL_INT.pattern).all())
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read CSV file: {exc}", where=str(self.path),
                            fix="fix the malformed line or save the file as UTF-8 CSV") from exc
        self._n_rows, self._int_ids = n, all_int and n > 0

    def total_rows(self) -> int:
        if self._n_rows is None:
            self._scan()
        return self._n_rows  # type: ignore[return-value]

    def fingerprint(self) -> dict[str, Any]:
        return {"kind": self.kind, **_stat(self.path)}

    def _dtype(self) -> dict[str, Any] | None:
        return {self.id_column: str} if self.id_column is not None else None

    def empty_frame(self) -> pd.DataFrame:
        return pd.read_csv(self.path, nrows=0, dtype=self._dtype())

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        self.total_rows()
        start = 0
        try:
            # blank / whitespace-only lines are records too (one output row per input row, never dropped)
            reader = pd.read_csv(self.path, chunksize=chunk_size, dtype=self._dtype(), skip_blank_lines=False)
            for frame in reader:
                frame.index = pd.RangeIndex(start, start + len(frame))
                start += len(frame)
                if len(frame):
                    yield frame
        except (pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise DataError(f"cannot read CSV file near row {start}: {exc}", where=str(self.path),
                            fix="fix the malformed line or save the file as UTF-8 CSV") from exc

    def prepare_ids(self, frame: pd.DataFrame, id_column: str) -> pd.Series:
        ids = frame[id_column]
        if self._int_ids:
            return pd.to_numeric(ids).astype("Int64")
        return ids.astype("string")


class _FrameSource(_Source):
    kind = "dataframe"

    def __init__(self, frame: pd.DataFrame):
        self.frame = frame

    def columns(self) -> list[str]:
        return [str(c) for c in self.frame.columns]

    def total_rows(self) -> int:
        return len(self.frame)

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256()
        h.update(json.dumps([[str(c), str(t)] for c, t in self.frame.dtypes.items()]).encode())
        try:
            h.update(pd.util.hash_pandas_object(self.frame, index=True).to_numpy().tobytes())
        except TypeError:  # unhashable cells (lists, dicts): hash the Arrow IPC bytes instead
            try:
                table = pa.Table.from_pandas(self.frame, preserve_index=True)
                sink = pa.BufferOutputStream()
                with pa.ipc.new_stream(sink, table.schema) as writer:
                    writer.write_table(table)
                h.update(sink.getvalue().to_pybytes())
            except (pa.ArrowException, TypeError, ValueError):
                h.update(os.urandom(16))  # cannot fingerprint: never resume from stale parts
                log.warning("cannot fingerprint this DataFrame; an interrupted run will start over")
        return {"kind": self.kind, "rows": len(self.frame), "sha256": h.hexdigest()}

    def empty_frame(self) -> pd.DataFrame:
        return self.frame.iloc[:0].reset_index(drop=True)

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.frame), chunk_size):
            frame = self.frame.iloc[start:start + chunk_size].copy()
            frame.index = pd.RangeIndex(start, start + len(frame))
            yield frame


class _FilesSource(_Source):
    """A folder (recursive glob, sorted) or an explicit list of files -> one ``path`` column."""

    kind = "files"
    key_columns = (PATH_COLUMN,)

    def __init__(self, paths: list[Path], root: Path | None):
        self.paths = [str(p.absolute()) for p in paths]
        self.root = root

    def columns(self) -> list[str]:
        return [PATH_COLUMN]

    def total_rows(self) -> int:
        return len(self.paths)

    def fingerprint(self) -> dict[str, Any]:
        h = hashlib.sha256()
        for p in self.paths:
            try:
                st = os.stat(p)
                h.update(f"{p}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
            except OSError:  # a listed file that is missing becomes an error row, not a crash
                h.update(f"{p}\tmissing\n".encode())
        return {"kind": self.kind, "root": str(self.root.resolve()) if self.root else None,
                "files": len(self.paths), "sha256": h.hexdigest()}

    def empty_frame(self) -> pd.DataFrame:
        return pd.DataFrame({PATH_COLUMN: pd.Series([], dtype=object)})

    def chunks(self, chunk_size: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.paths), chunk_size):
            frame = pd.DataFrame({PATH_COLUMN: self.paths[start:start + chunk_size]}, dtype=object)
            frame.index = pd.RangeIndex(start, start + len(frame))
            yield frame


def _list_folder(root: Path, patterns: Sequence[str], exclude: Sequence[Path]) -> list[Path]:
    exclude = [e.resolve() for e in exclude]
    found: set[Path] = set()
    for pattern in patterns:
        for p in root.rglob(pattern):
            rel = p.relative_to(root)
            # hidden files and folders (.DS_Store, .git, temp files) are not data, and neither
            # are this job's own output and work folder when they live inside the input folder
            if p.is_file() and not any(part.startswith(".") for part in rel.parts):
                resolved = p.resolve()
                if not any(resolved == e or e in resolved.parents for e in exclude):
                    found.add(p)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def _is_csv(path: Path) -> bool:
    suffixes = [s.lower() for s in path.suffixes]
    return bool(suffixes) and (suffixes[-1] == ".csv" or (
        len(suffixes) >= 2 and suffixes[-1] in CSV_COMPRESSED and suffixes[-2] == ".csv"))


def _describe(source: Any) -> str:
    if isinstance(source, pd.DataFrame):
        return f"DataFrame with {len(source)} rows"
    if isinstance(source, (list, tuple)):
        return f"list of {len(source)} files"
    return str(source)


def _open_source(source: Any, id_column: str | None, file_glob: Sequence[str] | str,
                 exclude: Sequence[Path] = ()) -> _Source:
    if isinstance(source, pd.DataFrame):
        return _FrameSource(source)
    patterns = (file_glob,) if isinstance(file_glob, str) else tuple(file_glob)
    if isinstance(source, (list, tuple)):
        return _FilesSource([Path(p) for p in source], root=None)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"cannot batch-score a {type(source).__name__}", fix=f"pass {ACCEPTED_INPUTS}")
    path = Path(source)
    if path.is_dir():
        return _FilesSource(_list_folder(path, patterns, exclude), root=path)
    if not path.exists():
        raise DataError("input not found", where=str(path), fix=f"pass {ACCEPTED_INPUTS}")
    if _is_csv(path):
        return _CsvSource(path, id_column)
    if path.suffix.lower() in (".parquet", ".pq"):
        return _ParquetSource(path)
    raise DataError(f"unsupported input file type '{path.suffix or '(no suffix)'}'",
                    where=str(path), fix=f"pass {ACCEPTED_INPUTS}")


# --------------------------------------------------------------------------- scoring


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


# --------------------------------------------------------------------------- engines


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


# --------------------------------------------------------------------------- driver


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
