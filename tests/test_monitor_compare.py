"""Champion / challenger (issue 12 item 5): a challenger scored in shadow on the service (answers logged,
never returned), `monitor compare` with a paired bootstrap interval, and `models promote` refusing a worse
challenger unless --force, recording who promoted what and why."""
import json
import time

import numpy as np
import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lepton_apps.cli import main  # noqa: E402
from lepton_apps.finance import FraudConfig, train  # noqa: E402
from lepton_apps.registry import Registry  # noqa: E402
from lepton_apps.serve.app import ServeConfig, create_app  # noqa: E402
from lepton_apps.store import Store  # noqa: E402
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: E402,F401 - fixtures


@pytest.fixture
def worse_bundle(fraud_data, tmp_path):  # noqa: F811
    """A fraud model trained on shuffled labels: a challenger that should lose."""
    history, _ = fraud_data
    noisy = history.copy()
    noisy["label"] = np.random.default_rng(0).permutation(noisy["label"].to_numpy())
    return train(FraudConfig(data="noisy", out=str(tmp_path / "worse"), test_days=5, threads=1, max_rounds=30,
                             imbalance="none"), frame=noisy)


def test_shadow_challenger_compare_and_the_promotion_gate(fraud_bundle, worse_bundle, fraud_data, capsys):  # noqa: F811
    reg = Registry()
    reg.register(fraud_bundle, "fraud-v1")
    reg.promote("fraud-v1", "production")
    reg.register(worse_bundle, "fraud-bad")
    store = Store.open()
    _, token = store.create_key("desk", ["finance"])
    app = create_app({"finance": "finance:production"}, config=ServeConfig(watch_s=0, challengers={"finance": "fraud-bad"}),
                     load_now=True, store=store)
    _, new = fraud_data
    rows = new.head(400)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get("/v1/models").json()["models"]["finance"]["challenger"]["model_version"].startswith("fraud-bad@")
        ids = []
        for start in range(0, 400, 100):
            chunk = json.loads(rows.iloc[start:start + 100].to_json(orient="records", date_format="iso"))
            r = client.post("/v1/finance/predict", json={"transactions": chunk})
            assert r.status_code == 200 and r.json()["model_version"].startswith("fraud-v1@")  # the champion answers
            ids.append(r.headers["x-request-id"])
        deadline = time.time() + 60
        while (store.audit_frame(domain="finance")["endpoint"] == "shadow").sum() < 4:
            assert time.time() < deadline, "the shadow answers were not logged"
            time.sleep(0.2)
        outcomes = [{"request_id": rid, "item": i, "label": str(int(rows["label"].iloc[k * 100 + i]))}
                    for k, rid in enumerate(ids) for i in range(100)]
        assert client.post("/v1/finance/feedback", json={"outcomes": outcomes}).json()["stored"] == 400
    shadow = store.audit_frame(domain="finance").query("endpoint == 'shadow'")
    assert set(shadow["request_id"]) == {f"{rid}-shadow" for rid in ids}
    assert shadow["model_version"].str.startswith("fraud-bad@").all()

    capsys.readouterr()
    assert main(["monitor", "compare", "finance", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 400 and result["labelled"] == 400 and result["verdict"] == "challenger worse"
    assert result["difference"] < 0 and result["ci95"][1] < 0
    assert 0 <= result["agreement"]["decision"]["agreement"] <= 1 and "score" in result["agreement"]

    assert main(["models", "promote", "fraud-bad"]) == 2
    assert "did worse than the served model" in capsys.readouterr().err
    assert reg.resolve("finance:production").name == reg.get("fraud-v1").path.name
    assert main(["models", "promote", "fraud-bad", "--force", "--reason", "drill: checking the gate"]) == 0
    assert reg.resolve("finance:production").name == reg.get("fraud-bad").path.name
    promo = store.audit_frame(domain="finance").query("endpoint == 'promote'")
    assert len(promo) == 1
    record = json.loads(promo["result"].iloc[0]) if isinstance(promo["result"].iloc[0], str) else promo["result"].iloc[0]
    assert record["to"] == "fraud-bad" and record["from"] == "fraud-v1" and record["forced"] is True
    assert record["reason"] == "drill: checking the gate" and record["by"]
    assert record["comparison"]["verdict"] == "challenger worse"


def test_shadow_scoring_never_changes_what_the_caller_receives(fraud_bundle, worse_bundle, fraud_data):  # noqa: F811
    _, new = fraud_data
    body = {"transactions": json.loads(new.head(50).to_json(orient="records", date_format="iso"))}
    answers = []
    for challengers in ({}, {"finance": str(worse_bundle)}):
        app = create_app({"finance": str(fraud_bundle)}, config=ServeConfig(watch_s=0, auth=False,
                                                                           challengers=challengers), load_now=True)
        with TestClient(app) as client:
            answers.append(client.post("/v1/finance/predict", json=body).json())
    assert answers[0] == answers[1]
