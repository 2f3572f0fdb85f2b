"""Training paths with a tiny random encoder (shapes and plumbing, fast): fine-tuning, intent CSV, bundle with encoder."""
import json

import numpy as np
import pandas as pd
import pytest
from test_support_fixtures import tiny_encoder_dir  # noqa: F401

from lepton_apps.errors import DataError
from lepton_apps.support.config import SupportConfig
from lepton_apps.support.data import read_labelled_pairs
from lepton_apps.support.finetune import _cosent_loss, _mnrl_loss, _PairScorer, kb_pairs
from lepton_apps.support.model import ConfidenceModel
from lepton_apps.support.predict import SupportAssistant
from lepton_apps.support.training import train


def _small_kb(tmp_path):
    rows = [{"id": f"f{i}", "question": f"question number {i} about topic {w}", "answer": f"answer {i}",
             "paraphrases": [f"topic {w} help {i}", f"need info {w} {i}", f"{w} {i} please"], "category": c}
            for i, (w, c) in enumerate([("cards", "a"), ("loans", "b"), ("savings", "b"), ("transfers", "a"),
                                        ("fees", "a"), ("app", "b")])]
    path = tmp_path / "kb.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


def test_mnrl_loss_masks_other_pairs_of_the_same_faq():
    import torch

    scores = torch.tensor([[5.0, 5.0, 0.0], [5.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    same = torch.tensor([0, 0, 1])
    distinct = torch.tensor([0, 1, 2])
    assert _mnrl_loss(scores, same) < 0.02 < _mnrl_loss(scores, distinct)


def test_cosent_loss_ranks_matching_pairs_above_non_matching_ones():
    import torch

    def loss(cosines, labels):
        return float(_cosent_loss(torch.diag(torch.tensor(cosines)) * _PairScorer.SCALE, torch.tensor(labels)))

    labels = [1, 0, 1, 0]
    right, wrong = loss([0.9, 0.2, 0.8, 0.3], labels), loss([0.2, 0.9, 0.3, 0.8], labels)
    assert right < 0.01 and wrong > 10                     # log(1 + sum exp(20 (cos_neg - cos_pos)))
    # exactly log(1 + e^{20(0.5-0.6)}) for one negative just below one positive; off-diagonal scores are ignored
    scores = torch.tensor([[0.6, 9.0], [9.0, 0.5]]) * _PairScorer.SCALE
    assert float(_cosent_loss(scores, torch.tensor([1, 0]))) == pytest.approx(float(np.log1p(np.exp(-2.0))), abs=1e-5)
    assert loss([0.9, 0.8], [1, 1]) == pytest.approx(0.0)   # one label only: nothing to rank


def test_labelled_pairs_are_read_from_afqmc_jsonl_and_csv_with_row_level_errors(tmp_path):
    afqmc = tmp_path / "pairs.jsonl"
    afqmc.write_text('{"sentence1": "花呗怎么还款", "sentence2": "花呗如何还钱", "label": "1", "idx": 1}\n'
                     '{"sentence1": "花呗怎么还款", "sentence2": "借呗额度", "label": "0", "idx": 2}\n', encoding="utf-8")
    assert read_labelled_pairs(afqmc) == [("花呗怎么还款", "花呗如何还钱", 1), ("花呗怎么还款", "借呗额度", 0)]
    bad = tmp_path / "bad.csv"
    pd.DataFrame({"question1": ["a", "b"], "question2": ["c", "d"], "label": ["1", "yes"]}).to_csv(bad, index=False)
    with pytest.raises(DataError, match="row 2 of .*bad.csv.*'yes'"):
        read_labelled_pairs(bad)
    one = tmp_path / "one.csv"
    pd.DataFrame({"question1": ["a"], "question2": ["c"], "label": ["1"]}).to_csv(one, index=False)
    with pytest.raises(DataError, match="only label 1"):
        read_labelled_pairs(one)
    with pytest.raises(DataError, match="no column label"):
        pd.DataFrame({"question1": ["a"], "question2": ["c"]}).to_csv(one, index=False)
        read_labelled_pairs(one)


def test_finetuning_with_labelled_pairs_uses_cosent_and_pairs_need_finetuning(tmp_path, tiny_encoder_dir):
    from lepton_apps.errors import ConfigError

    kb = _small_kb(tmp_path)
    pairs = tmp_path / "pairs.csv"
    pd.DataFrame({"question1": ["topic cards help", "topic cards help", "loans please", "fees 4 please"],
                  "question2": ["need info cards", "topic loans help", "need info loans", "app 5 please"],
                  "label": [1, 0, 1, 0]}).to_csv(pairs, index=False)
    with pytest.raises((ConfigError, ValueError), match="finetune_encoder: on"):
        SupportConfig(kb=str(kb), finetune_pairs=str(pairs), finetune_encoder="off")
    assert SupportConfig(kb=str(kb), finetune_pairs=str(pairs), finetune_encoder="auto").finetune_encoder == "auto"
    path = train(SupportConfig(kb=str(kb), out=str(tmp_path / "bundle"), encoder=tiny_encoder_dir, finetune_encoder=True,
                               finetune_pairs=str(pairs), finetune_epochs=3, finetune_batch_size=8, finetune_lr=1e-3,
                               device="cpu", progress=False))
    ft = json.loads((path / "finetune.json").read_text())
    assert ft["loss"] == "cosent" and ft["labelled_pairs"] == 4
    # 30 % of each FAQ's paraphrases (one per FAQ here) stay out of tuning to calibrate on: the KB alone calibrates
    assert ft["held_out_for_calibration"] == 6 and ft["pairs"] == 24 - 6 + 4
    assert ft["final_train_loss"] < ft["first_train_loss"]


def test_intent_head_standardizes_inside_and_takes_raw_embeddings():
    from lepton_apps.support.model import train_head

    rng = np.random.default_rng(0)
    labels = ["a", "b", "c"] * 40
    centres = {"a": 0.0, "b": 1.0, "c": 2.0}
    # e5-like: a large shared component and a small spread carrying the classes
    x = (5.0 + 0.02 * np.array([[centres[c]] + [0.0] * 7 for c in labels]) + 0.0005 * rng.normal(size=(120, 8)))
    x = x.astype(np.float32)
    std = train_head(x, labels, epochs=40, lr=3e-2, seed=0, device="cpu", batch_size=32, standardize=True)
    auto = train_head(x, labels, epochs=40, lr=3e-2, seed=0, device="cpu", batch_size=32)   # chosen: standardized
    raw = train_head(x, labels, epochs=40, lr=3e-2, seed=0, device="cpu", batch_size=32, standardize=False)
    acc = {name: float((np.array(r.labels)[r.head.predict_proba(x).argmax(1)] == np.array(labels)).mean())
           for name, r in (("std", std), ("raw", raw))}
    assert std.summary["standardized"] and acc["std"] >= 0.95 and acc["raw"] < 0.6, acc
    assert auto.summary["standardized"] and auto.summary["val_accuracy_raw_standardized"][1] > \
        auto.summary["val_accuracy_raw_standardized"][0]
    # the folding is exact, with or without a hidden layer
    import torch

    from lepton_apps.support.model import EmbeddingHead, fold_standardization

    centre, spread = rng.normal(size=8).astype(np.float32), 0.37
    for hidden in (0, 16):
        torch.manual_seed(hidden)
        head = EmbeddingHead(8, 3, hidden=hidden).eval()
        want = head.predict_proba((x - centre) / spread)
        assert np.allclose(fold_standardization(head, centre, spread).predict_proba(x), want, atol=1e-5)


def test_kb_pairs_are_one_sampled_pair_per_text_linear_in_the_kb_and_bounded():
    pairs = kb_pairs(["a", "b", "c", "d"], [0, 0, 0, 1], seed=0)
    assert sorted(p[0] for p in pairs) == ["a", "b", "c"]          # one pair per text of an FAQ with 2+ texts
    assert all(p[2] == 0 and p[1] in "abc" and p[1] != p[0] for p in pairs)
    # 200 FAQs x 21 texts: 4,200 pairs (not the 84,000 ordered pairs), all within one FAQ, capped by max_pairs
    texts = [f"faq {f} text {t}" for f in range(200) for t in range(21)]
    owner = [f for f in range(200) for _ in range(21)]
    big = kb_pairs(texts, owner, seed=1)
    assert len(big) == 4200 and len({p[0] for p in big}) == 4200
    assert all(a.split()[1] == b.split()[1] == str(o) and a != b for a, b, o in big)
    assert len(kb_pairs(texts, owner, seed=1, max_pairs=500)) == 500


def test_mnrl_loss_never_treats_another_text_of_the_same_faq_as_a_negative():
    import torch

    torch.manual_seed(0)
    scores = torch.randn(6, 6)
    owners = torch.tensor([0, 0, 1, 2, 2, 2])
    same = owners[:, None] == owners[None, :]
    keep = ~same | torch.eye(6, dtype=torch.bool)
    # by hand: cross-entropy over each row (and column) without the other same-FAQ entries
    rows = torch.stack([-torch.log_softmax(scores[i][keep[i]], 0)[int(keep[i][:i].sum())] for i in range(6)]).mean()
    cols = torch.stack([-torch.log_softmax(scores[:, i][keep[:, i]], 0)[int(keep[:i, i].sum())] for i in range(6)]).mean()
    assert float(_mnrl_loss(scores, owners)) == pytest.approx(float((rows + cols) / 2), abs=1e-5)
    # raising a same-FAQ off-diagonal score leaves the loss unchanged (it is not a negative) ...
    bumped = scores.clone()
    bumped[0, 1] += 10.0
    assert float(_mnrl_loss(bumped, owners)) == pytest.approx(float(_mnrl_loss(scores, owners)), abs=1e-6)
    # ... while raising a different-FAQ score raises it
    bumped[0, 2] += 10.0
    assert float(_mnrl_loss(bumped, owners)) > float(_mnrl_loss(scores, owners)) + 0.5


def test_confidence_model_json_round_trip_and_monotone_in_score():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(200, 5))
    y = (x[:, 0] + 0.1 * rng.normal(size=200) > 0.5).astype(int)
    m = ConfidenceModel.fit(x, y)
    m2 = ConfidenceModel.from_dict(json.loads(json.dumps(m.to_dict())))
    lo, hi = np.full((1, 5), 0.5), np.full((1, 5), 0.5)
    lo[0, 0], hi[0, 0] = 0.1, 0.9
    assert m2.predict(hi)[0] > 0.8 > 0.2 > m2.predict(lo)[0]
    assert np.allclose(m.predict(x), m2.predict(x))


def test_train_with_finetuning_and_intent_csv_writes_a_loadable_bundle(tmp_path, tiny_encoder_dir):
    kb = _small_kb(tmp_path)
    intents = pd.DataFrame({"text": [f"{w} thing {i}" for w in ("card", "loan", "app") for i in range(12)],
                            "intent": [w for w in ("card", "loan", "app") for _ in range(12)]})
    intents.to_csv(tmp_path / "intents.csv", index=False)
    questions = pd.DataFrame({"question": ["topic cards", "topic loans", "weather", "topic fees", "topic app", "pizza"],
                              "faq_id": ["f0", "f1", "", "f4", "f5", ""], "split": ["val", "val", "val", "test", "test", "test"]})
    questions.to_csv(tmp_path / "q.csv", index=False)
    steps = []
    cfg = SupportConfig(kb=str(kb), out=str(tmp_path / "bundle"), encoder=tiny_encoder_dir, questions=str(tmp_path / "q.csv"),
                        intent_data=str(tmp_path / "intents.csv"), finetune_encoder=True, finetune_epochs=3,
                        finetune_batch_size=8, finetune_lr=1e-3, head_epochs=5, device="cpu", progress=False,
                        teams={"card": "Cards team"}, ann_threshold=10)  # 24 texts > 10: the FAISS path
    path = train(cfg, progress=lambda stage, frac: steps.append((stage, frac)))
    assert [f for _, f in steps] == sorted(f for _, f in steps) and steps[-1] == ("done", 1.0)
    ft = json.loads((path / "finetune.json").read_text())
    # one pair per KB text tuned on; one paraphrase per FAQ is held out to calibrate on (too few val questions)
    assert ft["pairs"] == 6 * 4 - 6 and ft["held_out_for_calibration"] == 6
    assert ft["final_train_loss"] < ft["first_train_loss"]
    assert "top1_accuracy" in ft["test_dense_before"] and "top1_accuracy" in ft["test_dense_after"]
    assert (path / "encoder" / "model.safetensors").is_file()
    bot = SupportAssistant.load(path, device="cpu")
    assert bot.encoder.path == str(path / "encoder")          # the fine-tuned encoder, not the base one
    assert bot.index.kind == "faiss-hnsw" and (path / "faiss_hnsw.npy").is_file()   # stored graph, not rebuilt
    assert bot.intent_labels == ["app", "card", "loan"] and bot.sentiment_head is None
    r = bot.answer("topic cards help")
    assert r.intent in bot.intent_labels and len(r.sources) == 5 and r.sentiment is None
    if r.intent == "card":
        assert r.team == "Cards team"
    metrics = json.loads((path / "bundle.json").read_text())["metrics"]
    assert {"finetune_top1_before", "finetune_top1_after", "top1_accuracy", "handoff_recall"} <= set(metrics)
    # 1 out-of-scope validation question is too few alone: the shipped general set joins it
    calib = json.loads((path / "retrieval.json").read_text())["calibration"]
    assert calib["out_of_scope_source"] == "user-oos+general-oos" and calib["faq_classifier"] is True
    assert calib["calibration_source"].startswith("your 1 out-of-scope validation questions and the general "
                                                  "out-of-scope set shipped with the template")
    assert bot.calibration_source == calib["calibration_source"]
    assert (path / "faq_classifier.safetensors").is_file() and bot.faq_head is not None


def test_the_pair_step_budget_cuts_the_epochs_of_a_large_kb_and_records_it(tiny_encoder_dir):
    from lepton_apps.support.encoder import SentenceEncoder
    from lepton_apps.support.finetune import finetune_biencoder

    enc = SentenceEncoder(tiny_encoder_dir, device="cpu")
    texts = [f"topic {w} text {i}" for w in ("cards", "loans", "fees") for i in range(6)]
    owner = [o for o in range(3) for _ in range(6)]
    kw = dict(epochs=4, lr=1e-3, batch_size=6, seed=0, precision="fp32")
    inside = finetune_biencoder(enc, texts, owner, max_pair_steps=18 * 4, **kw)   # 18 pairs x 4 epochs fit
    cut = finetune_biencoder(enc, texts, owner, max_pair_steps=40, **kw)          # 40 // 18 = 2 epochs
    floor = finetune_biencoder(enc, texts, owner, max_pair_steps=5, **kw)         # never below one epoch
    assert inside["pairs"] == cut["pairs"] == 18
    assert (inside["epochs"], cut["epochs"], floor["epochs"]) == (4, 2, 1)
    assert inside["epochs_asked"] == cut["epochs_asked"] == floor["epochs_asked"] == 4
    assert cut["steps"] == 2 * 3 and floor["steps"] == 3          # 18 pairs / batch 6 = 3 steps an epoch
    assert SupportConfig(kb="kb.jsonl").finetune_max_pair_steps == 10_000


def test_kb_alone_calibrates_on_the_shipped_set_and_the_bundle_says_so(tmp_path, tiny_encoder_dir):
    path = train(SupportConfig(kb=str(_small_kb(tmp_path)), out=str(tmp_path / "bundle"), encoder=tiny_encoder_dir,
                               device="cpu", progress=False))
    calib = json.loads((path / "retrieval.json").read_text())["calibration"]
    assert calib["out_of_scope_source"] == "general-oos" and calib["n_user_out_of_scope"] == 0
    assert calib["calibration_source"].startswith("the general out-of-scope set shipped with the template (")
    assert calib["calibration_source"].endswith("+ held-out KB paraphrases")
    assert calib["general_oos_total"] >= 500 and calib["n_out_of_scope"] == calib["general_oos_used"]
    # the tuned encoder (auto) learned 70 % of each FAQ's paraphrases: the rest calibrate, each held out once
    held = json.loads((path / "finetune.json").read_text())["held_out_for_calibration"]
    assert 0 < held < 24 and calib["n_in_scope"] == held
    assert SupportAssistant.load(path, device="cpu").calibration_source == calib["calibration_source"]


def test_train_rejects_questions_about_unknown_faqs(tmp_path, tiny_encoder_dir):
    kb = _small_kb(tmp_path)
    pd.DataFrame({"question": ["x"], "faq_id": ["missing-id"]}).to_csv(tmp_path / "q.csv", index=False)
    with pytest.raises(DataError, match="missing-id"):
        train(SupportConfig(kb=str(kb), encoder=tiny_encoder_dir, questions=str(tmp_path / "q.csv"),
                            out=str(tmp_path / "b"), progress=False))


def test_intent_backbone_finetuning_with_transformers_round_trips(tmp_path, tiny_encoder_dir):
    kb = _small_kb(tmp_path)
    words = {"card": "plastic card payment", "loan": "borrow money credit", "app": "phone application crash"}
    intents = pd.DataFrame({"text": [f"{w} {i}" for k, w in words.items() for i in range(10)],
                            "intent": [k for k in words for _ in range(10)]})
    intents.to_csv(tmp_path / "intents.csv", index=False)
    cfg = SupportConfig(kb=str(kb), out=str(tmp_path / "bundle"), encoder=tiny_encoder_dir,
                        intent_data=str(tmp_path / "intents.csv"), intent_backbone="finetune", intent_epochs=2,
                        intent_lr=1e-3, head_epochs=3, device="cpu", progress=False)
    path = train(cfg)
    assert (path / "intent_model" / "model.safetensors").is_file()
    bot = SupportAssistant.load(path, device="cpu")
    assert bot.intent_model is not None and bot.intent_labels == ["app", "card", "loan"]
    replies = bot.answer_batch(["plastic card payment 3", "", "borrow money credit 2"])
    assert replies[0].intent in bot.intent_labels and replies[1].intent is None
    with pytest.raises(Exception, match="needs intent_data"):
        train(SupportConfig(kb=str(kb), encoder=tiny_encoder_dir, intent_backbone="finetune",
                            out=str(tmp_path / "b2"), progress=False))


def test_finetuning_auto_tunes_a_small_vocabulary_encoder_on_a_kb_with_paraphrases():
    from lepton_apps.support.training import use_finetuning

    three = [0, 0, 0, 1, 1, 1]
    assert use_finetuning("auto", 30_522, three)                     # MiniLM, 3 texts per FAQ
    assert not use_finetuning("auto", 250_037, three)                # multilingual-e5-small: bundle too large
    assert not use_finetuning("auto", 30_522, [0, 1, 2, 2])          # too few paraphrases to pair
    assert use_finetuning("auto", 30_522, [0, 1, 2, 2], labelled_pairs=True)
    assert use_finetuning("on", 250_037, [0]) and not use_finetuning("off", 30_522, three)


def test_fast_build_flag_turns_off_the_slow_stages_and_refuses_to_mix(tmp_path, tiny_encoder_dir):
    from typer.testing import CliRunner

    from lepton_apps.bundle import load_bundle
    from lepton_apps.support.cli import cli

    kb = _small_kb(tmp_path)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"encoder: {tiny_encoder_dir}\nfinetune_encoder: on\nreranker: on\n")
    bad = CliRunner().invoke(cli, ["train", str(kb), "--fast", "--reranker"])
    assert bad.exit_code != 0 and "--fast" in str(bad.exception or bad.output)
    out = tmp_path / "bundle"
    ok = CliRunner().invoke(cli, ["train", str(kb), "--config", str(cfg), "--fast", "--out", str(out)])
    assert ok.exit_code == 0, ok.output
    config = load_bundle(out).training_config
    assert (config["finetune_encoder"], config["reranker"]) == ("off", "off")
    assert not (out / "encoder").exists()
