"""Reading the input of a batch job in chunks: CSV, Parquet, a DataFrame, a folder or a list of files.

:func:`_open_source` turns what the caller passed into a :class:`_Source`, a chunked view whose
chunks carry a RangeIndex of global row numbers, plus the row count (progress bar), a
fingerprint (resume) and a zero-row frame (empty outputs). For folder / file-list inputs each
row is one file, in a single ``path`` column.

CSV dtypes: CSV chunks are read with pandas ``read_csv(chunksize=...)``, which infers the
dtypes of each chunk on its own. That is harmless for the feature columns (they only reach
``score_fn``, which must cope with pandas input anyway), but not for the id, which is copied
to the output: "00123" would become 123 and an int id column could turn float in a chunk
with a blank. So the id column is always read as text, and a cheap first pass over that one
column (which also counts the rows for the progress bar) decides once for the whole file
whether every id is a canonical integer; if so the ids are written as (nullable) int64,
otherwise as strings exactly as they appear in the file.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import DataError

log = logging.getLogger("lepton_apps.batch")  # one logger for the package, named as before the split

PATH_COLUMN = "path"
TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
CSV_COMPRESSED = (".gz", ".bz2", ".zip", ".xz")
ACCEPTED_INPUTS = (
    "a .csv (optionally .gz/.bz2/.zip/.xz) or .parquet/.pq table, a folder of files, "
    "a list of file paths, or a pandas DataFrame"
)
_CANONICAL_INT = re.compile(r"^-?(0|[1-9][0-9]{0,18})$")


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
