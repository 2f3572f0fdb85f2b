"""Refit after model selection: the final booster is retrained on fit + validation rows (``refit: true``),
while the threshold and the validation report still come from the pre-refit model's out-of-sample scores."""
import json
import re

import numpy as np
import pandas as pd
import pytest

from lepton_apps.bundle import load_bundle
from lepton_apps.finance import FraudConfig, FraudScorer, train
from lepton_apps.finance import model as fm
from lepton_apps.finance.demo import simulate_transactions


def _config(out, **kw) -> FraudConfig:
    return FraudConfig(data="simulated", out=str(out), test_days=5, delay_days=3, imbalance="none", threads=1,
                       max_rounds=60, early_stopping_rounds=20, **kw)


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """The same small table trained with refit on and off (about 3 s each)."""
    df = simulate_transactions(150, 300, 30, seed=7)
    root = tmp_path_factory.mktemp("refit")
    on = train(_config(root / "on"), frame=df)
    off = train(_config(root / "off", refit=False), frame=df)
    return df, on, off


def _report(bundle) -> dict:
    return json.loads((bundle / "report.json").read_text())


def _trees_and_root_count(bundle) -> tuple[int, int]:
    """Return (trees in the saved model, rows reaching the first tree's root = that tree's bagged rows)."""
    text = load_bundle(bundle, domain="finance").read_text("model.txt")
    first = text.split("Tree=0", 1)[1].split("Tree=1", 1)[0]
    root = int(re.search(r"^internal_count=(\d+)", first, re.M).group(1))
    return len(re.findall(r"^Tree=\d+", text, re.M)), root


def test_refit_model_is_trained_on_fit_and_validation_rows_for_the_scaled_rounds(bundles):
    _, on, _ = bundles
    report = _report(on)
    rows, refit = report["split"]["rows"], report["refit"]
    selected = report["model_choice"]["imbalance_tried"][0]["rounds"]
    assert refit["enabled"] and refit["rows"] == rows["fit"] + rows["val"] and refit["selection_rows"] == rows["fit"]
    assert refit["selection_rounds"] == selected
    expected_rounds = round(selected * (rows["fit"] + rows["val"]) / rows["fit"])
    assert refit["rounds"] == expected_rounds == report["rounds"] > selected
    trees, root = _trees_and_root_count(on)
    assert trees == expected_rounds
    # bagging_fraction 0.9 of the refit rows reach the first tree (not 0.9 of the fit rows)
    assert 0.85 * refit["rows"] <= root <= 0.95 * refit["rows"]
    assert root > 0.95 * rows["fit"]


def test_refit_uses_only_rows_whose_labels_are_known_before_the_delay_gap(bundles):
    df, on, _ = bundles
    report = _report(on)
    bounds = report["split"]["bounds"]
    assert report["refit"]["rows_until"] == bounds["delay_start"]
    t = pd.to_datetime(df["timestamp"])
    labelled = ((t >= pd.Timestamp(bounds["train_start"])) & (t < pd.Timestamp(bounds["delay_start"]))).sum()
    assert report["refit"]["rows"] == labelled
    in_gap = ((t >= pd.Timestamp(bounds["delay_start"])) & (t < pd.Timestamp(bounds["test_start"]))).sum()
    assert in_gap > 0 and report["refit"]["rows"] + in_gap + report["split"]["rows"]["test"] == len(df)


def test_threshold_and_validation_scores_come_from_the_pre_refit_model(bundles):
    _, on, off = bundles
    b_on, b_off = load_bundle(on, domain="finance"), load_bundle(off, domain="finance")
    # the selection is identical, so the out-of-sample validation scores and the threshold are too
    assert b_on.load_json("threshold.json")["threshold"] == b_off.load_json("threshold.json")["threshold"]
    e_on, e_off = b_on.load_parquet("eval_scores.parquet"), b_off.load_parquet("eval_scores.parquet")
    val_on, val_off = e_on[e_on.split == "val"], e_off[e_off.split == "val"]
    np.testing.assert_array_equal(val_on["score"].to_numpy(), val_off["score"].to_numpy())
    assert _report(on)["validation"]["pr_auc"] == _report(off)["validation"]["pr_auc"]
    # the test scores are the refit model's, and the bundle scores with the refit model
    test_on, test_off = e_on[e_on.split == "test"]["score"].to_numpy(), e_off[e_off.split == "test"]["score"].to_numpy()
    assert not np.allclose(test_on, test_off)
    df = bundles[0]
    scorer = FraudScorer.load(on, compiled="no")
    scored = scorer.predict_matrix(scorer.features(df, use_state=False)[0])
    is_test = (pd.to_datetime(df["timestamp"]) >= pd.Timestamp(_report(on)["split"]["bounds"]["test_start"])).to_numpy()
    np.testing.assert_allclose(scored[is_test], test_on, rtol=1e-9)


def test_refit_off_keeps_the_early_stopped_model(bundles):
    _, _, off = bundles
    report = _report(off)
    rows = report["split"]["rows"]
    selected = report["model_choice"]["imbalance_tried"][0]["rounds"]
    assert report["refit"] == {"enabled": False, "rows": rows["fit"], "rounds": selected}
    assert report["rounds"] == selected
    trees, root = _trees_and_root_count(off)
    assert trees == selected
    assert 0.85 * rows["fit"] <= root <= 0.95 * rows["fit"]


def test_refit_rounds_scale_with_rows_and_reject_fewer_rows():
    assert fm.refit_rounds(100, 600, 800) == 133
    assert fm.refit_rounds(0, 10, 10) == 1  # at least one round
    with pytest.raises(ValueError, match="refit rows"):
        fm.refit_rounds(100, 600, 500)
