"""Drift and data quality: a window of current inputs, scores and embeddings held against a reference profile.

::

    report = compare(profile, current_df=window, current_scores=scores, current_embeddings=emb)
    report.status            # "ok" | "warn" | "drift" — the worst row
    report.reasons           # ["amount: PSI 0.31 ≥ 0.25 (drift)", …] for every row that is not ok
    report.to_frame()        # one row per feature / prediction / embedding / data-quality check

Defaults (:class:`DriftConfig`), after what Evidently, NannyML and whylogs do, chosen so that a window
from the reference distribution comes back all "ok" at least 95 % of the time (the false-alarm rates are
measured in ``tests/test_monitor_drift.py``):

* Which test: a current window of fewer than ``small_window`` (1,000) rows gets a hypothesis test — the
  two-sample Kolmogorov–Smirnov test for numbers, a chi-squared test of the reference-vs-current table of
  category counts for categories — because distances are noisy on small samples; a larger window gets
  distances, because on 100,000 rows every test rejects a difference nobody cares about. Evidently
  switches at 1,000 reference rows; we switch on the current window, whose size is what varies.
* p-values: warn below ``alpha_warn`` = 0.01, drift below ``alpha_drift`` = 0.001, after Holm's
  correction over all features and scores of one report. The tools' usual 0.05 per feature would raise
  a false alarm in 79 % of healthy windows of 30 features; Holm keeps the chance of any false warning
  from the tests at ≤ 1 %, which leaves room in the ≤ 5 % budget of a whole report (data-quality
  checks, embeddings) for a check that runs every day. A 0.5 std shift on 200 rows still has p ≈ 1e-6.
* PSI on the reference's quantile bins: warn ≥ 0.1, drift ≥ 0.25 — the bands of credit scoring that
  the monitoring tools repeat. PSI is blind to a shift within a bin (a 0.5 std shift of a normal feature
  gives PSI ≈ 0.24 with 10 bins), so numbers also get the Wasserstein distance in units of the
  reference std: warn ≥ 0.15, drift ≥ 0.3. Categories get the Jensen–Shannon distance (base 2, 0–1)
  next to PSI: warn ≥ 0.15, drift ≥ 0.25. Evidently flags drift at 0.1 for both, but on a 1,000-row
  window a healthy discrete or heavy-tailed feature reaches a Wasserstein of 0.1 std, and 20 buckets a
  Jensen–Shannon distance of 0.1, about once in 50 windows (measured); 0.15 is clear of that noise.
  The status of a large-window row is the worse of its two bands.
* Bands widened to what the reference itself varies by (``widen_to_reference``, issue 25): a fixed band assumes a
  window is an independent draw, and real windows are not. Where the profile measured how much *consecutive*
  windows of the reference differ from the whole (finance, whose reference is in time order:
  :func:`~lepton_apps.monitor.bands.window_variation`, mean + 3 std over chunks of 250 … 50,000 rows, NannyML's
  reference-chunk threshold), or where a window of this size drawn from the reference itself reaches further by
  sampling noise alone (:func:`~lepton_apps.monitor.bands.sampling_level`, a seeded bootstrap), a large window's
  warn band is that level and its drift band the level times the bands' own ratio; a small window's KS result stands only when its D also
  exceeds the consecutive-window level. A distance in reference stds is not judged for a feature whose reference
  spread rests on fewer than ``MIN_SPREAD_ROWS`` rows (PSI judges the share). Rows a domain marks as not
  comparable (``judged``: finance rows without the history their 30-day features need) are left out and listed in
  ``report.not_judged``, never reported as drift.
* Categories: a value gets its own bucket when the reference saw it at least ``min_category_count`` (10)
  times, everything else (rarer values, new values) shares "(other)" — a rare value's reference share
  overstates its probability, and that bias alone would make chi-squared reject. PSI and Jensen–Shannon
  use at most ``max_categories`` (20) buckets, because their noise grows with the number of buckets.
* Embeddings: a domain classifier (standardised logistic regression, 5-fold cross-validated ROC-AUC of
  reference vs current rows, as NannyML's multivariate drift does): AUC 0.5 means the two cannot be
  told apart. Warn at AUC ≥ 0.55, drift at ≥ 0.6, each only when the held-out scores also separate the
  two significantly (p below the alpha; per-fold Mann–Whitney p-values, twice their median): on a
  window of 50 rows an AUC of 0.6 happens by chance, on 1,000 rows it does not. MMD with an RBF kernel
  (median heuristic) and a permutation p-value (1,000 permutations of 300 + 300 rows, so that p can go
  below ``alpha_drift``) is reported beside it, and decides instead with ``embedding_method="mmd"``.
* Data quality, per column: new categories (the share of rows above the Good–Turing expectation —
  values seen once / rows, so a long tail of merchant ids that always brings unseen ids is not flagged
  — warn ≥ 1 %, drift ≥ 5 %, when significant), missing rate up by ≥ 5 / 10 points (when significant:
  binomial p < ``alpha_drift``), values outside the reference min–max widened by 5 % of its range (warn
  ≥ 1 % of rows, drift ≥ 5 %, when significant; ±inf counts as outside), unparseable values and
  unreadable inputs (warn ≥ 1 %, drift ≥ 5 %).

Nothing is dropped silently: missing, unparseable and infinite values are counted and reported; a
feature that cannot be tested (absent column, fewer than ``min_rows`` values) gets status "n/a" and a
reason.

The checks live in :mod:`~lepton_apps.monitor.thresholds` (:class:`DriftConfig`, statuses, Holm),
:mod:`~lepton_apps.monitor.univariate` (per-column tests and distances), :mod:`~lepton_apps.monitor.quality`
(data-quality rows) and :mod:`~lepton_apps.monitor.embedding_drift` (domain classifier, MMD); this module judges
a whole window with them (:func:`compare`, :func:`compare_window`) and holds the :class:`DriftReport`.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Mapping

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError
from lepton_apps.monitor.profile import (
    Profile, categorical_strings, judged_values, numeric_values, psi, score_columns)

from .embedding_drift import compare_embeddings
from .quality import quality_row, missing_check, new_category_check, numeric_quality, share_check
from .thresholds import DriftConfig, blank_row, holm, worst
from .univariate import compare_categorical, compare_numeric, settle_pvalues

__all__ = ["DriftConfig", "DriftReport", "compare", "compare_window", "holm", "psi", "worst"]


@dataclasses.dataclass
class DriftReport:
    """The result of :func:`compare`: one row per feature, score column, embedding set and data-quality
    finding, and the overall ``status`` (the worst row)."""

    status: str
    features: list[dict[str, Any]]
    predictions: list[dict[str, Any]]
    embeddings: dict[str, Any] | None
    quality: list[dict[str, Any]]
    n_rows: int
    extra_columns: list[str]
    config: dict[str, Any]
    profile_source: str = ""
    created: str = ""
    not_judged: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    judge_hint: str = ""

    @property
    def reasons(self) -> list[str]:
        """The readable reasons of every row that is not ok, drift first (``"amount: PSI 0.31 ≥ 0.25 (drift)"``)."""
        rows = self.rows()
        return [r["reason"] for s in ("drift", "warn") for r in rows if r["status"] == s]

    def rows(self) -> list[dict[str, Any]]:
        """Every row of the report: features, predictions, embeddings, data quality."""
        return self.features + self.predictions + ([self.embeddings] if self.embeddings else []) + self.quality

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-able dict (NaN / inf become None)."""
        return _clean(dataclasses.asdict(self))

    def to_json(self) -> str:
        """Return the report as strict JSON."""
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DriftReport":
        """Return the report stored by :meth:`to_dict`; DataError on a dict that is not one."""
        names = [f.name for f in dataclasses.fields(cls)]
        missing = [n for n in ("status", "features", "quality") if n not in data]
        if missing:
            raise DataError(f"not a drift report (missing {missing})", where="DriftReport.from_dict",
                            fix="pass what DriftReport.to_dict() returned")
        return cls(**{k: data[k] for k in names if k in data})

    @classmethod
    def from_json(cls, text: str) -> "DriftReport":
        """Return the report in the JSON ``text``."""
        return cls.from_dict(json.loads(text))

    def to_frame(self) -> pd.DataFrame:
        """Return one row per feature / prediction / embedding / quality finding, with its status and reason."""
        return pd.DataFrame(self.rows())


def _clean(obj):
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


def compare_window(profile: Profile, window, config: DriftConfig | None = None) -> DriftReport:
    """Return the :class:`DriftReport` of a :class:`~lepton_apps.predictor.MonitorWindow` against ``profile``
    (its features, scores, embeddings, unreadable count and judged rows)."""
    report = compare(profile, window.features, window.scores, window.embeddings, config, unreadable=window.unreadable,
                     judged=window.judged, not_judged=window.not_judged)
    if report.not_judged:
        report.judge_hint = window.judge_hint
    return report


def _unjudged_row(section: str, name: str, kept: int, total: int, why: str) -> dict[str, Any]:
    return blank_row(section, name, n_current=kept,
                reason=f"{name}: not judged — {why} ({kept:,} of {total:,} rows could be) (n/a)")


def compare(profile: Profile, current_df: pd.DataFrame | None = None, current_scores: Any = None,
            current_embeddings: Any = None, config: DriftConfig | None = None, *,
            unreadable: int = 0, judged: Mapping[str, Any] | None = None,
            not_judged: Mapping[str, str] | None = None) -> DriftReport:
    """Return the :class:`DriftReport` of a current window against ``profile``.

    ``current_df`` is checked column by column against ``profile.features``, ``current_scores`` (as
    accepted by :func:`~lepton_apps.monitor.profile.score_columns`) against ``profile.predictions``,
    ``current_embeddings`` against ``profile.embeddings``; ``unreadable`` is the number of inputs the caller
    could not read at all (corrupt images, malformed rows), reported as a data-quality row.

    ``judged`` maps a feature or score name to the mask of the rows on which it can be judged fairly (the
    others, e.g. transactions without the history their 30-day features need, would look like drift although
    nothing changed); ``not_judged`` says why. Such a name is compared on its judged rows only, and is "n/a" —
    not drift — when fewer than ``min_rows`` are left; ``report.not_judged`` lists every such name.
    """
    config = config or DriftConfig()
    if unreadable < 0:
        raise DataError(f"unreadable={unreadable} is negative", where="compare",
                        fix="pass the number of inputs that could not be read (0 or more)")
    if not isinstance(profile, Profile):
        raise DataError(f"expected a Profile, got {type(profile).__name__}", where="compare",
                        fix="load it with Profile.load(folder) or build it with build_profile")
    features: list[dict[str, Any]] = []
    predictions: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    extra: list[str] = []
    unjudged: list[dict[str, Any]] = []
    n_rows = 0

    def why(name: str) -> str:
        return (not_judged or {}).get(name, "the caller marked some rows as not comparable")

    if current_df is not None:
        if not isinstance(current_df, pd.DataFrame):
            raise DataError(f"current_df is a {type(current_df).__name__}", where="compare",
                            fix="pass the current window as a pandas DataFrame")
        n_rows = len(current_df)
        columns = {str(c): c for c in current_df.columns}
        extra = [c for c in columns if c not in profile.features]
        for name, ref in profile.features.items():
            if name not in columns:
                features.append(blank_row("feature", name, reason=f"{name}: not in the current window (n/a)"))
                quality.append(quality_row(name, "missing column", n_rows, n_rows, 1.0, None, "drift",
                                        f"{name}: the column the model was trained on is absent from the window (drift)"))
                continue
            col = current_df[columns[name]]
            if judged and name in judged:
                col = judged_values(col, judged, name, where=f"current column {name!r}")
                unjudged.append({"name": name, "judged": len(col), "rows": n_rows, "why": why(name)})
                if len(col) < config.min_rows:
                    features.append(_unjudged_row("feature", name, len(col), n_rows, why(name)))
                    continue
            if ref["kind"] == "numeric":
                values, counts = numeric_values(col, where=f"current column {name!r}")
                features.append(compare_numeric(name, ref, values, config))
                quality += numeric_quality(name, ref, values, counts, config)
            else:
                strings, missing = categorical_strings(col)
                row, facts = compare_categorical(name, ref, strings, missing, config)
                features.append(row)
                quality.append(missing_check(name, ref, int(missing.sum()), len(col), config))
                quality.append(new_category_check(name, facts, config))
    if current_scores is not None:
        if not profile.predictions:
            raise DataError("current scores given, but the profile has no prediction distribution",
                            where="compare", fix="build the profile with scores=…, or leave current_scores out")
        given = score_columns(current_scores, where="current_scores")
        for name, ref in profile.predictions.items():
            if name not in given:
                raise DataError(f"score column {name!r} of the profile is not in current_scores",
                                where="compare", fix=f"pass scores named {list(profile.predictions)}")
            values = given[name]
            total = len(values)
            if judged and name in judged:
                values = judged_values(values, judged, name, where=f"current scores {name!r}")
                unjudged.append({"name": name, "judged": len(values), "rows": total, "why": why(name)})
                if len(values) < config.min_rows:
                    predictions.append(_unjudged_row("prediction", name, len(values), total, why(name)))
                    n_rows = n_rows or total
                    continue
            values, counts = numeric_values(values, where=f"current scores {name!r}")
            predictions.append(compare_numeric(name, ref, values, config, section="prediction"))
            quality += numeric_quality(name, ref, values, counts, config)
        n_rows = n_rows or total
    embeddings = None
    if current_embeddings is not None:
        if profile.embeddings is None or "sample" not in profile.embeddings:
            raise DataError("current embeddings given, but the profile has no embedding sample",
                            where="compare", fix="build the profile with embeddings=…, or leave them out; a saved "
                            "profile keeps its sample in embeddings.npy, which Profile.load(folder) reads")
        embeddings, emb_quality = compare_embeddings(profile.embeddings, current_embeddings, config)
        quality += emb_quality
        n_rows = n_rows or int(embeddings["n_current"])
    if unreadable:
        total = n_rows + unreadable
        quality.append(share_check("inputs", "unreadable", unreadable, total, config.bad_input_warn,
                                   config.bad_input_drift, "could not be read"))
    settle_pvalues(features + predictions, config)
    quality = [q for q in quality if q is not None]
    report_rows = features + predictions + ([embeddings] if embeddings else []) + quality
    return DriftReport(
        status=worst(r["status"] for r in report_rows), features=features, predictions=predictions,
        embeddings=embeddings, quality=quality, n_rows=int(n_rows), extra_columns=extra,
        config=config.model_dump(mode="json"), profile_source=profile.source,
        created=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), not_judged=unjudged)
