"""Hand-off calibration for a target recall, the shipped out-of-scope set, the FAQ classifier (synthetic data, fast)."""
import json
import re

import numpy as np
import pytest

from lepton_apps.support.calibration import (GENERAL_OOS, CalibQuery, drop_covered_general_oos, fit_handoff,
                                             general_oos_questions, threshold_for_recall, tradeoff_curve)
from lepton_apps.support.index import FaqIndex
from lepton_apps.support.model import train_faq_classifier


def test_threshold_hands_off_exactly_the_target_share_of_out_of_scope_questions():
    conf = np.arange(100) / 100.0                       # 0.00 .. 0.99
    t = threshold_for_recall(conf, np.zeros(100, dtype=bool), 0.9)
    assert 0.89 < t < 0.90 and (conf < t).sum() == 90   # half-way between the 90th and the 91st
    assert (conf < threshold_for_recall(conf, np.zeros(100, dtype=bool), 0.95)).sum() == 95
    # ambiguous questions are handed off anyway: 10 of them leave 80 to hand off by confidence
    always = np.zeros(100, dtype=bool)
    always[-10:] = True
    t = threshold_for_recall(conf, always, 0.9)
    assert ((conf < t) | always).sum() == 90 and 0.79 < t < 0.80
    assert threshold_for_recall(conf, np.ones(100, dtype=bool), 0.9) == 0.0   # nothing left to hand off
    assert (conf < threshold_for_recall(conf, np.zeros(100, dtype=bool), 1.0)).all()


def test_tradeoff_curve_moves_recall_up_and_answered_correct_down():
    rng = np.random.default_rng(0)
    oos = np.r_[np.zeros(200, dtype=bool), np.ones(100, dtype=bool)]
    conf = np.where(oos, rng.uniform(0, 0.6, 300), rng.uniform(0.4, 1.0, 300))
    correct = ~oos & (rng.uniform(size=300) < 0.9)
    curve = tradeoff_curve(conf, correct, oos, np.zeros(300, dtype=bool), points=None)
    assert curve["handoff_recall"].is_monotonic_increasing and curve["answered_correct"].is_monotonic_decreasing
    assert curve["handoff_recall"].iloc[0] == 0.0 and curve["handoff_recall"].iloc[-1] == 1.0
    assert curve["answered_correct"].iloc[0] == pytest.approx(correct[~oos].mean())
    at = curve[curve["threshold"] == 0.5].iloc[0] if (curve["threshold"] == 0.5).any() else None
    t = float(np.sort(conf)[150])
    row = curve[curve["threshold"] == t].iloc[0]
    assert row["handoff_recall"] == pytest.approx((conf[oos] < t).mean())
    assert row["answered_correct"] == pytest.approx(((conf >= t) & correct)[~oos].mean())
    assert at is None or 0 <= at["coverage"] <= 1


def _toy_index(n_faq=4, per=5, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_faq, dim))
    emb = np.concatenate([c + 0.3 * rng.normal(size=(per, dim)) for c in centers])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    owner = np.repeat(np.arange(n_faq), per)
    texts = [f"faq{o} text{i}" for i, o in enumerate(owner)]
    return FaqIndex(emb.astype(np.float32), owner, texts), centers, rng


def test_fit_handoff_reaches_the_target_recall_on_a_computable_case():
    index, centers, rng = _toy_index()
    dim = centers.shape[1]
    queries = []
    for i in range(200):   # in scope: near an FAQ's centre; out of scope: random directions
        row = i % 4
        e = centers[row] + 0.3 * rng.normal(size=dim)
        queries.append(CalibQuery(f"q{i}", index.row_scores(e / np.linalg.norm(e), ""), None, row, "val"))
    for i in range(100):
        e = rng.normal(size=dim)
        queries.append(CalibQuery(f"o{i}", index.row_scores(e / np.linalg.norm(e), ""), None, -1, "user-oos"))
    model, threshold, summary = fit_handoff(queries, index, 1.0, 0.0, 3, target_recall=0.9, margin=0.0,
                                            use_classifier=False)
    conf = np.array([model.predict(model.features_of(index.rank_rows(q.scores, 3, 1.0)))[0] for q in queries])
    oos = np.array([q.gold < 0 for q in queries])
    assert (conf[oos] < threshold).sum() == 90            # exactly ceil(0.9 * 100) handed off
    assert summary["val_handoff_recall"] == pytest.approx(0.9)
    assert summary["val_answered_correct"] > 0.8          # the easy in-scope questions stay answered
    assert summary["target_handoff_recall"] == 0.9 and len(summary["curve"]["threshold"]) > 10
    # with a confidence level, a source of 100 questions is handed off above the target (binomial margin)
    _, strict, summary = fit_handoff(queries, index, 1.0, 0.0, 3, target_recall=0.9, margin=0.0,
                                     use_classifier=False, recall_confidence=0.9)
    goal = summary["calibration_recall_goal"]["user-oos"]
    assert goal == pytest.approx(0.9 + 1.2816 * 0.03, abs=1e-3) and strict > threshold
    assert (conf[oos] < strict).sum() == 94


def test_shipped_out_of_scope_questions_the_kb_answers_are_dropped():
    index, centers, rng = _toy_index()
    dim = centers.shape[1]
    queries = [CalibQuery(f"t{i}", index.row_scores(index.embeddings[i], index.texts[i],
                                                    np.arange(20) == i), None, int(index.owner[i]), "kb-paraphrase")
               for i in range(20)]
    general = []
    for i in range(40):
        e = rng.normal(size=dim)
        general.append(CalibQuery(f"g{i}", index.row_scores(e / np.linalg.norm(e), ""), None, -1, "general-oos"))
    covered = CalibQuery("book me a flight", index.row_scores(index.embeddings[3], ""), None, -1, "general-oos")
    kept, info = drop_covered_general_oos(queries + general + [covered], index, 1.0, 0.0)
    assert covered not in kept and "book me a flight" in info["general_oos_dropped_examples"]
    assert 1 <= info["general_oos_dropped"] <= 20 and info["general_oos_total"] == 41
    assert all(q in kept for q in queries)                 # in-scope queries are never dropped


def test_shipped_general_out_of_scope_set_is_large_varied_and_not_about_banking():
    doc = json.loads(GENERAL_OOS.read_text(encoding="utf-8"))
    texts = general_oos_questions()
    assert len(texts) >= 500 and len(texts) == len(doc["questions"])
    norm = [re.sub(r"\W+", " ", t.lower()).strip() for t in texts]
    assert len(set(norm)) == len(norm)                     # no duplicates, even up to case and punctuation
    assert len({q["topic"] for q in doc["questions"]}) >= 25
    lengths = [len(t.split()) for t in texts]
    assert min(lengths) <= 2 and max(lengths) >= 25        # terse to long, rambling messages
    banking = re.compile(r"\b(bank account|debit|credit card|overdraft|loan|atm|pin code|iban|savings)\b")
    assert not [t for t in texts if banking.search(t.lower())]


def test_faq_classifier_learns_the_paraphrases_and_gives_probabilities():
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(6, 24))
    x = np.concatenate([c + 0.5 * rng.normal(size=(20, 24)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(6), 20)
    head = train_faq_classifier(x, y, 7, l2=1e-3)          # row 6 has no example
    test = np.concatenate([c + 0.5 * rng.normal(size=(10, 24)) for c in centers]).astype(np.float32)
    probs = head.predict_proba(test)
    assert probs.shape == (60, 7) and np.allclose(probs.sum(1), 1.0, atol=1e-5)
    assert (probs.argmax(1) == np.repeat(np.arange(6), 10)).mean() >= 0.95
    assert probs[:, 6].max() < 0.05                        # an FAQ without examples is never likely
    again = train_faq_classifier(x, y, 7, l2=1e-3)         # convex + full batch: deterministic
    assert np.allclose(again.predict_proba(test), probs, atol=1e-5)
