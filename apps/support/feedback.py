"""Thumbs-up / thumbs-down feedback on answers, kept in the service database (:mod:`lepton_apps.store`).

Ratings go to the ``feedback`` table of the database that ``lepton-apps serve`` uses for its API keys and
audit log: ``$LEPTON_DB_URL`` (PostgreSQL works), else ``lepton.db`` in the registry folder ($LEPTON_HOME).
Each row keeps the question, the answer, the FAQ id, the confidence, the hand-off flag, the rating, the model
version, the UTC time and, for an answer from the service, the ``request_id`` of its audit row; the table
exports as CSV for fine-tuning.

Free text: the audit log keeps only a SHA-256 of a request (unless ``--audit-free-text``), but a rating is the
user's deliberate act, so its row keeps the question and the answer as text.

Earlier versions kept the ratings in a SQLite file of their own (``$LEPTON_SUPPORT_FEEDBACK``, default
``$LEPTON_HOME/support_feedback.sqlite``). The first :class:`FeedbackStore` that finds such a file imports its
rows into the database (all or none; the database records the file and the highest row id taken, so no row
is imported twice) and renames the file to ``support_feedback.sqlite.imported``.
"""
from __future__ import annotations

import datetime as _dt
import logging
import os
import sqlite3
import threading
from pathlib import Path

import pandas as pd

from lepton_apps.errors import ConfigError, DataError

LEGACY_ENV = "LEPTON_SUPPORT_FEEDBACK"
LEGACY_NAME = "support_feedback.sqlite"
COLUMNS = ["id", "time", "question", "answer", "faq_id", "confidence", "handoff", "rating", "model_version",
           "request_id"]
_LEGACY_COLUMNS = COLUMNS[:-1]

log = logging.getLogger(__name__)


def legacy_feedback_path(home: str | os.PathLike | None = None) -> Path:
    """Return the feedback file of earlier versions: ``$LEPTON_SUPPORT_FEEDBACK``, else
    ``support_feedback.sqlite`` in the registry folder (``home`` or $LEPTON_HOME, default ./lepton_models)."""
    from lepton_apps.registry import Registry

    if os.environ.get(LEGACY_ENV):
        return Path(os.environ[LEGACY_ENV]).expanduser()
    return Registry(home).home.expanduser() / LEGACY_NAME


def read_legacy_feedback(path: str | os.PathLike) -> list[dict]:
    """Return the rows of an earlier version's feedback file (dicts with ``time`` as a UTC datetime), in id
    order; an empty list for an empty file. Raises DataError for a file that is not such a database."""
    path = Path(path)
    fix = f"move {path.name} out of the way if it is not an old Lepton feedback file, or set {LEGACY_ENV}"
    try:
        with sqlite3.connect(f"file:{path.resolve()}?mode=ro", uri=True, timeout=10) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                return []
            if "feedback" not in tables:
                raise DataError(f"the old feedback file has no 'feedback' table (tables: {sorted(tables)})",
                                where=str(path), fix=fix)
            rows = db.execute(f"SELECT {', '.join(_LEGACY_COLUMNS)} FROM feedback ORDER BY id").fetchall()
    except sqlite3.Error as exc:
        raise DataError(f"cannot read the old feedback file ({exc})", where=str(path), fix=fix) from None
    out = []
    for values in rows:
        row = dict(zip(_LEGACY_COLUMNS, values))
        try:
            t = _dt.datetime.fromisoformat(str(row["time"]))
        except ValueError:
            raise DataError(f"row id {row['id']} has an unreadable time {row['time']!r}", where=str(path),
                            fix="correct the time (ISO 8601, UTC) of that row, then open the page again") from None
        row["time"] = t if t.tzinfo else t.replace(tzinfo=_dt.timezone.utc)
        row["handoff"] = bool(row["handoff"])
        out.append(row)
    return out


class FeedbackStore:
    """Rated answers in the service database; safe to share between threads.

    ``store``: an open :class:`lepton_apps.store.Store`; else ``url`` / ``home`` choose the database as
    :meth:`Store.open` does. Without a configured database (no ``LEPTON_DB_URL``, no ``lepton.db`` yet) nothing
    is created until the first rating is stored. ``imported`` counts the rows taken from an old feedback file
    when this object opened the database.
    """

    def __init__(self, store=None, *, url: str | None = None, home: str | os.PathLike | None = None):
        from lepton_apps.store import Store

        if store is not None and not isinstance(store, Store):
            raise ConfigError(f"FeedbackStore takes a lepton_apps.store.Store, got {type(store).__name__} {store!r}",
                              where="FeedbackStore(store=...)",
                              fix="pass url='sqlite:///path/lepton.db' or nothing (the service database); an old "
                                  f"{LEGACY_NAME} file is imported by itself, or name it with ${LEGACY_ENV}")
        self.home, self._url, self._store = home, url, store
        self.legacy_path = legacy_feedback_path(home)
        self.imported = 0
        self._legacy_checked = False
        self._lock = threading.Lock()
        self._db(create=False)

    @property
    def location(self) -> str:
        """Return the database URL, its password hidden (``***``)."""
        from lepton_apps.store import default_url, safe_url

        if self._store is not None:
            return self._store.engine.url.render_as_string(hide_password=True)
        return safe_url(self._url or default_url(self.home, create=False))

    @property
    def opened(self) -> bool:
        """True once the database is open (a configured one opens at once, a new one with the first rating)."""
        return self._store is not None

    def _db(self, create: bool = True):
        """Return the open Store (opening it, and importing an old feedback file, on first use), or None when
        ``create`` is False and no database exists yet."""
        from lepton_apps.store import Store, configured_url

        with self._lock:
            if self._store is None:
                if not (create or self._url or configured_url(self.home) or self.legacy_path.is_file()):
                    return None
                self._store = Store.open(self._url, home=self.home)
            if not self._legacy_checked:
                self._import_legacy()
                self._legacy_checked = True
            return self._store

    def _import_legacy(self) -> None:
        path = self.legacy_path
        if not path.is_file():
            return
        rows = read_legacy_feedback(path)
        self.imported = self._store.import_feedback(rows, source=str(path.resolve()))
        done = path.with_name(path.name + ".imported")
        n = 1
        while done.exists():
            n += 1
            done = path.with_name(f"{path.name}.imported{n}")
        try:
            path.replace(done)
            kept = f"the file is now {done.name}"
        except OSError as exc:
            kept = f"the file stays where it is ({exc}); the database records it, so it is not imported again"
        log.log(logging.WARNING if self.imported else logging.INFO, "imported %d of %d rating(s) from %s into %s; %s",
                self.imported, len(rows), path, self.location, kept)

    def add(self, question: str, answer: str, faq_id: str | None, rating: int, model_version: str,
            confidence: float | None = None, handoff: bool = False, request_id: str | None = None) -> int:
        """Store one rating (+1 thumbs up, -1 thumbs down); return the row id. ``request_id``: the audit row
        of the rated answer when it came from the service. Raises DataError for an invalid rating."""
        return self._db().add_feedback(question, answer, faq_id, rating, model_version, confidence=confidence,
                                       handoff=handoff, request_id=request_id)

    def frame(self) -> pd.DataFrame:
        """Return every stored rating, newest first: ``time`` as ISO 8601 UTC text, ``handoff`` as 0/1 (the
        columns and formats of earlier versions) and ``request_id``."""
        store = self._db(create=False)
        if store is None:
            return pd.DataFrame(columns=COLUMNS)
        df = store.feedback_frame().iloc[::-1].reset_index(drop=True)
        df["time"] = [t.replace(tzinfo=_dt.timezone.utc).isoformat(timespec="seconds") for t in df["time"]]
        df["handoff"] = df["handoff"].astype(int)
        df["rating"] = df["rating"].astype(int)
        return df[COLUMNS]

    def to_csv(self) -> str:
        """Return the ratings as CSV text (for download or fine-tuning data)."""
        return self.frame().to_csv(index=False)
