"""Fast alert reasons (issue 24 item 3): path attributions precomputed per leaf (apps/finance/reasons.py).

They must sum to the booster's raw score exactly (this checks the traversal: missing values, zero-as-missing,
categorical splits, one-leaf trees), equal the hand-computed path deltas of a small tree, and name TreeSHAP's
top reason among their three on most alerts of a trained fraud model; they are opt-in (``reasons_method="path"``),
exact TreeSHAP stays the default."""
import numpy as np
import pandas as pd
import pytest
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - the shared trained bundle

from lepton_apps.errors import ConfigError
from lepton_apps.finance import FraudScorer
from lepton_apps.finance.reasons import PathExplainer, top_agreement

lgb = pytest.importorskip("lightgbm")


def _booster(rounds=40, seed=0, **params):
    rng = np.random.default_rng(seed)
    n = 3000
    x = rng.normal(size=(n, 6))
    x[:, 4] = rng.integers(0, 5, n)                      # a categorical column
    x[rng.random((n, 6)) < 0.1] = np.nan                 # missing values in every column
    x[rng.random(n) < 0.2, 5] = 0.0                      # zeros, for zero_as_missing
    logit = np.nan_to_num(x[:, 0]) * 1.5 - np.nan_to_num(x[:, 1]) + (np.nan_to_num(x[:, 4]) == 3) * 2
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ds = lgb.Dataset(x, y, categorical_feature=[4], free_raw_data=False)
    booster = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 15, "min_data_in_leaf": 5,
                         "seed": seed, **params}, ds, num_boost_round=rounds)
    return booster, x


@pytest.mark.parametrize("params", [{}, {"zero_as_missing": True}, {"use_missing": False}])
def test_path_attributions_sum_to_the_raw_score_with_missing_values_and_categories(params):
    booster, x = _booster(**params)
    explainer = PathExplainer(booster)
    contrib = explainer.contributions(x)
    assert contrib.shape == (len(x), x.shape[1] + 1)
    np.testing.assert_allclose(contrib.sum(1), booster.predict(x, raw_score=True), atol=1e-9)
    assert np.allclose(contrib[:, -1], contrib[0, -1])   # the bias is one number, the trees' root values


def test_a_single_tree_gives_the_change_of_expected_value_at_each_split_of_the_path():
    booster, x = _booster(rounds=1)
    tree = booster.dump_model()["tree_info"][0]["tree_structure"]
    row = x[7]
    expected = np.zeros(x.shape[1])
    node = tree
    while "split_feature" in node:                       # walk the path by the booster's own leaf index
        leaf = int(booster.predict(row[None, :], pred_leaf=True)[0, 0])
        child = next(c for c in (node["left_child"], node["right_child"]) if leaf in _leaves(c))
        value = child["internal_value"] if "split_feature" in child else child["leaf_value"]
        expected[node["split_feature"]] += value - node["internal_value"]
        node = child
    got = PathExplainer(booster).contributions(row[None, :])[0]
    np.testing.assert_allclose(got[:-1], expected, atol=1e-12)
    assert got[-1] == pytest.approx(tree["internal_value"])


def _leaves(node) -> set[int]:
    if "split_feature" not in node:
        return {int(node.get("leaf_index", 0))}
    return _leaves(node["left_child"]) | _leaves(node["right_child"])


def test_a_model_of_one_leaf_trees_has_only_the_bias():
    x = np.zeros((50, 3))
    y = np.r_[np.zeros(45), np.ones(5)]
    booster = lgb.train({"objective": "binary", "verbosity": -1}, lgb.Dataset(x, y), num_boost_round=3)
    contrib = PathExplainer(booster).contributions(x[:4])
    assert np.all(contrib[:, :-1] == 0)
    np.testing.assert_allclose(contrib[:, -1], booster.predict(x[:4], raw_score=True))


def test_agreement_counts_same_top_reasons():
    a = np.array([[3.0, 2.0, 1.0, 0.0, 9.9], [1.0, 3.0, 2.0, 0.0, 9.9]])
    b = np.array([[3.0, 1.0, 2.0, 0.0, 0.0], [3.0, 1.0, 2.0, 0.0, 0.0]])
    agree = top_agreement(a, b, top=2)
    assert agree == {"rows": 2, "top1_same": 0.5, "top2_overlap": 0.5}   # the bias column is left out


def test_path_reasons_are_opt_in_and_name_treeshaps_top_reason_among_theirs(fraud_bundle, fraud_data):
    _, new = fraud_data
    fast = FraudScorer.load(fraud_bundle, reasons_method="path")
    exact = FraudScorer.load(fraud_bundle)
    assert (fast.reasons_method, exact.reasons_method) == ("path", "treeshap")   # exact TreeSHAP by default
    a, b = fast.score(new, use_state=False), exact.score(new, use_state=False)   # reasons for the alerts
    pd.testing.assert_series_equal(a["score"], b["score"])            # the reasons change, never the score
    alerts = b["decision"].fillna(False).astype(bool).to_numpy()
    assert alerts.sum() > 50 and a["reasons"].notna().sum() == b["reasons"].notna().sum() == alerts.sum()
    x, _ = fast.features(new, False)
    agree = top_agreement(fast._explainer.contributions(x[alerts]), fast.booster.predict(x[alerts], pred_contrib=True))
    assert agree["top3_overlap"] > 0.7, agree                        # measured 0.77 on this model (seeded)
    named = (b["reasons"].fillna("") != "").to_numpy()               # alerts with a feature pushing the score up
    first = [r.split(" = ")[0] for r in b.loc[named, "reasons"]]
    shown = a.loc[named, "reasons"].tolist()
    assert np.mean([f in s for f, s in zip(first, shown)]) > 0.8      # TreeSHAP's top reason among them: 0.85
    tx = new.iloc[0].to_dict()
    assert fast.score_one(tx, update=False)["score"] == exact.score_one(tx, update=False)["score"]
    with pytest.raises(ConfigError, match="treeshap"):
        FraudScorer.load(fraud_bundle, reasons_method="shapley")


def test_cli_score_takes_the_reasons_method_and_names_the_choices_when_it_is_wrong(fraud_bundle, fraud_data, tmp_path):
    from lepton_apps.cli import main

    _, new = fraud_data
    path = tmp_path / "new.parquet"
    new.to_parquet(path)
    outs = {}
    for method in ("path", "treeshap"):
        outs[method] = tmp_path / f"{method}.parquet"
        assert main(["finance", "score", str(fraud_bundle), str(path), "--out", str(outs[method]),
                     "--reasons-method", method]) == 0
    fast, exact = pd.read_parquet(outs["path"]), pd.read_parquet(outs["treeshap"])
    assert len(fast) == len(exact) == len(new) and fast["score"].equals(exact["score"])
    alerts = exact["decision"].fillna(False).astype(bool)
    assert fast.loc[alerts, "reasons"].notna().all() and not fast.loc[alerts, "reasons"].equals(exact.loc[alerts, "reasons"])
    assert main(["finance", "score", str(fraud_bundle), str(path), "--out", str(tmp_path / "x.parquet"),
                 "--reasons-method", "shap"]) != 0

