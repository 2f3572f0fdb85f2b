"""Monitoring samples: what the model saw for a share of served requests (``serve --monitor-sample``), stored
as one JSON payload per request (features column-wise, scores as lists, embeddings as float16 base64 — never
raw inputs). :class:`MonitorSamplesMixin` gives :class:`~lepton_apps.store.Store` ``add_monitor_sample`` and
``monitor_window``, which joins the stored samples back into one window for the drift checks."""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

from .times import _now, _utc


class MonitorSamplesMixin:
    """The monitoring-sample methods of :class:`~lepton_apps.store.Store` (uses its ``engine`` and tables ``t``)."""

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
