"""Fraud template end to end: train -> bundle -> score / score_one / explain -> batch CLI -> demo."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from lepton_apps.bundle import load_bundle
from lepton_apps.cli import main
from lepton_apps.errors import DataError
from lepton_apps.finance import FraudConfig, FraudScorer, train
from lepton_apps.finance.demo import simulate_transactions

HISTORY_DAYS = 40


@pytest.fixture(scope="session")
def fraud_data():
    """45 simulated days: the first 40 train the model, the last 5 are 'new' transactions to score."""
    df = simulate_transactions(200, 400, HISTORY_DAYS + 5, seed=3)
    cut = df["timestamp"].min().normalize() + pd.Timedelta(days=HISTORY_DAYS)
    return df[df.timestamp < cut].reset_index(drop=True), df[df.timestamp >= cut].reset_index(drop=True)


@pytest.fixture(scope="session")
def fraud_bundle(fraud_data, tmp_path_factory):
    """A small trained bundle shared by the finance tests (about 5 s)."""
    history, _ = fraud_data
    out = tmp_path_factory.mktemp("finance") / "bundle"
    return train(FraudConfig(data="simulated", out=str(out), test_days=5, threads=1), frame=history)


def test_bundle_holds_model_metrics_plots_and_report(fraud_bundle, fraud_data):
    bundle = load_bundle(fraud_bundle, domain="finance")
    for name in ("model.txt", "features.json", "threshold.json", "eval_scores.parquet", "state.parquet",
                 "importance.json", "plots/pr_curve.png", "plots/threshold.png", "plots/scores.png"):
        assert bundle.has(name), name
    assert bundle.read_text("model.txt").startswith("tree")
    report = bundle.load_json("report.json")
    test = report["test"]
    prevalence = test["frauds"] / test["rows"]
    assert test["pr_auc"] > 2 * prevalence and test["roc_auc"] > 0.75
    assert 0 < test["card_precision_at_k"] <= 1 and test["cp_at_k_unit"] == "cards per day"
    assert report["split"]["kind"] == "time" and "delay gap" in report["split"]["description"]
    assert report["features_not_built"] == []
    assert {t["imbalance"] for t in report["model_choice"]["imbalance_tried"]} == {"none", "sqrt"}
    assert report["device"].startswith(("CPU", "GPU"))
    importance = bundle.load_json("importance.json")
    assert importance[0]["mean_abs_shap"] >= importance[-1]["mean_abs_shap"]
    assert bundle.metrics["pr_auc"] == test["pr_auc"]


def test_training_is_deterministic(fraud_data, tmp_path):
    history, _ = fraud_data
    small = history[history.timestamp >= history.timestamp.min() + pd.Timedelta(days=15)]
    texts = []
    for i in range(2):
        out = train(FraudConfig(data="x", out=str(tmp_path / f"b{i}"), test_days=5, imbalance="none", threads=1,
                                max_rounds=60), frame=small)
        texts.append(load_bundle(out).read_text("model.txt"))
    assert texts[0] == texts[1]


def test_score_marks_invalid_rows_and_keeps_every_row(fraud_bundle, fraud_data):
    _, new = fraud_data
    scorer = FraudScorer.load(fraud_bundle)
    bad = new.head(300).copy()
    bad["amount"] = bad["amount"].astype(object)
    bad.loc[3, "amount"] = "abc"
    bad.loc[4, "amount"] = -1.0
    bad["timestamp"] = bad["timestamp"].astype(str)
    bad.loc[5, "timestamp"] = "yesterday-ish"
    out = scorer.score(bad, reasons_for="alerts")
    assert len(out) == len(bad) and out.index.equals(bad.index)
    assert out["error"].notna().sum() == 3
    assert "amount is not a number" in out.loc[3, "error"] and "negative amount" in out.loc[4, "error"]
    assert "unparsable timestamp" in out.loc[5, "error"]
    assert out.loc[[3, 4, 5], "score"].isna().all()
    ok = out["error"].isna()
    assert out.loc[ok, "score"].between(0, 1).all()
    assert (out.loc[ok, "decision"] == (out.loc[ok, "score"] >= scorer.threshold)).all()
    alerts = out[ok & out["decision"].fillna(False).astype(bool)]
    assert len(alerts) > 0 and alerts["reasons"].str.contains(r"\(\+").all()
    assert out.loc[ok & ~out["decision"].fillna(False).astype(bool), "reasons"].isna().all()


def test_score_one_matches_batch_and_state_round_trips(fraud_bundle, fraud_data, tmp_path):
    _, new = fraud_data
    batch = FraudScorer.load(fraud_bundle).score(new, reasons_for="none")
    online = FraudScorer.load(fraud_bundle)
    records = new.to_dict("records")
    half = len(records) // 2
    scores = [online.score_one(r, reasons=0)["score"] for r in records[:half]]
    online.save_state(tmp_path / "state.parquet")
    resumed = FraudScorer.load(fraud_bundle)
    resumed.load_state(tmp_path / "state.parquet")
    scores += [resumed.score_one(r, reasons=0)["score"] for r in records[half:]]
    assert np.array_equal(np.array(scores), batch["score"].to_numpy())
    with pytest.raises(DataError, match="missing customer id"):
        resumed.score_one({**records[0], "customer_id": None})
    with pytest.raises(DataError, match="unparsable timestamp"):
        resumed.score_one({**records[0], "timestamp": "32/13/2020 x"})


def test_explain_contributions_add_up_to_the_score(fraud_bundle, fraud_data):
    _, new = fraud_data
    scorer = FraudScorer.load(fraud_bundle)
    row = new.iloc[[int(np.argmax(new["amount"].to_numpy()))]]
    exp = scorer.explain(row)
    json.dumps(exp.to_dict(), allow_nan=False)
    table = exp.to_frame()
    logit = table["contribution"].sum() + table.attrs["bias"]
    score = scorer.score(row)["score"].iloc[0]
    assert 1 / (1 + math.exp(-logit)) == pytest.approx(score, rel=1e-6)
    assert table["readable"].iloc[0] == "Amount"  # the largest amount of the period is explained by its amount
    assert set(table["feature"]) == set(scorer.spec.names)


def test_cli_score_file_with_invalid_rows_and_evaluate(fraud_bundle, fraud_data, tmp_path, capsys):
    _, new = fraud_data
    data = new.copy()
    data["timestamp"] = data["timestamp"].astype(str)
    data.loc[2, "timestamp"] = "garbage"
    data.loc[7, "amount"] = np.nan
    data.loc[9, "transaction_id"] = data.loc[8, "transaction_id"]
    path = tmp_path / "new.csv"
    data.to_csv(path, index=False)
    out = tmp_path / "scores.parquet"
    assert main(["finance", "score", str(fraud_bundle), str(path), "--out", str(out), "--chunk-size", "500"]) == 0
    scored = pd.read_parquet(out)
    assert len(scored) == len(data)
    assert scored["transaction_id"].tolist() == data["transaction_id"].tolist()
    errs = scored["error"].notna()
    assert errs.sum() == 3 and scored.loc[errs, "score"].isna().all()
    assert "duplicate id" in scored.loc[9, "error"]
    assert main(["finance", "evaluate", str(fraud_bundle), str(path), "--out", str(tmp_path / "r")]) == 0
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    assert report["rows_skipped_invalid"] == 3 and report["roc_auc"] > 0.7


def test_generic_table_without_ids_or_time(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    y = (rng.random(n) < 0.1).astype(int)
    claims = pd.DataFrame({"incident_severity": np.where(y == 1, rng.choice(["Major", "Total"], n),
                                                         rng.choice(["Minor", "Trivial", "Major"], n)),
                           "witnesses": rng.integers(0, 4, n).astype(float),
                           "claim": rng.gamma(2, 1000, n) * (1 + y), "fraud_reported": np.where(y == 1, "Y", "N")})
    claims.loc[::17, "witnesses"] = np.nan
    claims.loc[::13, "incident_severity"] = "?"
    path = tmp_path / "claims.csv"
    claims.to_csv(path, index=False)
    out = train(FraudConfig(data=str(path), out=str(tmp_path / "b"), columns={"amount": "claim"}, threads=1))
    report = json.loads((out / "report.json").read_text())
    assert report["split"]["kind"] == "stratified"
    assert any("no timestamp" in m for m in report["features_not_built"])
    assert report["test"]["roc_auc"] > 0.8  # the categorical column carries the signal
    assert report["test"]["cp_at_k_unit"] == "rows"
    scorer = FraudScorer.load(out)
    assert scorer.spec.categorical["incident_severity"] == ["Major", "Minor", "Total", "Trivial"]
    one = scorer.score_one({"incident_severity": "Total", "witnesses": 1, "claim": 9000.0})
    assert one["score"] > scorer.score_one({"incident_severity": "Trivial", "witnesses": 1, "claim": 9000.0})["score"]


def test_build_demo_registers_a_demo_bundle(tmp_path, monkeypatch):
    from lepton_apps.finance import demo
    from lepton_apps.registry import Registry

    monkeypatch.setitem(demo.DEMO_SIZE, "n_customers", 150)
    monkeypatch.setitem(demo.DEMO_SIZE, "n_terminals", 300)
    monkeypatch.setitem(demo.DEMO_SIZE, "n_days", 40)
    reg = Registry(tmp_path / "home")
    name = demo.build_demo(tmp_path / "work", reg)
    assert name.startswith("finance-demo-")
    entry = reg.get("finance:latest")
    assert entry.name == name and entry.metrics["pr_auc"] > 0.3
    assert (tmp_path / "work" / "transactions.parquet").is_file()


def test_prequential_folds_and_bounded_search(fraud_data, tmp_path):
    history, _ = fraud_data
    out = train(FraudConfig(data="x", out=str(tmp_path / "p"), split="prequential", n_folds=2, test_days=5,
                            imbalance="none", search_trials=2, search_timeout_s=30, threads=1, max_rounds=80),
                frame=history)
    report = json.loads((out / "report.json").read_text())
    pre = report["prequential"]
    assert len(pre["pr_auc"]["folds"]) == 2 and pre["pr_auc"]["std"] >= 0
    assert pre["pr_auc"]["mean"] == pytest.approx(np.mean(pre["pr_auc"]["folds"]))
    starts = [p["test_start"] for p in pre["test_periods"]]
    assert pd.Timestamp(starts[0]) - pd.Timestamp(starts[1]) == pd.Timedelta(days=5)
    trials = report["model_choice"]["search_trials"]
    assert len(trials) == 2 and all(0 < t["val_pr_auc"] <= 1 for t in trials)
    assert report["model_choice"]["val_pr_auc"] >= max(t["val_pr_auc"] for t in trials) - 1e-9


def test_cli_score_keeps_text_ids_exactly(fraud_bundle, fraud_data, tmp_path):
    _, new = fraud_data
    data = new.head(50).copy()
    data["transaction_id"] = [f"{i:05d}" for i in range(50)]
    path = tmp_path / "ids.csv"
    data.to_csv(path, index=False)
    out = tmp_path / "s.csv"
    assert main(["finance", "score", str(fraud_bundle), str(path), "--out", str(out)]) == 0
    scored = pd.read_csv(out, dtype={"transaction_id": str})
    assert scored["transaction_id"].tolist() == data["transaction_id"].tolist()
    assert scored["error"].isna().all()


def test_optional_mlp_is_blended_only_when_it_helps_validation(fraud_data, tmp_path, monkeypatch):
    from lepton_apps.finance import mlp as fmlp

    history, new = fraud_data
    monkeypatch.setattr(fmlp, "MIN_GAIN", -1.0)  # accept any blend, so the save / load / blend path is exercised
    out = train(FraudConfig(data="x", out=str(tmp_path / "m"), test_days=5, imbalance="none", threads=1,
                            mlp=True), frame=history)
    info = json.loads((out / "report.json").read_text())["mlp"]
    assert 0 < info["val_pr_auc_mlp"] <= 1 and "scale" not in info
    assert info["used"] and info["blend_weight_lightgbm"] in fmlp.BLEND_WEIGHTS
    assert load_bundle(out).has("mlp.safetensors")
    scorer = FraudScorer.load(out)
    head = new.head(200)
    batch = scorer.score(head, reasons_for="none")["score"].to_numpy()
    one = [scorer.score_one(r, reasons=0)["score"] for r in head.to_dict("records")]
    np.testing.assert_allclose(one, batch, rtol=1e-5)
    lgb_only = scorer.booster.predict(FraudScorer.load(out).features(head)[0])
    assert not np.allclose(lgb_only, batch)


def test_mlp_blend_is_kept_only_when_it_beats_lightgbm_by_the_margin(monkeypatch):
    from lepton_apps.finance import mlp as fmlp
    from lepton_apps.finance.split import Split
    from lepton_apps.finance.training import _blend_mlp

    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.2).astype(int)
    x = np.zeros((400, 2))
    split = Split(np.arange(200), np.arange(200, 300), np.arange(300, 400), "time", "")
    lgb_val = np.clip(y[200:300] * 0.3 + rng.random(100) * 0.7, 0, 1)
    monkeypatch.setattr(fmlp, "fit", lambda *a, **k: ("net", {}))
    for mlp_scores, used in ((rng.random(400), False), (y * 0.9 + 0.05, True)):
        monkeypatch.setattr(fmlp, "predict", lambda net, xs, scale, s=mlp_scores: s[200:300])  # val = test size
        s_val, _, info, _ = _blend_mlp(FraudConfig(data="x"), x, y, split, lgb_val, lgb_val)
        assert info["used"] is used
        assert np.array_equal(s_val, lgb_val) is (not used)
