"""Issue 10, item 7 fixes (each test failed before its fix) and the robustness driver's table."""
import importlib
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from lepton_apps.cli import main
from lepton_apps.config import LeptonConfig
from lepton_apps.errors import ConfigError, DataError, LeptonError
from lepton_apps.registry import Registry
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - shared session fixtures

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "apps" / "finance" / "page.py")


# --------------------------------------------------------------------------- a. --config without data
class _Cfg(LeptonConfig):
    data: str
    epochs: int = 3
    columns: dict = {}


def test_config_takes_required_keys_from_overrides_and_merges_dicts(tmp_path):
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text("epochs: 7\ncolumns: {label: Class, amount: Amount}\n")
    cfg = _Cfg.from_yaml_and_overrides(cfg_file, {"data": "x.csv", "epochs": None, "columns": {"label": "y"}})
    assert cfg.data == "x.csv" and cfg.epochs == 7  # a None override (flag not given) keeps the YAML value
    assert cfg.columns == {"label": "y", "amount": "Amount"}  # dicts merge key by key, the flag wins
    assert _Cfg.from_yaml_and_overrides(None, {"data": "y.csv", "epochs": 2}).epochs == 2
    with pytest.raises(ConfigError, match=r"no 'data' given.*cfg\.yaml.*pass it on the command line"):
        _Cfg.from_yaml_and_overrides(cfg_file, {"data": None})
    cfg_file.write_text("data: a.csv\nepoch: 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'epoch'.*cfg\.yaml"):
        _Cfg.from_yaml_and_overrides(cfg_file, {})
    cfg_file.write_text("- just\n- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        _Cfg.from_yaml_and_overrides(cfg_file, {"data": "x"})


class _Stop(LeptonError):
    kind = "stop"


@pytest.mark.parametrize("domain, module, argv, yaml_text, expect", [
    ("finance", "lepton_apps.finance.training", ["--label", "Class", "--test-days", "3"],
     "search_trials: 0\ncolumns: {amount: Amount}\nalert_budget: 40\n",
     lambda c: (c.columns.label, c.columns.amount, c.alert_budget, c.test_days) == ("Class", "Amount", 40, 3.0)),
    ("medical", "lepton_apps.medical.training", ["--epochs", "2"], "backbone: resnet18\nimage_size: 64\n",
     lambda c: (c.backbone, c.image_size, c.epochs) == ("resnet18", 64, 2)),
    ("support", "lepton_apps.support.training", [], "out: somewhere/bundle\n",
     lambda c: c.out == "somewhere/bundle"),
])
def test_train_accepts_data_on_the_command_line_with_a_config_without_it(domain, module, argv, yaml_text, expect,
                                                                         tmp_path, monkeypatch, capsys):
    seen = []

    def fake_train(cfg, **kw):
        seen.append(cfg)
        raise _Stop("stopped before training")

    monkeypatch.setattr(importlib.import_module(module), "train", fake_train)
    cfg_file = tmp_path / "cfg.yaml"
    cfg_file.write_text(yaml_text)
    data = str(tmp_path / "input.csv")
    assert main([domain, "train", data, "--config", str(cfg_file), *argv]) == _Stop.exit_code
    assert len(seen) == 1, capsys.readouterr().err
    cfg = seen[0]
    assert (cfg.kb if domain == "support" else cfg.data) == data and expect(cfg)
    # neither on the command line nor in the YAML: one clear error, train is not called
    assert main([domain, "train", "--config", str(cfg_file)]) == 2
    assert "given" in capsys.readouterr().err and len(seen) == 1


# --------------------------------------------------------------------------- b. all-zero label
def test_finance_check_reports_a_label_without_fraud(fraud_data, tmp_path, capsys):  # noqa: F811
    history, _ = fraud_data
    mixed = pd.concat([history[history.label == 1].head(20), history[history.label == 0].head(280)])
    table = mixed.assign(label=0)
    path = tmp_path / "no_fraud.csv"
    table.to_csv(path, index=False)
    assert main(["finance", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "problem: the label column 'label' has no fraud rows (all 300 labelled rows are 0)" in out
    assert "add labelled fraud cases" in out
    table.assign(label=1).to_csv(path, index=False)
    assert main(["finance", "check", str(path)]) == 1
    assert "no legitimate rows" in capsys.readouterr().out
    mixed.to_csv(path, index=False)  # both classes: no table problem
    assert main(["finance", "check", str(path)]) == 0, capsys.readouterr().out


# --------------------------------------------------------------------------- c. missing categorical column
def test_missing_categorical_column_names_it_and_the_columns_there_are():
    from lepton_apps.finance.data import Schema, validate

    df = pd.DataFrame({"tx_id": [1, 2, 3], "amount": [1.0, 2.0, 3.0], "label": [0, 1, 0]})
    with pytest.raises(DataError) as err:
        validate(df, Schema(categorical=["mcc", "channel"]))
    text = str(err.value)
    assert "'mcc', 'channel' are not in the table" in text and "its columns are: tx_id, amount, label" in text
    assert "choose among: ." not in text and "leave it out of 'categorical'" in text


@pytest.fixture(scope="module")
def extra_bundle(fraud_data, fraud_bundle, tmp_path_factory):  # noqa: F811
    """A model trained on the shared history plus two user columns (numeric and categorical),
    written after ``fraud_bundle``, so it is the registry's newest."""
    from lepton_apps.finance import FraudConfig, train

    history, _ = fraud_data
    rng = np.random.default_rng(0)
    extra = history.assign(device_score=rng.random(len(history)),
                           mcc=rng.choice(["grocery", "fuel", "travel"], len(history)))
    out = tmp_path_factory.mktemp("finance_extra") / "bundle"
    return train(FraudConfig(data="extra", out=str(out), test_days=5, threads=1, max_rounds=40), frame=extra)


def test_scoring_data_without_the_models_extra_columns_names_them(extra_bundle, fraud_data):
    from lepton_apps.finance import FraudScorer

    _, new = fraud_data
    scorer = FraudScorer.load(extra_bundle)
    assert scorer.missing_columns(new.columns) == {"device_score": "numeric column", "mcc": "categorical column"}
    with pytest.raises(DataError) as err:
        scorer.score(new)
    text = str(err.value)
    assert "the model needs the numeric column 'device_score', the categorical column 'mcc', which are not in the " \
           "data" in text and "choose among" not in text
    assert scorer.missing_columns(new.assign(device_score=0.5, mcc="fuel").columns) == {}


# --------------------------------------------------------------------------- d. medical predict, one bad item
def _tiny_classifier():
    import torch

    from lepton_apps.medical.predict import MedicalClassifier

    class MeanNet(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([0.0, 0.02]))

        def forward(self, x):
            return x.float().mean(dim=(1, 2, 3))[:, None] * self.w + torch.tensor([0.0, -1.0])

    clf = MedicalClassifier.__new__(MedicalClassifier)  # no bundle: only what predict() reads
    clf.model, clf.policy, clf.image_size, clf.channels = MeanNet(), None, 16, 1
    clf.task, clf.label_names, clf.temperature = "binary", ["normal", "lesion"], 1.0
    clf.thresholds, clf.model_version = [0.5], "tiny@test/torch"
    clf.session = None  # the PyTorch backend
    return clf


def test_medical_predict_returns_the_unreadable_item_with_its_error(tmp_path):
    from PIL import Image

    clf = _tiny_classifier()
    bright, dark = tmp_path / "bright.png", tmp_path / "dark.png"
    Image.fromarray(np.full((20, 20), 250, np.uint8)).save(bright)
    Image.fromarray(np.full((20, 20), 5, np.uint8)).save(dark)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    results = clf.predict([bright, broken, dark, tmp_path / "absent.png"], batch_size=1)
    assert [r.item for r in results] == [str(bright), str(broken), str(dark), str(tmp_path / "absent.png")]
    assert [r.ok for r in results] == [True, False, True, False]
    # the scored items keep their numbers: softmax of (0, mean * 0.02 - 1) = sigmoid(mean * 0.02 - 1)
    assert results[0].score == pytest.approx(1 / (1 + math.exp(-(250 * 0.02 - 1))), rel=1e-6)
    assert results[2].score == pytest.approx(1 / (1 + math.exp(-(5 * 0.02 - 1))), rel=1e-6)
    assert results[0].decision is True and results[2].decision is False and results[2].label == "normal"
    for bad in (results[1], results[3]):
        assert bad.error and bad.item in bad.error and bad.probabilities == {} and math.isnan(bad.score)
        assert bad.decision is None and bad.label == "" and bad.threshold == 0.5
    assert results[0].error is None
    with pytest.raises(DataError):
        clf.predict(broken)  # a single item still raises
    with pytest.raises(DataError, match="2 names for 1 items"):
        clf.predict([bright], names=["a", "b"])


# --------------------------------------------------------------------------- e. fraud page picks a model that fits
def _app():
    return AppTest.from_file(PAGE, default_timeout=120)


def test_fraud_page_opens_on_a_model_that_can_score_the_demo_data(fraud_bundle, extra_bundle):  # noqa: F811
    reg = Registry()
    plain = reg.register(fraud_bundle, "finance-plain")
    extra = reg.register(extra_bundle, "finance-z-extra")
    assert [e.name for e in reg.list("finance")][0] == extra.name  # the newest cannot score the demo data
    at = _app().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.selectbox(key="model").value == plain.name
    assert any("Alert queue:" in s.value for s in at.subheader)
    label = f"{extra.name} (latest)"
    assert at.selectbox(key="model").options == [label, plain.name]
    at.selectbox(key="model").set_value(label).run()  # picked by hand: it says what is missing, plainly
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "cannot score these transactions" in errors and "the numeric column 'device_score'" in errors
    assert "the categorical column 'mcc'" in errors and "finance-plain" in errors and "choose among" not in errors
    assert not any("Alert queue:" in s.value for s in at.subheader)


def test_fraud_page_without_any_fitting_model_says_so(extra_bundle):
    Registry().register(extra_bundle, "finance-z-extra")
    at = _app().run()
    assert not at.exception
    errors = " ".join(e.value for e in at.error)
    assert "No registered fraud model can score these data" in errors and "'mcc'" in errors


# --------------------------------------------------------------------------- robustness driver
@pytest.fixture
def robustness():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        yield importlib.import_module("robustness")
    finally:
        sys.path.remove(str(ROOT / "bench"))


def _row(dataset, size, method, seed, auc, seconds=1.0, **extra):
    return {"domain": "finance", "dataset": dataset, "size": size, "method": method, "seed": seed,
            "seconds": seconds, "auc": auc, **extra}


def test_robustness_table_means_stds_differences_and_missing_baseline(robustness):
    rows = [_row("a", 100, "default", s, v) for s, v in ((0, 0.80), (1, 0.90), (2, 0.70))]
    rows += [_row("a", 100, "baseline", s, v) for s, v in ((0, 0.60), (1, 0.70), (2, 0.80))]
    rows += [_row("b", "all", "default", 0, 0.5, rows_used=10)]  # no baseline row: shown as "—"
    rows += [{**_row("x", 1, "default", 0, 0.9), "domain": "medical"}]
    [a, b, x] = robustness.summarize(rows)
    assert (a["dataset"], a["size"], a["n_default"], a["n_baseline"]) == ("a", "100", 3, 3)
    assert a["metrics"]["auc"]["default"] == pytest.approx((0.8, 0.1))  # sample std (ddof=1)
    assert a["metrics"]["auc"]["baseline"] == pytest.approx((0.7, 0.1))
    diff = a["metrics"]["auc"]["difference"]  # per-seed: 0.2, 0.2, -0.1
    assert diff == pytest.approx((0.1, math.sqrt(((0.1) ** 2 * 2 + 0.2 ** 2) / 2)))
    assert b["metrics"]["auc"]["baseline"] is None and b["metrics"]["auc"]["difference"] is None
    assert "rows_used" not in b["metrics"]  # ints are not metrics
    table = robustness.markdown_table(rows)
    assert "### finance" in table and "### medical" in table
    line_a = next(t for t in table.splitlines() if t.startswith("| a |"))
    assert "| 0.8000 ± 0.1000 | 0.7000 ± 0.1000 | 0.1000 ± 0.1732 |" in line_a and "| 3/3 |" in line_a
    line_b = next(t for t in table.splitlines() if t.startswith("| b |"))
    assert line_b.startswith("| b | all | 1/0 | 0.5000 | — | — |")
    header = next(t for t in table.splitlines() if t.startswith("| dataset"))
    assert header.index("auc default") < header.index("seconds default")  # seconds last


def test_robustness_driver_reports_a_failing_domain_and_runs_the_others(robustness, tmp_path, monkeypatch):
    class Good:
        @staticmethod
        def run(quick, seeds, data_root):
            return [_row("d", 10, m, s, 0.5 + 0.1 * s) for m in ("default", "baseline") for s in seeds]

    class Bad:
        @staticmethod
        def run(quick, seeds, data_root):
            raise RuntimeError("no data here")

    monkeypatch.setitem(sys.modules, "robust_medical", Bad)
    monkeypatch.setitem(sys.modules, "robust_finance", Good)
    out = tmp_path / "r.json"
    code = robustness.main(["--domains", "medical,finance", "--seeds", "0,1", "--out", str(out),
                            "--data-root", str(tmp_path)])
    assert code == 1
    saved = __import__("json").loads(out.read_text())
    assert saved["failures"] == {"medical": "RuntimeError: no data here"}
    assert len(saved["rows"]) == 4 and saved["seeds"] == [0, 1]
    assert "| d | 10 | 2/2 | 0.5500 ± 0.0707 | 0.5500 ± 0.0707 | 0.0000 ± 0.0000 |" in saved["table"]


def test_robustness_table_merges_runs_made_in_pieces(robustness, tmp_path, capsys):
    import json

    first = tmp_path / "driver.json"  # the driver's own file: {"rows": [...]}
    first.write_text(json.dumps({"rows": [_row("a", 100, "default", 0, 0.5), _row("a", 100, "baseline", 0, 0.4)]}))
    second = tmp_path / "module.json"  # a module's --out: a list; replaces the same key, adds new seeds
    second.write_text(json.dumps([_row("a", 100, "default", 0, 0.7), _row("a", 100, "default", 1, 0.9)]))
    rows = robustness.merge_rows([first, second])
    assert sorted((r["method"], r["seed"], r["auc"]) for r in rows) == [
        ("baseline", 0, 0.4), ("default", 0, 0.7), ("default", 1, 0.9)]
    assert robustness.main(["--table", str(first), str(second)]) == 0
    line = next(t for t in capsys.readouterr().out.splitlines() if t.startswith("| a |"))
    assert line.startswith("| a | 100 | 2/1 | 0.8000 ± 0.1414 | 0.4000 | 0.3000 |")


@pytest.fixture
def robust_finance(robustness):
    return importlib.import_module("robust_finance")


def test_robust_finance_rows_compare_both_methods_on_the_same_test_rows(robust_finance, fraud_data, tmp_path):  # noqa: F811
    history, _ = fraud_data
    table = history.iloc[::4].reset_index(drop=True)
    sub = robust_finance.stratified_subsample(table, "label", 1000, seed=1)
    assert len(sub) == 1000 and abs(sub["label"].mean() - table["label"].mean()) < 0.002
    assert sub["transaction_id"].is_monotonic_increasing  # file order kept
    assert sub.equals(robust_finance.stratified_subsample(table, "label", 1000, seed=1))
    assert not sub.equals(robust_finance.stratified_subsample(table, "label", 1000, seed=2))
    rows = robust_finance.compare(table, "sim", "quarter", 0, tmp_path)
    assert [r["method"] for r in rows] == ["default", "baseline"]
    assert rows[0].keys() == rows[1].keys()
    for r in rows:
        assert (r["domain"], r["dataset"], r["size"], r["seed"]) == ("finance", "sim", "quarter", 0)
        assert r["test_rows"] == rows[0]["test_rows"] > 0 and r["rows"] == len(table)
        assert r["split"] == "time" and r["seconds"] > 0
        prevalence = r["test_frauds"] / r["test_rows"]
        assert prevalence < r["pr_auc"] <= 1 and 0.5 < r["roc_auc"] <= 1  # both learn something
