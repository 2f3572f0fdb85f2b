"""The HTTP service: one FastAPI application for every domain's predictor.

``create_app({"support": "support:production", ...})`` returns the application; ``lepton-apps
serve`` runs it on uvicorn. Endpoints (``{domain}`` is each served domain):

* ``POST /v1/{domain}/predict`` — the domain's request schema as JSON (medical also accepts a
  ``multipart/form-data`` upload of PNG / JPEG / DICOM files in the ``files`` field); the answer is
  ``{"model_version", "results": [...]}`` with one result per item, in order;
* ``POST /v1/{domain}/explain`` — the same body holding exactly one item; the explanation as JSON;
* ``POST /v1/{domain}/feedback`` — outcomes (labels) for served predictions, named by request id and
  position or by a key (``{"outcomes": [{"request_id", "item", "key", "label"}]}``), stored for
  ``lepton-apps monitor live``;
* ``POST /v1/finance/score_one`` — one transaction scored from, and added to, the online
  per-entity state (``{"transaction": {...}, "update": true}``);
* ``POST /v1/admin/reload`` (an admin key) — swap in a new bundle once it has loaded (an alias
  watcher does the same when the served alias moves);
* ``GET /v1/models``; ``GET /healthz`` (the process is alive); ``GET /readyz`` (503 until every
  model is loaded and the database answers, with the reasons); ``GET /metrics`` (Prometheus
  text); ``GET /docs`` (OpenAPI).

Model endpoints need an API key from :mod:`lepton_apps.store` (unless ``auth`` is off) and each
request to them is written to its audit log before a 200 is sent.

Every response body of a model endpoint carries ``model_version``. A request body over
``max_body_bytes`` is refused with 413, a request that takes longer than ``timeout_s`` gets 504,
an invalid one 422 with what is wrong and where; an input the model cannot use is a result with
its ``error``, not a failed request. Requests arriving together are micro-batched
(:mod:`lepton_apps.serve.batching`) for the domains where an item's result does not depend on the
other items of its batch (medical, support); fraud features depend on the other transactions of a
table, so finance scores each request on its own.
"""

import asyncio
import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import random
import threading
import time
from pathlib import Path
from typing import Any

from lepton_apps.errors import LeptonError, UnavailableError
from lepton_apps.store import digest

from .batching import MicroBatcher

BATCHED_DOMAINS = ("medical", "support")
UPLOAD_DOMAIN = "medical"


@dataclasses.dataclass
class ServeConfig:
    """Limits, batching, access control and audit of the service (``lepton-apps serve`` options).

    ``auth``: model endpoints need an API key (``Authorization: Bearer <token>`` or ``X-API-Key``) whose
    domains include the one asked (401 without a valid key, 403 outside its domains).
    ``audit_required``: a prediction whose audit row cannot be written is answered 503, not 200.
    ``audit_free_text``: keep the customer's question text in support audit rows (off: digest only).
    """

    max_body_bytes: int = 20 * 1024 * 1024
    timeout_s: float = 30.0
    max_batch: int = 64
    max_wait_ms: float = 5.0
    batching: bool = True
    auth: bool = True
    audit_required: bool = True
    audit_free_text: bool = False
    watch_s: float = 10.0  # how often registry names / aliases are re-resolved (0: never; reload by hand)
    challengers: dict[str, str] = dataclasses.field(default_factory=dict)  # {domain: ref} scored in shadow
    monitor_sample: float = 0.0  # share of predict requests whose monitoring window is stored (input drift)
    state_url: str | None = None  # Redis URL for finance's online state shared by replicas (None: in-process)
    state_prefix: str | None = None  # key prefix in Redis (default "lepton:finance:")
    backends: dict[str, str] = dataclasses.field(default_factory=dict)  # {domain: torch|onnx|int8|auto} (medical, support)


class _State:
    """The models being served (with the bundle folder each was loaded from), their loading status,
    their batchers, and the swap to a new bundle (reload)."""

    def __init__(self, refs: dict[str, str], home: str | Path | None, device: str, config: "ServeConfig"):
        self.refs, self.home, self.device, self.config = dict(refs), home, device, config
        self.models: dict[str, Any] = {}
        self.paths: dict[str, Path] = {}
        self.errors: dict[str, str] = {}
        self.challengers: dict[str, Any] = {}  # scored in shadow: answers logged, never returned
        self.shadow_executors: dict[str, concurrent.futures.ThreadPoolExecutor] = {}
        self.background: set[asyncio.Task] = set()  # shadow scoring and monitoring samples, after the answer
        self.monitor_executors = {d: concurrent.futures.ThreadPoolExecutor(max_workers=1,
                                                                           thread_name_prefix=f"lepton-{d}-monitor")
                                  for d in refs} if config.monitor_sample > 0 else {}
        self.batchers: dict[str, tuple[Any, MicroBatcher]] = {}
        # one thread per served domain runs every call of its model (predict, batches, explain, score_one):
        # the model is never used from two threads at once, and its BLAS/OpenMP pool is made once, not
        # per worker thread of a shared pool
        self.executors = {d: concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"lepton-{d}")
                          for d in refs}
        self.reloading = threading.Lock()
        self.done = threading.Event()

    def _load(self, domain: str, ref: str, shared_state: bool = True):
        from lepton_apps.predictor import load, resolve

        path, _ = resolve(ref, home=self.home, domain=domain)
        model = load(path, home=self.home, device=self.device, domain=domain, backend=self.config.backends.get(domain))
        if domain == "finance" and self.config.state_url and shared_state:
            model.share_state(self.config.state_url, self.config.state_prefix)
        return model, Path(path).resolve()

    def state_error(self) -> str | None:
        """Return why finance's shared online state cannot be reached (None: it can, or it is in-process)."""
        model = self.models.get("finance")
        ping = getattr(getattr(model, "state", None), "ping", None)
        return ping() if ping else None

    def load_all(self) -> None:
        for domain, ref in self.refs.items():
            try:
                self.models[domain], self.paths[domain] = self._load(domain, ref)
            except Exception as exc:  # noqa: BLE001 - reported by /readyz, never crashes the process
                self.errors[domain] = f"{type(exc).__name__}: {exc}"
        for domain, ref in self.config.challengers.items():  # a challenger that fails to load is reported only
            try:
                self.challengers[domain], _ = self._load(domain, ref, shared_state=False)
                self.shadow_executors[domain] = concurrent.futures.ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix=f"lepton-{domain}-shadow")
            except Exception as exc:  # noqa: BLE001
                self.errors[f"{domain} (challenger)"] = f"{type(exc).__name__}: {exc}"
        self.done.set()

    def reload(self, domain: str, ref: str | None = None) -> dict[str, Any]:
        """Load ``ref`` (default: the served reference again, so a moved alias is followed) and swap it in
        once it has loaded and passed its checksums; requests already running finish on the old model.
        Returns {domain, ref, old_version, new_version, swapped}. Raises what loading raises (nothing swapped)."""
        with self.reloading:
            ref = ref or self.refs[domain]
            new, path = self._load(domain, ref)
            old = self.models.get(domain)
            self.models[domain], self.paths[domain], self.refs[domain] = new, path, ref
            self.errors.pop(domain, None)
            self.errors.pop(f"{domain} (reload)", None)
            return {"domain": domain, "ref": ref, "old_version": getattr(old, "model_version", None),
                    "new_version": new.model_version, "swapped": True}

    def moved(self) -> list[str]:
        """Return the served domains whose reference now resolves to another bundle folder (alias moved)."""
        from lepton_apps.predictor import resolve

        out = []
        for domain, ref in list(self.refs.items()):
            try:
                path, _ = resolve(ref, home=self.home, domain=domain)
            except Exception:  # noqa: BLE001 - a broken alias keeps the loaded model; /readyz still says ready
                continue
            if domain in self.paths and Path(path).resolve() != self.paths[domain]:
                out.append(domain)
        return out

    def watch(self, every_s: float, stop: threading.Event) -> None:
        """Follow moved aliases: every ``every_s`` seconds reload the domains whose reference points elsewhere."""
        while not stop.wait(every_s):
            for domain in self.moved():
                try:
                    self.reload(domain)
                except Exception as exc:  # noqa: BLE001 - the old model keeps serving
                    self.errors[f"{domain} (reload)"] = f"{type(exc).__name__}: {exc}"

    async def call(self, domain: str, fn, *args, **kwargs):
        """Run ``fn(*args, **kwargs)`` on ``domain``'s model thread; return its result."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executors[domain], functools.partial(fn, *args, **kwargs))

    def in_background(self, coroutine) -> None:
        """Run ``coroutine`` after the answer, keeping a reference until it ends (shutdown waits for it)."""
        task = asyncio.get_running_loop().create_task(coroutine)
        self.background.add(task)
        task.add_done_callback(self.background.discard)

    def ready(self) -> bool:
        """True when every served domain has a model (a failed reload is reported but the old model serves)."""
        return self.done.is_set() and set(self.models) == set(self.refs)


def create_app(refs: dict[str, str], *, home: str | Path | None = None, device: str = "auto",
               config: ServeConfig | None = None, load_now: bool = False, store=None):
    """Return the FastAPI application serving ``refs`` ({domain: bundle folder, registry name or alias}).

    Models load in a background thread (``/readyz`` says 503 until they are in), or before this
    returns with ``load_now``. ``store`` (:class:`lepton_apps.store.Store`) holds the API keys and
    receives an audit row for every request to a model endpoint; without a store there are no keys
    and no audit, which needs ``config.auth=False``. Raises LeptonError for a domain that is not
    installed, or for auth without a store.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, PlainTextResponse

    from lepton_apps.predictor import predictor_class

    from .metrics import ServiceMetrics

    cfg = config or ServeConfig()
    if cfg.auth and store is None:
        raise LeptonError("API keys need the service database", where="create_app(store=…)",
                          fix="pass store=Store.open(), or ServeConfig(auth=False) for local use without keys")
    classes = {d: predictor_class(d) for d in refs}
    state = _State(refs, home, device, cfg)
    metrics = ServiceMetrics()

    async def lifespan(app):
        if not state.done.is_set():
            threading.Thread(target=state.load_all, name="lepton-load", daemon=True).start()
        stop = threading.Event()
        if cfg.watch_s > 0:
            threading.Thread(target=state.watch, args=(cfg.watch_s, stop), name="lepton-watch", daemon=True).start()
        yield
        stop.set()
        for _, b in state.batchers.values():
            await b.close()
        if state.background:  # let shadow scoring and monitoring samples in flight finish and log, briefly
            await asyncio.wait(list(state.background), timeout=cfg.timeout_s)

    app = FastAPI(title="Lepton Apps", version="1", lifespan=lifespan,
                  description="Medical imaging, fraud detection and customer-service QA models behind one API.")
    app.state.lepton = state
    app.add_middleware(BodyLimit, max_bytes=cfg.max_body_bytes)
    if load_now:
        state.load_all()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return _unprocessable(exc)

    @app.exception_handler(LeptonError)
    async def _lepton(request: Request, exc: LeptonError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    # -- operations ---------------------------------------------------------------------
    @app.get("/healthz", tags=["operations"])
    def healthz() -> dict:
        """The process is alive (it may still be loading models: see /readyz)."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"])
    def readyz():
        """200 when every model is loaded; 503 with what is missing or failed otherwise."""
        db = store.ping() if store is not None else None
        shared = state.state_error()
        body = {"ready": state.ready() and db is None and shared is None,
                "models": {d: m.model_version for d, m in state.models.items()},
                "loading": [d for d in state.refs if d not in state.models and d not in state.errors],
                "errors": {**state.errors, **({"database": db} if db else {}),
                           **({"finance online state": shared} if shared else {})},
                "auth": cfg.auth, "audit": store is not None}
        return JSONResponse(status_code=200 if body["ready"] else 503, content=body)

    @app.get("/metrics", tags=["operations"])
    def prometheus():
        """Requests, errors, latency and batch sizes per domain and model version (Prometheus text format)."""
        data, content_type = metrics.render()
        return PlainTextResponse(data, media_type=content_type)

    @app.get("/v1/models", tags=["models"])
    def models() -> dict:
        """The served models: domain, version, task, headline metrics and where they were loaded from."""
        out = {}
        for d, ref in state.refs.items():
            m = state.models.get(d)
            bundle = getattr(m, "bundle", None)
            out[d] = {"ref": ref, "loaded": m is not None, "error": state.errors.get(d),
                      "model_version": getattr(m, "model_version", None),
                      "backend": getattr(m, "backend", None), "backend_note": getattr(m, "backend_note", None),
                      "task": getattr(bundle, "task", None), "metrics": getattr(bundle, "metrics", None),
                      "request_schema": classes[d].request_schema.__name__,
                      "challenger": ({"ref": cfg.challengers[d], "model_version":
                                      getattr(state.challengers.get(d), "model_version", None),
                                      "error": state.errors.get(f"{d} (challenger)")}
                                     if d in cfg.challengers else None)}
        return {"models": out}

    # -- model endpoints ------------------------------------------------------------------
    def model_of(domain: str):
        m = state.models.get(domain)
        if m is None:
            reason = state.errors.get(domain, "still loading")
            raise _HTTPError(503, f"the {domain} model is not available ({reason})",
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

    def authorize(domain: str, request: Request, scope: str = "read"):
        """Return the caller's key (None with auth off); _HTTPError 401 / 403 otherwise. ``domain`` "*" means
        every served domain."""
        if not cfg.auth:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not token:
            raise _HTTPError(401, "no API key", "send 'Authorization: Bearer <token>' (create one with "
                                                "'lepton-apps keys create NAME --domains …')")
        try:
            key = store.verify(token)
        except Exception as exc:  # noqa: BLE001 - the database is down: the key cannot be checked
            raise _HTTPError(503, f"the API key cannot be checked: the service database is unavailable "
                                  f"({type(exc).__name__})", "retry when GET /readyz answers 200") from None
        if key is None:
            raise _HTTPError(401, "unknown or revoked API key", "ask for a new key ('lepton-apps keys list' "
                                                                "shows the active ones)")
        for d in (list(state.refs) if domain == "*" else [domain]):
            if not key.allows(d, scope):
                raise _HTTPError(403, f"the key {key.name!r} is not allowed to {'use' if scope == 'read' else scope} "
                                      f"{d} (its domains: {', '.join(key.domains)}, scope {key.scope})",
                                 f"use a key created with {d} in --domains" + (" and --scope admin" if scope == "admin"
                                                                               else ""))
        return key

    async def timed(domain: str, endpoint: str, request: Request, work, scope: str = "read"):
        """Run ``work`` (a coroutine returning the JSON body) under the timeout; map errors to statuses;
        count it in the metrics and write its audit row (a 200 is only sent once its row is written)."""
        import uuid

        start = time.perf_counter()
        status, body, key = 500, None, None
        request_id = uuid.uuid4().hex
        request.state.request_id = request_id
        try:
            key = authorize(domain, request, scope)
            request.state.key_name = key.name if key else None
            body = await asyncio.wait_for(work(), cfg.timeout_s)
            status = 200
            response = JSONResponse(body)
        except RequestValidationError as exc:
            status, response = 422, _unprocessable(exc)
        except asyncio.TimeoutError:
            status = 504
            response = JSONResponse(status_code=504, content={
                "detail": f"the request took longer than {cfg.timeout_s:g} s",
                "fix": "send fewer items per request, or raise --timeout"})
        except _HTTPError as exc:
            status = exc.status
            response = JSONResponse(status_code=exc.status, content={"detail": exc.detail, "fix": exc.fix})
        except UnavailableError as exc:
            status = 503
            response = JSONResponse(status_code=503, content={"detail": exc.what, "fix": exc.fix})
        except LeptonError as exc:
            status = 400
            response = JSONResponse(status_code=400, content={"detail": str(exc)})
        finally:
            seconds = time.perf_counter() - start
        if store is not None:
            failed = await asyncio.to_thread(write_audit, request_id, domain, endpoint, request, key, status,
                                             seconds, body)
            if failed and status == 200 and cfg.audit_required:
                status = 503
                response = JSONResponse(status_code=503, content={
                    "detail": f"the prediction could not be written to the audit log ({failed})",
                    "fix": "check the database (GET /readyz); the service answers again once it is reachable"})
        version = getattr(request.state, "model_version", None) or getattr(state.models.get(domain), "model_version",
                                                                           "none")
        metrics.observe(domain, endpoint, version, status, seconds)
        response.headers["x-request-id"] = request_id
        return response

    def write_audit(request_id, domain, endpoint, request, key, status, seconds, body) -> str | None:
        """Write one audit row; return None, or why it failed."""
        import datetime as dt

        from lepton_apps.store import AuditRow

        model = state.models.get(domain)
        results = getattr(request.state, "audit_results", None) if endpoint == "predict" else None
        kept = None
        if status == 200:
            if results is not None:
                kept = results
            elif endpoint == "score_one":
                kept = {k: v for k, v in body.items() if k != "model_version"}
            elif endpoint in ("reload", "feedback"):
                kept = body
            else:
                kept = {"explained": True}
        row = AuditRow(request_id=request_id, created_at=dt.datetime.now(dt.timezone.utc).replace(tzinfo=None),
                       domain=domain, endpoint=endpoint, model_ref=state.refs.get(domain, ""),
                       model_version=getattr(request.state, "model_version", None)
                       or getattr(model, "model_version", "none"), key_id=key.id if key else None,
                       status=status, latency_ms=seconds * 1000, n_items=len(results) if results is not None else 1,
                       input_digest=getattr(request.state, "input_digest", None) or digest(b""), result=kept)
        try:
            store.audit([row])
            return None
        except Exception as exc:  # noqa: BLE001 - reported to the caller as 503 (or logged for errors)
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    async def parse(domain: str, request: Request):
        """Return the validated request schema instance (JSON), or one built from a medical upload."""
        schema = classes[domain].request_schema
        ctype = request.headers.get("content-type", "")
        if domain == UPLOAD_DOMAIN and ctype.startswith("multipart/form-data"):
            import base64

            form = await request.form()
            files = [f for f in form.getlist("files") if hasattr(f, "read")]
            if not files:
                raise RequestValidationError([{"loc": ("body", "files"), "msg": "no files: upload images in the "
                                               "'files' form field", "type": "missing"}])
            blobs = [await f.read() for f in files]
            request.state.input_digest = digest(b"".join(hashlib.sha256(b).digest() for b in blobs))
            images = [{"name": f.filename or f"upload {i}", "data_base64": base64.b64encode(b).decode()}
                      for i, (f, b) in enumerate(zip(files, blobs))]
            threshold = form.get("threshold")
            return _validate(schema, {"images": images, **({"threshold": threshold} if threshold else {})})
        if not ctype.startswith("application/json"):
            raise _HTTPError(415, f"unsupported content type {ctype or '(none)'!r}",
                             "send application/json" + (" or multipart/form-data" if domain == UPLOAD_DOMAIN else ""))
        raw = await request.body()
        request.state.input_digest = digest(raw)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestValidationError([{"loc": ("body",), "msg": f"malformed JSON ({exc})", "type": "json_invalid"}])
        return _validate(schema, data)

    for domain in refs:
        schema = classes[domain].request_schema
        body_doc = {"application/json": {"schema": schema.model_json_schema(ref_template="#/components/schemas/{model}")}}
        if domain == UPLOAD_DOMAIN:
            body_doc["multipart/form-data"] = {"schema": {"type": "object", "properties": {
                "files": {"type": "array", "items": {"type": "string", "format": "binary"}},
                "threshold": {"type": "number"}}, "required": ["files"]}}
        extra = {"requestBody": {"required": True, "content": body_doc}}

        async def predict(request: Request, domain: str = domain):
            async def work():
                req = await parse(domain, request)
                items, kwargs = req.to_items()
                return await run_predict(domain, items, dict(kwargs), request)
            return await timed(domain, "predict", request, work)

        async def explain(request: Request, domain: str = domain):
            async def work():
                req = await parse(domain, request)
                items, kwargs = req.to_items()
                if len(items) != 1:
                    raise _HTTPError(422, f"explain takes exactly one item, got {len(items)}", "send one item")
                model = model_of(domain)
                request.state.model_version = model.model_version
                exp = await state.call(domain, model.explain, items[0])
                return exp.to_dict()
            return await timed(domain, "explain", request, work)

        for path, fn, summary in ((f"/v1/{domain}/predict", predict, f"Predict with the {domain} model"),
                                  (f"/v1/{domain}/explain", explain, f"Explain one {domain} item")):
            app.add_api_route(path, fn, methods=["POST"], tags=[domain], summary=summary, openapi_extra=extra,
                              name=f"{domain}_{fn.__name__}")

    from pydantic import BaseModel, ConfigDict, Field

    class ReloadRequest(BaseModel):
        """Which model to reload: one domain (default: all served) and optionally a new reference."""

        model_config = ConfigDict(extra="forbid")
        domain: str | None = Field(None, description="a served domain; default: every served domain")
        ref: str | None = Field(None, description="bundle folder, registry name or DOMAIN:ALIAS to serve from now "
                                                  "on (needs domain); default: the served reference again")

    class Outcome(BaseModel):
        """An outcome returned for a served prediction, named by its request id (+ position) or by a key."""

        model_config = ConfigDict(extra="forbid")
        request_id: str | None = Field(None, max_length=64, description="the answer's x-request-id header")
        item: int | None = Field(None, ge=0, description="the item's position in that request (0 = first)")
        key: str | None = Field(None, max_length=400, description="a key the domain matches on (finance: "
                                                                  "transaction_id)")
        label: str = Field(..., min_length=1, max_length=400, description="finance: 1 / 0; medical: the true "
                           "class; support: the FAQ id that answered, or out_of_scope")

    class FeedbackRequest(BaseModel):
        """Outcomes (labels) for served predictions, for live performance (``lepton-apps monitor live``)."""

        model_config = ConfigDict(extra="forbid")
        outcomes: list[Outcome] = Field(..., min_length=1, max_length=10_000)

    for domain in refs:
        async def feedback(req: FeedbackRequest, request: Request, domain: str = domain):
            async def work():
                if store is None:
                    raise _HTTPError(503, "this service runs without a database: outcomes cannot be stored",
                                     "start it with a service database (the default) or send them with "
                                     "'lepton-apps monitor labels'")
                key = getattr(request.state, "key_name", None)
                stored = await asyncio.to_thread(store.add_outcomes, domain, [o.model_dump() for o in req.outcomes],
                                                 f"api:{key}" if key else "api")
                return {"model_version": getattr(state.models.get(domain), "model_version", None), "stored": stored}
            return await timed(domain, "feedback", request, work)

        app.add_api_route(f"/v1/{domain}/feedback", feedback, methods=["POST"], tags=[domain],
                          summary=f"Return outcomes for served {domain} predictions", name=f"{domain}_feedback")

    @app.post("/v1/admin/reload", tags=["operations"], summary="Swap in a new bundle without downtime (admin key)")
    async def reload(req: ReloadRequest, request: Request):
        """Load the model again (following a moved alias) or from ``ref``, check it, then swap it in;
        requests already running finish on the old model. A model that fails to load is not swapped."""
        if req.domain is not None and req.domain not in state.refs:
            raise _HTTPErrorResponse(404, f"{req.domain!r} is not served here",
                                     f"served domains: {', '.join(state.refs)}")
        if req.ref is not None and req.domain is None:
            raise _HTTPErrorResponse(422, "a new ref needs its domain", "send {'domain': …, 'ref': …}")
        domains = [req.domain] if req.domain else list(state.refs)

        async def work():
            done = [await asyncio.to_thread(state.reload, d, req.ref) for d in domains]
            return {"reloaded": done}
        return await timed(req.domain or "*", "reload", request, work, scope="admin")

    @app.exception_handler(_HTTPErrorResponse)
    async def _plain(request: Request, exc: "_HTTPErrorResponse"):
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail, "fix": exc.fix})

    if "finance" in refs:

        class ScoreOneRequest(BaseModel):
            """One transaction for the online path (its customer's and terminal's history is kept)."""

            model_config = ConfigDict(extra="forbid")
            transaction: dict[str, Any] = Field(..., description="column: value, as in the training data")
            update: bool = Field(True, description="add the transaction to the per-entity state")

        @app.post("/v1/finance/score_one", tags=["finance"], summary="Score one transaction from the live state")
        async def score_one(req: ScoreOneRequest, request: Request):
            async def work():
                request.state.input_digest = digest(await request.body())
                model = model_of("finance")
                request.state.model_version = model.model_version
                out = await state.call("finance", model.score_one, req.transaction, update=req.update)
                return {"model_version": model.model_version, **{k: v for k, v in out.items() if k != "features"}}
            return await timed("finance", "score_one", request, work)

    return app


def _unprocessable(exc):
    """Return the 422 response for a RequestValidationError: each problem as "where: what"."""
    from fastapi.responses import JSONResponse

    problems = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": "invalid request: " + "; ".join(problems),
                                                  "errors": problems})


class _HTTPError(Exception):
    def __init__(self, status: int, detail: str, fix: str):
        super().__init__(detail)
        self.status, self.detail, self.fix = status, detail, fix


class _HTTPErrorResponse(_HTTPError):
    """An _HTTPError raised outside :func:`timed` (answered by an exception handler)."""


def _validate(schema, data):
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None


class BodyLimit:
    """ASGI middleware: answer 413 when a request body exceeds ``max_bytes`` (by its Content-Length,
    or while it streams in when there is none)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send, int(length))
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge(seen)
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge as exc:
            await self._refuse(send, exc.size)

    async def _refuse(self, send, size: int) -> None:
        body = json.dumps({"detail": f"the request body ({size:,} bytes) is larger than the limit of "
                                     f"{self.max_bytes:,} bytes",
                           "fix": "send fewer or smaller items per request, or start the service with a larger "
                                  "--max-body-mb"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    def __init__(self, size: int):
        super().__init__(size)
        self.size = size
