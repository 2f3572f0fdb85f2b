"""What every request to a model endpoint of the HTTP service (and to admin reload) goes through:
:func:`make_timed` returns ``timed``, which checks the API key, runs the endpoint's work under
``ServeConfig.timeout_s`` (504 past it), maps errors to their status codes (422 invalid, 503 unavailable, 400 for
other LeptonErrors, an ``HTTPError``'s own), writes the request's audit row (a 200 is sent only once it is
written; 503 otherwise, with ``audit_required``), counts the request in the metrics and tags the answer with its
``x-request-id``.
"""
import asyncio
import time

from lepton_apps.errors import LeptonError, UnavailableError

from .responses import HTTPError, unprocessable


def make_timed(state, cfg, store, metrics, authorize, write_audit):
    """Return ``timed(domain, endpoint, request, work, scope="read")`` for the service of ``state``, ``cfg`` and
    ``store``, counting in ``metrics`` (:class:`~lepton_apps.serve.metrics.ServiceMetrics`), checking keys with
    ``authorize`` (:mod:`lepton_apps.serve.auth`) and writing audit rows with ``write_audit``
    (:mod:`lepton_apps.serve.audit`)."""
    from fastapi import Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

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
            status, response = 422, unprocessable(exc)
        except asyncio.TimeoutError:
            status = 504
            response = JSONResponse(status_code=504, content={
                "detail": f"the request took longer than {cfg.timeout_s:g} s",
                "fix": "send fewer items per request, or raise --timeout"})
        except HTTPError as exc:
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

    return timed
