"""The service database on a real PostgreSQL server that the test starts itself: migrations, keys,
audit rows from the service, and a database that goes down and comes back."""
import json

import pytest

pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from lepton_apps.serve.app import ServeConfig, create_app  # noqa: E402
from lepton_apps.store import Store  # noqa: E402
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: E402,F401 - fixtures


def test_migrations_keys_and_audit_on_postgres(postgres):
    store = Store.open(postgres.url)
    Store.open(postgres.url)  # a second open finds the schema up to date
    key, token = store.create_key("pg-key", ["finance", "support"], scope="admin")
    assert store.verify(token).name == "pg-key" and store.verify(token + "x") is None
    assert [k.name for k in store.keys()] == ["pg-key"]
    store.revoke_key("pg-key")
    assert store.verify(token) is None and not store.keys()[0].active


def test_service_audits_to_postgres_and_answers_503_while_it_is_down(postgres, fraud_bundle, fraud_data):  # noqa: F811
    store = Store.open(postgres.url)
    _, token = store.create_key("svc", ["finance"])
    _, new = fraud_data
    body = {"transactions": json.loads(new.head(2).to_json(orient="records", date_format="iso"))}
    app = create_app({"finance": str(fraud_bundle)}, config=ServeConfig(watch_s=0), load_now=True, store=store)
    with TestClient(app, headers={"x-api-key": token}) as c:
        r = c.post("/v1/finance/predict", json=body)
        assert r.status_code == 200
        rid = r.headers["x-request-id"]
        postgres.stop()
        try:
            store.engine.dispose()  # drop pooled connections to the stopped server
            r = c.post("/v1/finance/predict", json=body)
            assert r.status_code == 503 and "database is unavailable" in r.json()["detail"]
            ready = c.get("/readyz")
            assert ready.status_code == 503 and ready.json()["errors"]["database"]
        finally:
            postgres.start()
        store.engine.dispose()
        assert c.get("/readyz").status_code == 200
        assert c.post("/v1/finance/predict", json=body).status_code == 200
    rows = store.audit_frame(domain="finance")
    assert rid in set(rows["request_id"]) and (rows["status"] == 200).sum() >= 2
    assert json.loads(rows.set_index("request_id").loc[rid, "result"])[0]["score"] is not None
