"""The audit log: one :class:`AuditRow` per served request (or batch-scoring run), written by
:meth:`AuditMixin.audit` in one transaction and read back as pandas by ``audit_frame``. It keeps a SHA-256 of
each request (:func:`digest`; :func:`source_digest` for a batch input's files), not its text, unless the
service runs with ``--audit-free-text``."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterable

from .times import _utc


@dataclasses.dataclass
class AuditRow:
    """One served request: who asked which model what (as a digest) and what it answered."""

    request_id: str
    created_at: dt.datetime
    domain: str
    endpoint: str
    model_ref: str
    model_version: str
    key_id: str | None
    status: int
    latency_ms: float
    n_items: int
    input_digest: str
    result: Any = None
    error: str | None = None


def source_digest(source: str | os.PathLike) -> str:
    """Return a SHA-256 over a batch input's files (path, size, modification time) — what the audit log
    keeps of a batch-scoring run's input, without reading the data."""
    h = hashlib.sha256()
    path = Path(source)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        st = f.stat() if f.exists() else None
        h.update(f"{f.resolve()}|{st.st_size if st else -1}|{st.st_mtime_ns if st else -1}\n".encode())
    return h.hexdigest()


def digest(data: bytes) -> str:
    """Return the SHA-256 hex digest of a request body (what the audit log keeps of the input)."""
    return hashlib.sha256(data).hexdigest()


class AuditMixin:
    """The audit-log methods of :class:`~lepton_apps.store.Store` (uses its ``engine`` and tables ``t``)."""

    def audit(self, rows: Iterable[AuditRow]) -> None:
        """Write audit rows in one transaction (all or none)."""
        values = [{**dataclasses.asdict(r), "result": None if r.result is None else json.dumps(r.result, allow_nan=False,
                                                                                              default=str)}
                  for r in rows]
        if values:
            with self.engine.begin() as conn:
                conn.execute(self.t.audit.insert(), values)

    def audit_frame(self, since: dt.datetime | None = None, until: dt.datetime | None = None, domain: str | None = None):
        """Return the audit rows (pandas), oldest first, optionally from ``since`` / before ``until`` / one domain."""
        import pandas as pd
        import sqlalchemy as sa

        a = self.t.audit
        q = sa.select(a).order_by(a.c.created_at, a.c.request_id)
        if since is not None:
            q = q.where(a.c.created_at >= _utc(since))
        if until is not None:
            q = q.where(a.c.created_at < _utc(until))
        if domain is not None:
            q = q.where(a.c.domain == domain)
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        cols = [c.name for c in a.columns]
        return pd.DataFrame([dict(r) for r in rows], columns=cols)
