"""Outcomes: the labels returned later for served predictions (a chargeback, the radiologist's read, the
agent's resolution), each naming its prediction by the audit row's ``request_id`` (+ the item's position) and/or
a domain key such as finance's transaction id. :class:`OutcomesMixin` gives :class:`~lepton_apps.store.Store`
``add_outcomes`` (checked, one transaction) and ``outcomes_frame``; live metrics join them to the audit log."""
from __future__ import annotations

import datetime as dt
import math
from typing import Any, Sequence

from lepton_apps.errors import DataError

from .times import _now, _utc


class OutcomesMixin:
    """The outcome methods of :class:`~lepton_apps.store.Store` (uses its ``engine`` and tables ``t``)."""

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
