"""Fraud template: features are identical batch vs online, leak-free, and the splits keep their boundaries."""
import numpy as np
import pandas as pd
import pytest

from lepton_apps.errors import DataError
from lepton_apps.finance.demo import simulate_transactions
from lepton_apps.finance.features import DAY_S, FeatureSpec, Stream, feature_matrix, to_cents
from lepton_apps.finance.online import OnlineState
from lepton_apps.finance.split import fraction_split, prequential_splits, stratified_split, time_split
from lepton_apps.finance.features import make_stream
from lepton_apps.finance.data import Schema, validate

ROLES = {"id": "transaction_id", "timestamp": "timestamp", "amount": "amount", "customer": "customer_id",
         "terminal": "terminal_id", "label": "label"}


def _spec(delay=7.0):
    return FeatureSpec(roles=dict(ROLES), windows_days=[1, 7, 30], label_delay_days=delay, numeric=[], categorical={})


@pytest.fixture(scope="module")
def stream_df():
    df = simulate_transactions(150, 300, 50, seed=11)
    # ties: copy some timestamps onto the next row of another customer, and shuffle the input order
    df.loc[df.index[1::50], "timestamp"] = df["timestamp"].shift(1)[df.index[1::50]]
    return df.sample(frac=1.0, random_state=0).reset_index(drop=True)


def _batch(df, spec):
    v = validate(df, Schema())
    return feature_matrix(make_stream(df, v.roles, v.seconds, v.labels), {}, spec)


def test_batch_and_online_features_are_identical(stream_df):
    spec = _spec()
    batch = _batch(stream_df, spec)
    v = validate(stream_df, Schema())
    order = np.argsort(v.seconds, kind="stable")  # the stream as it arrives: time order, ties in input order
    state = OnlineState(spec)
    online = np.empty_like(batch)
    cents = to_cents(stream_df["amount"].to_numpy())
    for i in order:
        t, c = int(v.seconds[i]), int(cents[i])
        cust, term = str(stream_df["customer_id"].iat[i]), str(stream_df["terminal_id"].iat[i])
        vals = state.window_values(t, c, cust, term)
        vals["amount"] = c / 100
        online[i] = [vals[n] for n in spec.names]
        state.update(t, c, cust, term, int(v.labels[i]), str(stream_df["transaction_id"].iat[i]))
    assert np.array_equal(batch, online)  # bit-identical, not just close
    assert batch[:, spec.names.index("terminal_risk_7d")].max() > 0  # the risk features are not all zero


def test_parallel_and_time_sorted_paths_give_the_same_features(stream_df, monkeypatch):
    from lepton_apps.finance import features

    spec = _spec()
    serial = _batch(stream_df, spec)                     # shuffled input: the general sort path, one thread
    monkeypatch.setattr(features, "PARALLEL_ROWS", 0)    # the two-thread path of large tables
    assert np.array_equal(_batch(stream_df, spec), serial)
    ordered = stream_df.sort_values("timestamp", kind="stable")   # the already-time-ordered shortcut
    by_id = pd.DataFrame(_batch(ordered, spec), index=ordered.index).sort_index().to_numpy()
    assert np.array_equal(by_id, serial)


def test_chunked_writes_and_prepended_history_give_the_same_features(stream_df, monkeypatch):
    """Window features computed a few sorted rows at a time, in two threads, and with the first
    rows treated as prepended history (left out of the matrix) equal the one-chunk matrix."""
    from lepton_apps.finance import features

    spec = _spec()
    v = validate(stream_df, Schema())
    stream = make_stream(stream_df, v.roles, v.seconds, v.labels)
    whole = feature_matrix(stream, {}, spec)
    monkeypatch.setattr(features, "CHUNK_ROWS", 37)
    monkeypatch.setattr(features, "PARALLEL_ROWS", 0)
    assert np.array_equal(feature_matrix(stream, {}, spec), whole)
    skip = len(stream) // 3
    assert np.array_equal(feature_matrix(stream, {}, spec, skip=skip), whole[skip:])


@pytest.mark.parametrize("n_codes", [7, 70_000, 2**40])
@pytest.mark.parametrize("time_sorted", [True, False])
def test_entity_time_order_matches_lexsort(n_codes, time_sorted):
    """The radix (16 bits at a time) entity order equals a (code, time, row) lexsort, with more
    than 65,536 entities, a missing-value code and rows out of time order."""
    from lepton_apps.finance.features import _grouped_positions

    rng = np.random.default_rng(n_codes)
    n = 20_000
    codes = rng.integers(-1, n_codes, n)
    t = np.sort(rng.integers(0, 1_000, n)) if time_sorted else rng.integers(0, 1_000, n)
    time_order = None if time_sorted else np.argsort(t, kind="stable")
    expected = np.lexsort((np.arange(n), t, codes))
    np.testing.assert_array_equal(_grouped_positions(codes, time_order), expected)


def test_state_round_trip_and_late_labels(stream_df):
    spec = _spec()
    state = OnlineState(spec)
    day0 = pd.Timestamp("2024-01-01").value // 10**9
    for k in range(20):
        state.update(day0 + k * 3600, 1000, "c1", "t1", -1, f"id{k}")
    assert state.record_label("id3", 1) and not state.record_label("missing", 1)
    copy = OnlineState.from_frame(spec, state.to_frame())
    t = day0 + 8 * DAY_S
    assert copy.window_values(t, 500, "c1", "t1") == state.window_values(t, 500, "c1", "t1")
    assert state.window_values(t, 500, "c1", "t1")["terminal_risk_7d"] == pytest.approx(1 / 20)


def test_hand_computed_windows():
    spec = FeatureSpec(roles=dict(ROLES), windows_days=[1, 7], label_delay_days=2, numeric=[], categorical={})
    day = DAY_S
    t = np.array([0, 3600, day + 7200, 3 * day, 3 * day + 1, 10 * day], dtype=np.int64)
    s = Stream(t=t, cents=np.array([1000, 3000, 2000, 500, 100, 100]), customer=np.array(["a", "a", "a", "b", "a", "a"], object),
               terminal=np.array(["x", "x", "x", "x", "y", "x"], object), label=np.array([1, 0, 1, 0, 0, 0]))
    x = feature_matrix(s, {}, spec)
    col = {n: x[:, j] for j, n in enumerate(spec.names)}
    assert col["customer_nb_tx_1d"].tolist() == [1, 2, 1, 1, 1, 1]  # row 1 is 25 h before row 2
    assert col["customer_nb_tx_7d"].tolist() == [1, 2, 3, 1, 4, 2]
    assert col["customer_avg_amount_1d"][1] == pytest.approx((1000 + 3000) / 2 / 100)
    assert col["customer_avg_amount_7d"][4] == pytest.approx((1000 + 3000 + 2000 + 100) / 4 / 100)
    # terminal x at 3 days: labels known up to 3d-2d = 1 day -> the first two rows (one fraud)
    assert col["terminal_nb_tx_7d"][3] == 2 and col["terminal_risk_7d"][3] == pytest.approx(0.5)
    # at 10 days the 7-day window ending 2 days earlier is (1d, 8d]: rows 2 (fraud) and 3
    assert col["terminal_nb_tx_7d"][5] == 2 and col["terminal_risk_7d"][5] == pytest.approx(0.5)
    assert col["terminal_nb_tx_1d"][0] == 0 and col["terminal_risk_1d"][0] == 0


def test_no_leakage_from_the_future_or_from_unknown_labels(stream_df):
    spec = _spec()
    v = validate(stream_df, Schema())
    base = _batch(stream_df, spec)
    rng = np.random.default_rng(0)
    for i in rng.choice(len(stream_df), size=5, replace=False):
        t_i = v.seconds[i]
        after = v.seconds > t_i
        label_unknown = v.seconds > t_i - spec.delay_s
        changed = stream_df.copy()
        changed.loc[after, "amount"] = changed.loc[after, "amount"] * 7 + 1
        changed.loc[label_unknown & (np.arange(len(v.seconds)) != i), "label"] = 1 - changed.loc[
            label_unknown & (np.arange(len(v.seconds)) != i), "label"]
        changed.loc[after, "customer_id"] = changed.loc[i, "customer_id"]  # pile future rows on the same entities
        changed.loc[after, "terminal_id"] = changed.loc[i, "terminal_id"]
        again = _batch(changed, spec)
        assert np.array_equal(base[i], again[i]), f"row {i} changed when only later data changed"
    # and the test can fail: flipping labels that *are* known changes terminal risk somewhere
    known = v.seconds < v.seconds.max() - 20 * DAY_S
    flipped = stream_df.copy()
    flipped.loc[known, "label"] = 1 - flipped.loc[known, "label"]
    assert not np.array_equal(base, _batch(flipped, spec))


def test_time_split_boundaries_and_prequential_folds():
    t = np.arange(0, 60 * DAY_S, 3600, dtype=np.int64) + 1_600_000_000 // DAY_S * DAY_S
    s = time_split(t, test_days=7, delay_days=7)
    assert t[s.fit].max() < t[s.val].min() and t[s.val].max() < t[s.test].min()
    assert t[s.test].min() - t[s.val].max() > 7 * DAY_S - 3600 - 1  # the delay gap
    assert (t[s.test].max() - t[s.test].min()) < 7 * DAY_S
    assert len(set(s.fit) | set(s.val) | set(s.test)) == len(s.fit) + len(s.val) + len(s.test)
    folds = prequential_splits(t, 3, test_days=7, delay_days=7)
    assert len(folds) == 3
    starts = [t[f.test].min() for f in folds]
    assert starts[0] - starts[1] == 7 * DAY_S and starts[1] - starts[2] == 7 * DAY_S
    with pytest.raises(DataError, match="too short"):
        time_split(t[: 10 * 24], test_days=7, delay_days=7)


def test_fraction_and_stratified_splits():
    t = np.arange(1000, dtype=np.int64)[::-1]
    f = fraction_split(t)
    assert t[f.fit].max() < t[f.val].min() <= t[f.val].max() < t[f.test].min()
    y = np.r_[np.ones(100), np.zeros(900)].astype(int)
    s = stratified_split(y)
    assert s.kind == "stratified" and "no time column" in s.description
    for part in (s.fit, s.val, s.test):
        assert y[part].mean() == pytest.approx(0.1, abs=0.01)


def test_card_precision_at_k_per_day_excludes_cards_already_detected():
    from lepton_apps.finance.evaluate import card_precision_at_k

    # day 0: cards a (fraud, 0.9), b (legit, 0.8), c (legit, 0.1); day 1: a again (fraud, 0.95), b, c (fraud, 0.5)
    y = np.array([1, 0, 0, 1, 0, 1])
    s = np.array([0.9, 0.8, 0.1, 0.95, 0.7, 0.5])
    day = np.array([0, 0, 0, 1, 1, 1])
    card = np.array(["a", "b", "c", "a", "b", "c"])
    # k=2: day 0 top {a, b} -> 1/2; day 1 without detected a: top {b, c} -> 1/2
    assert card_precision_at_k(y, s, 2, day, card) == pytest.approx(0.5)
    # without the exclusion day 1's top is {a, b} -> 1/2 as well; with k=1 the difference shows
    assert card_precision_at_k(y, s, 1, day, card) == pytest.approx((1 + 0) / 2)
    assert card_precision_at_k(y, s, 1, day, card, exclude_detected=False) == pytest.approx(1.0)
    assert card_precision_at_k(y, s, 2) == pytest.approx(1.0)  # no days, no cards: precision@2 on rows
