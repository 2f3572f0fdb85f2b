"""How the HTTP service runs a model: :func:`make_inference` returns ``model_of`` (the served model of a domain;
503 while it loads or when it failed to) and ``run_predict``, which scores a request's items, micro-batched with
the requests arriving together (:mod:`lepton_apps.serve.batching`) for the domains where an item's result does
not depend on the rest of its batch, else on the domain's model thread, and which after the answer stores a
sampled monitoring window (``ServeConfig.monitor_sample``) and has a challenger score the same items in shadow
(its answers go to the audit log only).
"""
import asyncio
import functools
import random
import time

from lepton_apps.store import digest

from .batching import MicroBatcher
from .responses import HTTPError

BATCHED_DOMAINS = ("medical", "support")


def make_inference(state, cfg, store, metrics):
    """Return ``(model_of, run_predict)`` for the models of ``state`` under ``cfg``, storing monitoring samples
    and shadow rows in ``store`` (None: neither) and counting batches and background failures in ``metrics``."""

    def model_of(domain: str):
        m = state.models.get(domain)
        if m is None:
            reason = state.errors.get(domain, "still loading")
            raise HTTPError(503, f"the {domain} model is not available ({reason})",
                             "retry when GET /readyz answers 200")
        return m

    def batcher_of(domain: str, model) -> MicroBatcher | None:
        if not cfg.batching or domain not in BATCHED_DOMAINS:
            return None
        current = state.batchers.get(domain)
        if current is None or current[0] is not model:  # first use, or the model was reloaded
            batcher = MicroBatcher(model.predict, max_batch=cfg.max_batch, max_wait_s=cfg.max_wait_ms / 1000,
                                   on_batch=lambda n, d=domain: metrics.batch_size.labels(d).observe(n),
                                   executor=state.executors[domain])
            state.batchers[domain] = (model, batcher)
            if current is not None:  # the old batcher finishes what it holds, then stops
                asyncio.get_running_loop().call_later(cfg.timeout_s + 1, asyncio.ensure_future, current[1].close())
        return state.batchers[domain][1]

    async def run_predict(domain: str, items: list, kwargs: dict, request) -> dict:
        model = model_of(domain)
        shadow_kwargs = dict(kwargs)  # the batcher takes per-item options out of kwargs
        request.state.model_version = model.model_version
        batcher = batcher_of(domain, model)
        if batcher is not None:
            per_item = {k: kwargs.pop(k) for k in ("names",) if k in kwargs}
            results = await batcher.submit(items, kwargs, per_item)
        else:
            metrics.batch_size.labels(domain).observe(len(items))
            results = await state.call(domain, model.predict, items, **kwargs)
        request.state.audit_results = [r.for_audit(cfg.audit_free_text) for r in results]
        if cfg.monitor_sample > 0 and store is not None and random.random() < cfg.monitor_sample:
            state.in_background(monitor_sample(domain, model, items, request.state.request_id))
        if domain in state.challengers:
            state.in_background(shadow(domain, items, shadow_kwargs, request.state.request_id,
                                       getattr(request.state, "input_digest", None)))
        return {"model_version": model.model_version, "results": [r.to_dict() for r in results]}

    async def monitor_sample(domain: str, model, items: list, request_id: str) -> None:
        """Store what the model saw for this request (its monitoring window: features, scores, embeddings — no
        raw input) for input-drift reports; computed after the answer, on a thread of its own. A failure only
        counts in the metrics."""
        try:
            loop = asyncio.get_running_loop()
            window = await loop.run_in_executor(state.monitor_executors[domain], model.monitor_window, items)
            await asyncio.to_thread(store.add_monitor_sample, domain, request_id, model.model_version, window)
        except Exception:  # noqa: BLE001 - monitoring never affects an answer
            metrics.errors.labels(domain, "monitor_sample", model.model_version, "failed").inc()

    async def shadow(domain: str, items: list, kwargs: dict, request_id: str, input_digest: str | None) -> None:
        """Score the same items with the challenger on its own thread and log its answers (never returned) in
        the audit log as ``<request_id>-shadow`` (endpoint ``shadow``); a failure is logged the same way."""
        import datetime as dt

        from lepton_apps.store import AuditRow

        model = state.challengers[domain]
        start = time.perf_counter()
        status, kept, error = 200, None, None
        try:
            loop = asyncio.get_running_loop()
            results = await loop.run_in_executor(state.shadow_executors[domain],
                                                 functools.partial(model.predict, items, **kwargs))
            kept = [r.for_audit(cfg.audit_free_text) for r in results]
        except Exception as exc:  # noqa: BLE001 - the challenger never affects the answer
            status, error = 500, f"{type(exc).__name__}: {exc}"
        if store is None:
            return
        row = AuditRow(request_id=f"{request_id}-shadow", created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                       domain=domain, endpoint="shadow", model_ref=cfg.challengers[domain],
                       model_version=model.model_version, key_id=None, status=status,
                       latency_ms=(time.perf_counter() - start) * 1000, n_items=len(items),
                       input_digest=input_digest or digest(b""), result=kept, error=error)
        try:
            await asyncio.to_thread(store.audit, [row])
        except Exception:  # noqa: BLE001 - a lost shadow row costs a comparison, never an answer
            metrics.errors.labels(domain, "shadow", model.model_version, "audit").inc()

    return model_of, run_predict
