"""Reference profiles and drift / data-quality reports (lepton_apps.monitor): synthetic, seeded, fast."""
import json

import numpy as np
import pandas as pd
import pytest

from lepton_apps.errors import ConfigError, DataError
from lepton_apps.monitor import DriftConfig, DriftReport, Profile, build_profile, compare, profile_table
from lepton_apps.monitor.drift import holm, psi
from lepton_apps.monitor.profile import profile_categorical, profile_embeddings, profile_numeric

CATS = np.array(list("abcdefghij"))
CAT_P = np.linspace(1, 3, 10) / np.linspace(1, 3, 10).sum()


def table(n, rng, *, shift=0.0, new_share=0.0):
    """A transactions-like window: normal (5 % missing), log-normal, Poisson, uniform, 10 categories and a
    Zipf-tailed merchant id (a long tail that always brings unseen ids)."""
    x = rng.normal(shift, 1.0, n)
    x[rng.random(n) < 0.05] = np.nan
    cat = rng.choice(CATS, size=n, p=CAT_P).astype(object)
    if new_share:
        cat[rng.random(n) < new_share] = "brand-new"
    return pd.DataFrame({"x": x, "amount": rng.lognormal(3, 1, n), "count": rng.poisson(3, n),
                         "u": rng.uniform(0, 1, n), "cat": cat,
                         "merchant": [f"m{v}" for v in rng.zipf(1.5, n)]})


def reference(rng, n=3000, dim=16):
    return build_profile(table(n, rng), scores=rng.beta(1, 5, n), embeddings=rng.normal(size=(n, dim)),
                         source="synthetic")


def by_name(rows):
    return {r["name"]: r for r in rows}


# ------------------------------------------------------------------------------------------ profile

def test_numeric_profile_bins_counts_missing_and_sample():
    normals = np.random.default_rng(0).normal(size=1000)
    values = pd.Series(list(normals) + [np.nan] * 20 + [np.inf, -np.inf] + ["n/a"], dtype=object)
    prof = profile_numeric(values, sample=100, bins=10, seed=3)
    assert prof["n"] == 1023 and prof["missing"] == 21 and prof["nonfinite"] == 2 and prof["n_finite"] == 1000
    assert prof["missing_rate"] == pytest.approx(21 / 1023)
    assert len(prof["edges"]) == 9 and prof["edges"] == sorted(set(prof["edges"]))
    assert sum(prof["counts"]) == 1002  # every finite value and both infinities land in a bin
    assert prof["counts"][0] >= 100 and prof["counts"][-1] >= 100  # -inf and +inf in the open end bins
    assert len(prof["sample"]) == 100 and prof == profile_numeric(values, sample=100, bins=10, seed=3)
    assert prof["sample"] != profile_numeric(values, sample=100, bins=10, seed=4)["sample"]
    assert prof["min"] == normals.min() and prof["max"] == normals.max() and prof["std"] == pytest.approx(normals.std())
    discrete = profile_numeric(np.r_[np.zeros(900), np.ones(100)], bins=10)
    assert discrete["edges"] == [0.0] and discrete["counts"] == [900, 100]  # edges are data values


def test_categorical_profile_keeps_top_values_vocabulary_and_tail_counts():
    values = ["a"] * 50 + ["b"] * 30 + [f"rare{i}" for i in range(150)] + ["twice", "twice", None]
    prof = profile_categorical(values, top=100)
    assert prof["n"] == 233 and prof["missing"] == 1 and prof["n_nonmissing"] == 232
    assert list(prof["frequencies"])[:3] == ["a", "b", "twice"] and len(prof["frequencies"]) == 100
    assert prof["other"] == 232 - sum(prof["frequencies"].values())
    assert prof["n_distinct"] == 153 and prof["singletons"] == 150 and prof["doubletons"] == 1
    assert len(prof["vocabulary"]) == 153
    assert profile_categorical(values, vocabulary=10)["vocabulary"] is None


def test_integer_codes_that_turned_float_are_the_same_categories():
    prof = build_profile(pd.DataFrame({"mcc": np.tile([5411, 5812, 4111], 400)}), categorical=["mcc"])
    window = pd.DataFrame({"mcc": np.r_[np.tile([5411.0, 5812.0, 4111.0], 100), np.nan]})
    report = compare(prof, window)
    assert report.status == "ok", report.reasons
    assert not [q for q in report.quality if q["check"] == "new categories"]


def test_profile_table_splits_columns_and_rejects_bad_lists():
    df = table(500, np.random.default_rng(1))
    prof = profile_table(df)
    assert {k: v["kind"] for k, v in prof.items()} == {
        "x": "numeric", "amount": "numeric", "count": "numeric", "u": "numeric",
        "cat": "categorical", "merchant": "categorical"}
    assert set(profile_table(df, categorical=["count"])) == {"count"}
    with pytest.raises(DataError, match="not in the table"):
        profile_table(df, numeric=["nope"])
    with pytest.raises(DataError, match="both numeric and categorical"):
        profile_table(df, numeric=["count"], categorical=["count"])


def test_profile_json_round_trip_and_save_load_with_embeddings_npy(tmp_path):
    prof = reference(np.random.default_rng(2), n=800)
    text = prof.to_json()
    json.loads(text)  # strict JSON: no NaN anywhere
    back = Profile.from_json(text)
    assert back.to_dict() == prof.to_dict() and back.embeddings["sample"].dtype == np.float32
    path = prof.save(tmp_path / "monitor")
    assert (tmp_path / "monitor" / "embeddings.npy").is_file()
    assert "sample" not in json.loads(path.read_text())["embeddings"]
    loaded = Profile.load(tmp_path / "monitor")
    assert loaded.to_dict() == prof.to_dict() and loaded.n_rows == 800 and loaded.source == "synthetic"
    (tmp_path / "monitor" / "embeddings.npy").unlink()
    with pytest.raises(DataError, match="embeddings.npy is missing"):
        Profile.load(tmp_path / "monitor")
    with pytest.raises(DataError, match="format version"):
        Profile.from_dict({**prof.to_dict(), "format_version": 99})
    with pytest.raises(DataError, match="no profile.json"):
        Profile.load(tmp_path / "nowhere")


def test_embedding_profile_samples_finite_rows_and_counts_the_rest():
    m = np.random.default_rng(3).normal(size=(2000, 8))
    m[:5, 0] = np.nan
    prof = profile_embeddings(m, sample=300, seed=1)
    assert prof["n"] == 2000 and prof["nonfinite_rows"] == 5 and prof["dim"] == 8
    assert prof["sample"].shape == (300, 8) and prof["sample"].dtype == np.float32
    assert np.isfinite(prof["sample"]).all() and len(prof["mean"]) == len(prof["std"]) == 8


# ------------------------------------------------------------------------------------ statistics

def test_holm_and_psi_give_known_values():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]
    assert psi([10, 20, 70], [10, 20, 70]) == pytest.approx(0.0)
    expected = (0.5 - 0.2) * np.log(0.5 / 0.2) + (0.5 - 0.8) * np.log(0.5 / 0.8)
    assert psi([20, 80], [50, 50]) == pytest.approx(expected)


def test_config_rejects_inconsistent_thresholds():
    with pytest.raises(ConfigError, match="psi_warn"):
        DriftConfig.from_dict({"psi_warn": 0.3, "psi_drift": 0.25})
    with pytest.raises(ConfigError, match="permutations"):
        DriftConfig.from_dict({"embedding_method": "mmd", "permutations": 100})
    with pytest.raises(ConfigError, match="unknown_key|extra"):
        DriftConfig.from_dict({"unknown_key": 1})


# ----------------------------------------------------------------------------------- false alarms

@pytest.mark.parametrize("window", [300, 2000])
def test_no_shift_is_ok_in_at_least_19_of_20_seeds(window):
    """The false-alarm rate of a whole report (6 features, a score, 16-d embeddings, data quality) at the
    default settings, measured over 20 seeds on each path (KS / chi-squared below 1,000 rows, PSI above)."""
    alarms = []
    for seed in range(20):
        rng = np.random.default_rng(100 + seed)
        prof = reference(rng)
        report = compare(prof, table(window, rng), rng.beta(1, 5, window), rng.normal(size=(window, 16)),
                         DriftConfig(seed=seed))
        assert len(report.features) == 6 and len(report.predictions) == 1 and report.embeddings
        if report.status != "ok":
            alarms.append((seed, report.reasons))
    assert len(alarms) <= 1, f"false alarms in {len(alarms)} of 20 healthy windows: {alarms}"


# ---------------------------------------------------------------------------------- injected drift

@pytest.mark.parametrize("window,test", [(300, "ks"), (3000, "psi")])
def test_half_std_mean_shift_is_drift_and_the_other_features_stay_ok(window, test):
    rng = np.random.default_rng(7)
    prof = reference(rng)
    report = compare(prof, table(window, rng, shift=0.5))
    rows = by_name(report.features)
    assert rows["x"]["test"] == test and rows["x"]["status"] == "drift", rows["x"]["reason"]
    assert report.status == "drift" and report.reasons[0].startswith("x: ")
    assert all(r["status"] == "ok" for n, r in rows.items() if n != "x"), report.reasons


def test_small_window_uses_ks_and_chi2_large_window_psi_and_the_switch_is_configurable():
    rng = np.random.default_rng(8)
    prof = reference(rng)
    window = table(1200, rng).dropna(subset=["x"])  # every column with the same number of values
    small = by_name(compare(prof, window.iloc[:999]).features)
    large = by_name(compare(prof, window.iloc[:1000]).features)
    assert {r["test"] for r in small.values()} == {"ks", "chi2"}
    assert small["amount"]["test"] == "ks" and small["cat"]["test"] == "chi2" and small["x"]["p_adjusted"] is not None
    assert {r["test"] for r in large.values()} == {"psi"}
    assert large["amount"]["distance_kind"] == "wasserstein/std" and large["cat"]["distance_kind"] == "jensen-shannon"
    forced = by_name(compare(prof, window.iloc[:500], config=DriftConfig(small_window=100)).features)
    assert {r["test"] for r in forced.values()} == {"psi"}


@pytest.mark.parametrize("window", [300, 3000])
def test_new_category_in_20_percent_of_rows_is_flagged(window):
    rng = np.random.default_rng(9)
    prof = reference(rng)
    report = compare(prof, table(window, rng, new_share=0.2))
    flags = [q for q in report.quality if q["check"] == "new categories" and q["name"] == "cat"]
    assert len(flags) == 1 and flags[0]["status"] == "drift", flags
    assert flags[0]["value"] == pytest.approx(0.2, abs=0.04)
    assert "never seen in the reference" in flags[0]["reason"] and flags[0]["reason"].endswith("(drift)")
    assert by_name(report.features)["cat"]["status"] == "drift"
    # the merchant id's long tail brings unseen ids in every window; Good–Turing expects them
    merchant = [q for q in report.quality if q["check"] == "new categories" and q["name"] == "merchant"]
    assert merchant and merchant[0]["status"] == "ok" and merchant[0]["count"] > 0


def test_prediction_drift_is_reported_as_a_numeric_distribution():
    rng = np.random.default_rng(10)
    prof = build_profile(scores=rng.beta(1, 5, 4000))
    same = compare(prof, current_scores=rng.beta(1, 5, 2000))
    moved = compare(prof, current_scores=rng.beta(2, 5, 2000))
    assert same.status == "ok" and same.predictions[0]["name"] == "score"
    assert moved.predictions[0]["status"] == "drift" and moved.predictions[0]["section"] == "prediction"
    assert moved.n_rows == 2000


@pytest.mark.parametrize("method", ["classifier", "mmd"])
def test_embedding_shift_is_drift_and_identical_distribution_is_ok(method):
    rng = np.random.default_rng(11)
    prof = build_profile(embeddings=rng.normal(size=(3000, 32)))
    config = DriftConfig(embedding_method=method)
    same = compare(prof, current_embeddings=rng.normal(size=(500, 32)), config=config)
    shifted = rng.normal(size=(500, 32))
    shifted[:, :4] += 0.5
    moved = compare(prof, current_embeddings=shifted, config=config)
    assert same.status == "ok", same.embeddings["reason"]
    assert moved.status == "drift" and moved.embeddings["test"] == ("mmd" if method == "mmd" else "domain classifier")
    assert moved.embeddings["auc"] > 0.6 > same.embeddings["auc"]
    assert moved.embeddings["mmd_p_value"] < 0.01 < same.embeddings["mmd_p_value"]
    assert moved.embeddings["reason"].startswith("embeddings: ") and moved.embeddings["reason"].endswith("(drift)")


def test_embedding_window_of_a_few_rows_is_not_tested_and_nonfinite_rows_are_counted():
    rng = np.random.default_rng(12)
    prof = build_profile(embeddings=rng.normal(size=(500, 8)))
    cur = rng.normal(size=(40, 8))
    cur[:15] = np.nan
    report = compare(prof, current_embeddings=cur)
    assert report.embeddings["status"] == "n/a" and "fewer than 30" in report.embeddings["reason"]
    bad = [q for q in report.quality if q["check"] == "non-finite"]
    assert bad[0]["count"] == 15 and bad[0]["status"] == "drift"
    with pytest.raises(DataError, match="8"):
        compare(prof, current_embeddings=rng.normal(size=(40, 9)))


# ------------------------------------------------------------------------------------ data quality

def test_data_quality_counts_every_bad_value_and_never_drops_a_row():
    rng = np.random.default_rng(13)
    prof = reference(rng, n=3000)
    window = table(500, rng)
    window["amount"] = window["amount"].astype(object)
    window.loc[:29, "amount"] = "n/a"                     # unparseable: 30 rows
    window.loc[30:49, "amount"] = np.inf                  # out of range: 20 rows of +inf
    window.loc[50:54, "amount"] = 1e9                     # out of range: 5 more
    window.loc[:199, "u"] = np.nan                        # missing: 200 of 500 rows (reference: 0 %)
    report = compare(prof, window, unreadable=30)
    q = {(r["name"], r["check"]): r for r in report.quality}
    assert q[("amount", "unparseable")]["count"] == 30 and q[("amount", "unparseable")]["status"] == "drift"
    out = q[("amount", "out of range")]
    assert out["count"] == 25 and out["n"] == 470 and out["status"] == "drift" and "20 ±inf" in out["reason"]
    miss = q[("u", "missing rate")]
    assert miss["count"] == 200 and miss["value"] == pytest.approx(0.4) and miss["status"] == "drift"
    unread = q[("inputs", "unreadable")]
    assert unread["count"] == 30 and unread["n"] == 530 and unread["status"] == "drift"  # 5.7 % ≥ 5 %
    rows = by_name(report.features)
    assert rows["amount"]["n_current"] == 470 - 25 + 5  # finite values: 500 - 30 unparseable - 20 inf
    assert rows["u"]["n_current"] == 300
    assert report.n_rows == 500 and report.status == "drift"


def test_a_missing_column_is_drift_and_extra_columns_are_listed():
    rng = np.random.default_rng(14)
    prof = reference(rng, n=1000)
    window = table(400, rng).drop(columns=["cat"]).assign(extra=1)
    report = compare(prof, window)
    assert by_name(report.features)["cat"]["status"] == "n/a"
    missing = [q for q in report.quality if q["check"] == "missing column"]
    assert missing[0]["name"] == "cat" and missing[0]["status"] == "drift"
    assert report.extra_columns == ["extra"] and report.status == "drift"


def test_small_reference_shift_within_noise_band_is_ok_and_warn_band_is_reported():
    rng = np.random.default_rng(15)
    prof = build_profile(pd.DataFrame({"v": rng.normal(size=20000)}))
    warn = compare(prof, pd.DataFrame({"v": rng.normal(0.2, 1, 20000)}))
    row = warn.features[0]
    assert row["status"] == "warn" and row["test"] == "psi"
    assert row["reason"].startswith("v: Wasserstein 0.2") and "≥ 0.15" in row["reason"] and row["reason"].endswith("(warn)")
    assert warn.status == "warn" and warn.reasons == [row["reason"]]


# ------------------------------------------------------------------------------------------ report

def test_report_round_trips_through_json_and_flattens_to_a_frame():
    rng = np.random.default_rng(16)
    prof = reference(rng, n=1500)
    report = compare(prof, table(1200, rng, shift=0.5, new_share=0.2), rng.beta(1, 5, 1200),
                     rng.normal(size=(1200, 16)), unreadable=3)
    text = report.to_json()
    back = DriftReport.from_json(text)
    assert back.to_dict() == report.to_dict() and back.status == "drift" and back.reasons == report.reasons
    frame = report.to_frame()
    assert len(frame) == 6 + 1 + 1 + len(report.quality)
    assert {"section", "name", "test", "statistic", "p_value", "psi", "status", "reason"} <= set(frame.columns)
    assert set(frame["section"]) == {"feature", "prediction", "embeddings", "quality"}
    assert (frame["reason"].str.len() > 0).all()
    psi_row = by_name(report.features)["x"]
    assert "PSI" in psi_row["reason"] and psi_row["reason"].endswith("(drift)")
    assert report.config["psi_drift"] == 0.25 and report.profile_source == "synthetic"
    with pytest.raises(DataError, match="not a drift report"):
        DriftReport.from_dict({"features": []})


def test_compare_errors_name_what_is_missing():
    rng = np.random.default_rng(17)
    prof = build_profile(pd.DataFrame({"v": rng.normal(size=100)}))
    with pytest.raises(DataError, match="no prediction distribution"):
        compare(prof, current_scores=[0.1, 0.2])
    with pytest.raises(DataError, match="no embedding sample"):
        compare(prof, current_embeddings=np.zeros((5, 3)))
    with pytest.raises(DataError, match="DataFrame"):
        compare(prof, current_df=[1, 2, 3])
    with pytest.raises(DataError, match="negative"):
        compare(prof, pd.DataFrame({"v": [1.0]}), unreadable=-1)
    no_sample = Profile.from_json(build_profile(embeddings=rng.normal(size=(50, 3))).to_json(embedding_sample=False))
    with pytest.raises(DataError, match="embeddings.npy"):
        compare(no_sample, current_embeddings=np.zeros((40, 3)))
    scored = build_profile(scores={"fraud": rng.random(100)})
    with pytest.raises(DataError, match="'fraud'"):
        compare(scored, current_scores={"other": rng.random(10)})
