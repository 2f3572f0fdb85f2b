"""Sentiment / urgency escalation: calm or off-topic messages stay calm, upset ones escalate, held-out numbers.

The demo-bundle tests use the real packaged all-MiniLM-L6-v2 (built once per session); the head and
threshold tests use small synthetic embeddings.
"""
import json

import numpy as np
import pandas as pd
import pytest
from test_support_fixtures import demo_assistant, demo_build, demo_bundle  # noqa: F401

from lepton_apps.cli import main
from lepton_apps.errors import DataError
from lepton_apps.metrics import threshold_metrics
from lepton_apps.support.model import NEUTRAL, train_escalation_head
from lepton_apps.support.predict import SupportAssistant

# none of these is in demo_sentiment.json (checked below): they test generalisation, not memory
CALM = ["who won the football match yesterday", "thanks, that helped", "hello, how are you today?",
        "what's the best recipe for lasagne?", "ok, thank you very much", "is it sunny in Madrid this week?",
        "good morning, I have a quick question about savings", "can you suggest a series to binge this weekend",
        "Thank you, have a lovely evening", "I'd like to order a replacement card, mine is worn out",
        "did Real Madrid win last night?"]
UPSET = ["this is ridiculous, my card got declined AGAIN, useless bank",
         "help, someone stole my card and is spending my money right now",
         "I am so angry, you have charged me three times for the same thing",
         "your app is garbage and so is your customer service",
         "someone hacked my account and is sending money out as we speak",
         "I've been waiting 2 weeks for a reply, this is a disgrace",
         "please block my card now, I was just mugged",
         "I'm desperate, I can't pay for food and my account is frozen",
         "I have been scammed and lost all my savings, please help me",
         "URGENT my rent payment must go today and it keeps failing"]


def _demo_messages(demo_build) -> pd.DataFrame:
    return pd.DataFrame(json.loads((demo_build[3] / "demo_sentiment.json").read_text())["records"])


def test_probe_messages_are_not_in_the_labelled_data(demo_build):
    known = {t.lower().strip(" ?!.") for t in _demo_messages(demo_build)["text"]}
    assert not [t for t in CALM + UPSET if t.lower().strip(" ?!.") in known]


def test_calm_off_topic_and_polite_messages_are_not_escalated(demo_assistant):
    replies = demo_assistant.answer_batch(CALM)
    flagged = [(t, r.escalation_score) for t, r in zip(CALM, replies) if r.escalate]
    assert flagged == []
    assert all(r.sentiment == NEUTRAL and r.escalation_reason is None for r in replies)
    assert max(r.escalation_score for r in replies) < demo_assistant.settings.escalation_threshold


def test_angry_distressed_and_urgent_messages_are_escalated(demo_assistant):
    replies = demo_assistant.answer_batch(UPSET)
    missed = [(t, r.escalation_score) for t, r in zip(UPSET, replies) if not r.escalate]
    assert missed == []
    for r in replies:
        assert r.sentiment in {"negative", "urgent"} and r.escalation_score >= demo_assistant.settings.escalation_threshold
        assert r.sentiment in r.escalation_reason and "P(escalate)" in r.escalation_reason
    assert [r.sentiment for r in replies[1:2] + replies[4:5] + replies[6:9]] == ["urgent"] * 5
    assert [r.sentiment for r in replies[0:1] + replies[2:4]] == ["negative"] * 3


def test_held_out_escalation_precision_recall_f1_are_above_floors(demo_build):
    m = demo_build[1]["metrics"]
    # 117 held-out messages (61 calm, 56 angry / urgent), never trained on nor used for the threshold
    assert m["n_sentiment_test"] == 117 and m["n_should_escalate"] == 56
    assert m["escalation_precision"] >= 0.85 and m["escalation_recall"] >= 0.85 and m["escalation_f1"] >= 0.87
    assert m["escalation_pr_auc"] >= 0.95 and m["sentiment_accuracy"] >= 0.85
    assert m["false_escalations"] + m["missed_escalations"] <= 14


def test_threshold_is_chosen_for_the_target_precision_without_the_held_out_messages(demo_build):
    assistant, record = demo_build[0], demo_build[1]
    data = _demo_messages(demo_build)
    s = record["sentiment"]
    assert s["n_messages"] == (data["split"] != "test").sum() and s["n_held_out"] == (data["split"] == "test").sum()
    assert set(data.loc[data["split"] == "test", "text"]).isdisjoint(data.loc[data["split"] != "test", "text"])
    assert s["target_precision"] == 0.9 and s["cv_escalation_precision"] >= 0.9 and s["cv_escalation_recall"] >= 0.8
    assert assistant.settings.escalation_threshold == s["escalation_threshold"]
    assert 0.3 < s["escalation_threshold"] < 0.9   # chosen, not the old fixed 0.5 / argmax rule
    # every calm group of the held-out set is represented, including chit-chat and calm problem reports
    groups = set(data.loc[(data["split"] == "test") & (data["label"] == NEUTRAL), "group"])
    assert {"off_topic", "greeting_thanks", "calm_problem", "banking_question"} <= groups


def test_bundle_stores_the_threshold_and_reloads_the_same_decisions(demo_assistant, demo_bundle):
    retrieval = json.loads((demo_bundle / "retrieval.json").read_text())
    head = json.loads((demo_bundle / "sentiment_head.json").read_text())
    assert retrieval["settings"]["escalation_threshold"] == head["training"]["escalation_threshold"]
    assert json.loads((demo_bundle / "bundle.json").read_text())["metrics"]["escalation_f1"] >= 0.87
    loaded = SupportAssistant.load(demo_bundle, device="cpu")
    a, b = demo_assistant.answer_batch(CALM + UPSET), loaded.answer_batch(CALM + UPSET)
    assert [r.escalate for r in a] == [r.escalate for r in b] == [False] * len(CALM) + [True] * len(UPSET)
    assert np.allclose([r.escalation_score for r in a], [r.escalation_score for r in b], atol=1e-5)


def test_evaluate_command_reports_escalation_on_the_held_out_messages(capsys, demo_build, demo_bundle, tmp_path):
    sentiment = demo_build[3] / "demo_sentiment.json"
    code = main(["support", "evaluate", str(demo_bundle), "--sentiment", str(sentiment), "--out", str(tmp_path / "ev")])
    assert code == 0, capsys.readouterr()
    metrics = json.loads((tmp_path / "ev" / "report.json").read_text())
    for key in ("escalation_precision", "escalation_recall", "escalation_f1", "n_sentiment_test"):
        assert metrics[key] == pytest.approx(demo_build[1]["metrics"][key], abs=1e-6), key
    details = pd.read_csv(tmp_path / "ev" / "escalation_details.csv")
    assert len(details) == 117 and set(details["split"]) == {"test"}
    flagged = metrics["n_should_escalate"] - metrics["missed_escalations"] + metrics["false_escalations"]
    assert details["escalate"].sum() == flagged
    assert (~details["correct"]).sum() == metrics["missed_escalations"] + metrics["false_escalations"]
    code = main(["support", "evaluate", str(demo_bundle)])
    assert code == 2 and "nothing to evaluate" in "".join(capsys.readouterr())


# --------------------------------------------------------------------------- head + threshold, synthetic
def _synthetic(n_per_class=60, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    centres = {NEUTRAL: np.zeros(dim), "negative": np.eye(dim)[0] * 1.5, "urgent": np.eye(dim)[1] * 1.5}
    x = np.concatenate([c + rng.normal(scale=0.7, size=(n_per_class, dim)) for c in centres.values()])
    y = [label for label in centres for _ in range(n_per_class)]
    return x.astype(np.float32), y


def test_escalation_threshold_reaches_the_target_precision_on_out_of_fold_scores():
    x, y = _synthetic()
    loose, t_loose = train_escalation_head(x, y, target_precision=0.8, seed=0)
    strict, t_strict = train_escalation_head(x, y, target_precision=0.97, seed=0)
    assert t_strict > t_loose and strict.summary["cv_escalation_precision"] >= 0.97
    assert loose.summary["cv_escalation_precision"] >= 0.8
    assert strict.summary["cv_escalation_recall"] < loose.summary["cv_escalation_recall"]
    assert loose.labels == ["negative", NEUTRAL, "urgent"] and loose.summary["cv_folds"] == 5
    # the stored head is the fitted logistic regression: in-sample it separates the classes
    probs = loose.head.predict_proba(x)
    upset = np.array([label != NEUTRAL for label in y]).astype(int)
    assert threshold_metrics(upset, 1 - probs[:, 1], t_loose)["f1"] > 0.85


def test_fixed_threshold_and_binary_labels_and_extra_neutral_examples():
    from sklearn.linear_model import LogisticRegression

    x, y = _synthetic()
    keep = [i for i, label in enumerate(y) if label != "negative"]
    xb, yb = x[keep], [y[i] for i in keep]
    extra = x[:10] + 0.01
    res, t = train_escalation_head(xb, yb, threshold=0.7, extra_neutral=extra, seed=1)
    assert t == 0.7 and res.summary["escalation_threshold"] == 0.7 and res.summary["n_extra_neutral"] == 10
    ref = LogisticRegression(C=10.0, class_weight="balanced", max_iter=3000).fit(
        np.concatenate([xb, extra]), yb + [NEUTRAL] * 10)
    assert np.allclose(res.head.predict_proba(xb), ref.predict_proba(xb), atol=1e-5)


@pytest.mark.parametrize("labels, message", [(["calm", "angry"] * 10, "no 'neutral' label"),
                                             ([NEUTRAL] * 19 + ["urgent"], "only one example")])
def test_unusable_sentiment_labels_are_clear_errors(labels, message):
    x = np.random.default_rng(0).normal(size=(20, 8))
    with pytest.raises(DataError, match=message) as err:
        train_escalation_head(x, labels)
    assert err.value.fix
