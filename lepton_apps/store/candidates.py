"""Candidates of the support loop: reviewed paraphrases for the knowledge base (a question a thumbs-down or an
agent's resolution showed the assistant missed, with the FAQ it should answer), stored once per source as
``pending``, then accepted, assigned or rejected by a reviewer and marked ``applied`` by a rebuild.
:class:`CandidatesMixin` gives :class:`~lepton_apps.store.Store` ``add_candidates``, ``candidates_frame``,
``decide_candidate`` and ``mark_candidates_applied``."""
from __future__ import annotations

import math
from typing import Any, Sequence

from lepton_apps.errors import ConfigError, DataError

from .times import _now


class CandidatesMixin:
    """The candidate methods of :class:`~lepton_apps.store.Store` (uses its ``engine`` and tables ``t``)."""

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


def _short(value: Any, n: int = 400) -> str | None:
    """Return ``value`` as text of at most ``n`` characters, or None for None / NaN / empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or str(value).strip() == "":
        return None
    return str(value).strip()[:n]
