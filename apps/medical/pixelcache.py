"""Decoded, resized uint8 images kept between epochs and runs: :class:`PixelCache`.

A cache holds ``pixels (N, C, S, S)`` uint8, one state per row (pending, decoded, failed) and,
for failed rows, the reason (the error's *what* and *fix* only: never the file path, which may
name a patient, and never a DICOM tag value). In memory it is two arrays and a dict; on disk it
is a folder ``pixels-<key>/`` with ``pixels.npy`` and ``state.npy`` opened as memory maps, so
DataLoader worker processes can fill rows while training reads others, plus ``failed-<pid>.jsonl``
files with the reasons (one file per writing process: no two processes append to the same file).
The key covers every file's path, size and modification time and the image size and channels,
so an edited, added or removed file (or another ``image_size``) starts a new cache.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Sequence

import numpy as np

from lepton_apps.errors import DataError

PENDING, DECODED, FAILED = 0, 1, 2


def cache_key(items: Sequence[str], size: int, channels: int) -> str:
    """Return a hex key over the files' paths, sizes and mtimes and the decode settings."""
    h = hashlib.sha256(f"{size}:{channels}".encode())
    for item in items:
        try:
            st = os.stat(item)
            h.update(f"{item}:{st.st_size}:{st.st_mtime_ns}".encode())
        except OSError:
            h.update(f"{item}:missing".encode())
    return h.hexdigest()[:24]


class PixelCache:
    """uint8 images ``(N, C, S, S)`` with a per-row state and the reasons of failed decodes."""

    def __init__(self, pixels: np.ndarray, state: np.ndarray, folder: Path | None = None):
        self.pixels = pixels
        self.state = state
        self.folder = folder
        self._reasons: dict[int, tuple[str, str | None]] = {}  # in-memory caches only

    # -- construction ------------------------------------------------------------------------
    @classmethod
    def in_memory(cls, n: int, channels: int, size: int) -> PixelCache:
        """Return an empty cache held in memory (nothing is written to disk)."""
        return cls(np.zeros((n, channels, size, size), np.uint8), np.zeros(n, np.uint8))

    @classmethod
    def for_items(cls, items: Sequence[str], size: int, channels: int, cache_dir: str | os.PathLike) -> PixelCache:
        """Return the on-disk cache of these files at this size in ``cache_dir`` (created empty if new)."""
        folder = Path(cache_dir) / f"pixels-{cache_key(items, size, channels)}"
        return cls.open(folder, (len(items), channels, size, size))

    @classmethod
    def open(cls, folder: str | os.PathLike, shape: tuple[int, int, int, int]) -> PixelCache:
        """Return the on-disk cache in ``folder`` (created atomically if missing), memory-mapped read/write."""
        from numpy.lib.format import open_memmap

        folder = Path(folder)
        if not folder.exists():
            tmp = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
            tmp.mkdir(parents=True)
            for name, dims in (("pixels.npy", tuple(shape)), ("state.npy", (shape[0],))):
                open_memmap(tmp / name, mode="w+", dtype=np.uint8, shape=dims).flush()  # sparse until written
            try:
                os.rename(tmp, folder)
            except OSError:  # another process (a DDP rank) created it first: use theirs
                shutil.rmtree(tmp, ignore_errors=True)
        try:
            pixels = np.load(folder / "pixels.npy", mmap_mode="r+")
            state = np.load(folder / "state.npy", mmap_mode="r+")
        except (OSError, ValueError) as exc:
            raise DataError(f"the decode cache cannot be opened ({type(exc).__name__}: {exc})", where=str(folder),
                            fix="delete this folder; the images will be decoded again") from None
        if pixels.shape != tuple(shape) or state.shape != (shape[0],):
            raise DataError(f"the decode cache holds {pixels.shape}, expected {tuple(shape)}", where=str(folder),
                            fix="delete this folder; the images will be decoded again")
        return cls(pixels, state, folder)

    # -- rows --------------------------------------------------------------------------------
    def get(self, row: int) -> np.ndarray | None:
        """Return a copy of a decoded row, or None when it is pending or failed."""
        return np.array(self.pixels[row]) if self.state[row] == DECODED else None

    def put(self, row: int, image: np.ndarray) -> None:
        """Store a decoded row (pixels first, then the state, so a reader never sees a half-written row)."""
        self.pixels[row] = image
        self.state[row] = DECODED

    def fail(self, row: int, error: DataError) -> None:
        """Record that ``row`` cannot be decoded, keeping the reason (not the path) for later runs."""
        if self.folder is None:
            self._reasons[row] = (error.what, error.fix)
        else:
            line = json.dumps({"row": int(row), "what": error.what, "fix": error.fix})
            with open(self.folder / f"failed-{os.getpid()}.jsonl", "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
        self.state[row] = FAILED

    def pending(self, rows: np.ndarray | None = None) -> np.ndarray:
        """Return the rows (of ``rows``, default all) not decoded or failed yet."""
        rows = np.arange(len(self.state)) if rows is None else np.asarray(rows)
        return rows[self.state[rows] == PENDING]

    @property
    def complete(self) -> bool:
        """True when every row is decoded or known to have failed."""
        return not (np.asarray(self.state) == PENDING).any()

    def errors(self, items: Sequence[str]) -> dict[int, str]:
        """Return ``{row: message}`` for the failed rows, the message naming ``items[row]`` and the stored reason."""
        failed = np.flatnonzero(np.asarray(self.state) == FAILED)
        if not len(failed):
            return {}
        reasons = self._reasons if self.folder is None else self._read_reasons()
        out = {}
        for row in failed.tolist():
            what, fix = reasons.get(row, ("cannot be decoded (reason not recorded)",
                                          "run 'lepton-apps medical check DATA' to see why"))
            out[row] = str(DataError(what, where=str(items[row]), fix=fix))
        return out

    def _read_reasons(self) -> dict[int, tuple[str, str | None]]:
        reasons = {}
        for path in sorted(self.folder.glob("failed-*.jsonl")):
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a killed worker
                    continue
                reasons[int(rec["row"])] = (str(rec["what"]), rec.get("fix"))
        return reasons

    def flush(self) -> None:
        """Write memory-mapped changes to disk (no-op in memory)."""
        for arr in (self.pixels, self.state):
            if isinstance(arr, np.memmap):
                arr.flush()
