"""The error answers of the HTTP service: ``HTTPError`` (a status code, what is wrong and the fix, raised while a
request is handled and answered by ``timed`` in :mod:`lepton_apps.serve.handling`), ``HTTPErrorResponse`` (the
same, raised outside it and answered by an exception handler of the application), the 422 body that lists each
problem of an invalid request as "where: what", and the validation of a request body against a domain's schema.
"""


def unprocessable(exc):
    """Return the 422 response for a RequestValidationError: each problem as "where: what"."""
    from fastapi.responses import JSONResponse

    problems = [f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
                for e in exc.errors()]
    return JSONResponse(status_code=422, content={"detail": "invalid request: " + "; ".join(problems),
                                                  "errors": problems})


class HTTPError(Exception):
    def __init__(self, status: int, detail: str, fix: str):
        super().__init__(detail)
        self.status, self.detail, self.fix = status, detail, fix


class HTTPErrorResponse(HTTPError):
    """An HTTPError raised outside :func:`timed` (answered by an exception handler)."""


def validate_body(schema, data):
    from fastapi.exceptions import RequestValidationError
    from pydantic import ValidationError

    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()]) from None
