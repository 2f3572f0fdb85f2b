"""The audit row of the HTTP service: :func:`make_write_audit` returns ``write_audit``, which writes one
:class:`~lepton_apps.store.AuditRow` for a request to a model endpoint (request id, domain, endpoint, model
reference and version, key, status, latency, number of items, input digest, and what is kept of the answer: the
predictions' audit form, finance's online score, a reload or feedback body, or only that an explanation was
given) and returns why when it cannot. ``timed`` (:mod:`lepton_apps.serve.handling`) writes it before a 200 is
sent.
"""
from lepton_apps.store import digest


def make_write_audit(state, store):
    """Return ``write_audit(request_id, domain, endpoint, request, key, status, seconds, body)``, which writes the
    row of a request to the models of ``state`` into ``store`` (:class:`lepton_apps.store.Store`)."""

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

    return write_audit
