"""Fraud template: the simulator and the data contract (every bad-input case of the issue)."""
import numpy as np
import pandas as pd
import pytest

from lepton_apps.cli import main
from lepton_apps.errors import DataError
from lepton_apps.finance.data import Schema, read_table, summary, validate
from lepton_apps.finance.demo import simulate_transactions


@pytest.fixture(scope="module")
def sim():
    return simulate_transactions(500, 1000, 60, seed=7)


def test_simulator_fraud_rate_and_all_scenarios(sim):
    assert len(sim) > 40_000
    assert sim["timestamp"].is_monotonic_increasing
    assert sim["transaction_id"].is_unique
    rate = sim["label"].mean()
    assert 0.005 < rate < 0.2, rate
    counts = sim.loc[sim.label == 1, "scenario"].value_counts()
    assert set(counts.index) == {1, 2, 3}
    assert (sim.loc[sim.scenario == 1, "amount"] > 220).all()
    # every amount above 220 that scenario 3 did not inflate is scenario-1 fraud
    assert (sim.loc[(sim.amount > 220) & (sim.scenario == 0)]).empty
    assert (sim.loc[sim.scenario == 0, "label"] == 0).all()
    # compromised terminals: scenario-2 fraud clusters on few terminals
    per_terminal = sim.loc[sim.scenario == 2].groupby("terminal_id").size()
    assert per_terminal.median() >= 2
    assert sim["timestamp"].dt.normalize().nunique() == 60


def test_simulator_is_seeded_and_sized():
    a = simulate_transactions(50, 100, 10, seed=1)
    b = simulate_transactions(50, 100, 10, seed=1)
    c = simulate_transactions(50, 100, 10, seed=2)
    pd.testing.assert_frame_equal(a, b)
    assert not a["amount"].equals(c["amount"]) if len(a) == len(c) else True
    assert a["customer_id"].max() < 50 and a["terminal_id"].max() < 100
    big = simulate_transactions(100, 100, 10, seed=1)
    assert 1.5 < len(big) / len(a) < 2.5


def _table():
    return pd.DataFrame({
        "transaction_id": [1, 2, 3, 4, 5, 6],
        "timestamp": ["2024-01-01 10:00", "2024-01-01 11:00", "not a time", "2024-01-02 09:00",
                      "2024-01-02 10:00", "2024-01-03 10:00"],
        "amount": [10.0, np.nan, 5.0, -2.0, np.inf, 7.5],
        "customer_id": [1, 1, 2, 2, 3, 3],
        "terminal_id": [9, 9, 8, 8, 7, 7],
        "label": [0, 1, 0, 0, 1, 0],
    })


def test_each_bad_row_gets_its_problem_and_none_is_dropped():
    df = _table()
    df.loc[5, "transaction_id"] = 1  # duplicate id
    v = validate(df, Schema())
    assert v.n_rows == 6
    errors = v.row_errors
    assert errors[0] is None or pd.isna(errors[0])
    assert "missing amount" in errors[1]
    assert "unparsable timestamp: not a time" in errors[2]
    assert "negative amount" in errors[3]
    assert "amount is infinite" in errors[4]
    assert "duplicate id: 1" in errors[5]
    assert v.n_invalid == 5
    counts = v.problem_counts()
    assert counts["duplicate id"] == 1 and counts["negative amount"] == 1


def test_missing_named_column_and_missing_label_are_clear_errors():
    df = _table()
    with pytest.raises(DataError, match="the amount column 'amt' is not in the table.*Fix: choose one of"):
        validate(df, Schema(amount="amt"))
    with pytest.raises(DataError, match="no label column found.*--label"):
        validate(df.drop(columns=["label"]), Schema())


@pytest.mark.parametrize("labels, match", [([0, 1, 2, 0, 1, 0], r"not binary: found values \[2\]"),
                                           (["yes", "no", "maybe", "no", "yes", "no"], "not binary"),
                                           ([0, 0, 0, 0, 0, 0], "only one class")])
def test_label_must_be_binary_with_both_classes(labels, match):
    df = _table().assign(label=labels)
    with pytest.raises(DataError, match=match):
        validate(df, Schema())


def test_text_labels_and_generic_tables_without_ids(tmp_path):
    claims = pd.DataFrame({"policy_state": ["OH", "IN", "?", "OH"] * 5, "umbrella_limit": [0, 5, 0, 1] * 5,
                           "collision_type": ["Rear", "?", "Side", "Front"] * 5,
                           "fraud_reported": ["Y", "N", "N", "Y"] * 5})
    path = tmp_path / "claims.csv"
    claims.to_csv(path, index=False)
    df = read_table(path)
    assert df["policy_state"].isna().sum() == 5  # '?' is missing, not a category
    v = validate(df, Schema())
    assert v.roles["label"] == "fraud_reported" and v.roles["timestamp"] is None
    assert list(v.labels[:4]) == [1, 0, 0, 1]
    assert set(v.categorical) == {"policy_state", "collision_type"}
    assert any("stratified" in n for n in v.notes)
    assert v.n_invalid == 0


def test_empty_table_and_unreadable_file(tmp_path):
    with pytest.raises(DataError, match="empty"):
        validate(pd.DataFrame({"label": []}), Schema())
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "nope.csv")
    bad = tmp_path / "x.xlsx"
    bad.write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        read_table(bad)


def test_summary_and_check_command(tmp_path, capsys):
    df = _table()
    v = validate(df, Schema())
    info = summary(df, v)
    assert info["rows"] == 6 and info["invalid_rows"] == 4
    assert info["fraud_rows"] == 2 and info["customers"] == 3
    assert info["time_span"]["days"] == pytest.approx(2.0)
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    code = main(["finance", "check", str(path)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "6 rows, 4 with problems" in out and "problem: negative amount: 1 rows" in out
    assert "time span: 2024-01-01 10:00:00 .. 2024-01-03 10:00:00" in out
    good = tmp_path / "g.csv"
    df.iloc[[0, 5]].assign(label=[0, 1]).to_csv(good, index=False)
    assert main(["finance", "check", str(good)]) == 0
    df.iloc[[0, 5]].to_csv(good, index=False)  # valid rows, but no fraud among them: nothing to train on
    assert main(["finance", "check", str(good)]) == 1
    assert "has no fraud rows" in capsys.readouterr().out


def test_timestamps_in_mixed_formats_and_time_zones_are_parsed_to_utc():
    from lepton_apps.finance.data import parse_timestamps

    s = parse_timestamps(pd.Series(["2024-01-01T10:00:00+02:00", "2024-01-01T08:00:00Z", "2024-01-01 08:00",
                                    "01/02/2024 08:00", "nonsense", None]))
    assert s[0] == s[1] == s[2] == pd.Timestamp("2024-01-01 08:00").value // 10**9
    assert s[3] - s[2] == 86_400
    assert (s[4:] == np.iinfo(np.int64).min).all()
    assert list(parse_timestamps(pd.Series([0.0, 86_400.9, np.nan]))[:2]) == [0, 86_400]
