"""Times in the service database: every timestamp is stored as naive UTC (the same in SQLite and PostgreSQL);
``_now`` gives the current one and ``_utc`` turns an aware datetime into one (a naive one is taken as UTC
already), for the store's inserts and its ``since`` / ``until`` filters."""
from __future__ import annotations

import datetime as dt


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # stored as naive UTC in every database


def _utc(t: dt.datetime) -> dt.datetime:
    return t.astimezone(dt.timezone.utc).replace(tzinfo=None) if t.tzinfo else t
