"""API keys of the HTTP service: :func:`make_authorize` returns the check every model endpoint runs first. The key,
sent as ``Authorization: Bearer <token>`` or ``X-API-Key``, is verified against the service database
(:mod:`lepton_apps.store`) and must allow the domain asked (every served domain for ``"*"``) in the scope asked
(``read``, or ``admin`` for reload): 401 without a valid key, 403 outside its domains or scope, 503 when the
database cannot check it. With ``ServeConfig.auth`` off every request passes, with no key.
"""
from .responses import HTTPError


def make_authorize(state, cfg, store):
    """Return ``authorize(domain, request, scope="read")`` for the service of ``state`` (its served domains),
    ``cfg`` (auth on or off) and ``store`` (the API keys)."""
    from fastapi import Request

    def authorize(domain: str, request: Request, scope: str = "read"):
        """Return the caller's key (None with auth off); HTTPError 401 / 403 otherwise. ``domain`` "*" means
        every served domain."""
        if not cfg.auth:
            return None
        header = request.headers.get("authorization", "")
        token = header[7:].strip() if header.lower().startswith("bearer ") else request.headers.get("x-api-key")
        if not token:
            raise HTTPError(401, "no API key", "send 'Authorization: Bearer <token>' (create one with "
                                                "'lepton-apps keys create NAME --domains …')")
        try:
            key = store.verify(token)
        except Exception as exc:  # noqa: BLE001 - the database is down: the key cannot be checked
            raise HTTPError(503, f"the API key cannot be checked: the service database is unavailable "
                                  f"({type(exc).__name__})", "retry when GET /readyz answers 200") from None
        if key is None:
            raise HTTPError(401, "unknown or revoked API key", "ask for a new key ('lepton-apps keys list' "
                                                                "shows the active ones)")
        for d in (list(state.refs) if domain == "*" else [domain]):
            if not key.allows(d, scope):
                raise HTTPError(403, f"the key {key.name!r} is not allowed to {'use' if scope == 'read' else scope} "
                                      f"{d} (its domains: {', '.join(key.domains)}, scope {key.scope})",
                                 f"use a key created with {d} in --domains" + (" and --scope admin" if scope == "admin"
                                                                               else ""))
        return key

    return authorize
