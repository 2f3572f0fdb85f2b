"""The model endpoints of the HTTP service, added to the application by :func:`add_model_routes`: for each served
domain ``POST /v1/{domain}/predict`` and ``/explain`` (the domain's request schema as JSON; medical also takes a
multipart upload of image files) and ``/feedback`` (outcomes for served predictions), then
``POST /v1/admin/reload`` and, when finance is served, ``POST /v1/finance/score_one``. Each parses and runs its
request inside ``timed`` (:mod:`lepton_apps.serve.handling`: key check, timeout, errors, audit row, metrics).
"""
import asyncio
import hashlib
import json
from typing import Any

from lepton_apps.store import digest

from .responses import HTTPError, HTTPErrorResponse, validate_body

UPLOAD_DOMAIN = "medical"


def add_model_routes(app, refs, classes, state, store, timed, model_of, run_predict) -> None:
    """Add the model endpoints of the domains of ``refs`` to ``app``: ``classes`` are their predictor classes (their
    request schemas), ``state`` the served models, ``store`` where outcomes go (None: feedback answers 503),
    ``timed`` (:mod:`lepton_apps.serve.handling`), ``model_of`` and ``run_predict``
    (:mod:`lepton_apps.serve.inference`) what the endpoints run."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError

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
            return validate_body(schema, {"images": images, **({"threshold": threshold} if threshold else {})})
        if not ctype.startswith("application/json"):
            raise HTTPError(415, f"unsupported content type {ctype or '(none)'!r}",
                             "send application/json" + (" or multipart/form-data" if domain == UPLOAD_DOMAIN else ""))
        raw = await request.body()
        request.state.input_digest = digest(raw)
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestValidationError([{"loc": ("body",), "msg": f"malformed JSON ({exc})", "type": "json_invalid"}])
        return validate_body(schema, data)

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
                    raise HTTPError(422, f"explain takes exactly one item, got {len(items)}", "send one item")
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
                    raise HTTPError(503, "this service runs without a database: outcomes cannot be stored",
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
            raise HTTPErrorResponse(404, f"{req.domain!r} is not served here",
                                     f"served domains: {', '.join(state.refs)}")
        if req.ref is not None and req.domain is None:
            raise HTTPErrorResponse(422, "a new ref needs its domain", "send {'domain': …, 'ref': …}")
        domains = [req.domain] if req.domain else list(state.refs)

        async def work():
            done = [await asyncio.to_thread(state.reload, d, req.ref) for d in domains]
            return {"reloaded": done}
        return await timed(req.domain or "*", "reload", request, work, scope="admin")

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
