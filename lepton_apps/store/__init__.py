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
import math
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

    # -- outcomes (labels returned for served predictions) --------------------------------
    def add_outcomes(self, domain: str, rows: Sequence[dict[str, Any]], source: str) -> int:
        """Store outcomes for served predictions of ``domain`` (one transaction): each row names its prediction by
        ``request_id`` (+ ``item``, its position in the request, default 0) and/or by ``key`` (e.g. finance's
        transaction id) and gives its ``label`` as text. Return how many were stored. Raises DataError naming
        the first bad row (nothing is stored then)."""
        now = _now()
        values = []
        for i, row in enumerate(rows):
            where = f"{source}, outcome {i + 1}"
            request_id, key, label = row.get("request_id"), row.get("key"), row.get("label")
            request_id = None if request_id is None or str(request_id).strip() in ("", "nan") else str(request_id).strip()
            key = None if key is None or str(key).strip() in ("", "nan") else str(key).strip()
            if request_id is None and key is None:
                raise DataError("an outcome names no prediction (no request_id and no key)", where=where,
                                fix="give the request_id from the answer's x-request-id header (and the item's "
                                    "position), or the key the domain matches on (finance: transaction_id)")
            if label is None or (isinstance(label, float) and math.isnan(label)) or str(label).strip() == "":
                raise DataError("an outcome has no label", where=where, fix="give the observed outcome in 'label'")
            item = row.get("item")
            if item is not None and not (isinstance(item, float) and math.isnan(item)):
                try:
                    item = int(item)
                except (TypeError, ValueError):
                    raise DataError(f"item must be the prediction's position in its request, got {item!r}",
                                    where=where, fix="use 0 for the first item") from None
                if item < 0:
                    raise DataError(f"item must be 0 or more, got {item}", where=where, fix="use 0 for the first item")
            else:
                item = 0 if request_id is not None else None
            if request_id is not None and len(request_id) > 64:
                raise DataError("request_id is longer than 64 characters", where=where,
                                fix="copy it from the answer's x-request-id header")
            values.append({"domain": domain, "request_id": request_id, "item": item,
                           "key": None if key is None else key[:400], "label": str(label).strip()[:400],
                           "received_at": now, "source": source[:400]})
        if values:
            with self.engine.begin() as conn:
                conn.execute(self.t.outcomes.insert(), values)
        return len(values)

    def outcomes_frame(self, domain: str | None = None, since: dt.datetime | None = None):
        """Return the stored outcomes (pandas), oldest first, optionally of one domain / received from ``since``."""
        import pandas as pd
        import sqlalchemy as sa

        o = self.t.outcomes
        q = sa.select(o).order_by(o.c.received_at, o.c.id)
        if domain is not None:
            q = q.where(o.c.domain == domain)
        if since is not None:
            q = q.where(o.c.received_at >= _utc(since))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        return pd.DataFrame([dict(r) for r in rows], columns=[c.name for c in o.columns])

    # -- monitoring samples (what the model saw for a share of served requests) ------------
    def add_monitor_sample(self, domain: str, request_id: str, model_version: str, window) -> None:
        """Store the monitoring window (:class:`lepton_apps.predictor.MonitorWindow`) of one served request:
        features as records, scores as lists, embeddings as float16 base64 — never raw inputs."""
        import base64

        import numpy as np
        import pandas as pd

        features = window.features
        scores = window.scores
        if scores is not None and not isinstance(scores, dict):
            scores = {"score": scores}
        payload: dict[str, Any] = {  # features column-wise ({name: [values]}: a long window reads back fast)
            "features": ({str(c): json.loads(features[c].to_json(orient="values")) for c in features.columns}
                         if isinstance(features, pd.DataFrame) else None),
            "scores": {k: [float(x) if np.isfinite(x) else None for x in np.asarray(v, dtype=float)]
                       for k, v in (scores or {}).items()},
            "unreadable": int(window.unreadable)}
        emb = window.embeddings
        if emb is not None and len(emb):
            arr = np.ascontiguousarray(np.asarray(emb, dtype=np.float16))
            payload["embeddings"] = {"shape": list(arr.shape), "float16_base64": base64.b64encode(arr.tobytes()).decode()}
        n = len(features) if isinstance(features, pd.DataFrame) else int(window.unreadable)
        with self.engine.begin() as conn:
            conn.execute(self.t.monitor_samples.insert().values(
                request_id=request_id[:64], domain=domain, model_version=model_version[:400], created_at=_now(),
                n_items=int(n), payload=json.dumps(payload, allow_nan=False)))

    def monitor_window(self, domain: str, since: dt.datetime | None = None, model_version: str | None = None):
        """Return the stored monitoring samples of ``domain`` (from ``since``; one model version) joined into one
        window: (features DataFrame or None, {score: array}, embeddings array or None, unreadable, requests)."""
        import base64

        import numpy as np
        import pandas as pd
        import sqlalchemy as sa

        m = self.t.monitor_samples
        q = sa.select(m.c.payload).where(m.c.domain == domain).order_by(m.c.created_at, m.c.id)
        if since is not None:
            q = q.where(m.c.created_at >= _utc(since))
        if model_version is not None:
            q = q.where(m.c.model_version == model_version)
        with self.engine.connect() as conn:
            payloads = [json.loads(r[0]) for r in conn.execute(q)]
        columns: dict[str, list] = {}  # every sample's features appended column by column (one DataFrame at the end)
        rows, scores, embs, unreadable = 0, {}, [], 0
        for p in payloads:
            feats = p.get("features")
            if isinstance(feats, list):  # the first format: one record per item
                feats = pd.DataFrame(feats).to_dict("list") if feats else None
            if feats:
                n = len(next(iter(feats.values())))
                for name, values in feats.items():
                    if name not in columns:  # a column the earlier samples lacked
                        columns[name] = [None] * rows
                    columns[name].extend(values)
                rows += n
                for values in columns.values():  # a column this sample lacks
                    if len(values) < rows:
                        values.extend([None] * (rows - len(values)))
            for k, v in p.get("scores", {}).items():
                scores.setdefault(k, []).extend(v)
            if p.get("embeddings"):
                e = p["embeddings"]
                embs.append(np.frombuffer(base64.b64decode(e["float16_base64"]), dtype=np.float16)
                            .reshape(e["shape"]).astype(np.float32))
            unreadable += int(p.get("unreadable", 0))
        features = pd.DataFrame({name: pd.Series(values) for name, values in columns.items()}) if rows else None
        return (features, {k: np.asarray(v, dtype=float) for k, v in scores.items()},
                np.vstack(embs) if embs else None, unreadable, len(payloads))

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

    # -- candidates (support loop: reviewed paraphrases for the knowledge base) ------------
    CANDIDATE_STATUSES = ("pending", "accepted", "rejected", "applied")

    def add_candidates(self, rows: Sequence[dict[str, Any]], domain: str = "support") -> int:
        """Store candidate paraphrases (dicts with question, source, reason and optional proposed_faq_id,
        answered_faq_id, model_version) as ``pending``, skipping any whose ``source`` is stored already (also
        one stored by another process meanwhile); return how many were added. Raises DataError naming the
        first row without a question or a source (nothing is stored then)."""
        import sqlalchemy as sa

        c = self.t.candidates
        now = _now()
        values = {}
        for i, row in enumerate(rows):
            question, source = str(row.get("question") or "").strip(), str(row.get("source") or "").strip()
            if not question or not source:
                raise DataError(f"candidate {i + 1} has no {'question' if not question else 'source'}",
                                where="add_candidates", fix="give every candidate its question text and its source")
            values.setdefault(source[:400], {
                "created_at": now, "domain": domain, "question": question, "source": source[:400],
                "proposed_faq_id": _short(row.get("proposed_faq_id")), "reason": str(row.get("reason") or "")[:64],
                "answered_faq_id": _short(row.get("answered_faq_id")), "model_version": _short(row.get("model_version")),
                "status": "pending", "faq_id": _short(row.get("proposed_faq_id"))})
        if not values:
            return 0
        for attempt in range(3):   # another process may add one of the same sources meanwhile: read again, retry
            try:
                with self.engine.begin() as conn:
                    known = set(conn.execute(sa.select(c.c.source).where(c.c.source.in_(list(values)))).scalars())
                    new = [v for s, v in values.items() if s not in known]
                    if new:
                        conn.execute(c.insert(), new)
                return len(new)
            except sa.exc.IntegrityError:
                if attempt == 2:
                    raise
        return 0

    def candidates_frame(self, status: str | Sequence[str] | None = None, domain: str = "support"):
        """Return the candidate paraphrases of ``domain`` (pandas, oldest first; unset text fields are None),
        optionally only those with ``status`` (one or several of pending, accepted, rejected, applied)."""
        import pandas as pd
        import sqlalchemy as sa

        c = self.t.candidates
        q = sa.select(c).where(c.c.domain == domain).order_by(c.c.created_at, c.c.id)
        if status is not None:
            wanted = [status] if isinstance(status, str) else list(status)
            bad = [s for s in wanted if s not in self.CANDIDATE_STATUSES]
            if bad:
                raise ConfigError(f"unknown candidate status {bad[0]!r}", where="candidates status",
                                  fix=f"use one of {', '.join(self.CANDIDATE_STATUSES)}")
            q = q.where(c.c.status.in_(wanted))
        with self.engine.connect() as conn:
            rows = conn.execute(q).mappings().all()
        frame = pd.DataFrame([dict(r) for r in rows], columns=[col.name for col in c.columns])
        for col in ("proposed_faq_id", "answered_faq_id", "model_version", "faq_id", "decided_by", "applied_version"):
            frame[col] = frame[col].astype(object).where(frame[col].notna(), None)   # None, never NaN, when unset
        return frame

    def decide_candidate(self, candidate_id: int, decision: str, by: str, faq_id: str | None = None) -> dict[str, Any]:
        """Record a reviewer's decision on a pending or accepted candidate: ``accept`` (its proposed FAQ, or
        ``faq_id`` when given), ``assign`` (to ``faq_id``, required) or ``reject``; with who (``by``) and when.
        Return the updated row. Raises ConfigError for an unknown id or decision, a missing ``faq_id`` or
        reviewer, or a candidate already applied to a bundle."""
        import sqlalchemy as sa

        c = self.t.candidates
        where = f"candidate {candidate_id}"
        if decision not in ("accept", "assign", "reject"):
            raise ConfigError(f"unknown decision {decision!r}", where=where, fix="use accept, assign or reject")
        if not str(by or "").strip():
            raise ConfigError("a decision needs the reviewer's name", where=where, fix="pass by='your name'")
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(c).where(c.c.id == int(candidate_id))).mappings().first()
            if row is None:
                raise ConfigError(f"no candidate with id {candidate_id}", where="candidates",
                                  fix="list them with 'lepton-apps support review list'")
            if row["status"] == "applied":
                raise ConfigError(f"{where} was applied to {row['applied_version']} already", where=where,
                                  fix="decisions change only pending, accepted or rejected candidates")
            target = faq_id if decision == "assign" or faq_id else row["proposed_faq_id"]
            if decision != "reject" and not target:
                raise ConfigError(f"{where} has no proposed FAQ", where=where,
                                  fix="assign it to a FAQ id of the knowledge base (decision 'assign' with faq_id)")
            values = {"status": "rejected" if decision == "reject" else "accepted", "decided_by": str(by).strip()[:100],
                      "decided_at": _now(), "faq_id": row["faq_id"] if decision == "reject" else str(target)[:400]}
            conn.execute(c.update().where(c.c.id == row["id"]).values(**values))
            return dict(conn.execute(sa.select(c).where(c.c.id == row["id"])).mappings().first())

    def mark_candidates_applied(self, ids: Sequence[int], model_version: str) -> int:
        """Mark accepted candidates ``ids`` as applied to the bundle ``model_version``; return how many changed
        (candidates that are no longer accepted are left as they are)."""
        c = self.t.candidates
        if not ids:
            return 0
        with self.engine.begin() as conn:
            done = conn.execute(c.update().where(c.c.id.in_([int(i) for i in ids]), c.c.status == "accepted")
                                .values(status="applied", applied_version=model_version[:400], applied_at=_now()))
        return int(done.rowcount)


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


def _short(value: Any, n: int = 400) -> str | None:
    """Return ``value`` as text of at most ``n`` characters, or None for None / NaN / empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    return str(value).strip()[:n]

