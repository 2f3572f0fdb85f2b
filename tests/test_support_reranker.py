"""The support template's second stage: a cross-encoder re-ranker trained at build time from the KB.

One module-scoped build of the English demo KB with ``reranker: on`` (real MiniLM, a bounded number of training
pairs so that it takes well under a minute on 2 cores); the rest are unit tests of the pieces.
"""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lepton_apps.support import reranker as rr  # noqa: E402
from lepton_apps.support.calibration import CalibQuery  # noqa: E402
from lepton_apps.support.index import Hit, rank_score, top_gap  # noqa: E402


def test_faq_document_never_holds_the_query():
    assert rr.faq_document("How do I freeze my card?", "lost my card", "lost my card") == "How do I freeze my card?"
    assert rr.faq_document("Q?", "Q?", "other") == "Q?"
    assert rr.faq_document("Q?", "a paraphrase", "other") == "Q? | a paraphrase"
    # a KB question asked as a query pairs with its FAQ's other text only
    assert rr.faq_document("Q?", "a paraphrase", "Q?") == "a paraphrase"


def _query(text, gold, source):
    return CalibQuery(text, (), None, gold, source)


def test_holdout_keeps_general_topics_apart_and_is_stable():
    topics = {f"oos {t} {i}": f"topic {t}" for t in range(10) for i in range(5)}
    queries = [_query(t, -1, "general-oos") for t in topics] + [_query(f"kb {i}", i % 3, "kb-paraphrase")
                                                               for i in range(200)]
    mask = rr.holdout(queries, topics, seed=0)
    held = {topics[q.text] for q, m in zip(queries, mask) if m and q.source == "general-oos"}
    trained = {topics[q.text] for q, m in zip(queries, mask) if not m and q.source == "general-oos"}
    assert held and trained and not held & trained          # a topic is either learned from or calibrates
    kb_share = np.mean([m for q, m in zip(queries, mask) if q.source == "kb-paraphrase"])
    assert 0.25 < kb_share < 0.55
    assert (rr.holdout(queries, topics, seed=0) == mask).all()
    assert (rr.holdout(queries, topics, seed=1) != mask).any()


def test_training_pairs_label_gold_and_hard_negatives():
    texts = {0: ["q0", "a0", "b0", "c0"], 1: ["q1", "a1", "b1"], 2: ["q2", "a2"]}
    questions = {0: "q0", 1: "q1", 2: "q2"}

    def document(query, hit):
        return rr.faq_document(questions[hit.row], texts[hit.row][1], query)

    hits = [Hit(1, 0.9, 0.9, 0.0, 0.0, 4), Hit(0, 0.8, 0.8, 0.0, 0.0, 1), Hit(2, 0.7, 0.7, 0.0, 0.0, 7)]
    pairs = rr.training_pairs([_query("a0 again", 0, "kb-paraphrase"), _query("weather?", -1, "general-oos")],
                              [hits, hits], document, lambda r: texts[r], lambda r: questions[r], seed=0)
    pos = [d for q, d, y in pairs if y == 1.0]
    assert pos and all(d.startswith("q0") for d in pos)        # every positive is FAQ 0, in several views
    assert len(set(pos)) == len(pos) >= 2
    neg = [(q, d) for q, d, y in pairs if y == 0.0]
    assert {d.split(" | ")[0] for q, d in neg if q == "a0 again"} == {"q1", "q2"}   # the wrong FAQs of the top-k
    assert [d for q, d in neg if q == "weather?"] == ["q1 | a1", "q0 | a0"]           # out of scope: its top hits


def test_rank_score_and_gap_follow_the_second_stage():
    a, b = Hit(0, 0.9, 0, 0, 0, 0), Hit(1, 0.5, 0, 0, 0, 1)
    assert top_gap([a, b]) == pytest.approx(0.4) and top_gap([a]) == float("inf")
    a.rerank, a.final, b.rerank, b.final = 0.2, 0.3, 0.8, 0.7
    assert rank_score(a) == 0.3 and top_gap([b, a]) == pytest.approx(0.4)


# ------------------------------------------------------------------------------------- a real build
@pytest.fixture(scope="module")
def reranked(tmp_path_factory):
    """(assistant with the second stage, its build record, its bundle, the demo data folder, the assistant
    without it, its bundle): the English demo KB, re-ranker on, at most 1,200 training pairs x 2 epochs."""
    import torch

    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import build, write_bundle

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    work = tmp_path_factory.mktemp("support-rerank")
    # the second stage over the frozen first stage, whose misses the hand-off test relies on
    cfg = demo_config(work, reranker="on", reranker_max_pairs=1200, reranker_epochs=2, finetune_encoder="off")
    assistant, record = build(cfg)
    bundle = write_bundle(assistant, record, work / "bundle-rerank")
    plain, plain_record = build(demo_config(work, finetune_encoder="off"))
    return assistant, record, bundle, work, plain, write_bundle(plain, plain_record, work / "bundle-plain")


def _test_questions(work):
    q = json.loads((work / "demo_questions.json").read_text(encoding="utf-8"))["records"]
    return [r for r in q if r.get("split") == "test"]


def test_reranker_trains_saves_and_answers_the_same_after_loading(reranked):
    from lepton_apps.support.predict import SupportAssistant

    assistant, record, bundle, work = reranked[:4]
    info = record["reranker"]
    assert info["pairs"] <= 1200 and info["positives"] > 0 and info["final_train_loss"] < info["first_train_loss"]
    assert record["calibration"]["second_stage"] is True
    assert set(info["held_out_for_calibration"]) >= {"kb-paraphrase"}
    assert (bundle / "reranker" / "model.safetensors").is_file()
    assert assistant.confidence.features[-2:] == ("rerank_top1", "rerank_margin")
    questions = [r["question"] for r in _test_questions(work)]
    loaded = SupportAssistant.load(bundle, device="cpu", backend="torch")
    a = assistant.answer_batch(questions)
    b = loaded.answer_batch(questions)
    assert [x.faq_id for x in a] == [x.faq_id for x in b]
    assert np.allclose([x.confidence for x in a], [x.confidence for x in b], atol=1e-5)
    k = assistant.settings.rerank_k
    assert all(s.rerank is not None for s in a[0].sources[:k])
    assert all(s.rerank is None for s in a[0].sources[k:])


def test_reranker_separates_answerable_from_out_of_scope(reranked):
    """The re-ranker learned something the hand-off can use: on the demo's held-out test questions its
    probability of the answered FAQ is higher for in-scope questions than for out-of-scope ones (ROC-AUC)."""
    from sklearn.metrics import roc_auc_score

    assistant, _, _, work = reranked[:4]
    rows = _test_questions(work)
    replies = assistant.answer_batch([r["question"] for r in rows])
    in_scope = np.array([bool(r["faq_id"]) for r in rows])
    p = np.array([x.sources[0].rerank for x in replies])
    assert roc_auc_score(in_scope, p) > 0.8
    right = np.array([x.sources[0].faq_id == r["faq_id"] for x, r in zip(replies, rows)])
    assert right[in_scope].mean() > 0.8     # re-ordering the top-k keeps the right FAQ first


def test_reranker_hands_off_what_the_first_stage_answered(reranked):
    """On this fixture some out-of-scope test questions that the first-stage-only build answers are handed off
    by the build with the second stage, and its hand-off recall on them is not lower."""
    assistant, _, _, work, plain = reranked[:5]
    oos = [r["question"] for r in _test_questions(work) if not r["faq_id"]]
    before = plain.answer_batch(oos)
    after = assistant.answer_batch(oos)
    answered_before = [i for i, x in enumerate(before) if not x.handoff]
    assert any(after[i].handoff for i in answered_before)
    assert np.mean([x.handoff for x in after]) >= np.mean([x.handoff for x in before])


def test_explanation_shows_both_stages(reranked):
    assistant = reranked[0]
    ex = assistant.explain("I lost my card, what now?")
    assert "second stage" in ex.fusion and "cross-encoder" in ex.fusion
    assert {"rerank_top1", "rerank_margin"} <= set(ex.confidence_features)
    d = ex.to_dict()
    assert d["sources"][0]["rerank"] is not None and "threshold" in d


def test_bundle_without_second_stage_settings_loads_as_before(reranked, tmp_path):
    """A bundle written before the second stage existed (no rerank_k / rerank_weight in retrieval.json, no
    reranker/ folder) loads and answers as it did."""
    from lepton_apps.support.predict import SupportAssistant

    work, bundle = reranked[3], reranked[5]
    old = tmp_path / "old"
    shutil.copytree(bundle, old)
    retrieval = json.loads((old / "retrieval.json").read_text())
    for key in ("rerank_k", "rerank_weight"):
        retrieval["settings"].pop(key)
    retrieval["calibration"].pop("second_stage")
    (old / "retrieval.json").write_text(json.dumps(retrieval))
    from lepton_apps.io import sha256_file

    manifest = json.loads((old / "bundle.json").read_text())   # the bundle checks its files: record the edit
    manifest["files"]["retrieval.json"] = {"sha256": sha256_file(old / "retrieval.json"),
                                           "bytes": (old / "retrieval.json").stat().st_size}
    (old / "bundle.json").write_text(json.dumps(manifest))
    questions = [r["question"] for r in _test_questions(work)]
    a = SupportAssistant.load(bundle, device="cpu").answer_batch(questions)
    b = SupportAssistant.load(old, device="cpu").answer_batch(questions)
    assert [x.faq_id for x in a] == [x.faq_id for x in b]
    assert [x.confidence for x in a] == [x.confidence for x in b]
    assert all(s.rerank is None for x in b for s in x.sources)


def test_reranker_export_parity(reranked, tmp_path):
    """The export folder carries the re-ranker as ONNX, checked against PyTorch within 1e-5 on right and wrong
    (KB text, FAQ) pairs; an assistant encoding and re-ranking through the export answers as the bundle does."""
    pytest.importorskip("onnxruntime")
    from lepton_apps.support.export import export
    from lepton_apps.support.predict import SupportAssistant

    _, _, bundle, work = reranked[:4]
    out = export(bundle, tmp_path / "export")
    card = json.loads((out / "export.json").read_text())
    assert card["reranker"]["check"]["max_abs_diff_probability"] <= 1e-5
    assert (out / "reranker.onnx").is_file()
    questions = [r["question"] for r in _test_questions(work)]
    torch_bot = SupportAssistant.load(bundle, device="cpu", backend="torch")
    onnx_bot = SupportAssistant.load(bundle, device="cpu", export=out)
    assert onnx_bot.reranker._session is not None
    a, b = torch_bot.answer_batch(questions), onnx_bot.answer_batch(questions)
    assert [x.faq_id for x in a] == [x.faq_id for x in b]
    assert np.allclose([x.sources[0].rerank for x in a], [x.sources[0].rerank for x in b], atol=1e-4)


def test_reranker_runs_on_onnx_runtime_by_default_on_a_cpu(reranked):
    pytest.importorskip("onnxruntime")
    from lepton_apps.support.predict import SupportAssistant

    _, _, bundle, work = reranked[:4]
    questions = [r["question"] for r in _test_questions(work)]
    auto = SupportAssistant.load(bundle, device="cpu")
    torch_bot = SupportAssistant.load(bundle, device="cpu", backend="torch")
    assert auto.reranker._session is not None and torch_bot.reranker._session is None
    a, b = auto.answer_batch(questions), torch_bot.answer_batch(questions)
    assert [x.faq_id for x in a] == [x.faq_id for x in b]
    assert np.allclose([x.sources[0].rerank for x in a], [x.sources[0].rerank for x in b], atol=1e-4)


def test_auto_trains_the_second_stage_only_with_validation_questions():
    from lepton_apps.support.training import use_reranker

    assert use_reranker("auto", True, True)
    assert not use_reranker("auto", True, False) and not use_reranker("auto", False, True)
    assert use_reranker("on", False, False) and not use_reranker("off", True, True)
