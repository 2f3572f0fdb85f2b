"""Model bundles: checksums, format version, pickle refusal; the registry and its CLI."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lepton_apps.bundle import FORMAT_VERSION, BundleWriter, fingerprint_data, load_bundle
from lepton_apps.cli import main
from lepton_apps.errors import BundleError
from lepton_apps.registry import Registry


def _write(path, **meta):
    model = torch.nn.Linear(4, 2)
    with BundleWriter(path, domain=meta.pop("domain", "medical"), task="binary", label_names=["neg", "pos"],
                      metrics=meta.pop("metrics", {"roc_auc": 0.91}), **meta) as w:
        w.save_torch("model.safetensors", model.state_dict())
        w.save_json("thresholds.json", {"youden": 0.42})
        w.save_numpy("calib.npy", np.arange(5.0))
        w.save_parquet("val.parquet", pd.DataFrame({"a": [1, 2]}))
        w.save_text("trees/model.txt", "tree\n")
    return model


def test_round_trip_with_metadata_and_artefacts(tmp_path):
    model = _write(tmp_path / "b", data_fingerprint=fingerprint_data(pd.DataFrame({"x": [1, 2]})),
                   training_config={"epochs": 3})
    b = load_bundle(tmp_path / "b")
    meta = b.metadata
    assert meta["format_version"] == FORMAT_VERSION
    assert (b.domain, b.task, b.label_names) == ("medical", "binary", ["neg", "pos"])
    assert meta["training_config"] == {"epochs": 3} and b.metrics == {"roc_auc": 0.91}
    assert meta["data_fingerprint"].startswith("sha256:")
    assert {"torch", "python", "numpy"} <= set(meta["libraries"]) and meta["created"]
    assert set(meta["files"]) == {"model.safetensors", "thresholds.json", "calib.npy", "val.parquet", "trees/model.txt"}
    assert all(len(f["sha256"]) == 64 for f in meta["files"].values())
    state = b.load_torch()
    assert torch.equal(state["weight"], model.weight.detach())
    assert b.load_json("thresholds.json") == {"youden": 0.42}
    assert b.load_numpy("calib.npy").tolist() == [0, 1, 2, 3, 4]
    assert b.load_parquet("val.parquet")["a"].tolist() == [1, 2]
    assert b.read_text("trees/model.txt") == "tree\n"
    with pytest.raises(BundleError, match="no file 'nope.json'.*files present: "):
        b.file("nope.json")


def test_fingerprint_changes_with_the_data(tmp_path):
    a = fingerprint_data(pd.DataFrame({"x": [1, 2]}))
    assert a == fingerprint_data(pd.DataFrame({"x": [1, 2]}))
    assert a != fingerprint_data(pd.DataFrame({"x": [1, 3]}))
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "img.png").write_bytes(b"abc")
    f1 = fingerprint_data(tmp_path / "d")
    (tmp_path / "d" / "img.png").write_bytes(b"abd")
    assert fingerprint_data(tmp_path / "d") != f1
    assert fingerprint_data(np.zeros(3)) != fingerprint_data(np.zeros(4))


def test_tampered_truncated_missing_files_are_named(tmp_path):
    _write(tmp_path / "b")
    f = tmp_path / "b" / "thresholds.json"
    original = f.read_bytes()
    f.write_bytes(original.replace(b"0.42", b"0.99"))
    with pytest.raises(BundleError, match="'thresholds.json' does not match its sha256"):
        load_bundle(tmp_path / "b")
    f.write_bytes(original)
    w = tmp_path / "b" / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[:-10])
    with pytest.raises(BundleError, match="'model.safetensors' is .* bytes but .* were written"):
        load_bundle(tmp_path / "b")
    w.unlink()
    with pytest.raises(BundleError, match="'model.safetensors' listed in bundle.json is missing"):
        load_bundle(tmp_path / "b")
    w.write_bytes(data)
    assert load_bundle(tmp_path / "b").domain == "medical"


def test_format_version_and_domain_are_checked(tmp_path):
    _write(tmp_path / "b")
    manifest = tmp_path / "b" / "bundle.json"
    meta = json.loads(manifest.read_text())
    with pytest.raises(BundleError, match="a 'medical' bundle, not a 'finance' one"):
        load_bundle(tmp_path / "b", domain="finance")
    meta["format_version"] = 99
    manifest.write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        load_bundle(tmp_path / "b")
    manifest.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "b")


def test_pickled_models_are_refused_with_an_explanation(tmp_path):
    torch.save(torch.nn.Linear(2, 2), tmp_path / "model.pt")  # a full pickled module
    with pytest.raises(BundleError, match="Python pickles.*weights_only=True.*safetensors"):
        load_bundle(tmp_path / "model.pt")
    with pytest.raises(BundleError, match="refusing to load model.pt"):
        load_bundle(tmp_path)  # a folder holding only a pickle
    with BundleWriter(tmp_path / "b", domain="medical", task="binary") as w:
        with pytest.raises(BundleError, match="never hold pickles"):
            w.file("weights.pkl")
        w.save_json("a.json", {})
    (tmp_path / "b" / "extra.pkl").write_bytes(b"x")
    with pytest.raises(BundleError, match="unlisted pickle file 'extra.pkl'"):
        load_bundle(tmp_path / "b")


def test_failed_write_leaves_nothing_behind(tmp_path):
    with pytest.raises(RuntimeError):
        with BundleWriter(tmp_path / "b", domain="medical", task="binary") as w:
            w.save_json("a.json", {})
            raise RuntimeError("crash while writing")
    assert list(tmp_path.iterdir()) == []
    _write(tmp_path / "b")
    with pytest.raises(BundleError, match="already exists"):
        BundleWriter(tmp_path / "b", domain="medical", task="binary")


def test_registry_aliases_and_references(tmp_path):
    reg = Registry(tmp_path / "home")
    assert reg.list() == []
    _write(tmp_path / "b1", metrics={"roc_auc": 0.8})
    _write(tmp_path / "b2", metrics={"roc_auc": 0.9})
    _write(tmp_path / "f1", domain="finance", metrics={"pr_auc": 0.5})
    reg.register(tmp_path / "b1", "xray-v1")
    reg.register(tmp_path / "b2", "xray-v2")
    reg.register(tmp_path / "f1", "fraud-v1")
    assert {e.name for e in reg.list("medical")} == {"xray-v1", "xray-v2"}
    assert reg.get("medical:latest").name == "xray-v2"
    assert reg.get("finance:latest").name == "fraud-v1"
    with pytest.raises(BundleError, match="no 'medical' model has the alias 'production'"):
        reg.get("medical:production")
    reg.promote("xray-v1")
    assert reg.get("medical:production").name == "xray-v1"
    assert reg.resolve("production", domain="medical") == reg.home / "xray-v1"
    assert reg.resolve(tmp_path / "b2") == tmp_path / "b2"  # paths pass through
    assert reg.get("xray-v1").aliases == ["production"]
    with pytest.raises(BundleError, match="already registered"):
        reg.register(tmp_path / "b1", "xray-v1")
    with pytest.raises(BundleError, match="invalid model name"):
        reg.register(tmp_path / "b1", "../evil")
    with pytest.raises(BundleError, match="unknown alias 'staging'"):
        reg.promote("xray-v1", "staging")
    (reg.home / "xray-v2" / "thresholds.json").write_text("{}")
    with pytest.raises(BundleError, match="'thresholds.json' is 2 bytes"):
        reg.promote("xray-v2")  # a damaged bundle is never promoted
    auto = [reg.register(tmp_path / "b1").name for _ in range(2)]  # default names never collide
    assert auto[0] != auto[1] and all(a.startswith("medical-binary-") for a in auto)
    reg.remove("xray-v1")
    with pytest.raises(BundleError, match="no 'medical' model has the alias 'production'"):
        reg.get("medical:production")


def test_models_cli_list_show_promote(tmp_path, capsys, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LEPTON_HOME", str(home))
    assert main(["models", "list"]) == 0
    assert "No models in" in capsys.readouterr().out
    _write(tmp_path / "b", metrics={"roc_auc": 0.875, "sensitivity": 0.9})
    assert main(["models", "register", str(tmp_path / "b"), "--name", "xray-v1"]) == 0
    assert main(["models", "promote", "xray-v1"]) == 0
    assert "medical:production -> xray-v1" in capsys.readouterr().out
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "xray-v1" in out and "latest,production" in out and "roc_auc=0.875" in out
    assert main(["models", "show", "medical:production"]) == 0
    out = capsys.readouterr().out
    assert "checksums verified" in out and json.loads(out.split("\n", 1)[1])["metrics"]["sensitivity"] == 0.9
    assert main(["models", "show", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no model named 'nope'" in err and "Fix:" in err
    with pytest.raises(BundleError):
        main(["models", "show", "nope", "--debug"])  # --debug re-raises for the traceback
