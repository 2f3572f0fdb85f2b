"""Each domain's monitoring window and the reference profile its training writes into the bundle: a window of
held-out data like the training data is not called drift, a deliberately shifted one is, unreadable inputs
are counted and reported."""
import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lepton_apps.bundle import load_bundle
from lepton_apps.errors import DataError
from lepton_apps.monitor import Profile, compare, compare_window
from lepton_apps.predictor import MonitorWindow
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - fixtures
from test_medical_pipeline import tiny_bundle
from test_support_fixtures import demo_build, demo_bundle  # noqa: F401 - fixtures


def held_against(profile: Profile, window: MonitorWindow):
    """Return the drift report of ``window`` against ``profile`` (each feature on the rows it can be judged on)."""
    return compare_window(profile, window)


def bundle_profile(path) -> Profile:
    """Return the profile stored in a bundle, after checking that the bundle's checksums cover it."""
    bundle = load_bundle(path)
    assert bundle.has("profile/profile.json")
    assert "profile/profile.json" in bundle.metadata["files"]
    return Profile.load(bundle.file("profile/profile.json").parent)


def status_of(report, name: str) -> str:
    return next(r["status"] for r in report.rows() if r["name"] == name)


def unreadable_row(report) -> dict:
    return next(q for q in report.quality if q["check"] == "unreadable")


# ------------------------------------------------------------------------------------------- finance

def test_finance_bundle_profiles_the_training_features_and_the_test_period_scores(fraud_bundle, fraud_data):  # noqa: F811
    profile = bundle_profile(fraud_bundle)
    bundle = load_bundle(fraud_bundle)
    info = bundle.load_json("profile/info.json")
    report = bundle.load_json("report.json")
    history, _ = fraud_data
    assert info["features"] == "training data" and profile.n_rows == info["rows"] == report["rows_used"] == len(history)
    assert info["scores"] == "test period" and info["score_rows"] == report["split"]["rows"]["test"]
    assert {"amount", "is_night", "customer_nb_tx_7d", "terminal_risk_30d"} <= set(profile.features)
    assert "is_weekend" not in profile.features and not any(n.startswith("col:") for n in profile.features)
    assert list(profile.predictions) == ["score"] and profile.embeddings is None
    times = history["timestamp"].sort_values().reset_index(drop=True)
    # each feature on the rows whose history is complete, as a window's are judged: a 30-day terminal window needs
    # the 37 days before a row, which the 40-day training data has from day 37 on; a 1-day customer window from day 1
    start = times.iloc[0]
    assert profile.features["amount"]["n"] == len(history)  # needs no history
    assert profile.features["customer_nb_tx_1d"]["n"] == int((times - pd.Timedelta(days=1) >= start).sum())
    assert profile.features["terminal_risk_30d"]["n"] == int((times - pd.Timedelta(days=37) >= start).sum())
    # consecutive windows of the training data vary more than random draws: the profile measured by how much
    assert profile.features["amount"]["variation"]["sizes"][0] == 250
    scores = pd.read_parquet(bundle.file("eval_scores.parquet")).query("split == 'test'")["score"].to_numpy()
    complete = (times.iloc[-len(scores):] - pd.Timedelta(days=37) >= start).to_numpy()
    assert 0 < complete.sum() < len(scores)
    assert profile.predictions["score"]["n"] == complete.sum()
    assert profile.predictions["score"]["mean"] == pytest.approx(scores[complete].mean(), rel=1e-6)
    # the shipped (refit) model trained on the fit and validation periods: its scores there are in-sample
    first, last = info["model_trained_on"]
    assert first == int(start.timestamp()) and last < int(times.iloc[-len(scores)].timestamp())


def test_finance_window_is_judged_on_rows_whose_history_and_labels_are_complete(fraud_bundle, fraud_data):  # noqa: F811
    """Issue 25: a window is built after the transactions before it and judged only where production would have
    computed the same features; a window from the training data itself is ok, not drift."""
    from lepton_apps.finance import FraudScorer
    from lepton_apps.monitor import compare_window

    history, new = fraud_data
    scorer = FraudScorer.load(fraud_bundle, compiled="no")
    profile = bundle_profile(fraud_bundle)
    middle = history[(history.timestamp >= history.timestamp.min() + pd.Timedelta(days=20))].head(4000)
    alone = scorer.monitor_window(middle)  # the bundle's saved history covers only the last 37 days of training
    assert alone.judged["terminal_risk_30d"].sum() == 0 and "pass --history" in alone.judge_hint
    report = compare_window(profile, alone)
    assert report.status == "ok", report.reasons
    assert next(r for r in report.features if r["name"] == "terminal_risk_30d")["status"] == "n/a"
    # with the table before it as history, the 7-day windows are complete, the score is in-sample (not judged)
    full = scorer.monitor_window(middle, history=history)
    assert full.judged.get("customer_nb_tx_7d", np.ones(1, bool)).all()
    assert full.judged["score"].sum() == 0 and "in-sample" in full.not_judged["score"]
    assert compare_window(profile, full).status == "ok"
    # the same window without history, scored cold, differs where the history matters: that was the false alarm
    cold, _ = scorer.features(middle, use_state=False)
    assert (cold[:, scorer.spec.names.index("customer_nb_tx_30d")] < full.features["customer_nb_tx_30d"]).mean() > 0.5
    with pytest.raises(DataError, match="history"):
        scorer.monitor_window(middle, history=middle.head(0))
    with pytest.raises(DataError, match=r"the history: the model needs the customer column .* \(in --history"):
        scorer.monitor_window(middle, history=history.drop(columns=["customer_id"]))
    # new transactions without their labels: the fraud rates need labels older than the 7-day delay, which the
    # saved history has for a 5-day window
    unlabelled = scorer.monitor_window(new.drop(columns=["label"]))
    assert "terminal_risk_30d" not in unlabelled.judged and "is_night" not in unlabelled.judged  # 5 whole days
    assert compare_window(profile, unlabelled).status == "ok"
    # a window that starts 10 days after the saved history ends cannot use it, and says so
    late = scorer.monitor_window(new.assign(timestamp=new["timestamp"] + pd.Timedelta(days=10)))
    assert late.judged["terminal_risk_1d"].sum() == 0 and "10.0 days after" in late.not_judged["terminal_risk_1d"]


def test_finance_window_of_new_transactions_is_not_drift_and_amounts_x3_are(fraud_bundle, fraud_data):  # noqa: F811
    from lepton_apps.finance import FraudScorer

    _, new = fraud_data
    scorer = FraudScorer.load(fraud_bundle)
    profile = bundle_profile(fraud_bundle)
    window = scorer.monitor_window(new)
    assert window.unreadable == 0 and len(window.features) == len(new) and window.embeddings is None
    assert list(window.features.columns) == list(profile.features)
    np.testing.assert_allclose(window.scores, scorer.score(new)["score"].to_numpy(), rtol=1e-9)
    same = held_against(profile, window)
    assert same.status == "ok", same.reasons
    records = scorer.monitor_window(new.head(300).to_dict("records"))  # a list of dicts reads the same
    np.testing.assert_allclose(records.scores, scorer.monitor_window(new.head(300)).scores)

    shifted = held_against(profile, scorer.monitor_window(new.assign(amount=new["amount"] * 3)))
    assert shifted.status == "drift" and status_of(shifted, "amount") == "drift"
    assert any(r.startswith("amount:") for r in shifted.reasons)


def test_finance_window_counts_rows_that_cannot_be_scored(fraud_bundle, fraud_data, tmp_path):  # noqa: F811
    from lepton_apps.finance import FraudScorer

    _, new = fraud_data
    bad = new.assign(timestamp=new["timestamp"].astype(str))
    bad.loc[:99, "timestamp"] = "not a time"
    path = tmp_path / "window.csv"
    bad.to_csv(path, index=False)
    window = FraudScorer.load(fraud_bundle).monitor_window(path)
    assert window.unreadable == 100 and len(window.features) == len(new) - 100
    report = held_against(bundle_profile(fraud_bundle), window)
    row = unreadable_row(report)
    assert row["count"] == 100 and row["n"] == len(new) and row["status"] in ("warn", "drift")


def test_finance_categorical_user_columns_are_monitored_as_their_text():
    from lepton_apps.finance.features import FeatureSpec
    from lepton_apps.finance.monitoring import monitor_columns, monitor_features

    spec = FeatureSpec(roles={"timestamp": "t", "amount": "amount"}, windows_days=[1], label_delay_days=7,
                       numeric=["age"], categorical={"merchant": ["food", "travel"]})
    frame = pd.DataFrame({"merchant": ["travel", "casino", None], "age": [30, 40, 50]})
    x = np.array([[10.0, 0, 1, 30, 1], [20.0, 1, 0, 40, np.nan], [5.0, 0, 0, 50, np.nan]])
    out = monitor_features(spec, x, frame)
    assert list(out.columns) == ["amount", "is_night", "age", "merchant"]
    assert out["merchant"].tolist() == ["travel", "casino", None]  # a new category stays itself, not "missing"
    assert monitor_columns(spec) == (["amount", "is_night", "age"], ["merchant"])


# ------------------------------------------------------------------------------------------- medical

@pytest.fixture(scope="module")
def medical(tmp_path_factory):
    """A demo model whose validation split holds about 80 images (enough rows for the tests), and new images."""
    from lepton_apps.medical.demo import write_demo_data

    root = tmp_path_factory.mktemp("monitor_medical")
    bundle, data = tiny_bundle(root, n=200, epochs=1, val_fraction=0.4, test_fraction=0.1)
    return bundle, data, write_demo_data(root / "new", n=100, size=64, seed=11)


def _rewrite(src, dst, fn):
    dst.mkdir()
    for f in sorted(src.rglob("*.png")):
        Image.fromarray(fn(np.asarray(Image.open(f)).astype(np.int64)).clip(0, 255).astype(np.uint8)).save(dst / f.name)
    return dst


def test_medical_bundle_profiles_validation_images_embeddings_and_probabilities(medical):
    from lepton_apps.medical import MedicalClassifier

    bundle, _, _ = medical
    profile = bundle_profile(bundle)
    info = load_bundle(bundle).load_json("profile/info.json")
    summary = load_bundle(bundle).load_json("data_summary.json")
    assert info["split"] == "val" and info["images"] == profile.n_rows == summary["validation_images"] >= 60
    assert set(profile.features) == {"height", "width", "mode", "mean_intensity", "std_intensity",
                                     "saturated_share", "black_share"}
    assert profile.features["mode"]["frequencies"] == {"L": profile.n_rows}
    assert list(profile.predictions) == ["score"]
    clf = MedicalClassifier.load(bundle)
    assert profile.embeddings["dim"] == clf.model.backbone.num_features  # pooled, before the classifier


def test_medical_window_of_new_images_is_not_drift_and_brightened_or_inverted_ones_are(medical, tmp_path):
    from lepton_apps.medical import MedicalClassifier

    bundle, _, new = medical
    clf = MedicalClassifier.load(bundle)
    profile = bundle_profile(bundle)
    window = clf.monitor_window(new)  # a folder
    paths = sorted(new.rglob("*.png"))
    assert window.unreadable == 0 and len(window.features) == len(paths) == 100
    assert window.embeddings.shape == (100, profile.embeddings["dim"])
    by_path = {r.item: r.probabilities["lesion"] for r in clf.predict([str(p) for p in paths])}
    np.testing.assert_allclose(window.scores["score"], [by_path[str(p)] for p in paths], atol=1e-5)
    same = held_against(profile, window)
    assert same.status == "ok", same.reasons

    bright = held_against(profile, clf.monitor_window(_rewrite(new, tmp_path / "bright", lambda a: a * 1.6 + 60)))
    assert bright.status == "drift" and status_of(bright, "mean_intensity") == "drift"
    inverted = held_against(profile, clf.monitor_window(_rewrite(new, tmp_path / "inverted", lambda a: 255 - a)))
    assert inverted.status == "drift" and inverted.embeddings["status"] == "drift"


def test_medical_window_counts_unreadable_images(medical, tmp_path):
    from lepton_apps.medical import MedicalClassifier

    bundle, _, new = medical
    paths = [str(p) for p in sorted(new.rglob("*.png"))[:60]]
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    items = paths + [str(tmp_path / "broken.png"), str(tmp_path / "empty.png"), str(tmp_path / "missing.png")]
    window = MedicalClassifier.load(bundle).monitor_window(items)
    assert window.unreadable == 3 and len(window.features) == 60 and len(window.embeddings) == 60
    row = unreadable_row(held_against(bundle_profile(bundle), window))
    assert row["count"] == 3 and row["n"] == 63 and row["status"] == "warn"  # 4.8 %: ≥ 1 % warns, ≥ 5 % is drift
    manifest = tmp_path / "manifest.csv"
    pd.DataFrame({"path": items, "label": "normal"}).to_csv(manifest, index=False)
    assert MedicalClassifier.load(bundle).monitor_window(manifest).unreadable == 3


# ------------------------------------------------------------------------------------------- support

CHINESE = [f"{who}{what}" for who in ("我想知道", "请问", "你好，请告诉我", "我需要帮助：")
           for what in ("怎么开户？", "我的卡被偷了怎么办？", "转账需要多长时间？", "怎么修改密码？",
                        "贷款利率是多少？", "为什么我的付款失败了？", "怎么关闭账户？", "信用卡年费是多少？",
                        "如何设置自动还款？", "手机银行怎么登录？")]  # 40 banking questions in Chinese


def test_support_bundle_profiles_held_out_questions(demo_bundle):  # noqa: F811
    profile = bundle_profile(demo_bundle)
    info = load_bundle(demo_bundle).load_json("profile/info.json")
    questions = json.loads((demo_bundle.parent / "demo_questions.json").read_text())["records"]
    n_test = sum(q["split"] == "test" for q in questions)
    assert info["source"] == "held-out test questions" and profile.n_rows == info["questions"] == n_test
    assert set(profile.features) == {"length_chars", "length_words", "script", "intent"}
    assert profile.features["script"]["frequencies"] == {"latin": n_test}
    assert set(profile.predictions) == {"confidence", "handoff"}
    assert set(profile.predictions["handoff"]["sample"]) <= {0.0, 1.0}
    assert profile.embeddings["dim"] == 384


def test_support_same_questions_are_not_drift_other_language_and_off_topic_are(demo_bundle):  # noqa: F811
    from lepton_apps.support import SupportAssistant
    from lepton_apps.support.calibration import general_oos_questions
    from lepton_apps.support.training import reference_profile

    bot = SupportAssistant.load(demo_bundle)
    questions = json.loads((demo_bundle.parent / "demo_questions.json").read_text())["records"]
    test = [q["question"] for q in questions if q["split"] == "test"]
    order = np.random.default_rng(0).permutation(len(test))
    half_a, half_b = [test[i] for i in order[::2]], [test[i] for i in order[1::2]]
    # the bundle's reference is all the test questions; hold half of them against a profile of the other half
    profile, _ = reference_profile(bot, half_a, "half of the test questions")
    window = bot.monitor_window(half_b)
    assert window.unreadable == 0 and window.embeddings.shape == (len(half_b), 384)
    replies = bot.answer_batch(half_b)
    np.testing.assert_allclose(window.scores["confidence"], [r.confidence for r in replies])
    assert window.features["intent"].tolist() == [r.intent for r in replies]
    same = held_against(profile, window)
    assert same.status == "ok", same.reasons

    stored = bundle_profile(demo_bundle)
    chinese = held_against(stored, bot.monitor_window(CHINESE))
    assert chinese.status == "drift" and status_of(chinese, "script") == "drift"
    assert chinese.embeddings["status"] == "drift"
    off_topic = held_against(stored, bot.monitor_window(general_oos_questions()[:60]))
    assert off_topic.status == "drift" and off_topic.embeddings["status"] == "drift"
    assert "drift" in (status_of(off_topic, "handoff"), status_of(off_topic, "confidence"))


def test_support_window_counts_messages_that_are_not_questions(demo_bundle):  # noqa: F811
    from lepton_apps.support import SupportAssistant

    questions = json.loads((demo_bundle.parent / "demo_questions.json").read_text())["records"]
    good = [q["question"] for q in questions if q["split"] == "test"][:50]
    window = SupportAssistant.load(demo_bundle).monitor_window(
        pd.DataFrame({"question": good + ["", None, b"\x00\x01\x02\x03", "   "]}))
    assert window.unreadable == 4 and len(window.features) == 50 and len(window.embeddings) == 50
    row = unreadable_row(held_against(bundle_profile(demo_bundle), window))
    assert row["count"] == 4 and row["n"] == 54 and row["status"] == "drift"


def test_script_of_tells_writing_systems_apart():
    from lepton_apps.support.monitoring import script_of

    assert script_of("how do I open an account?") == "latin"
    assert script_of("Wie eröffne ich ein Konto?") == "latin"
    assert script_of("怎么开户？") == script_of("口座を開くには？") == "cjk"
    assert script_of("как открыть счёт?") == "cyrillic"
    assert script_of("كيف أفتح حسابا؟") == "arabic"
    assert script_of("계좌 개설") == "hangul"
    assert script_of("1234 !!") == "none"


def _subset(window: MonitorWindow, idx) -> MonitorWindow:
    scores = window.scores if isinstance(window.scores, dict) else {"score": window.scores}
    return MonitorWindow(features=window.features.iloc[idx].reset_index(drop=True),
                         scores={k: np.asarray(v)[idx] for k, v in scores.items()},
                         embeddings=None if window.embeddings is None else np.asarray(window.embeddings)[idx])


def _false_alarms(window: MonitorWindow, size: int, draws: int = 20, seed: int = 0) -> list[str]:
    """Profile one random half of a same-distribution window; return the status of ``draws`` random windows of
    ``size`` rows from the other half."""
    from lepton_apps.monitor import build_profile

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(window.features))
    ref, rest = order[: len(order) // 2], order[len(order) // 2:]
    r = _subset(window, ref)
    profile = build_profile(r.features, scores=r.scores, embeddings=r.embeddings)
    out = []
    for _ in range(draws):
        w = _subset(window, rng.choice(rest, size, replace=False))
        out.append(compare(profile, w.features, w.scores, w.embeddings).status)
    return out


def test_false_alarm_rate_over_20_same_distribution_windows_per_domain(fraud_bundle, fraud_data, medical,
                                                                       demo_bundle):  # noqa: F811
    """Issue 12 item 7: ≤ 5 % of same-distribution windows reported as drift, per domain, at the defaults."""
    from lepton_apps.finance import FraudScorer
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.support import SupportAssistant

    _, new = fraud_data
    finance = _false_alarms(FraudScorer.load(fraud_bundle, compiled="no").monitor_window(new), size=300)
    bundle, data, new_images = medical
    medical_window = MedicalClassifier.load(bundle).monitor_window(sorted(str(p) for p in data.rglob("*.png")))
    medical_statuses = _false_alarms(medical_window, size=40)
    questions = json.loads((demo_bundle.parent / "demo_questions.json").read_text())["records"]
    support = _false_alarms(SupportAssistant.load(demo_bundle).monitor_window([q["question"] for q in questions]),
                            size=40)
    for name, statuses in (("finance", finance), ("medical", medical_statuses), ("support", support)):
        assert len(statuses) == 20 and statuses.count("drift") <= 1, (name, statuses)
