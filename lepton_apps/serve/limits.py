"""The request-body limit of the HTTP service: ``BodyLimit``, ASGI middleware that answers 413 (with the fix) for a
body larger than ``ServeConfig.max_body_bytes``, by its Content-Length or, when there is none, while it streams
in. The other limit, the per-request timeout (504), is applied by ``timed`` in :mod:`lepton_apps.serve.handling`.
"""
import json


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
