"""Every domain's predictor against the core contract (lepton_apps.predictor), like scikit-learn's check_estimator."""
import base64
import json
import types

import pandas as pd
import pytest
from pydantic import BaseModel, ValidationError

from lepton_apps.domains import available_domains
from lepton_apps.errors import BundleError
from lepton_apps.predictor import (Predictor, PredictRequest, Result, check_evaluate, check_predictor, load,
                                   resolve)
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - fixtures
from test_medical_pipeline import tiny_bundle
from test_support_fixtures import demo_build, demo_bundle  # noqa: F401 - fixtures


@pytest.fixture(scope="module")
def medical(tmp_path_factory):
    bundle, data = tiny_bundle(tmp_path_factory.mktemp("contract_medical"), n=40, epochs=1)
    return bundle, data


def _medical_case(medical):
    bundle, data = medical
    images = sorted(data.rglob("*.png"))[:3]
    frame = pd.DataFrame({"path": [str(p) for p in images] + [str(data / "missing.png")]})
    return load(bundle), [str(p) for p in images], b"not an image at all", frame


def _finance_case(fraud_bundle, fraud_data):  # noqa: F811
    _, new = fraud_data
    records = new.head(5).to_dict("records")
    return load(fraud_bundle), records, {**records[0], "timestamp": "32/13/2020 x"}, new.head(20)


def _support_case(demo_bundle):  # noqa: F811
    questions = ["my card was stolen", "how long does a transfer take", "what's the weather"]
    frame = pd.DataFrame({"question": [*questions, "   "]})
    return load(demo_bundle), questions, "", frame


@pytest.fixture
def cases(medical, fraud_bundle, fraud_data, demo_bundle):  # noqa: F811
    return {"medical": _medical_case(medical), "finance": _finance_case(fraud_bundle, fraud_data),
            "support": _support_case(demo_bundle)}


def test_every_installed_domain_declares_a_predictor_class():
    domains = available_domains()
    assert set(domains) >= {"medical", "finance", "support"}
    for name, spec in domains.items():
        cls = spec.predictor_class()
        assert issubclass(cls, Predictor) and cls.domain == name
        assert issubclass(cls.result_type, Result) and issubclass(cls.request_schema, PredictRequest)
        assert issubclass(cls.response_schema(), BaseModel)


@pytest.mark.parametrize("domain", ["medical", "finance", "support"])
def test_predictor_meets_the_contract(cases, domain):
    predictor, items, bad, frame = cases[domain]
    assert type(predictor) is available_domains()[domain].predictor_class()
    assert check_predictor(predictor, items, bad, frame) == []


@pytest.mark.parametrize("domain", ["medical", "finance", "support"])
def test_evaluate_meets_the_contract_and_the_core_cli_verb_runs_it(cases, medical, fraud_bundle, fraud_data,
                                                                  demo_bundle, domain, tmp_path, capsys):  # noqa: F811
    from lepton_apps.cli import main

    predictor = cases[domain][0]
    labelled = {"medical": str(medical[1] / "manifest.csv"), "finance": fraud_data[1],
                "support": str(demo_bundle.parent / "demo_questions.json")}[domain]
    spec = available_domains()[domain].evaluate
    assert check_evaluate(predictor, spec, labelled, tmp_path / "api") == []
    if domain == "finance":  # the CLI reads a file
        labelled = str(tmp_path / "new.parquet")
        fraud_data[1].to_parquet(labelled)
    capsys.readouterr()
    bundle = {"medical": medical[0], "finance": fraud_bundle, "support": demo_bundle}[domain]
    assert main([domain, "evaluate", str(bundle), labelled, "--out", str(tmp_path / "cli"), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out.split("\nreport and plots in")[0])
    assert printed == json.loads((tmp_path / "cli" / "report.json").read_text())
    assert printed["model_version"] == predictor.model_version


def test_check_evaluate_finds_an_option_the_cli_cannot_pass(cases, tmp_path):
    from lepton_apps.domains import EvaluateSpec

    predictor = cases["finance"][0]
    assert check_evaluate(predictor, EvaluateSpec("data"), None, tmp_path) == [
        "evaluate takes ['k'] that the DomainSpec does not declare (the CLI cannot pass them)"]


@pytest.mark.parametrize("domain", ["medical", "finance", "support"])
def test_results_are_typed_strict_json_and_carry_the_error_of_a_bad_item(cases, domain):
    predictor, items, bad, _ = cases[domain]
    *good, wrong = predictor.predict([*items, bad])
    assert all(r.ok and r.model_version == predictor.model_version for r in good)
    assert not wrong.ok and wrong.error
    data = json.loads(json.dumps(wrong.to_dict(), allow_nan=False))
    assert data["error"] == wrong.error and data["model_version"] == predictor.model_version
    assert type(wrong).model_validate(good[0].to_dict()) == good[0]  # a result survives a JSON round trip


def test_check_predictor_finds_broken_predictors(cases):
    predictor, items, bad, frame = cases["support"]
    broken = types.SimpleNamespace()
    assert check_predictor(broken, items, bad, frame) == ["SimpleNamespace is not a lepton_apps.predictor.Predictor"]

    class DropsBadItems(type(predictor)):
        def predict(self, items):
            return [r for r in super().predict(items) if r.ok]

        def predict_frame(self, frame, column="question"):
            return super().predict_frame(frame, column).drop(columns=["error"])

    sick = object.__new__(DropsBadItems)
    sick.__dict__.update(predictor.__dict__)
    problems = check_predictor(sick, items, bad, frame)
    assert any("predict returned list of 3 for 4 items" in p for p in problems)
    sick2 = object.__new__(type("NoErrorColumn", (DropsBadItems,), {"predict": type(predictor).predict}))
    sick2.__dict__.update(predictor.__dict__)
    assert any("last column" in p for p in check_predictor(sick2, items, bad, frame))


def test_api_request_schemas_round_trip_through_predict_request(cases, medical):
    med, _, _, _ = cases["medical"]
    png = sorted(medical[1].rglob("*.png"))[0].read_bytes()
    body = {"images": [{"data_base64": base64.b64encode(png).decode(), "name": "a.png"},
                       {"data_base64": base64.b64encode(b"junk").decode(), "name": "b.png"}]}
    reply = med.predict_request(med.request_schema.model_validate(body))
    out = json.loads(reply.model_dump_json())
    assert out["model_version"] == med.model_version and [r["item"] for r in out["results"]] == ["a.png", "b.png"]
    assert out["results"][0]["error"] is None and out["results"][1]["error"] and out["results"][1]["score"] is None
    with pytest.raises(ValidationError, match="not valid base64"):
        med.request_schema.model_validate({"images": [{"data_base64": "%%%"}]})
    with pytest.raises(ValidationError):
        med.request_schema.model_validate({"images": []})

    fin, records, _, _ = cases["finance"]
    reply = fin.predict_request(fin.request_schema.model_validate({"transactions": records[:2]}))
    assert [r.transaction_id for r in reply.results] == [str(t["transaction_id"]) for t in records[:2]]
    with pytest.raises(ValidationError):
        fin.request_schema.model_validate({"transactions": records[:1], "unknown": 1})

    sup, _, _, _ = cases["support"]
    reply = sup.predict_request(sup.request_schema.model_validate({"questions": ["my card was stolen"]}))
    assert reply.results[0].faq_id == "lost-card" and reply.model_version == sup.model_version


def test_load_resolves_registry_names_for_every_domain_and_checks_the_domain(cases, fraud_bundle, demo_bundle):  # noqa: F811
    from lepton_apps.registry import Registry

    reg = Registry()
    entry = reg.register(fraud_bundle, "fraud-contract")
    assert resolve("finance:latest") == (entry.path, "finance")
    assert type(load("fraud-contract")).__name__ == "FraudScorer"
    with pytest.raises(BundleError, match="not a 'support' one"):
        load(fraud_bundle, domain="support")
    assert load(demo_bundle, domain="support").model_version == cases["support"][0].model_version


def test_explanations_are_json(cases):
    for domain, (predictor, items, _, _) in cases.items():
        data = predictor.explain(items[0]).to_dict()
        json.dumps(data, allow_nan=False)
        assert data["model_version"] == predictor.model_version, domain
