"""Tests for lepton_apps.metrics and lepton_apps.plots: hand-computed values on tiny arrays, brute force on random ones."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.special import expit, log_softmax, softmax

from lepton_apps import metrics as M
from lepton_apps.metrics import calibration
from lepton_apps import plots as P
from lepton_apps.errors import ConfigError, DataError

# Tiny case with hand-computed values: positives 0.35, 0.8; negatives 0.1, 0.4.
# ROC AUC: 3 of 4 (pos, neg) pairs ordered correctly = 0.75.
# AP: at 0.8 recall .5 precision 1; at 0.35 recall 1 precision 2/3 -> .5 + .5*2/3 = 5/6.
Y4 = [0, 0, 1, 1]
S4 = [0.1, 0.4, 0.35, 0.8]


def _random_binary(n=300, seed=0, signal=1.5):
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    s = rng.normal(size=n) + signal * y
    return y, s


# --------------------------------------------------------------------------- AUCs

def test_roc_and_pr_auc_match_hand_computed_values():
    assert M.roc_auc(Y4, S4) == pytest.approx(0.75)
    assert M.pr_auc(Y4, S4) == pytest.approx(5 / 6)
    assert M.roc_auc(np.array([False, False, True, True]), S4) == pytest.approx(0.75)  # bools are labels


def test_per_class_auc_multiclass_one_vs_rest_with_absent_class():
    y = [0, 0, 1, 1]
    prob = np.array([[0.8, 0.1, 0.1], [0.3, 0.5, 0.2], [0.4, 0.5, 0.1], [0.1, 0.8, 0.1]])
    got = M.per_class_auc(y, prob, labels=["cat", "dog", "owl"])
    # cat: positives .8, .3 vs negatives .4, .1 -> 3/4; dog: .5/.8 vs .1/.5 with one tie -> 3.5/4
    assert got["cat"] == pytest.approx(0.75)
    assert got["dog"] == pytest.approx(0.875)
    assert math.isnan(got["owl"])  # never present -> NaN, skipped in the macro
    assert M.macro_auc(y, prob) == pytest.approx((0.75 + 0.875) / 2)
    assert M.per_class_auc(y, prob, kind="pr")["0"] == pytest.approx(5 / 6)


def test_per_class_auc_multilabel():
    y = np.array([[1, 1], [0, 1], [1, 1], [0, 1]])
    prob = np.array([[0.9, 0.5], [0.2, 0.5], [0.1, 0.5], [0.3, 0.5]])
    got = M.per_class_auc(y, prob)
    assert got["0"] == pytest.approx(0.5)  # .9 beats both negatives, .1 loses to both
    assert math.isnan(got["1"])
    assert M.macro_auc(y, prob) == pytest.approx(0.5)


def test_confusion_matrix_counts():
    cm = M.confusion([0, 1, 2, 2], [0, 2, 2, 1])
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 0, 1], [0, 1, 1]])
    assert M.confusion(["a", "b"], ["b", "b"], labels=["b", "a"]).tolist() == [[1, 0], [1, 0]]


# --------------------------------------------------------------------------- operating points

def test_threshold_metrics_by_hand_and_score_equal_to_threshold_is_positive():
    y = [1, 1, 1, 0, 0, 0, 0, 1]
    s = [0.9, 0.8, 0.3, 0.7, 0.2, 0.1, 0.4, 0.6]
    m = M.threshold_metrics(y, s, 0.7)  # flags .9, .8, .7 -> tp 2, fp 1, fn 2, tn 3
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 1, 3, 2)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(0.75)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["npv"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(4 / 7)
    assert m["accuracy"] == pytest.approx(5 / 8)
    assert m["threshold"] == 0.7
    assert math.isnan(M.threshold_metrics(y, s, 2.0)["precision"])  # nothing flagged


def test_youden_picks_the_gap_and_is_optimal_by_brute_force():
    neg = [0.05, 0.1, 0.2, 0.3, 0.4]
    pos = [0.6, 0.7, 0.8, 0.95]
    t = M.threshold_youden([0] * 5 + [1] * 4, neg + pos)
    assert t == pytest.approx(0.6)  # lowest positive: everything in the gap is separated

    y, s = _random_binary(seed=1)
    t = M.threshold_youden(y, s)

    def j(th):
        m = M.threshold_metrics(y, s, th)
        return m["sensitivity"] + m["specificity"] - 1

    assert j(t) == pytest.approx(max(j(c) for c in np.unique(s)))


def test_threshold_for_sensitivity_reaches_target_and_is_highest():
    assert M.threshold_for_sensitivity([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5], 2 / 3) == 0.4
    assert M.threshold_for_sensitivity([0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5], 0.7) == 0.2
    y, s = _random_binary(seed=2)
    for target in (0.5, 0.9, 0.99):
        t = M.threshold_for_sensitivity(y, s, target)
        assert M.threshold_metrics(y, s, t)["sensitivity"] >= target
        higher = np.unique(s[s > t])
        assert M.threshold_metrics(y, s, higher[0])["sensitivity"] < target  # next step up misses


def test_threshold_for_precision_lowest_reaching_target_or_clear_error():
    y, s = [0, 1, 0, 1, 1], [0.1, 0.2, 0.3, 0.4, 0.5]
    # precision by threshold: .5->1, .4->1, .3->2/3, .2->3/4, .1->3/5
    assert M.threshold_for_precision(y, s, 0.75) == 0.2
    assert M.threshold_for_precision(y, s, 1.0) == 0.4
    with pytest.raises(DataError, match=r"highest reachable is 0\.5"):
        M.threshold_for_precision([1, 0], [0.1, 0.9], 0.8)


def test_threshold_min_cost_matches_brute_force_with_amounts():
    y, s = _random_binary(n=400, seed=3, signal=1.0)
    amounts = np.random.default_rng(4).exponential(50.0, size=len(y))

    def cost(th, cost_fn, cost_fp, amt):
        flagged = s >= th
        return cost_fn * (amt * y * ~flagged).sum() + cost_fp * flagged.sum()

    for cost_fn, cost_fp, amt in [(1.0, 20.0, amounts), (5.0, 1.0, None), (1.0, 3.0, None)]:
        a = np.ones_like(s) if amt is None else amt
        t = M.threshold_min_cost(y, s, cost_fn, cost_fp, amounts=amt)
        candidates = list(np.unique(s)) + [np.inf]
        best = min(cost(c, cost_fn, cost_fp, a) for c in candidates)
        assert cost(t, cost_fn, cost_fp, a) == pytest.approx(best)


def test_threshold_min_cost_extremes():
    y, s = [0, 1, 0, 1], [0.1, 0.3, 0.5, 0.9]
    assert M.threshold_min_cost(y, s, cost_fn=1, cost_fp=0) == 0.3  # free alerts: catch every positive
    t = M.threshold_min_cost(y, s, cost_fn=1, cost_fp=100)  # alerts dearer than misses: flag nothing
    assert t > 0.9 and M.threshold_metrics(y, s, t)["tp"] + M.threshold_metrics(y, s, t)["fp"] == 0


def test_threshold_top_k_flags_exactly_k_and_documents_ties():
    s = np.random.default_rng(5).random(100)
    t = M.threshold_top_k(s, 7)
    assert (s >= t).sum() == 7
    assert set(np.flatnonzero(s >= t)) == set(np.argsort(s)[-7:])
    tied = [0.9, 0.5, 0.5, 0.1]
    assert (np.array(tied) >= M.threshold_top_k(tied, 2)).sum() == 3
    assert (np.array(tied) >= M.threshold_top_k(tied, 2, ties="exclude")).sum() == 1
    assert (np.array(tied) >= M.threshold_top_k(tied, 0)).sum() == 0
    with pytest.raises(ConfigError, match="k must be"):
        M.threshold_top_k(tied, 5)


def test_choose_threshold_dispatches_and_rejects_unknown_methods():
    y, s = _random_binary(seed=6)
    assert M.choose_threshold(y, s, "youden") == M.threshold_youden(y, s)
    assert M.choose_threshold(y, s, "sensitivity", target=0.9) == M.threshold_for_sensitivity(y, s, 0.9)
    assert M.choose_threshold(y, s, "precision", target=0.6) == M.threshold_for_precision(y, s, 0.6)
    assert M.choose_threshold(y, s, "cost", cost_fn=5, cost_fp=1) == M.threshold_min_cost(y, s, 5, 1)
    assert M.choose_threshold(None, s, "top_k", k=10) == M.threshold_top_k(s, 10)
    with pytest.raises(ConfigError) as err:
        M.choose_threshold(y, s, "f1")
    assert "'f1'" in str(err.value) and "youden, sensitivity, precision, cost, top_k" in str(err.value)
    with pytest.raises(ConfigError, match="needs target"):
        M.choose_threshold(y, s, "sensitivity")
    with pytest.raises(ConfigError, match="bad options"):
        M.choose_threshold(y, s, "youden", target=0.5)


def test_precision_at_k():
    assert M.precision_at_k([1, 0, 1, 1, 0], [0.9, 0.8, 0.7, 0.1, 0.2], 3) == pytest.approx(2 / 3)
    assert M.precision_at_k([1, 0, 1, 1, 0], [0.9, 0.8, 0.7, 0.1, 0.2], 1) == 1.0


# --------------------------------------------------------------------------- calibration

def test_ece_hand_computed_binary_and_multiclass():
    # bin .9: predicted .9, observed .5 -> gap .4; bin .1: predicted .1, observed 1 -> gap .9
    assert M.expected_calibration_error([1, 0, 1, 1], [0.9, 0.9, 0.1, 0.1], n_bins=10) == pytest.approx(0.65)
    # top-label: conf .8 right (gap .2), conf .6 wrong (gap .6), separate bins
    assert M.expected_calibration_error([0, 1], [[0.8, 0.2], [0.6, 0.4]]) == pytest.approx(0.4)


def test_ece_near_zero_when_calibrated_and_large_when_overconfident():
    rng = np.random.default_rng(7)
    p = rng.random(20000)
    y = (rng.random(20000) < p).astype(int)
    assert M.expected_calibration_error(y, p) < 0.02
    overconfident = expit(4 * np.log(p / (1 - p)))
    assert M.expected_calibration_error(y, overconfident) > 0.1


def test_reliability_curve_bins():
    c = M.reliability_curve([1, 0, 1, 1, 0], [0.05, 0.15, 0.12, 0.95, 1.0], n_bins=10)
    assert c["count"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert c["mean_predicted"][1] == pytest.approx(0.135)
    assert c["observed_frequency"][1] == pytest.approx(0.5)
    assert c["observed_frequency"][9] == pytest.approx(0.5)  # 1.0 falls in the last bin
    assert math.isnan(c["observed_frequency"][5])
    assert c["bin_center"][0] == pytest.approx(0.05) and len(c["bin_edges"]) == 11


def _nll_softmax(z, y):
    return -log_softmax(z, axis=1)[np.arange(len(y)), y].mean()


def test_temperature_recovers_known_temperature_multiclass():
    rng = np.random.default_rng(8)
    z = rng.normal(size=(4000, 5)) * 2.0
    y = np.array([rng.choice(5, p=row) for row in softmax(z, axis=1)])
    logits = 2.5 * z  # over-confident by a factor 2.5
    T = M.fit_temperature(logits, y)
    assert T == pytest.approx(2.5, rel=0.10)
    assert _nll_softmax(logits / T, y) < _nll_softmax(logits, y)
    before = M.expected_calibration_error(y, M.apply_temperature(logits, 1.0))
    after = M.expected_calibration_error(y, M.apply_temperature(logits, T))
    assert after < before / 2


def test_temperature_binary_multilabel_and_underconfident():
    rng = np.random.default_rng(9)
    z = rng.normal(size=3000) * 2.0
    y = (rng.random(3000) < expit(z)).astype(int)
    assert M.fit_temperature(3 * z, y) == pytest.approx(3.0, rel=0.10)
    assert M.fit_temperature((3 * z)[:, None], y) == pytest.approx(3.0, rel=0.10)  # (n, 1) column
    assert M.fit_temperature(0.5 * z, y) == pytest.approx(0.5, rel=0.10)  # under-confident: T < 1
    zz = rng.normal(size=(3000, 3)) * 2.0
    yy = (rng.random((3000, 3)) < expit(zz)).astype(int)
    assert M.fit_temperature(2 * zz, yy, multilabel=True) == pytest.approx(2.0, rel=0.10)
    probs = M.apply_temperature(2 * zz, 2.0, multilabel=True)
    np.testing.assert_allclose(probs, expit(zz))


def test_temperature_is_clamped_on_separable_data():
    T = M.fit_temperature([-1.0, 1.0, -2.0, 2.0], [0, 1, 0, 1])  # NLL keeps falling as T -> 0
    assert calibration.T_MIN <= T < 0.06


def test_apply_temperature_shapes():
    z = np.array([[2.0, 0.0, -1.0], [0.5, 0.5, 0.5]])
    p = M.apply_temperature(z, 2.0)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p, softmax(z / 2, axis=1))
    assert M.apply_temperature([[0.0], [2.0]], 1.0).ravel() == pytest.approx([0.5, expit(2.0)])
    with pytest.raises(ConfigError, match="positive"):
        M.apply_temperature(z, 0.0)


# --------------------------------------------------------------------------- bootstrap

def test_bootstrap_ci_contains_point_is_deterministic_and_narrows():
    y, s = _random_binary(n=200, seed=10)
    a = M.bootstrap_ci(M.roc_auc, y, s, n_boot=200, seed=1)
    assert a[0] == pytest.approx(M.roc_auc(y, s))
    assert a[1] <= a[0] <= a[2] and a[1] < a[2]
    assert M.bootstrap_ci(M.roc_auc, y, s, n_boot=200, seed=1) == a
    assert M.bootstrap_ci(M.roc_auc, y, s, n_boot=200, seed=2) != a
    y_big, s_big = _random_binary(n=2000, seed=11)
    big = M.bootstrap_ci(M.roc_auc, y_big, s_big, n_boot=200, seed=1)
    assert (big[2] - big[1]) < 0.6 * (a[2] - a[1])


def test_bootstrap_stratify_keeps_class_counts_and_skips_undefined_resamples():
    y, s = _random_binary(n=100, seed=12)
    point, low, high = M.bootstrap_ci(lambda yy, ss: yy.mean(), y, s, n_boot=100, stratify=y)
    assert low == high == point  # every resample keeps the prevalence
    # 2 positives in 12 rows: ~11% of plain resamples have none and are skipped, not fatal
    y_small = np.array([1, 1] + [0] * 10)
    s_small = np.linspace(1, 0, 12)
    p, lo, hi = M.bootstrap_ci(M.roc_auc, y_small, s_small, n_boot=200)
    assert p == 1.0 and lo <= hi <= 1.0


def test_bootstrap_raises_when_metric_mostly_undefined():
    x = np.arange(100.0)

    def picky(v):  # defined on the full data, undefined on almost every resample (~63 distinct rows)
        if len(np.unique(v)) < 90:
            raise ValueError("undefined")
        return v.mean()

    with pytest.raises(DataError, match="undefined in"):
        M.bootstrap_ci(picky, x, n_boot=100)


def test_binary_report_is_strict_json_and_consistent():
    y, s = _random_binary(n=150, seed=13)
    r = M.binary_report(y, s, threshold=0.5, n_boot=200, seed=0)
    text = json.dumps(r, allow_nan=False)
    assert "numpy" not in text
    assert all(type(v) in (int, float, list, type(None)) for v in r.values())
    assert r["roc_auc"] == pytest.approx(M.roc_auc(y, s))
    assert r["roc_auc_ci"][0] <= r["roc_auc"] <= r["roc_auc_ci"][1]
    assert r["pr_auc_ci"][0] <= r["pr_auc"] <= r["pr_auc_ci"][1]
    assert r["n"] == 150 and r["prevalence"] == pytest.approx(y.mean())
    tm = M.threshold_metrics(y, s, 0.5)
    assert r["sensitivity"] == pytest.approx(tm["sensitivity"]) and r["tp"] == tm["tp"]
    assert M.binary_report(y, s, threshold=99.0, n_boot=50)["precision"] is None  # undefined -> null


# --------------------------------------------------------------------------- bad input

def test_errors_name_the_argument_and_say_what_to_do():
    with pytest.raises(DataError) as err:
        M.roc_auc([0, 1, 1], [0.1, 0.2])
    assert "y_true=3, y_score=2" in str(err.value) and "Fix:" in str(err.value)
    with pytest.raises(DataError, match="only negatives"):
        M.roc_auc([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="binary labels 0/1, found values \\[0, 1, 2\\]"):
        M.pr_auc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(DataError, match="missing or infinite"):
        M.roc_auc([0, 1], [0.1, float("nan")])
    with pytest.raises(DataError, match=r"probabilities in \[0, 1\]"):
        M.expected_calibration_error([0, 1], [0.2, 1.5])
    with pytest.raises(DataError, match="integer class ids in 0..2"):
        M.per_class_auc([0, 3], np.full((2, 3), 1 / 3))
    with pytest.raises(DataError, match="no class has both"):
        M.macro_auc([0, 0], np.full((2, 2), 0.5))
    with pytest.raises(ConfigError, match="kind"):
        M.per_class_auc([0, 1], np.eye(2), kind="auc")
    with pytest.raises(ConfigError, match=r"target must lie in \(0, 1\]"):
        M.threshold_for_sensitivity([0, 1], [0.1, 0.9], 95)


# --------------------------------------------------------------------------- plots

def _texts(fig):
    ax = fig.axes[0]
    legend = ax.get_legend()
    return [t.get_text() for t in (legend.get_texts() if legend else [])] + [t.get_text() for t in ax.texts]


def _assert_png(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_plots_write_non_empty_pngs(tmp_path):
    from matplotlib.figure import Figure

    fig = P.plot_roc(Y4, {"a": S4, "b": [0.8, 0.35, 0.1, 0.4]}, threshold=0.35)
    assert isinstance(fig, Figure)
    assert "a (AUC 0.750)" in _texts(fig) and "b (AUC 0.250)" in _texts(fig)
    _assert_png(P.save_figure(fig, tmp_path / "roc.png"))

    fig = P.plot_pr(Y4, S4, threshold=0.35)
    assert "model (AP 0.833)" in _texts(fig)
    _assert_png(P.save_figure(fig, tmp_path / "sub" / "pr.png"))

    rng = np.random.default_rng(14)
    z = rng.normal(size=500) * 2
    y = (rng.random(500) < expit(z)).astype(int)
    fig = P.plot_calibration(y, expit(3 * z), expit(z))
    ece_before = M.expected_calibration_error(y, expit(3 * z), n_bins=10)
    assert f"{ece_before:.3f} →" in fig.axes[0].get_title()
    _assert_png(P.save_figure(fig, tmp_path / "cal.png"))

    cm = M.confusion([0, 1, 1, 1], [0, 1, 0, 1])
    fig = P.plot_confusion(cm, ["neg", "pos"])
    assert sorted(_texts(fig)) == ["0", "1", "1", "2"]
    _assert_png(P.save_figure(fig, tmp_path / "cm.png"))
