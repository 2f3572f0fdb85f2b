"""Streaming folder / manifest images: decoded in DataLoader workers, kept in a :class:`PixelCache` on disk.

:class:`DecodedImages` yields ``(uint8 tensor (C, S, S), target)``: a row already in the cache
is read from its memory map, any other is decoded (same reader, channels and resize as
:func:`~.data.load_pixels`) and written to the cache by the worker that decoded it, so from the
second epoch on nothing is decoded again. Augmentation stays on the device, in batches.

:func:`loading_mode` picks between this and the in-memory path by one rule (see the README).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from lepton_apps.errors import ConfigError, DataError

from .data import MedicalData, decode_into
from .pixelcache import PENDING, PixelCache


def default_workers() -> int:
    """Return the default number of decoding worker processes: min(4, CPUs)."""
    return min(4, os.cpu_count() or 1)


def physical_memory() -> int:
    """Return the machine's RAM in bytes (8 GiB when the platform does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 8 << 30


def loading_mode(md: MedicalData, channels: int, image_size: int, data_loading: str = "auto",
                 memory_budget_gb: float | None = None) -> Literal["memory", "stream"]:
    """Return ``"memory"`` or ``"stream"`` for training on ``md``.

    ``auto`` keeps the images in memory when the peak of the in-memory path (twice the decoded
    size, ``2 x N x C x size²`` bytes) fits ``memory_budget_gb`` (default: half the RAM), and
    streams otherwise. A MedMNIST ``.npz`` is always in memory: its arrays are loaded already.
    """
    if md.arrays is not None:
        if data_loading == "stream":
            raise ConfigError("data_loading: stream applies to folders and manifests, not to a .npz",
                              where=md.source, fix="use data_loading: auto or memory for a MedMNIST .npz")
        return "memory"
    if data_loading in ("memory", "stream"):
        return data_loading  # type: ignore[return-value]
    budget = memory_budget_gb * 1e9 if memory_budget_gb else physical_memory() / 2
    peak = 2 * len(md.table) * channels * image_size * image_size
    return "memory" if peak <= budget else "stream"


class DecodedImages(Dataset):
    """``rows`` of a folder / manifest set as ``(uint8 (C, S, S), target)``, decoded on demand into a disk cache.

    A row that cannot be decoded is recorded as failed in the cache (with its reason) and left out
    of its batch, so one bad file never stops an epoch; what the run then does about failed rows is
    the trainer's decision (``skip_unreadable``). The memory maps are opened lazily in each
    process, so the dataset pickles small for worker processes.
    """

    def __init__(self, cache_folder: str | os.PathLike, shape: tuple[int, int, int, int], items: Sequence[str],
                 targets: np.ndarray, rows: np.ndarray):
        self.cache_folder = Path(cache_folder)
        self.shape = tuple(shape)
        self.items = list(items)
        self.targets = torch.as_tensor(np.array(targets))
        self.rows = np.asarray(rows, dtype=np.int64)
        self._cache: PixelCache | None = None
        self._pid = -1

    @property
    def cache(self) -> PixelCache:
        """This process's view of the disk cache."""
        if self._cache is None or self._pid != os.getpid():
            self._cache, self._pid = PixelCache.open(self.cache_folder, self.shape), os.getpid()
        return self._cache

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_cache"], state["_pid"] = None, -1
        return state

    def __len__(self) -> int:
        return len(self.rows)

    def load(self, k: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Return sample ``k`` (from the cache, else decoded and cached), or None when it cannot be decoded."""
        row = int(self.rows[k])
        cache = self.cache
        image = cache.get(row)
        if image is None and cache.state[row] == PENDING:
            image = decode_into(cache, self.items, row)
        return None if image is None else (torch.tensor(image), self.targets[row])

    def __getitem__(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        sample = self.load(k)
        if sample is None:
            raise DataError("the image cannot be decoded", where=self.items[int(self.rows[k])],
                            fix="run 'lepton-apps medical check DATA' to see why")
        return sample

    def __getitems__(self, ks: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Return the readable samples of one batch (DataLoader calls this instead of ``__getitem__``).

        Failed rows are left out; should every row of the batch fail, the next readable row of the
        set stands in, so a step never gets an empty batch.
        """
        batch = [s for s in map(self.load, ks) if s is not None]
        k = ks[-1] if ks else 0
        for _ in range(len(self)):
            if batch:
                break
            k = (k + 1) % len(self)
            sample = self.load(k)
            if sample is not None:
                batch.append(sample)
        if not batch:
            raise DataError("none of the images can be decoded", where=str(self.cache_folder.parent),
                            fix="run 'lepton-apps medical check DATA' to see why")
        return batch


class CachedRows:
    """Decoded rows of a complete cache as a sliceable source of uint8 tensors (for ``predict_logits``)."""

    def __init__(self, cache: PixelCache, rows: np.ndarray):
        self.cache, self.rows = cache, np.asarray(rows, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: slice) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(self.cache.pixels[self.rows[index]]))
