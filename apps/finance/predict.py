"""``FraudScorer``: load a bundle, score tables or single transactions, explain the scores.

::

    scorer = FraudScorer.load("finance:latest")
    scored = scorer.score(df)                  # score, decision, reasons, error — one row per input row
    result = scorer.score_one({"timestamp": "2018-06-01 10:00", "customer_id": 7, ...})
    scorer.explain(tx)                         # every feature's TreeSHAP contribution

Batch scoring prepends the bundle's recent history (the per-entity state saved at the end of
training, or updated by ``score_one``) so a transaction gets the same features either way.
"""
from __future__ import annotations

import gc
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pydantic import BaseModel, ConfigDict, Field

from lepton_apps.errors import ConfigError, DataError, LeptonError, require
from lepton_apps.predictor import Evaluation, Explanation, MonitorWindow, PredictRequest, Predictor, Result

from .features import (FeatureSpec, Stream, concat_streams, encode_user_columns, entity_set, feature_matrix,
                       make_stream, missing_columns, missing_columns_message, required_columns, validate_scoring_table)
from .model import REASON_METHODS, predict_threads, reason_texts
from .online import OnlineState, transaction_ids, transaction_vector
from .state import load_state_file, save_state_file


class FraudResult(Result):
    """One transaction's result: ``score`` (P(fraud), NaN — None in ``to_dict()`` — when ``error``),
    ``decision`` (score >= threshold; None when not scored), the ``threshold`` and the top
    ``reasons`` of an alert ("" otherwise), and the transaction's and its customer's (card's) ids when the
    model has those columns (the card id lets the monitor measure Card Precision@k on served alerts)."""

    transaction_id: str | None = None
    customer_id: str | None = None
    score: float | None
    decision: bool | None
    threshold: float
    reasons: str = ""


class Contribution(BaseModel):
    """One feature's value and TreeSHAP contribution (log-odds) to a score."""

    model_config = ConfigDict(extra="forbid")

    feature: str
    readable: str
    value: float
    contribution: float


class FraudExplanation(Explanation):
    """Every feature's TreeSHAP contribution for one transaction, largest absolute first; the
    contributions plus ``bias`` add up to the score's log-odds. ``to_frame()`` gives the table."""

    bias: float
    contributions: list[Contribution]

    def to_frame(self) -> pd.DataFrame:
        """Return feature / readable / value / contribution rows (``attrs["bias"]`` holds the bias)."""
        out = pd.DataFrame([c.model_dump() for c in self.contributions],
                           columns=["feature", "readable", "value", "contribution"])
        out.attrs["bias"] = self.bias
        return out


class FraudRequest(PredictRequest):
    """API request body: ``{"transactions": [{"timestamp": "...", "amount": 12.5, "customer_id": 7, ...}]}``
    (1 to 10,000 transactions with the model's columns; see ``GET /v1/models`` for them)."""

    transactions: list[dict[str, Any]] = Field(..., min_length=1, max_length=10_000)

    def to_items(self) -> tuple[list[Any], dict[str, Any]]:
        """Return the transactions for :meth:`FraudScorer.predict`."""
        return list(self.transactions), {}


class FraudScorer(Predictor):
    """A trained fraud model with its features, threshold and per-entity online state (the core
    :class:`~lepton_apps.predictor.Predictor`; ``score`` / ``score_one`` are the domain verbs)."""

    domain = "finance"
    result_type = FraudResult
    request_schema = FraudRequest
    chunk_size = 100_000

    def __init__(self, booster, spec: FeatureSpec, threshold: dict[str, Any], state: OnlineState, bundle=None):
        self.booster = booster
        self.spec = spec
        self.threshold_info = threshold
        self.threshold = float(threshold["threshold"])
        self.state = state
        self.bundle = bundle
        self._cat_codes = {c: {v: i for i, v in enumerate(cats)} for c, cats in spec.categorical.items()}
        self.mlp = None  # (net, scaling, LightGBM weight) when the bundle blends in the optional MLP
        self.compiled_mode = "no"
        self.compiled = None  # CompiledModel (lleaves) when scoring runs as native code
        self.scoring_engine = "LightGBM"
        self.reasons_method = "treeshap"   # how alert reasons are computed: "treeshap" (exact) or "path" (fast)
        self._explainer = None         # the PathExplainer of this booster, built on first use

    @classmethod
    def load(cls, ref: str | Path, *, home: str | Path | None = None, device: str = "auto",
             compiled: str = "auto", reasons_method: str = "treeshap") -> FraudScorer:
        """Return the scorer of a bundle path, registry name or ``finance:latest``/``finance:production``.

        ``reasons_method``: "treeshap" (default, exact) or "path" (:mod:`.reasons`: 50x+ faster, not Shapley
        values; apps/finance/README.md "Alert reasons"). :meth:`explain` is always exact TreeSHAP.

        ``compiled``: "yes" compiles the model to native code now (or loads it from the per-machine
        cache) and fails if it cannot; "auto" (default) uses the cached compiled model when there is
        one and otherwise compiles on the first batch of ``AUTO_COMPILE_ROWS`` rows or more, falling
        back to LightGBM with a warning; "no" always scores with LightGBM. Scores agree either way.
        ``device`` is accepted for the common contract; LightGBM scores on the CPU.
        """
        from lepton_apps.bundle import load_bundle
        from lepton_apps.registry import Registry

        lgb = require("lightgbm", feature="Fraud scoring")
        path = Path(ref)
        if not path.exists():
            path = Registry(home).resolve(str(ref), domain="finance")
        bundle = load_bundle(path, domain="finance")
        booster = lgb.Booster(model_str=bundle.read_text("model.txt"))
        spec = FeatureSpec.from_json(bundle.load_json("features.json"))
        state = OnlineState.from_frame(spec, bundle.load_parquet("state.parquet"))
        scorer = cls(booster, spec, bundle.load_json("threshold.json"), state, bundle)
        scorer.use_reasons(reasons_method)
        if bundle.has("mlp.json"):
            from . import mlp

            info = bundle.load_json("mlp.json")
            net = mlp.load(bundle.load_torch("mlp.safetensors"), len(spec.names))
            scorer.mlp = (net, info["scale"], float(info["weight_lightgbm"]))
        scorer.use_compiled(compiled)
        gc.collect()  # collect now, not during the first score_one calls (keeps their p99 low)
        return scorer

    # ------------------------------------------------------------------ batch
    def missing_columns(self, columns) -> dict[str, str]:
        """Return ``{column: what it is}`` for the columns the model needs that ``columns`` lacks ({} = none)."""
        return missing_columns(self.spec, columns)

    def validate_table(self, df: pd.DataFrame):
        """Return the :class:`~lepton_apps.finance.data.Validation` of a table to score (DataError when a column
        the model needs is missing)."""
        return validate_scoring_table(self.spec, df)

    def features(self, df: pd.DataFrame, use_state: bool | str = "auto") -> tuple[np.ndarray, pd.Series]:
        """Return (feature matrix of every row — NaN rows where invalid, per-row error or None).

        ``use_state``: True prepends the scorer's per-entity history (the end of the training
        data, plus what ``score_one`` has seen); False uses the table's own rows only; "auto"
        (default) uses the history only when every row is later than it, so scoring the
        training table itself never counts a transaction twice.
        """
        if not isinstance(df, pd.DataFrame):
            raise DataError(f"expected a pandas DataFrame, got {type(df).__name__}", fix="pass a table of transactions")
        if len(df) == 0:
            return np.zeros((0, len(self.spec.names))), pd.Series([], dtype="object")
        v = self.validate_table(df)
        keep = v.valid
        if keep.all():  # the usual case: no copy of the table
            frame, seconds, labels = df, v.seconds, v.labels
        else:
            frame = df.loc[keep].reset_index(drop=True)
            seconds = v.seconds[keep] if v.seconds is not None else None
            labels = v.labels[keep] if v.labels is not None else None
        if labels is None:
            labels = np.full(len(frame), -1, np.int8)
        stream = make_stream(frame, v.roles, seconds, labels, with_ids=False)
        x_valid = self._matrix(stream, encode_user_columns(frame, self.spec), use_state)
        if keep.all():
            return x_valid, v.row_errors
        x = np.full((len(df), len(self.spec.names)), np.nan)
        x[keep] = x_valid
        return x, v.row_errors

    def _matrix(self, stream: Stream, user: dict[str, np.ndarray], use_state: bool) -> np.ndarray:
        if self.spec.has_time:
            if use_state == "auto":
                use_state = len(stream) > 0 and int(stream.t.min()) > self.state.latest
            if use_state and not self.state.empty():
                hist = self.state.history(entity_set(stream.customer), entity_set(stream.terminal))
                return feature_matrix(concat_streams(hist, stream), user, self.spec, skip=len(hist))
        return feature_matrix(stream, user, self.spec)

    def use_compiled(self, mode: str = "auto") -> FraudScorer:
        """Choose the scoring engine (see ``load``); return self."""
        from . import compiled

        if mode not in compiled.MODES:
            raise ConfigError(f"compiled must be one of {', '.join(compiled.MODES)}, not {mode!r}",
                              fix="use 'auto' (default), 'yes' or 'no'")
        self.compiled_mode, self.compiled, self.scoring_engine = mode, None, "LightGBM"
        if mode == "yes":
            self.compiled = compiled.compile_model(self._model_text())
        elif mode == "auto" and compiled.is_cached(self._model_text()):
            self.compiled = compiled.try_compile(self._model_text())[0]
        if self.compiled is not None:
            self.scoring_engine = "compiled (lleaves)"
        return self

    def _model_text(self) -> str:
        return self.bundle.read_text("model.txt") if self.bundle is not None else self.booster.model_to_string()

    def _maybe_compile(self, rows: int) -> None:
        """With compiled="auto", compile before scoring a batch large enough to repay it."""
        from . import compiled

        if self.compiled is None and self.compiled_mode == "auto" and rows >= compiled.AUTO_COMPILE_ROWS:
            self.compiled, status = compiled.try_compile(self._model_text())
            self.compiled_mode = "auto" if self.compiled is not None else "no"  # do not retry a failure
            self.scoring_engine = "compiled (lleaves)" if self.compiled is not None else status

    def _raw_predict(self, x: np.ndarray) -> np.ndarray:
        threads = predict_threads(len(x))
        if self.compiled is not None:
            return self.compiled.predict(x, threads)
        return self.booster.predict(x, num_threads=threads)

    def predict_matrix(self, x: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Return fraud scores (probabilities) for a feature matrix; rows not ``valid`` (default:
        rows that are all NaN) get NaN."""
        self._maybe_compile(len(x))
        out = np.full(len(x), np.nan)
        if valid is not None:
            ok = np.asarray(valid, dtype=bool)
        else:
            ok = ~np.all(np.isnan(x), axis=1) if len(x) else np.zeros(0, bool)
        if ok.all():
            return self._blend(x, self._raw_predict(x))
        if ok.any():
            out[ok] = self._blend(x[ok], self._raw_predict(x[ok]))
        return out

    def _blend(self, x: np.ndarray, lgb_scores: np.ndarray) -> np.ndarray:
        if self.mlp is None or len(x) == 0:
            return lgb_scores
        from . import mlp

        net, scale, w = self.mlp
        return w * lgb_scores + (1 - w) * mlp.predict(net, x, scale)

    def use_reasons(self, method: str) -> None:
        """Compute alert reasons with ``method``: "path" (fast path attributions) or "treeshap" (exact)."""
        if method not in REASON_METHODS:
            raise ConfigError(f"unknown reasons method {method!r}", where="reasons_method",
                              fix=f"use one of: {', '.join(REASON_METHODS)}")
        self.reasons_method = method

    def reasons_matrix(self, x: np.ndarray, top: int = 3) -> list[str]:
        """Return, per row, the ``top`` features pushing the score up, as readable text (by :attr:`reasons_method`)."""
        if self.reasons_method == "path" and self._explainer is None:
            from .reasons import PathExplainer

            self._explainer = PathExplainer(self.booster)
        return reason_texts(self.booster, self.spec, x, top, self._explainer if self.reasons_method == "path" else None)

    def score(self, df: pd.DataFrame, *, reasons: int = 3, reasons_for: str = "alerts",
              threshold: float | None = None, use_state: bool | str = "auto") -> pd.DataFrame:
        """Return one row per input row: score, decision (score ≥ threshold), reasons, error.

        ``reasons_for``: "alerts" (rows at or above the threshold), "all" or "none". Invalid
        rows get NaN scores and their problem in ``error``.
        """
        x, errors = self.features(df, use_state)
        return self.score_features(x, errors.to_numpy(), index=df.index, reasons=reasons,
                                   reasons_for=reasons_for, threshold=threshold)

    def score_features(self, x: np.ndarray, errors: np.ndarray, index=None, reasons: int = 3,
                       reasons_for: str = "alerts", threshold: float | None = None) -> pd.DataFrame:
        """Return score / decision / reasons / error rows for a precomputed feature matrix; rows
        with a problem in ``errors`` (not None / NaN) get a NaN score and no decision."""
        if reasons_for not in ("alerts", "all", "none"):
            raise DataError(f"unknown reasons_for {reasons_for!r}", where="reasons_for", fix="use alerts, all or none")
        th = self.threshold if threshold is None else float(threshold)
        errors = np.asarray(errors, dtype=object)
        s = self.predict_matrix(x, valid=pd.isna(errors))  # rows with a problem get no score
        decision = pd.arrays.BooleanArray(np.nan_to_num(s, nan=-np.inf) >= th, np.isnan(s))
        text = np.full(len(s), None, dtype=object)  # missing reasons; an object array is cheap at 1M rows
        want = ~np.isnan(s) & ((s >= th) if reasons_for == "alerts" else (reasons_for == "all"))
        if want.any() and reasons > 0:
            text[want] = self.reasons_matrix(x[want], reasons)
        # object columns go in as object Series: from a dict of bare object arrays pandas scans
        # every value for a better dtype (about 50 ms at 1M rows)
        index = pd.RangeIndex(len(s)) if index is None else index
        return pd.DataFrame({"score": pd.Series(s, index=index, copy=False),
                             "decision": pd.Series(decision, index=index, copy=False),
                             "reasons": pd.Series(text, index=index, dtype=object, copy=False),
                             "error": pd.Series(errors, index=index, dtype=object, copy=False)}, copy=False)

    def score_file(self, data: str | Path, out: str | Path, *, chunk_size: int = 100_000, resume: bool = True,
                   reasons_for: str = "alerts", progress: bool = True, use_state: bool | str = "auto"):
        """Score a CSV / Parquet file through the core batch driver; return its BatchResult.

        Features need each entity's history, so they are built once over the whole file
        (vectorised); the driver then scores chunk by chunk (resumable, atomic, one output row
        per input row, invalid rows with their problem in ``error``).
        """
        from lepton_apps.batch import run_batch

        from .data import read_table

        df = read_table(data, id_column=self.spec.roles.get("id"))
        x, errors = self.features(df, use_state)
        self._maybe_compile(len(x))
        names = [f"f{j}" for j in range(x.shape[1])]
        work = pd.DataFrame(x, columns=names)
        id_col = self.spec.roles.get("id")
        if id_col and id_col in df.columns:
            work.insert(0, id_col, df[id_col].to_numpy())
        else:
            id_col = None
        work["_problem"] = errors.to_numpy()
        score_fn = _ChunkScorer(self, names, reasons_for)
        return run_batch(work, out, score_fn, id_column=id_col, chunk_size=chunk_size, resume=resume,
                         progress=progress)

    def evaluate(self, data: Any = None, *, out: str | Path | None = None, k: int = 100) -> Evaluation:
        """Return the fraud metrics (ROC-AUC, AUC-PR, Card Precision@k, precision / recall / alerts per day at the
        bundle's threshold) on labelled transactions ``data`` (a table or a CSV / Parquet file; rows that cannot
        be scored are counted in ``rows_skipped_invalid``), or the bundle's stored test report when ``data`` is
        None; with ``out`` also write report.json there."""
        from lepton_apps.io import atomic_write_json

        from .evaluate import evaluate_scorer, summary

        if data is None:
            report = {**self.bundle.load_json("report.json")["test"], "source": "the bundle's test split"}
        else:
            if not isinstance(data, pd.DataFrame):
                from .data import read_table

                data = read_table(data)
            report = evaluate_scorer(self, data, k)
        report["model_version"] = self.model_version
        if out:
            atomic_write_json(Path(out) / "report.json", report)
        return Evaluation(metrics=report, summary=summary(report), folder=Path(out) if out else None)

    # ------------------------------------------------------------------ online
    def score_one(self, tx: dict[str, Any], *, update: bool = True, reasons: int = 3) -> dict[str, Any]:
        """Score one transaction from the live state; return score, decision, reasons and features.

        With ``update`` the transaction joins its customer's and terminal's history (with its
        label when the dict carries one), so later transactions see it, as in batch scoring.
        """
        vec = transaction_vector(self.spec, self.state, self._cat_codes, tx, observe=update)
        score = float(self._blend(vec[None, :], self._raw_predict(vec[None, :]))[0])
        decision = score >= self.threshold
        why = self.reasons_matrix(vec[None, :], reasons)[0] if (decision and reasons) else ""
        return {**self._ids(tx), "score": score, "decision": bool(decision), "threshold": self.threshold,
                "reasons": why, "features": dict(zip(self.spec.names, vec.tolist()))}

    def record_label(self, tx_id: Any, label: int) -> bool:
        """Record the (late) label of a transaction seen by ``score_one``; False if no longer in the state."""
        return self.state.record_label(tx_id, label)

    def save_state(self, path: str | Path) -> Path:
        """Write the per-entity online state to a Parquet file (atomically); return the path."""
        return save_state_file(self.state, path)

    def load_state(self, path: str | Path) -> None:
        """Replace the online state (in this process, or the shared one in Redis) with one saved by
        :meth:`save_state`."""
        self.state = load_state_file(self.spec, self.state, path)
        gc.collect()

    def share_state(self, url: str, prefix: str | None = None) -> str:
        """Keep the online state in Redis at ``url`` (``redis://host:6379/0``) so that several service
        replicas share it. The first replica seeds an empty prefix with this bundle's saved state; the
        others (and later restarts and reloads) use what is there. Returns "seeded", "shared" or "waited"."""
        from .state import DEFAULT_PREFIX, RedisState

        shared = RedisState(self.spec, url, prefix or DEFAULT_PREFIX)
        how = shared.attach(self.state.to_frame(), version=self.model_version)
        self.state = shared
        gc.collect()
        return how

    # ------------------------------------------------------------------ reasons
    def explain(self, tx: dict[str, Any] | pd.DataFrame, use_state: bool | str = "auto") -> FraudExplanation:
        """Return every feature's value and TreeSHAP contribution (log-odds) for one transaction,
        largest absolute contribution first. Does not change the state."""
        if isinstance(tx, pd.DataFrame):
            if len(tx) != 1:
                raise DataError(f"explain takes one transaction, got {len(tx)} rows", fix="pass a single row")
            x, errors = self.features(tx, use_state)
            if errors.iloc[0] is not None and not pd.isna(errors.iloc[0]):
                raise DataError(f"cannot explain an invalid transaction: {errors.iloc[0]}")
            vec = x[0]
        else:
            vec = transaction_vector(self.spec, self.state, self._cat_codes, tx)
        contrib = self.booster.predict(vec[None, :], pred_contrib=True)[0]
        order = np.argsort(-np.abs(contrib[:-1]), kind="stable")
        rows = [Contribution(feature=self.spec.names[j], readable=self.spec.readable(self.spec.names[j]),
                             value=float(vec[j]), contribution=float(contrib[j])) for j in order]
        return FraudExplanation(model_version=self.model_version, bias=float(contrib[-1]), contributions=rows)

    # ------------------------------------------------------------------ the predictor contract
    @property
    def model_version(self) -> str:
        """The bundle's name and creation time ("(in memory)" for a scorer not loaded from a bundle)."""
        if self.bundle is None:
            return "(in memory)"
        return f"{self.bundle.path.name}@{self.bundle.metadata.get('created', '?')}"

    def predict(self, items: list[dict[str, Any]]) -> list[FraudResult]:
        """Return one :class:`FraudResult` per transaction dict, in order, scored together as one table
        after the bundle's state (as :meth:`score` does; the state is not changed — use
        :meth:`score_one` for that). Invalid transactions get their problem in ``error``; when the
        table as a whole cannot be scored (e.g. a column the model needs is missing) every item gets
        that reason."""
        items = list(items)
        bad = {i: f"a transaction must be a dict of column: value, got {type(t).__name__}"
               for i, t in enumerate(items) if not isinstance(t, dict)}
        good = [i for i in range(len(items)) if i not in bad]
        frame = pd.DataFrame([items[i] for i in good], index=range(len(good)))
        try:
            scored = self.score(frame) if good else pd.DataFrame(columns=["score", "decision", "reasons", "error"])
        except LeptonError as exc:
            bad.update({i: str(exc) for i in good})
            good, scored = [], None
        out: list[FraudResult] = []
        pos = {i: j for j, i in enumerate(good)}
        for i, tx in enumerate(items):
            ids = self._ids(tx)
            if i in bad:
                out.append(FraudResult(model_version=self.model_version, error=bad[i], **ids,
                                       score=float("nan"), decision=None, threshold=self.threshold))
                continue
            row = scored.iloc[pos[i]]
            err = row["error"]
            err = None if err is None or (isinstance(err, float) and math.isnan(err)) else str(err)
            dec = row["decision"]
            out.append(FraudResult(model_version=self.model_version, error=err, **ids,
                                   score=float(row["score"]), decision=None if pd.isna(dec) else bool(dec),
                                   threshold=self.threshold, reasons=row["reasons"] or ""))
        return out

    def _ids(self, tx: Any) -> dict[str, str | None]:
        """The result's id fields of a transaction (:func:`~lepton_apps.finance.features.transaction_ids`)."""
        return transaction_ids(self.spec, tx)

    def predict_frame(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Return :meth:`score` of ``frame`` with a ``model_version`` column before ``error``."""
        out = self.score(frame)
        out.insert(len(out.columns) - 1, "model_version", self.model_version)
        return out

    def predict_file(self, source: str | Path, output: str | Path, *, resume: bool = True, progress: bool = True,
                     chunk_size: int | None = None, **options: Any):
        """The contract's name for :meth:`score_file` (features built over the whole file, then scored in chunks)."""
        return self.score_file(source, output, chunk_size=chunk_size or self.chunk_size, resume=resume,
                               progress=progress, **options)

    def monitor_window(self, data: Any, *, history: Any = None) -> MonitorWindow:
        """Return what the model sees and says for ``data`` (a CSV / Parquet file, a table, or a list of
        transaction dicts): ``features`` = the model's features of every valid row under readable names, built
        after the transactions before the window — ``history`` (a file or table of earlier transactions), else the
        bundle's saved history —, ``scores`` = their fraud scores, ``judged`` / ``not_judged`` = the rows each
        feature can be judged on fairly and why the others cannot (:mod:`~lepton_apps.finance.monitoring`), no
        embeddings, and ``unreadable`` = the rows that could not be scored (bad timestamp, amount or id)."""
        from .monitoring import monitor_table, window

        id_column = self.spec.roles.get("id")
        return window(self, monitor_table(data, id_column, "monitor_window"),
                      None if history is None else monitor_table(history, id_column, "history"))

    def importance(self) -> pd.DataFrame:
        """Return the global importance stored at training (mean |SHAP| on test rows, and gain)."""
        return pd.DataFrame(self.bundle.load_json("importance.json")) if self.bundle else pd.DataFrame()


class _ChunkScorer:
    """The batch driver's score function: scores precomputed feature columns of a chunk."""

    def __init__(self, scorer: FraudScorer, names: list[str], reasons_for: str):
        self.scorer, self.names, self.reasons_for = scorer, names, reasons_for
        self.__qualname__ = "FraudScorer.score_file"

    def __call__(self, chunk: pd.DataFrame) -> pd.DataFrame:
        x = chunk[self.names].to_numpy(dtype=float)
        out = self.scorer.score_features(x, chunk["_problem"].to_numpy(), reasons_for=self.reasons_for)
        return out.reset_index(drop=True)


# required_columns and missing_columns_message live in features.py; they stay importable from here
__all__ = ["FraudScorer", "FraudResult", "FraudExplanation", "FraudRequest", "Contribution", "required_columns",
           "missing_columns", "missing_columns_message"]
