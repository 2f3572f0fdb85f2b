"""The Streamlit hub under Streamlit's own testing API (AppTest): no browser, no server."""
import pytest
from conftest import ROOT
from streamlit.testing.v1 import AppTest

from lepton_apps import domains
from lepton_apps.bundle import BundleWriter
from lepton_apps.domains import DomainSpec
from lepton_apps.registry import Registry
from lepton_apps.ui import common
from lepton_apps.ui.home import headline_metrics, short_time

HUB = str(ROOT / "lepton_apps" / "ui" / "hub.py")
TIMEOUT = 30


def run_hub() -> AppTest:
    return AppTest.from_file(HUB, default_timeout=TIMEOUT).run()


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def make_bundle(path, domain="medical", metrics=None, overwrite=False):
    with BundleWriter(path, domain=domain, task="binary", overwrite=overwrite,
                      metrics=metrics if metrics is not None else {"roc_auc": 0.91}) as w:
        w.save_json("x.json", {"threshold": 0.5})
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    folder = tmp_path / "registry"
    monkeypatch.setenv("LEPTON_HOME", str(folder))
    return folder


@pytest.fixture
def fake_domains(tmp_path, monkeypatch):
    """Two domains: 'demo' with a page script, 'later' without one."""
    page = tmp_path / "demo_page.py"
    page.write_text("import streamlit as st\nst.header('Demo domain page')\n")
    specs = {
        "medical": DomainSpec(name="medical", title="Demo domain", summary="Summary of the demo domain.",
                              page=page, icon=":material/science:", headline_metrics=("roc_auc",)),
        "later": DomainSpec(name="later", title="Later domain", summary="Summary of the later domain."),
    }
    monkeypatch.setattr(domains, "available_domains", lambda: specs)
    return specs


def test_home_renders_title_intro_and_a_card_per_installed_domain(home):
    at = run_hub()
    assert not at.exception
    assert [t.value for t in at.title] == ["Lepton Apps"]
    body = texts(at.markdown)
    for words in ("medical imaging classification", "transaction fraud detection",
                  "customer-service question answering", "Streamlit app", "Python API", "Batch-scoring CLI"):
        assert words in body
    specs = domains.available_domains()
    assert specs, "the three domain packages should be installed"
    for spec in specs.values():
        assert spec.summary in body and spec.title in texts(at.subheader)
    without_page = [s for s in specs.values() if common.page_path(s) is None]
    assert texts(at.caption).count("coming soon") == len(without_page)


def test_empty_registry_says_how_to_create_a_model(home):
    at = run_hub()
    assert not at.exception and not at.error
    info = texts(at.info)
    assert "No models in the registry yet" in info
    assert "lepton-apps demo" in info and "lepton-apps <domain> train" in info
    assert len(at.dataframe) == 0
    assert str(home.resolve()) in texts(at.caption)


def test_registry_table_lists_bundles_with_headline_metrics(home, tmp_path, fake_domains):
    registry = Registry(home)
    registry.register(make_bundle(tmp_path / "b1"), name="chest-xray-v1")
    registry.register(make_bundle(tmp_path / "b2", domain="other",
                                  metrics={"accuracy": 0.8, "n_test": 120, "passed": True, "per_class": {"a": 0.5}}),
                      name="other-model")
    at = run_hub()
    assert not at.exception and not at.error
    table = at.dataframe[0].value.set_index("name")
    assert sorted(table.index) == ["chest-xray-v1", "other-model"]
    row = table.loc["chest-xray-v1"]
    assert row["created"].endswith(" UTC")
    assert (row["domain"], row["task"], row["aliases"], row["status"]) == ("medical", "binary", "latest", "verified")
    assert row["roc_auc"] == pytest.approx(0.91)
    # a domain without headline metrics shows every numeric top-level metric, nothing else
    assert table.loc["other-model", "accuracy"] == pytest.approx(0.8)
    assert table.loc["other-model", "n_test"] == 120
    assert "passed" not in table.columns and "per_class" not in table.columns
    assert "2 model(s) registered" not in texts(at.caption)
    assert "1 model(s) registered" in texts(at.caption)


def test_damaged_aliases_file_is_an_error_not_a_traceback(home, tmp_path):
    Registry(home).register(make_bundle(tmp_path / "b"), name="m1")
    (home / "aliases.json").write_text("{not json", encoding="utf-8")
    at = run_hub()
    assert not at.exception
    assert [t.value for t in at.title] == ["Lepton Apps"]
    assert "aliases.json is not valid JSON" in texts(at.error)
    assert "Traceback" not in texts(at.error)


def test_tampered_and_unreadable_bundles_are_reported(home, tmp_path):
    registry = Registry(home)
    registry.register(make_bundle(tmp_path / "good"), name="good")
    registry.register(make_bundle(tmp_path / "bad"), name="tampered")
    tampered = home / "tampered" / "x.json"
    tampered.write_text(tampered.read_text().replace("0.5", "0.9"), encoding="utf-8")  # same size
    (home / "garbled").mkdir()
    (home / "garbled" / "bundle.json").write_text("{", encoding="utf-8")
    at = run_hub()
    assert not at.exception
    errors = texts(at.error)
    assert "'tampered' is damaged" in errors and "sha256" in errors
    assert "'garbled' is damaged" in errors and "not valid JSON" in errors
    assert "'good'" not in errors
    status = at.dataframe[0].value.set_index("name")["status"].to_dict()
    assert status == {"good": "verified", "tampered": "damaged"}


def test_domain_with_a_page_is_mounted_and_others_are_coming_soon(home, fake_domains):
    at = run_hub()
    assert not at.exception
    links = [(link.label, link.proto.page) for link in at.get("page_link")]
    assert [label for label, _ in links] == ["Open Demo domain"]
    assert texts(at.caption).count("coming soon") == 1
    at.switch_page(str(fake_domains["medical"].page)).run()
    assert not at.exception
    assert [h.value for h in at.header] == ["Demo domain page"]


def test_broken_domain_discovery_is_shown_and_home_still_renders(home, monkeypatch):
    def broken():
        raise TypeError("entry point 'x:DOMAIN' must point to a DomainSpec")

    monkeypatch.setattr(domains, "available_domains", broken)
    at = run_hub()
    assert not at.exception
    assert [t.value for t in at.title] == ["Lepton Apps"]
    assert "unexpected TypeError (entry point 'x:DOMAIN' must point to a DomainSpec)" in texts(at.error)
    assert "No domain templates are installed" in texts(at.warning)


def test_guarded_shows_lepton_and_unexpected_errors_and_lets_st_stop_through():
    script = """
import streamlit as st
from lepton_apps.errors import DataError
from lepton_apps.ui.common import guarded
with guarded("Reading the file"):
    raise DataError("column 'amount' is missing", where="tx.csv", fix="add the column")
with guarded():
    {}["key"]
st.write("after the errors")
with guarded():
    st.stop()
st.write("after st.stop")
"""
    at = AppTest.from_string(script, default_timeout=TIMEOUT).run()
    assert not at.exception
    errors = [e.value for e in at.error]
    assert errors[0] == "Reading the file: column 'amount' is missing (in tx.csv). Fix: add the column."
    assert errors[1].startswith("unexpected KeyError ('key')") and "Traceback" not in errors[1]
    assert len(errors) == 2
    assert "after the errors" in texts(at.markdown) and "after st.stop" not in texts(at.markdown)


def test_cached_bundle_reuses_the_load_and_reloads_a_retrained_bundle(tmp_path):
    path = make_bundle(tmp_path / "b")
    first = common.cached_bundle(str(path))
    assert first.metrics == {"roc_auc": 0.91}
    assert common.cached_bundle(str(path)) is first
    make_bundle(path, metrics={"roc_auc": 0.95}, overwrite=True)
    again = common.cached_bundle(str(path))
    assert again is not first and again.metrics == {"roc_auc": 0.95}


def test_headline_metrics_picks_named_keys_or_numeric_top_level_values():
    metrics = {"roc_auc": 0.9, "ece": 0.03, "n": 10, "ok": True, "curve": [0.1], "per_class": {"a": 1.0}}
    assert headline_metrics(metrics, ("roc_auc", "missing")) == {"roc_auc": 0.9}
    assert headline_metrics(metrics) == {"roc_auc": 0.9, "ece": 0.03, "n": 10}


def test_short_time_shows_minutes_in_utc_and_keeps_unparseable_text():
    assert short_time("2026-11-23T03:35:30+02:00") == "2026-11-23 01:35 UTC"
    assert short_time("yesterday") == "yesterday"


def test_service_section_shows_keys_and_last_requests_never_secrets(home):
    import datetime as dt

    at = run_hub()
    assert "No service configured" in texts(at.info)
    from lepton_apps.store import AuditRow, Store

    store = Store.open()  # $LEPTON_HOME/lepton.db, as 'lepton-apps serve' would create it
    _, token = store.create_key("triage-app", ["medical"])
    store.create_key("ops", ["*"], scope="admin")
    store.revoke_key("ops")
    store.audit([AuditRow("r1", dt.datetime(2026, 12, 1, 9), "medical", "predict", "medical:latest", "m@1", None,
                          200, 12.5, 1, "0" * 64, [{"score": 0.4}])])
    at = run_hub()
    assert not at.exception and "No service configured" not in texts(at.info)
    keys, audit = at.dataframe[-2].value, at.dataframe[-1].value
    assert keys["name"].tolist() == ["triage-app", "ops"] and keys["status"].tolist() == ["active", "revoked"]
    assert token not in keys.to_string() and token.split("_", 2)[2] not in keys.to_string()
    assert audit["model_version"].tolist() == ["m@1"] and audit["status"].tolist() == [200]
