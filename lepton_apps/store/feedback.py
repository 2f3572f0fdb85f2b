"""Answer feedback: a user's +1 / -1 rating of an answer, kept with the question and answer as text (rated on
purpose, unlike the audit log's digests: the data a fine-tuning run needs); ``request_id`` links it to the
audit row of the answer when the answer came from the service. :class:`FeedbackMixin` gives
:class:`~lepton_apps.store.Store` ``add_feedback``, ``feedback_frame`` and ``import_feedback`` (ratings kept
elsewhere, added exactly once per source even with two processes at once)."""
from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

from lepton_apps.errors import DataError

from .times import _now, _utc


class FeedbackMixin:
    """The feedback methods of :class:`~lepton_apps.store.Store` (uses its ``engine`` and tables ``t``)."""

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
