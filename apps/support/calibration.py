"""Calibration of retrieval and hand-off: cross-fitted queries, score weights, confidence model, threshold.

The hand-off threshold is chosen for what a support team asks for — "hand off at least 90 % of the
questions we cannot answer" — on out-of-scope examples, while answering as many in-scope questions
correctly as the confidence model allows. It does not depend on the in-scope / out-of-scope mix of
the validation data (a precision target does).

Calibration queries, all scored by models that never saw them:

* in scope: the KB's own questions and paraphrases, each hidden from the index (leave-one-out) and
  scored by an FAQ classifier trained without its fold (cross-fitting), plus the user's labelled
  ``split=val`` questions (also cross-fitted, since they train the classifier too);
* out of scope: the user's own out-of-scope ``split=val`` questions when there are at least
  :data:`MIN_USER_OOS`, else (with the user's few ones, if any) the general out-of-scope set shipped with the template
  (``general_oos.json``, written for this project), minus the questions that the KB itself answers
  with a similarity above that of a typical in-scope question (a travel KB does answer "book me a
  flight": such a shipped question is not out of scope for it).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from .distance import DistanceScorer, attach
from .index import FaqIndex, top_gap
from .model import CLASSIFIER_FEATURES, FEATURES, ConfidenceModel, retrieval_features, train_faq_classifier

GENERAL_OOS = Path(__file__).with_name("general_oos.json")
GENERAL_OOS_BY_LANGUAGE = {"en": GENERAL_OOS, "zh": Path(__file__).with_name("general_oos_zh.json")}
FOLDS = 5
MAX_SCORED = 3000          # at most this many cross-fitted in-scope queries (large KBs: one fold, subsampled)
MIN_USER_OOS = 50          # the user's own out-of-scope questions replace the shipped set from this many on
MAX_DROPPED_SHARE = 0.5    # never drop more than this share of the shipped set as "covered by the KB"
WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
CURVE_POINTS = 101


def general_oos_questions(language: str = "en") -> list[str]:
    """Return the general out-of-scope questions shipped with the template (written for this project) in
    ``language`` (en: 565, zh: 448; English for a language without its own set)."""
    path = GENERAL_OOS_BY_LANGUAGE.get(language, GENERAL_OOS)
    return [q["text"] for q in json.loads(path.read_text(encoding="utf-8"))["questions"]]


def general_oos_topics(language: str = "en") -> dict[str, str]:
    """Return text -> topic of the shipped general out-of-scope questions in ``language``."""
    path = GENERAL_OOS_BY_LANGUAGE.get(language, GENERAL_OOS)
    return {q["text"]: q.get("topic", "") for q in json.loads(path.read_text(encoding="utf-8"))["questions"]}


@dataclasses.dataclass
class CalibQuery:
    """One calibration query: its per-FAQ scores, classifier probabilities, gold row (-1 = out of scope)."""

    text: str
    scores: tuple             # FaqIndex.row_scores output
    clf: np.ndarray | None    # P(row | query) from a classifier that did not see the query
    gold: int
    source: str               # kb-paraphrase | val | user-oos | general-oos
    dist: np.ndarray | None = None   # Mahalanobis distance to each FAQ, from a scorer that did not see the query

    def hits(self, index: FaqIndex, k: int, weight: float, clf_weight: float) -> list:
        """Return the query's top-``k`` first-stage hits (with their FAQs' distances when scored)."""
        return attach(index.rank_rows(self.scores, k, weight, self.clf, clf_weight), self.dist)


def text_folds(owner: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Return a fold (0..n_folds-1) per KB text, spread evenly inside each FAQ; -1 for FAQs with one text."""
    rng = np.random.default_rng(seed)
    folds = np.full(len(owner), -1, dtype=np.int64)
    for row in np.unique(owner):
        idx = rng.permutation(np.flatnonzero(owner == row))
        if len(idx) >= 2:
            folds[idx] = (np.arange(len(idx)) + rng.integers(n_folds)) % n_folds
    return folds


def cross_fitted_queries(index: FaqIndex, kb_emb: np.ndarray, val: pd.DataFrame, val_emb: np.ndarray,
                         row_of: dict[str, int], oos_texts: list[str], oos_emb: np.ndarray,
                         oos_sources: list[str], *,
                         use_classifier: bool, use_kb: bool, l2: float, seed: int, use_distance: bool = False,
                         kb_queries: np.ndarray | None = None,
                         progress: Callable[[str], None] | None = None) -> tuple[list[CalibQuery], dict]:
    """Return (calibration queries, summary) scored by leave-one-out retrieval and cross-fitted classifiers.

    ``val``: the user's validation questions (``faq_id`` '' = out of scope: these must already be in
    ``oos_texts`` when wanted); ``oos_sources``: "user-oos" or "general-oos" for each out-of-scope
    text. ``use_kb``: score the KB's own texts as in-scope queries. ``use_distance``: give each query its
    distances to the FAQs from a :class:`~.distance.DistanceScorer` fitted without its fold. ``kb_queries``: which
    KB texts may be queries (a fine-tuned encoder's training texts are not: they are no longer unseen).
    """
    rng = np.random.default_rng(seed)
    owner = index.owner
    t_fold = text_folds(owner, FOLDS, seed)
    kb_ok = np.ones(len(owner), dtype=bool) if kb_queries is None else np.asarray(kb_queries, dtype=bool)
    answerable = np.flatnonzero((val["faq_id"] != "").to_numpy()) if len(val) else np.array([], dtype=np.int64)
    v_rows = np.array([row_of[f] for f in val["faq_id"].iloc[answerable]], dtype=np.int64)
    v_fold = rng.integers(FOLDS, size=len(answerable))
    # folds to run: enough to score MAX_SCORED in-scope queries (small KBs: all five)
    runs, scored = [], 0
    for f in range(FOLDS):
        if runs and scored >= MAX_SCORED:
            break
        runs.append(f)
        scored += int(((t_fold == f) & kb_ok).sum()) * use_kb + int((v_fold == f).sum())
    budget = max(1, MAX_SCORED // len(runs))
    queries: list[CalibQuery] = []
    oos_fold = np.array([runs[i % len(runs)] for i in range(len(oos_texts))], dtype=np.int64)
    for f in runs:
        if progress:
            progress(f"calibration fold {f + 1}/{len(runs)}")
        head, scorer = None, None
        train_x = np.concatenate([kb_emb[t_fold != f], val_emb[answerable[v_fold != f]]])
        train_y = np.concatenate([owner[t_fold != f], v_rows[v_fold != f]])
        if use_classifier:
            head = train_faq_classifier(train_x, train_y, index.n_rows, l2=l2)
        if use_distance:
            scorer = DistanceScorer.fit(train_x, train_y, index.n_rows)
        kb_idx = np.flatnonzero((t_fold == f) & kb_ok) if use_kb else np.array([], dtype=np.int64)
        if len(kb_idx) > budget:
            kb_idx = np.sort(rng.choice(kb_idx, budget, replace=False))
        v_idx = answerable[v_fold == f]
        o_idx = np.flatnonzero(oos_fold == f)
        probs, dists = {}, {}
        for name, emb in (("kb", kb_emb[kb_idx]), ("val", val_emb[v_idx]), ("oos", oos_emb[o_idx])):
            if head is not None:
                probs[name] = head.predict_proba(emb) if len(emb) else np.zeros((0, index.n_rows))
            if scorer is not None:
                dists[name] = scorer.distances(emb) if len(emb) else np.zeros((0, index.n_rows))

        def of(name, j):
            return (probs[name][j] if head else None), (dists[name][j] if scorer else None)

        for j, i in enumerate(kb_idx):
            mask = np.zeros(len(index.texts), dtype=bool)
            mask[i] = True
            clf, dist = of("kb", j)
            queries.append(CalibQuery(index.texts[i], index.row_scores(kb_emb[i], index.texts[i], mask),
                                      clf, int(owner[i]), "kb-paraphrase", dist))
        for j, i in enumerate(v_idx):
            text = val["question"].iloc[i]
            clf, dist = of("val", j)
            queries.append(CalibQuery(text, index.row_scores(val_emb[i], text), clf, row_of[val["faq_id"].iloc[i]],
                                      "val", dist))
        for j, i in enumerate(o_idx):
            clf, dist = of("oos", j)
            queries.append(CalibQuery(oos_texts[i], index.row_scores(oos_emb[i], oos_texts[i]), clf, -1,
                                      oos_sources[i], dist))
    summary = {"folds_run": len(runs), "folds": FOLDS, "n_in_scope": int(sum(q.gold >= 0 for q in queries)),
               "n_val_in_scope": int(len(answerable)),
               "n_out_of_scope_scored": int(len(oos_texts)),
               "kb_paraphrases_scored": bool(use_kb)}
    return queries, summary


def choose_weights(queries: list[CalibQuery], index: FaqIndex, use_classifier: bool,
                   fusion_weight: float | None = None) -> tuple[float, float, dict, dict]:
    """Return (dense/BM25 weight, classifier weight, top-1 per dense weight, top-1 per classifier weight).

    Each weight is the grid value with the best top-1 accuracy on the answerable queries (ties: the
    larger weight); the dense weight first (without the classifier), then the classifier's.
    """
    answerable = [q for q in queries if q.gold >= 0]
    if not answerable:
        return (0.8 if fusion_weight is None else fusion_weight), (1.0 if use_classifier else 0.0), {}, {}

    def top1(w: float, b: float) -> float:
        return float(np.mean([index.rank_rows(q.scores, 1, w, q.clf, b)[0].row == q.gold for q in answerable]))

    w_table = {} if fusion_weight is not None else {w: top1(w, 0.0) for w in WEIGHT_GRID}
    weight = fusion_weight if fusion_weight is not None else max(WEIGHT_GRID, key=lambda w: (round(w_table[w], 6), w))
    b_table = {b: top1(weight, b) for b in WEIGHT_GRID} if use_classifier else {}
    b = max(WEIGHT_GRID, key=lambda b: (round(b_table[b], 6), b)) if use_classifier else 0.0
    return float(weight), float(b), w_table, b_table


def drop_covered_general_oos(queries: list[CalibQuery], index: FaqIndex, weight: float,
                             clf_weight: float, nearest: float = 1.0) -> tuple[list[CalibQuery], dict]:
    """Return (queries without the shipped out-of-scope questions the KB covers, summary of what was dropped).

    A shipped question is dropped when its best cosine to a KB text reaches the median best cosine of
    the correctly ranked in-scope calibration queries — it looks more in scope than a typical in-scope
    question (at most :data:`MAX_DROPPED_SHARE` of the set, the most similar first).
    """
    general = [q for q in queries if q.source == "general-oos"]
    if not general:
        return queries, {}
    right = [index.rank_rows(q.scores, 1, weight, q.clf, clf_weight)[0] for q in queries if q.gold >= 0]
    right = [h.dense for h, q in zip(right, [q for q in queries if q.gold >= 0]) if h.row == q.gold]
    cut = float(np.median(right)) if right else 1.0
    best = np.array([float(q.scores[0].max(initial=-1.0)) for q in general])
    order = np.argsort(-best, kind="stable")
    n_drop = min(int((best >= cut).sum()), int(MAX_DROPPED_SHARE * len(general)))
    dropped = {id(general[i]) for i in order[:n_drop]}
    if nearest < 1.0:   # keep only the shipped questions nearest to the KB (a user's own are rarely far off-topic)
        rest = order[n_drop:]
        dropped |= {id(general[i]) for i in rest[max(1, int(round(nearest * len(rest)))):]}
    kept = [q for q in queries if id(q) not in dropped]
    return kept, {"general_oos_nearest": nearest, "general_oos_used": len(general) - len(dropped),
                  "general_oos_similarity_cut": cut, "general_oos_total": len(general), "general_oos_dropped": n_drop,
                  "general_oos_dropped_examples": [general[i].text for i in order[:min(n_drop, 10)]]}


def threshold_for_recall(oos_conf: np.ndarray, oos_always: np.ndarray, target: float) -> float:
    """Return the highest-coverage confidence threshold that hands off ``target`` of the out-of-scope queries.

    A query is handed off when its confidence is below the threshold or ``oos_always`` (the ambiguity
    rule). The threshold sits half-way between the confidences of the last query it must hand off and
    the next one (0.0 when the ambiguity rule alone reaches the target).
    """
    n = len(oos_conf)
    need = math.ceil(target * n - 1e-9) - int(oos_always.sum())
    rest = np.sort(oos_conf[~oos_always])
    if need <= 0 or len(rest) == 0:
        return 0.0
    if need >= len(rest):
        return float(np.nextafter(rest[-1], np.inf))
    return float((rest[need - 1] + rest[need]) / 2)


def recall_goal(target: float, n_oos: int, confidence: float) -> float:
    """Return the share of calibration out-of-scope questions to hand off so that the true hand-off recall
    reaches ``target`` with about ``confidence`` (one-sided normal bound of a binomial share of ``n_oos``)."""
    from statistics import NormalDist

    if n_oos == 0 or confidence <= 0.5:
        return target
    z = NormalDist().inv_cdf(confidence)
    return float(min(1.0, target + z * math.sqrt(target * (1.0 - target) / n_oos)))


def tradeoff_curve(conf: np.ndarray, correct: np.ndarray, oos: np.ndarray, ambiguous: np.ndarray,
                   points: int | None = CURVE_POINTS) -> pd.DataFrame:
    """Return, for each threshold, hand-off recall on out-of-scope queries, answered-correct on in-scope ones
    and coverage (share of all queries answered); ``points`` thresholds spread over the range (None: every one)."""
    cand = np.unique(np.concatenate([[0.0], conf, [np.nextafter(conf.max(initial=0.0), np.inf)]]))
    if points is not None and len(cand) > points:
        cand = np.unique(np.quantile(cand, np.linspace(0, 1, points)))
    rows = []
    for t in cand:
        handoff = (conf < t) | ambiguous
        rows.append({"threshold": float(t),
                     "handoff_recall": float(handoff[oos].mean()) if oos.any() else float("nan"),
                     "answered_correct": float((~handoff & correct)[~oos].mean()) if (~oos).any() else float("nan"),
                     "coverage": float((~handoff).mean())})
    return pd.DataFrame(rows)


MARGIN_GRID = (0.0, 0.0025, 0.005, 0.01, 0.015, 0.02, 0.03)
PRIOR_MARGIN = 0.015  # the fixed default before the margin was chosen per build (MiniLM); ties go to it


def choose_margin(queries: list[CalibQuery], index: FaqIndex, weight: float, clf_weight: float, k: int,
                  target_recall: float, use_classifier: bool, target_precision: float | None = None,
                  recall_confidence: float = 0.0, grid: tuple[float, ...] = MARGIN_GRID, hits: list | None = None,
                  extra_features: tuple[str, ...] = ()):
    """Return (margin, confidence model, threshold, summary) of the ambiguity margin in ``grid`` whose hand-off
    (fitted by :func:`fit_handoff` for the same recall goals) answers the most in-scope calibration queries
    correctly; ties go to the margin nearest :data:`PRIOR_MARGIN`. The summary lists every margin tried.
    ``hits``: each query's ranked hits when a second stage re-ranked them (then ``extra_features`` name its
    confidence features); else the first stage's."""
    if hits is None:   # the same for every margin
        hits = [q.hits(index, k, weight, clf_weight) for q in queries]
    tried = []
    for margin in grid:
        model, threshold, summary = fit_handoff(queries, index, weight, clf_weight, k, target_recall, margin,
                                                use_classifier, target_precision, recall_confidence, hits=hits,
                                                extra_features=extra_features)
        tried.append((summary.get("val_answered_correct") or 0.0, -abs(margin - PRIOR_MARGIN), margin, model,
                      threshold, summary))
    best = max(tried, key=lambda t: (round(t[0], 6), t[1]))
    summary = {**best[5], "ambiguity_margin": best[2],
               "margin_grid_answered_correct": {str(t[2]): round(t[0], 4) for t in tried}}
    return best[2], best[3], best[4], summary


def fit_handoff(queries: list[CalibQuery], index: FaqIndex, weight: float, clf_weight: float, k: int,
                target_recall: float, margin: float, use_classifier: bool,
                target_precision: float | None = None,
                recall_confidence: float = 0.0, hits: list | None = None,
                extra_features: tuple[str, ...] = ()) -> tuple[ConfidenceModel, float, dict]:
    """Return (confidence model, hand-off threshold for ``target_recall`` on out-of-scope queries, summary).

    The confidence model is a logistic regression P(top FAQ right) on the retrieval (and classifier)
    features of every calibration query. Each source of out-of-scope questions (the user's own, the
    shipped set) reaches the target on its own. With ``recall_confidence`` > 0.5 a source of at least
    :data:`MIN_USER_OOS` questions is handed off a little above the target (:func:`recall_goal`), so
    that a finite calibration sample still reaches the target on new questions with about that
    probability; a smaller source of the user's (always next to the shipped set) aims at the target.
    With ``target_precision``, the threshold is raised when
    needed until the answered calibration queries reach that precision too.
    """
    names = (CLASSIFIER_FEATURES if use_classifier else FEATURES) + tuple(extra_features)
    if hits is None:  # each query's ranked hits (choose_margin passes them, computed once)
        hits = [q.hits(index, k, weight, clf_weight) for q in queries]
    gold = np.array([q.gold for q in queries])
    correct = np.array([h[0].row == g for h, g in zip(hits, gold)]) & (gold >= 0)
    oos = gold < 0
    ambiguous = np.array([top_gap(h) < margin for h in hits])
    feats = np.array([retrieval_features(h, names) for h in hits])
    note = None
    if correct.any() and oos.any():
        model = ConfidenceModel.fit(feats, correct.astype(int), names=names)
    else:   # no in-scope (or no out-of-scope) query to learn from: confidence = a sigmoid of the best cosine
        dense = names.index("dense_top1")
        model = ConfidenceModel([0.5] * len(names), [0.1] * len(names),
                                [1.0 if i == dense else 0.0 for i in range(len(names))], 0.0, names)
        note = "no answerable calibration queries: confidence is a sigmoid of the best cosine"
    conf = model.predict(feats) if len(feats) else np.zeros(0)
    # each source of out-of-scope questions (the user's own, the shipped set) must reach the goal on its own
    threshold, goals, by_source = (0.5 if not oos.any() else 0.0), {}, {}
    sources = np.array([q.source for q in queries])
    for source in sorted(set(sources[oos])):
        part = oos & (sources == source)
        n = int(part.sum())
        goals[source] = recall_goal(target_recall, n, recall_confidence) if n >= MIN_USER_OOS else target_recall
        by_source[source] = float(threshold_for_recall(conf[part], ambiguous[part], goals[source]))
        threshold = max(threshold, by_source[source])
    if target_precision is not None and (~oos).any():
        curve = tradeoff_curve(conf, correct, oos, ambiguous, points=None)
        answered = [(~((conf < t) | ambiguous)) for t in curve["threshold"]]
        ok = [t for t, a in zip(curve["threshold"], answered) if a.any() and correct[a].mean() >= target_precision]
        if ok and min(ok) > threshold:
            threshold, note = float(min(ok)), f"threshold raised to reach answered precision {target_precision}"
    handoff = (conf < threshold) | ambiguous
    summary = {"n_queries": int(len(queries)), "n_in_scope": int((~oos).sum()), "n_out_of_scope": int(oos.sum()),
               "n_correct_top1": int(correct.sum()),
               "val_top1": float(correct[~oos].mean()) if (~oos).any() else None,
               "val_handoff_recall": float(handoff[oos].mean()) if oos.any() else None,
               "val_answered_correct": float((~handoff & correct)[~oos].mean()) if (~oos).any() else None,
               "val_coverage": float((~handoff).mean()) if len(handoff) else 0.0,
               "val_answered_precision": float(correct[~handoff].mean()) if (~handoff).any() else 0.0,
               "target_handoff_recall": target_recall, "calibration_recall_goal": goals,
               "threshold_by_source": by_source,
               "curve": tradeoff_curve(conf, correct, oos, ambiguous).to_dict(orient="list") if len(conf) else {}}
    if note:
        summary["note"] = note
    return model, float(threshold), summary
