"""The hub's Monitor page (AppTest): without a service database it says how to get one; with served traffic,
outcomes and a registered bundle it shows alerts, operations, prediction drift and live metrics per week."""
import datetime as dt
import json

from streamlit.testing.v1 import AppTest

from conftest import ROOT
from lepton_apps.registry import Registry
from lepton_apps.store import AuditRow, Store
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - fixtures

PAGE = str(ROOT / "lepton_apps" / "ui" / "monitor.py")


def test_without_a_service_database_the_page_says_what_to_do(monkeypatch):
    monkeypatch.delenv("LEPTON_DB_URL", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert "No service database on this machine yet" in at.info[0].value


def test_served_traffic_with_outcomes_shows_alerts_drift_and_live_weeks(fraud_bundle, monkeypatch):  # noqa: F811
    monkeypatch.delenv("LEPTON_DB_URL", raising=False)
    Registry().register(fraud_bundle, "fraud-v1")
    store = Store.open()  # $LEPTON_HOME/lepton.db: the page finds it
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rows, outcomes = [], []
    for i in range(120):
        score = (i % 10) / 10
        rows.append(AuditRow(request_id=f"r{i:03d}", created_at=now - dt.timedelta(hours=i), domain="finance",
                             endpoint="predict", model_ref="finance:latest", model_version="bundle@test", key_id=None,
                             status=200 if i % 40 else 503, latency_ms=10.0 + i % 7, n_items=1, input_digest="d" * 64,
                             result=[{"score": score, "decision": score >= 0.5, "threshold": 0.5}]))
        outcomes.append({"request_id": f"r{i:03d}", "item": 0, "label": "1" if score >= 0.6 else "0"})
    store.audit(rows)
    store.add_outcomes("finance", outcomes, source="test")
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    at.selectbox(key="monitor_domain").select("finance").run()
    assert not at.exception, at.exception
    assert "fraud-v1" in at.caption[0].value or str(fraud_bundle) in at.caption[0].value
    subheaders = [s.value for s in at.subheader]
    assert subheaders[0] == "Operations" and subheaders[-1] == "Live performance per week"
    assert any("error rate 2.5% (3 of 120 requests answered 5xx)" in e.value for e in at.error)
    live = at.dataframe[-1].value
    assert set(live["model_version"]) == {"bundle@test"} and live["labelled"].sum() == 117
    assert json.loads(live.to_json(orient="records"))[0]["roc_auc"] is not None
