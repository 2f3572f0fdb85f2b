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
(``lepton_apps/store/migrations``, mirrored by ``schema.py``); :meth:`Store.open` runs them to the newest
revision.

Modules: ``core.py`` (:class:`Store`: URL, engine, migrations) composes one mixin per concern: ``keys.py``,
``audit.py``, ``outcomes.py``, ``monitor_samples.py``, ``feedback.py``, ``candidates.py`` (``times.py``: naive
UTC). This package face re-exports the names the rest of the project imports.

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

from .audit import AuditRow, digest, source_digest
from .core import DB_ENV, Store, configured_url, default_url, safe_url

__all__ = ["Store", "AuditRow", "DB_ENV", "configured_url", "default_url", "safe_url", "source_digest", "digest"]
