"""Finance's online per-entity state in a real Redis server, shared by several replicas
(apps/finance/state.py): the same features and scores as the in-process state, late labels seen by every
replica, seeding once, and a Redis outage answered 503 by the service."""
import json

import numpy as np
import pandas as pd
import pytest

from lepton_apps.errors import ConfigError, UnavailableError
from lepton_apps.finance import FraudScorer
from lepton_apps.finance.state import RedisState
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - fixtures


@pytest.fixture
def prefix(request):
    """A key prefix of this test's own in the session's Redis."""
    return f"test:{request.node.name}:"


def _replicas(fraud_bundle, redis_server, prefix, n=2):  # noqa: F811
    out = []
    for _ in range(n):
        s = FraudScorer.load(fraud_bundle, compiled="no")
        out.append((s, s.share_state(redis_server.url, prefix)))
    return out


def test_replicas_sharing_redis_score_like_one_process(fraud_bundle, fraud_data, redis_server, prefix):  # noqa: F811
    _, new = fraud_data
    records = new.to_dict("records")
    single = FraudScorer.load(fraud_bundle, compiled="no")
    expected = [single.score_one(r, reasons=0) for r in records]

    (a, how_a), (b, how_b) = _replicas(fraud_bundle, redis_server, prefix)
    assert (how_a, how_b) == ("seeded", "shared")
    got = [(a if i % 2 else b).score_one(r, reasons=0) for i, r in enumerate(records)]  # alternate replicas
    assert [g["features"] for g in got] == [e["features"] for e in expected]  # bit-identical features
    assert np.array_equal([g["score"] for g in got], [e["score"] for e in expected])

    # the shared state holds exactly what the in-process one does (same rows, after the same pruning)
    cols = ["kind", "key", "t", "value", "tx_id"]
    local = single.state.to_frame().sort_values(cols).reset_index(drop=True)
    shared = a.state.to_frame().sort_values(cols).reset_index(drop=True)
    pd.testing.assert_frame_equal(shared, local)
    assert a.state.latest == single.state.latest

    # batch scoring after the shared state = after the in-process state (history of the batch's entities only)
    later = new.copy()
    later["timestamp"] = later["timestamp"] + pd.Timedelta(days=5)
    pd.testing.assert_series_equal(b.score(later, reasons_for="none")["score"],
                                   single.score(later, reasons_for="none")["score"])


def test_a_late_label_recorded_by_one_replica_is_seen_by_the_other(fraud_bundle, fraud_data, redis_server,
                                                                  prefix):  # noqa: F811
    _, new = fraud_data
    (a, _), (b, _) = _replicas(fraud_bundle, redis_server, prefix)
    roles = a.spec.roles
    tx = {**new.iloc[0].to_dict(), roles["label"]: None, roles["id"]: "late-1"}  # label not known yet
    a.score_one(tx, reasons=0)
    delay = pd.Timedelta(days=a.spec.label_delay_days)
    after = {**tx, roles["timestamp"]: tx[roles["timestamp"]] + delay + pd.Timedelta(hours=1), roles["id"]: "late-2"}
    w = a.spec.windows_days[0]
    before = b.score_one(after, update=False, reasons=0)["features"][f"terminal_risk_{w}d"]
    assert a.record_label("late-1", 1) and not b.record_label("never-seen", 1)
    risk = b.score_one(after, update=False, reasons=0)["features"][f"terminal_risk_{w}d"]
    assert risk > before
    single = FraudScorer.load(fraud_bundle, compiled="no")
    single.score_one(tx, reasons=0)
    single.record_label("late-1", 1)
    assert single.score_one(after, update=False, reasons=0)["features"][f"terminal_risk_{w}d"] == risk


def test_save_and_load_state_round_trip_through_redis(fraud_bundle, fraud_data, redis_server, prefix, tmp_path):  # noqa: F811
    _, new = fraud_data
    records = new.to_dict("records")
    [(a, _)] = _replicas(fraud_bundle, redis_server, prefix, n=1)
    for r in records[:50]:
        a.score_one(r, reasons=0)
    a.save_state(tmp_path / "state.parquet")
    for r in records[50:80]:  # diverge, then go back to the saved state
        a.score_one(r, reasons=0)
    a.load_state(tmp_path / "state.parquet")
    local = FraudScorer.load(fraud_bundle, compiled="no")
    for r in records[:50]:
        local.score_one(r, reasons=0)
    assert [a.score_one(r, reasons=0)["score"] for r in records[50:80]] == \
        [local.score_one(r, reasons=0)["score"] for r in records[50:80]]


def test_a_prefix_of_another_model_is_refused(fraud_bundle, redis_server, prefix):  # noqa: F811
    s = FraudScorer.load(fraud_bundle, compiled="no")
    other = RedisState(s.spec, redis_server.url, prefix)
    other.r.set(prefix + "spec", json.dumps({"windows_days": [99], "label_delay_days": 1}))
    with pytest.raises(ConfigError, match="other feature windows.*--state-prefix"):
        s.share_state(redis_server.url, prefix)


def test_redis_down_is_an_unavailable_error(fraud_bundle, fraud_data):  # noqa: F811
    from conftest import free_port

    s = FraudScorer.load(fraud_bundle, compiled="no")
    dead = RedisState(s.spec, f"redis://127.0.0.1:{free_port()}/0")
    with pytest.raises(UnavailableError, match="Redis does not answer"):
        dead.window_values(0, 100, "c", "t")
    assert "does not answer" in dead.ping()


def test_service_replicas_share_the_state_and_answer_503_when_redis_is_down(fraud_bundle, fraud_data, tmp_path,
                                                                           prefix):  # noqa: F811
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from conftest import RedisServer
    from lepton_apps.serve.app import ServeConfig, create_app

    server = RedisServer(tmp_path)  # its own server: this test stops it
    server.start()
    try:
        _, new = fraud_data
        tx = json.loads(new.head(1).to_json(orient="records", date_format="iso"))[0]
        cfg = ServeConfig(auth=False, watch_s=0, state_url=server.url, state_prefix=prefix)
        apps = [create_app({"finance": str(fraud_bundle)}, config=cfg, load_now=True) for _ in range(2)]
        with TestClient(apps[0]) as one, TestClient(apps[1]) as two:
            assert one.get("/readyz").status_code == 200
            for client in (one, two, one):
                r = client.post("/v1/finance/score_one", json={"transaction": tx})
                assert r.status_code == 200, r.text
            # replica two's model sees the three transactions scored through both replicas
            model = apps[1].state.lepton.models["finance"]
            w = min(model.spec.windows_days)
            seen = model.score_one(tx, update=False, reasons=0)["features"][f"customer_nb_tx_{w}d"]
            first = FraudScorer.load(fraud_bundle, compiled="no").score_one(tx, update=False, reasons=0)["features"]
            assert seen == first[f"customer_nb_tx_{w}d"] + 3

            server.stop()
            r = one.post("/v1/finance/score_one", json={"transaction": tx})
            assert r.status_code == 503 and "Redis does not answer" in r.json()["detail"]
            ready = one.get("/readyz")
            assert ready.status_code == 503 and "Redis" in ready.json()["errors"]["finance online state"]
    finally:
        server.stop()
