"""One database for the service: API keys, the audit log and answer feedback (SQLAlchemy; SQLite by default,
PostgreSQL by URL).

::

    store = Store.open()                         # $LEPTON_DB_URL, else sqlite:///$LEPTON_HOME/lepton.db (WAL)
    key, token = store.create_key("triage-app", domains=["medical"], scope="read")   # token shown once
    store.verify(token)                          # -> ApiKey, or None (unknown / revoked)
    store.audit([AuditRow(...)])                 # one row per served request, in one transaction
    store.audit_frame(since=...)                 # pandas, for `lepton-apps audit export`
    store.add_feedback("my card was stolen", "Freeze the card…", "lost-card", 1, "support-demo@3f2a")
    store.feedback_frame(since=...)              # pandas, oldest first

The schema is created and upgraded by Alembic migrations shipped in the package
(``lepton_apps/store/migrations``); :meth:`Store.open` runs them to the newest revision.

Keys: a token is ``lk_<key id>_<secret>`` with 32 random bytes of secret; only the SHA-256 of the
secret is stored (a random 256-bit secret needs no slow password hash), compared in constant time.
Each key has a set of domains (or ``*``) and a scope: ``read`` (predict, explain) or ``admin``
(also reload).

Free text: the audit log keeps a SHA-256 of each request, not its text (unless the service runs with
``--audit-free-text``). A feedback row is different: the user rated an answer on purpose, so it keeps the
question and answer as text (the data a fine-tuning run needs); ``request_id`` links it to the audit row of
the answer when the answer came from the service.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import hmac
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterable, Sequence

from lepton_apps.errors import ConfigError, DataError, LeptonError

DB_ENV = "LEPTON_DB_URL"
SCOPES = ("read", "admin")
TOKEN_PREFIX = "lk_"


@dataclasses.dataclass(frozen=True)
class ApiKey:
    """A stored API key (never its secret)."""

    id: str
    name: str
    domains: tuple[str, ...]
    scope: str
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def allows(self, domain: str, scope: str = "read") -> bool:
        """True when the key may use ``domain`` with ``scope`` (admin includes read)."""
        in_domain = "*" in self.domains or domain in self.domains
        return self.active and in_domain and (scope == "read" or self.scope == "admin")


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


def default_url(home: str | os.PathLike | None = None, *, create: bool = True) -> str:
    """Return ``$LEPTON_DB_URL``, else a SQLite file ``lepton.db`` in the registry folder ($LEPTON_HOME),
    whose folder is created unless ``create`` is False."""
    from lepton_apps.registry import Registry

    url = os.environ.get(DB_ENV)
    if url:
        return url
    folder = Registry(home).home
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(folder).resolve() / 'lepton.db'}"


def configured_url(home: str | os.PathLike | None = None) -> str | None:
    """Return the service database URL when one is configured (``LEPTON_DB_URL``, or an existing
    ``lepton.db`` in the registry folder), else None. Never creates one."""
    from lepton_apps.registry import Registry

    if os.environ.get(DB_ENV):
        return os.environ[DB_ENV]
    path = Registry(home).home / "lepton.db"
    return f"sqlite:///{path.resolve()}" if path.is_file() else None


def safe_url(url: str) -> str:
    """Return ``url`` with its password replaced by ``***`` (for messages and pages)."""
    import re

    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", url)


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


class Store:
    """API keys and the audit log in one database (see the module docstring)."""

    def __init__(self, engine):
        from . import schema

        self.engine = engine
        self.t = schema

    @classmethod
    def open(cls, url: str | None = None, *, home: str | os.PathLike | None = None, migrate: bool = True) -> Store:
        """Connect to ``url`` (default :func:`default_url`) and bring its schema to the newest revision."""
        from lepton_apps.errors import require

        sa = require("sqlalchemy", feature="The service database")
        require("alembic", feature="The service database")
        url = url or default_url(home)
        kwargs: dict[str, Any] = {"future": True}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
        try:
            engine = sa.create_engine(url, **kwargs)
        except Exception as exc:  # noqa: BLE001 - a bad URL or a missing driver
            raise ConfigError(f"cannot use the database URL {safe_url(url)!r}: {exc}", where=DB_ENV,
                              fix="use sqlite:///path/lepton.db or postgresql+psycopg://user:pass@host/db "
                                  "(pip install 'psycopg[binary]')") from None
        if url.startswith("sqlite"):
            sa.event.listen(engine, "connect", _sqlite_pragmas)
        store = cls(engine)
        if migrate:
            store.migrate()
        return store

    def migrate(self) -> None:
        """Run the Alembic migrations up to the newest revision (idempotent)."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
        try:
            with self.engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except Exception as exc:  # noqa: BLE001
            raise LeptonError(f"cannot prepare the database {safe_url(str(self.engine.url))}: {type(exc).__name__}: {exc}",
                              where=DB_ENV, fix="check that the database server is running and the URL, user and "
                                                "password are right") from None

    def ping(self) -> str | None:
        """Return None when the database answers, else why not (for /readyz)."""
        import sqlalchemy as sa

        try:
            with self.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return None
        except Exception as exc:  # noqa: BLE001
            return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"

    # -- keys ---------------------------------------------------------------------------
    def create_key(self, name: str, domains: Sequence[str], scope: str = "read") -> tuple[ApiKey, str]:
        """Create a key; return it and its token (shown once, never stored). Raises ConfigError for a used
        name, an unknown scope or no domains."""
        import sqlalchemy as sa

        if scope not in SCOPES:
            raise ConfigError(f"unknown scope {scope!r}", where="keys create --scope", fix=f"use one of {SCOPES}")
        domains = tuple(sorted({d.strip() for d in domains if d.strip()}))
        if not domains:
            raise ConfigError("a key needs at least one domain", where="keys create --domains",
                              fix="e.g. --domains medical,finance, or --domains '*' for all")
        if not name or len(name) > 100:
            raise ConfigError(f"invalid key name {name!r}", where="keys create NAME", fix="use 1-100 characters")
        key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        now = _now()
        with self.engine.begin() as conn:
            if conn.execute(sa.select(self.t.api_keys.c.id).where(self.t.api_keys.c.name == name)).first():
                raise ConfigError(f"a key named {name!r} exists already", where="keys create NAME",
                                  fix="choose another name, or revoke the old key first (names stay taken)")
            conn.execute(self.t.api_keys.insert().values(
                id=key_id, name=name, secret_sha256=_hash(secret), domains=",".join(domains), scope=scope,
                created_at=now, revoked_at=None))
        return ApiKey(key_id, name, domains, scope, now, None), f"{TOKEN_PREFIX}{key_id}_{secret}"

    def keys(self) -> list[ApiKey]:
        """Return every key (active and revoked), oldest first."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(self.t.api_keys).order_by(self.t.api_keys.c.created_at)).mappings().all()
        return [_key(r) for r in rows]

    def revoke_key(self, name: str) -> ApiKey:
        """Revoke the key called ``name``; return it. Raises ConfigError for an unknown name."""
        import sqlalchemy as sa

        keys = self.t.api_keys
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(keys).where(keys.c.name == name)).mappings().first()
            if row is None:
                raise ConfigError(f"no key named {name!r}", where="keys revoke NAME",
                                  fix="see the names with 'lepton-apps keys list'")
            if row["revoked_at"] is None:
                conn.execute(keys.update().where(keys.c.id == row["id"]).values(revoked_at=_now()))
            row = conn.execute(sa.select(keys).where(keys.c.id == row["id"])).mappings().first()
        return _key(row)

    def verify(self, token: str | None) -> ApiKey | None:
        """Return the active key a token belongs to, or None (malformed, unknown, wrong secret or revoked)."""
        import sqlalchemy as sa

        if not token or not token.startswith(TOKEN_PREFIX) or token.count("_") < 2:
            return None
        key_id, _, secret = token[len(TOKEN_PREFIX):].partition("_")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.t.api_keys).where(self.t.api_keys.c.id == key_id)).mappings().first()
        if row is None or not hmac.compare_digest(row["secret_sha256"], _hash(secret)):
            return None
        key = _key(row)
        return key if key.active else None

    # -- audit --------------------------------------------------------------------------
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

    # -- feedback -----------------------------------------------------------------------
    def add_feedback(self, question: str, answer: str, faq_id: str | None, rating: int, model_version: str,
                     confidence: float | None = None, handoff: bool = False, request_id: str | None = None) -> int:
        """Store one rating of an answer (+1 thumbs up, -1 thumbs down); return its row id. Raises DataError for
        a rating other than +1 / -1 or a value of the wrong type."""
        values = _feedback_values(question, answer, faq_id, rating, model_version, confidence, handoff, request_id,
                                  time=_now(), where="feedback")
        with self.engine.begin() as conn:
            return int(conn.execute(self.t.feedback.insert().values(**values)).inserted_primary_key[0])

    def feedback_frame(self, since: dt.datetime | None = None):
        """Return the ratings (pandas: id, time as naive UTC, question, answer, faq_id, confidence, handoff,
        rating, model_version, request_id), oldest first, optionally only those from ``since`` on."""
        import pandas as pd
        import sqlalchemy as sa

        f = self.t.feedback
        q = sa.select(f).order_by(f.c.time, f.c.id)
        if since is not None:
            q = q.where(f.c.time >= _utc(since))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in f.columns])

    def import_feedback(self, rows: Sequence[dict[str, Any]], source: str) -> int:
        """Add ratings kept elsewhere (dicts with the :meth:`add_feedback` fields, ``time`` and the source's own
        integer ``id``) exactly once per ``source``: only rows with an id above the highest one recorded for
        ``source`` are added, in the same transaction as the new record, so a second call (or a second process
        at the same moment) adds nothing. Return how many rows were added. Raises DataError for an invalid row
        (nothing is added then)."""
        import sqlalchemy as sa

        imports = self.t.feedback_imports
        values = {}
        for row in rows:
            where = f"{source}, row id {row.get('id')!r}"
            if not isinstance(row.get("id"), int) or isinstance(row.get("id"), bool):
                raise DataError(f"a feedback row has no integer id ({row.get('id')!r})", where=where,
                                fix="give every row its integer id")
            values[row["id"]] = _feedback_values(
                row.get("question"), row.get("answer"), row.get("faq_id"), row.get("rating"), row.get("model_version"),
                row.get("confidence"), row.get("handoff", False), row.get("request_id"), time=row.get("time"),
                where=where)
        try:
            with self.engine.begin() as conn:
                last = conn.execute(sa.select(imports.c.last_id).where(imports.c.source == source)).scalar()
                new = sorted(i for i in values if last is None or i > last)
                if not new:
                    return 0
                if last is None:
                    try:
                        conn.execute(imports.insert().values(source=source, last_id=new[-1], rows=len(new),
                                                             imported_at=_now()))
                    except sa.exc.IntegrityError:
                        raise _ImportedMeanwhile from None
                else:
                    done = conn.execute(imports.update().where(imports.c.source == source, imports.c.last_id == last)
                                        .values(last_id=new[-1], rows=imports.c.rows + len(new), imported_at=_now()))
                    if done.rowcount != 1:
                        raise _ImportedMeanwhile
                conn.execute(self.t.feedback.insert(), [values[i] for i in new])
            return len(new)
        except _ImportedMeanwhile:
            return 0


class _ImportedMeanwhile(Exception):
    """Another process imported the same source while this one was importing it."""


def _feedback_values(question, answer, faq_id, rating, model_version, confidence, handoff, request_id, *,
                     time, where: str) -> dict[str, Any]:
    """Return the checked column values of one feedback row; raise DataError naming the bad field."""
    import math
    import numbers

    if isinstance(rating, bool) or rating not in (-1, 1):
        raise DataError(f"rating must be +1 or -1, got {rating!r}", where=where,
                        fix="pass 1 (thumbs up) or -1 (thumbs down)")
    for name, value, optional in (("question", question, False), ("answer", answer, False),
                                  ("model_version", model_version, False), ("faq_id", faq_id, True),
                                  ("request_id", request_id, True)):
        if not (isinstance(value, str) or (optional and value is None)):
            raise DataError(f"feedback {name} must be text{' or None' if optional else ''}, got "
                            f"{type(value).__name__} {value!r}"[:300], where=where, fix=f"pass {name} as a string")
    if not model_version.strip():
        raise DataError("feedback model_version is empty", where=where,
                        fix="pass the model_version of the answer that was rated")
    if request_id is not None and len(request_id) > 64:
        raise DataError(f"request_id is longer than 64 characters ({len(request_id)})", where=where,
                        fix="pass the x-request-id of the service's answer")
    if confidence is not None:
        if isinstance(confidence, bool) or not isinstance(confidence, numbers.Real) or not math.isfinite(confidence):
            raise DataError(f"confidence must be a finite number or None, got {confidence!r}", where=where,
                            fix="pass the answer's confidence (0..1), or None")
        confidence = float(confidence)
    if not isinstance(time, dt.datetime):
        raise DataError(f"feedback time must be a datetime, got {time!r}", where=where,
                        fix="give the UTC time of the rating")
    return {"time": _utc(time), "question": question, "answer": answer, "faq_id": faq_id,
            "confidence": confidence, "handoff": bool(handoff), "rating": int(rating),
            "model_version": model_version, "request_id": request_id}


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")   # readers never block the writer; a killed writer leaves no partial rows
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # stored as naive UTC in every database


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t


def _key(row) -> ApiKey:
    return ApiKey(row["id"], row["name"], tuple(row["domains"].split(",")), row["scope"], row["created_at"],
                  row["revoked_at"])


