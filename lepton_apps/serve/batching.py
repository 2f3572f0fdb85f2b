"""Server-side micro-batching: requests that arrive together are scored in one ``predict`` call.

Each request puts its items on a queue and awaits a future. One collector task per model takes the
first waiting request, then keeps taking requests until ``max_batch`` items are gathered or
``max_wait_s`` has passed since the first, and scores them in one ``predict`` call on a worker
thread (one call at a time per model, so the model is never run from two threads at once). Requests
whose shared options differ (e.g. a medical threshold) are scored in separate calls of the same
window. A request larger than ``max_batch`` is scored on its own, never split.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
from typing import Any, Callable, Sequence


@dataclasses.dataclass
class _Job:
    items: list[Any]
    shared: dict[str, Any]          # options every item of a call must share (the batch key)
    per_item: dict[str, list[Any]]  # options with one value per item (e.g. medical names)
    future: asyncio.Future

    def key(self) -> tuple:
        """Jobs with equal keys can share a call: the same shared options and the same per-item option names."""
        return tuple(sorted((k, repr(v)) for k, v in self.shared.items())), tuple(sorted(self.per_item))


class MicroBatcher:
    """Gathers concurrent requests for one predictor into batched ``predict`` calls.

    ``predict(items, **options) -> list`` must return one result per item, in order.
    ``on_batch(n_items)`` (optional) is told the size of every call, for the metrics.
    ``executor``: where ``predict`` runs (default: a thread of the batcher's own).
    """

    def __init__(self, predict: Callable[..., list], *, max_batch: int = 64, max_wait_s: float = 0.005,
                 on_batch: Callable[[int], None] | None = None,
                 executor: concurrent.futures.Executor | None = None):
        if max_batch < 1 or max_wait_s < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_s >= 0")
        self.predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Job] | None = None
        self._task: asyncio.Task | None = None
        self._owns_pool = executor is None  # else the caller's (e.g. the service's one thread per model)
        self._pool = executor or concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="lepton-predict")

    async def submit(self, items: Sequence[Any], shared: dict[str, Any] | None = None,
                     per_item: dict[str, Sequence[Any]] | None = None) -> list:
        """Return the results of ``items`` (scored together with other requests' items where they fit)."""
        loop = asyncio.get_running_loop()
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = loop.create_task(self._collect())
        items = list(items)
        per = {k: list(v) for k, v in (per_item or {}).items()}
        for k, v in per.items():
            if len(v) != len(items):
                raise ValueError(f"per-item option {k!r} has {len(v)} values for {len(items)} items")
        job = _Job(items, dict(shared or {}), per, loop.create_future())
        await self._queue.put(job)
        return await job.future

    async def _collect(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            jobs, n, later = [first], len(first.items), []
            deadline = loop.time() + self.max_wait_s
            while n < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
                if n + len(job.items) > self.max_batch:
                    later.append(job)  # does not fit: scored on its own, right after this batch
                    continue
                jobs.append(job)
                n += len(job.items)
            groups: dict[tuple, list[_Job]] = {}
            for job in jobs:
                groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                await self._run(group)
            for job in later:
                await self._run([job])

    async def _run(self, jobs: list[_Job]) -> None:
        live = [j for j in jobs if not j.future.cancelled()]  # a timed-out request does not cost a forward pass
        if not live:
            return
        items = [it for j in live for it in j.items]
        options = dict(live[0].shared)
        for k in live[0].per_item:
            options[k] = [v for j in live for v in j.per_item[k]]
        if self.on_batch:
            self.on_batch(len(items))
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._pool, lambda: self.predict(items, **options))
            if len(results) != len(items):
                raise RuntimeError(f"predict returned {len(results)} results for {len(items)} items")
        except Exception as exc:  # noqa: BLE001 - every waiting request gets the error
            for j in live:
                if not j.future.done():
                    j.future.set_exception(exc)
            return
        start = 0
        for j in live:
            if not j.future.done():
                j.future.set_result(results[start:start + len(j.items)])
            start += len(j.items)

    async def close(self) -> None:
        """Stop the collector task and the worker thread."""
        if self._task is not None:
            self._task.cancel()
        if self._owns_pool:
            self._pool.shutdown(wait=False, cancel_futures=True)
