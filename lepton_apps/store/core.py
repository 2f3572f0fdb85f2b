"""The :class:`Store` itself: where the database is (``$LEPTON_DB_URL``, else ``lepton.db`` in the registry
folder: :func:`default_url`, :func:`configured_url`; :func:`safe_url` hides a password), the engine it opens
(SQLite in WAL mode by default, PostgreSQL by URL), the Alembic migrations it runs to the newest revision, and
``ping`` for readiness. Each concern's methods come from the mixin of its own module (keys, audit, outcomes,
monitor_samples, feedback, candidates), composed here."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lepton_apps.errors import ConfigError, LeptonError

from .audit import AuditMixin
from .candidates import CandidatesMixin
from .feedback import FeedbackMixin
from .keys import KeysMixin
from .monitor_samples import MonitorSamplesMixin
from .outcomes import OutcomesMixin

DB_ENV = "LEPTON_DB_URL"


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


class Store(KeysMixin, AuditMixin, OutcomesMixin, MonitorSamplesMixin, FeedbackMixin, CandidatesMixin):
    """API keys, the audit log, outcomes, monitoring samples, feedback and candidates in one database
    (see :mod:`lepton_apps.store`)."""

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


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")   # readers never block the writer; a killed writer leaves no partial rows
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()
