"""Thumbs-up / thumbs-down feedback on answers, stored in SQLite (stdlib ``sqlite3``).

The database path comes from the caller, ``$LEPTON_SUPPORT_FEEDBACK``, or
``$LEPTON_HOME/support_feedback.sqlite``. Each row keeps the question, the answer, the FAQ id,
the model version, the rating and the UTC time, and the table exports as CSV for fine-tuning.
"""
from __future__ import annotations

import datetime as _dt
import os
import sqlite3
from pathlib import Path

import pandas as pd

from lepton_apps.errors import DataError

SCHEMA = """CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time TEXT NOT NULL,
    question TEXT NOT NULL,
    answer TEXT NOT NULL,
    faq_id TEXT,
    confidence REAL,
    handoff INTEGER NOT NULL,
    rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),
    model_version TEXT NOT NULL
)"""
COLUMNS = ["id", "time", "question", "answer", "faq_id", "confidence", "handoff", "rating", "model_version"]


def default_feedback_path() -> Path:
    """Return ``$LEPTON_SUPPORT_FEEDBACK`` or ``$LEPTON_HOME/support_feedback.sqlite`` (default ./lepton_models)."""
    if os.environ.get("LEPTON_SUPPORT_FEEDBACK"):
        return Path(os.environ["LEPTON_SUPPORT_FEEDBACK"]).expanduser()
    return Path(os.environ.get("LEPTON_HOME") or "lepton_models").expanduser() / "support_feedback.sqlite"


class FeedbackStore:
    """A small SQLite table of rated answers; every call opens its own connection (thread-safe)."""

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path).expanduser() if path else default_feedback_path()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._connect() as db:
                db.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise DataError(f"cannot open the feedback database ({exc})", where=str(self.path),
                            fix="choose a writable path for the feedback database") from None

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    def add(self, question: str, answer: str, faq_id: str | None, rating: int, model_version: str,
            confidence: float | None = None, handoff: bool = False) -> int:
        """Store one rating (+1 thumbs up, -1 thumbs down); return the row id."""
        if rating not in (-1, 1):
            raise DataError(f"rating must be +1 or -1, got {rating!r}", where="feedback", fix="pass 1 or -1")
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        with self._connect() as db:
            cur = db.execute("INSERT INTO feedback (time, question, answer, faq_id, confidence, handoff, rating, model_version) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                             (now, question, answer, faq_id, confidence, int(bool(handoff)), rating, model_version))
            return int(cur.lastrowid)

    def frame(self) -> pd.DataFrame:
        """Return every stored rating, newest first."""
        with self._connect() as db:
            rows = db.execute(f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY id DESC").fetchall()
        return pd.DataFrame(rows, columns=COLUMNS)

    def to_csv(self) -> str:
        """Return the ratings as CSV text (for download or fine-tuning data)."""
        return self.frame().to_csv(index=False)
