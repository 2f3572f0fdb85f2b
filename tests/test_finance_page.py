"""Fraud template: the Streamlit page under Streamlit's AppTest (alert queue, trade-off, reasons, training)."""
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from lepton_apps.registry import Registry
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - shared session fixtures

PAGE = str(Path(__file__).resolve().parents[1] / "apps" / "finance" / "page.py")


def _metrics(at) -> dict:
    return {m.label: m.value for m in at.metric}


def _app():
    return AppTest.from_file(PAGE, default_timeout=120)


def test_page_without_models_says_how_to_get_one():
    at = _app().run()
    assert not at.exception
    assert any("No fraud model in the registry yet" in i.value for i in at.info)
    assert at.title[0].value == "Fraud detection"


@pytest.fixture
def registered(fraud_bundle):  # noqa: F811
    return Registry().register(fraud_bundle, "finance-page-test")


def test_alert_queue_threshold_trade_off_and_reasons(registered):
    at = _app().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    low = _metrics(at)
    assert float(low["Recall (validation)"]) > 0
    at.slider(key="threshold").set_value(0.9).run()
    high = _metrics(at)
    assert float(high["Alerts per day"]) < float(low["Alerts per day"])
    assert float(high["Recall (validation)"]) <= float(low["Recall (validation)"])
    at.radio(key="mode").set_value("Daily alert budget").run()
    at.slider(key="budget").set_value(10).run()
    assert float(_metrics(at)["Alerts per day"]) == pytest.approx(10, abs=1)
    queue = at.dataframe[0].value
    assert queue["score"].is_monotonic_decreasing and len(queue) == 200
    assert any("Alert queue:" in s.value for s in at.subheader)
    assert any("Why this score" in m.value for m in at.markdown)
    reasons = at.dataframe[1].value
    assert list(reasons.columns) == ["feature", "value", "contribution"] and len(reasons) == 10
    assert reasons["contribution"].abs().is_monotonic_decreasing


def test_bad_file_shows_a_message_not_a_traceback(registered, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id,timestamp,amount\n1,2024-01-01,3\n")
    at = _app().run()
    at.radio(key="queue_source").set_value("Path on the server").run()
    at.text_input(key="queue_path").input(str(tmp_path / "missing.csv")).run()
    assert not at.exception
    assert any("data file not found" in e.value for e in at.error)
    at.text_input(key="queue_path").input(str(bad)).run()
    assert not at.exception
    assert any("needs the customer column" in e.value for e in at.error)


def test_train_tab_checks_maps_and_trains():
    at = _app().run()
    assert not at.exception
    assert _metrics(at)["Rows with problems"] == "0"
    assert at.selectbox(key="role_label").value == "label"
    at.button[0].click().run()  # the form's Train button
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert any("Trained and registered" in s.value for s in at.success)
    assert [e.name for e in Registry().list("finance")][0].startswith("finance-")


def test_model_report_tab_shows_metrics_importance_and_plots(registered):
    at = _app().run()
    assert not at.exception
    metrics = _metrics(at)
    assert 0 < float(metrics["Test AUC-PR"]) <= 1
    assert any("Features built" in m.value for m in at.markdown)
    assert any("Global importance" in m.value for m in at.markdown)
    assert len(at.get("image")) == 4  # the queue tab's live PR curve + the bundle's three plots
