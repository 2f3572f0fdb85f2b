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

Where the pieces live: :mod:`~lepton_apps.serve.state` (``ServeConfig`` and the served models),
:mod:`~lepton_apps.serve.routes` (the model endpoints), :mod:`~lepton_apps.serve.inference` (running a model:
batching, shadow, monitoring samples), :mod:`~lepton_apps.serve.handling` (key check, timeout, errors, audit,
metrics of each request), :mod:`~lepton_apps.serve.auth`, :mod:`~lepton_apps.serve.audit`,
:mod:`~lepton_apps.serve.limits` (the body limit) and :mod:`~lepton_apps.serve.responses` (error answers);
this module builds the application and wires them together.
"""

import asyncio
import threading
from pathlib import Path

from lepton_apps.errors import LeptonError

from .audit import make_write_audit
from .auth import make_authorize
from .handling import make_timed
from .inference import make_inference
from .limits import BodyLimit
from .responses import HTTPErrorResponse, unprocessable
from .routes import add_model_routes
from .state import ServeConfig, ServedModels


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
    state = ServedModels(refs, home, device, cfg)
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
        return unprocessable(exc)

    @app.exception_handler(LeptonError)
    async def _lepton(request: Request, exc: LeptonError):
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(HTTPErrorResponse)
    async def _plain(request: Request, exc: "HTTPErrorResponse"):
        return JSONResponse(status_code=exc.status, content={"detail": exc.detail, "fix": exc.fix})

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
    authorize = make_authorize(state, cfg, store)
    write_audit = make_write_audit(state, store)
    timed = make_timed(state, cfg, store, metrics, authorize, write_audit)
    model_of, run_predict = make_inference(state, cfg, store, metrics)
    add_model_routes(app, refs, classes, state, store, timed, model_of, run_predict)

    return app
