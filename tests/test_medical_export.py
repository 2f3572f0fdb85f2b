"""The medical CNN exported to ONNX: same probabilities as the PyTorch predictor in a fresh ONNX Runtime session,
normalisation inside the graph, checksums, and the int8 export's AUC gate (which refuses a broken quantisation)."""
import json
import re

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (the 'fast' or 'test' extra)")
pytest.importorskip("onnx", reason="ONNX export needs onnx (the 'fast' or 'test' extra)")

from test_medical_pipeline import tiny_bundle  # noqa: E402

from lepton_apps.cli import main  # noqa: E402
from lepton_apps.errors import BundleError  # noqa: E402
from lepton_apps.export import ExportError, load_export  # noqa: E402
from lepton_apps.medical import export as mexport  # noqa: E402

GATE_NUMBERS = re.compile(r"validation AUC (\d\.\d+) against (\d\.\d+) for fp32, a drop of (-?\d\.\d+), "
                          r"(\d\.\d+) more than the allowed (\d\.\d+)")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """(bundle, data folder, fp32 export folder) of the pipeline tests' tiny demo model (80 images, 64 px, gray)."""
    root = tmp_path_factory.mktemp("medical_export")
    bundle, data = tiny_bundle(root, n=80, epochs=2, size=64)
    return bundle, data, mexport.export(bundle, root / "fp32")


def _val_auc_of(export_dir, bundle):
    """The fp32 export's AUC on the rebuilt validation split, computed here from its own session."""
    from lepton_apps.medical import MedicalClassifier

    images = mexport.check_images(MedicalClassifier.load(bundle, device="cpu"))
    probs = mexport.run_session(load_export(export_dir).session(), images["pixels"])["probabilities"]
    return mexport.auc(images["y"], probs, "binary")


def test_fp32_export_gives_the_predictors_probabilities_from_image_files_in_a_fresh_session(small):
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical.imageio import prepare

    bundle, data, path = small
    exported = load_export(path)
    card = exported.card
    clf = MedicalClassifier.load(bundle, device="cpu")
    assert card["precision"] == "fp32" and card["label_names"] == ["normal", "lesion"]
    assert card["inputs"] == [{"name": "pixels", "shape": ["batch", 1, 64, 64], "type": "tensor(float)"}]
    assert [o["name"] for o in card["outputs"]] == ["logits", "probabilities"]
    assert card["threshold"] == pytest.approx(clf.threshold) and card["temperature"] == pytest.approx(clf.temperature)
    pre = card["preprocessing"]
    assert pre["channels"] == 1 and pre["image_size"] == 64 and pre["scale"] == "0-255"
    assert pre["normalisation"] == {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}
    check = card["check"]
    assert check["data"].startswith("the bundle's validation split, rebuilt from its training data")
    assert check["rows"] == len(np.load(bundle / "val_labels.npy"))
    assert 0 <= check["max_abs_diff"] <= mexport.TOLERANCE
    # new images (every one, any split), read as the predictor reads them, fed raw: normalisation is in the graph
    files = sorted(str(p) for p in data.rglob("*.png"))
    pixels = np.stack([prepare(f, 64, 1) for f in files]).astype(np.float32)
    probs, logits = None, None
    session = exported.session()
    for batch in (1, 7, len(files)):  # dynamic batch size
        logits, probs = session.run(["logits", "probabilities"], {"pixels": pixels[:batch]})
        assert probs.shape == (batch, 2)
    expected = [r.probabilities["lesion"] for r in clf.predict(files)]
    np.testing.assert_allclose(probs[:, 1], expected, rtol=0, atol=mexport.TOLERANCE)
    assert len(expected) == 80 and np.ptp(expected) > 1e-3  # all images, with scores that differ
    # the graph applies the bundle's temperature: softmax(logits / T) is the output, softmax(logits) is not
    z = logits / card["temperature"]
    soft = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(probs, soft / soft.sum(1, keepdims=True), rtol=0, atol=1e-6)


def test_a_changed_byte_is_refused(small, tmp_path):
    import shutil

    _, _, path = small
    copy = shutil.copytree(path, tmp_path / "copy")
    model = copy / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 3] ^= 0x01
    model.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"'model\.onnx' does not match its sha256.*export the bundle again"):
        load_export(copy)


def test_int8_passes_the_gate_with_its_numbers_in_the_card_or_is_refused_with_them(small, tmp_path):
    bundle, _, fp32 = small
    auc32 = _val_auc_of(fp32, bundle)
    try:
        path = mexport.export(bundle, tmp_path / "int8", quantize="int8")
    except ExportError as exc:  # the tiny model is weak: quantisation noise may reorder its close scores
        if "misses the decision gate" in str(exc):
            share, allowed = map(float, re.search(r"changes (\d+\.\d)% .* allowed (\d+\.\d)%", str(exc)).groups())
            assert share > allowed == 100 * mexport.MAX_DECISIONS_CHANGED and not (tmp_path / "int8").exists()
            return
        got = GATE_NUMBERS.search(str(exc))
        assert got, str(exc)
        auc8, reported32, drop, missed, allowed = map(float, got.groups())
        assert reported32 == pytest.approx(auc32, abs=1e-4) and allowed == mexport.MAX_AUC_DROP
        assert drop == pytest.approx(reported32 - auc8, abs=2e-4) and missed == pytest.approx(drop - allowed, abs=2e-4)
        assert drop > allowed and "export fp32 instead" in str(exc) and "training split" in str(exc)
        assert not (tmp_path / "int8").exists()
        return
    card = load_export(path).card
    gate = card["gate"]
    assert card["precision"] == "int8" and gate["passed"] and gate["drop"] <= mexport.MAX_AUC_DROP
    assert gate["decisions_changed"] <= mexport.MAX_DECISIONS_CHANGED
    assert gate["fp32_auc"] == pytest.approx(auc32, abs=1e-9) and gate["drop"] == pytest.approx(auc32 - gate["int8_auc"])
    assert "seeded sample of the training split" in card["quantization"]["calibration"]
    moved = gate["probability_abs_diff_to_fp32"]["max"]
    assert 0 <= gate["decisions_changed"] <= 1 and moved <= card["check"]["max_abs_diff"] + mexport.TOLERANCE


def test_the_gate_refuses_a_quantisation_calibrated_on_blank_images_with_its_numbers(small, tmp_path):
    bundle, _, fp32 = small
    # saturated white frames: every activation range is calibrated on one constant image (all-black frames now
    # break the model less, as its first convolutions stay fp32, and are refused by the decision gate instead)
    blank = np.full((32, 1, 64, 64), 255, np.uint8)
    with pytest.raises(ExportError, match="misses the accuracy gate") as err:
        mexport.export(bundle, tmp_path / "blank", quantize="int8", calibration=blank)
    auc8, auc32, drop, missed, allowed = map(float, GATE_NUMBERS.search(str(err.value)).groups())
    assert auc32 == pytest.approx(_val_auc_of(fp32, bundle), abs=1e-4) and auc32 > 0.6  # a model worth gating
    assert drop > 0.05 and drop == pytest.approx(auc32 - auc8, abs=2e-4) and allowed == 0.005
    assert "32 images passed in" in str(err.value) and "nothing was written" in str(err.value)
    assert list(tmp_path.iterdir()) == []
    # with the gate opened wide the same broken model is written, and the card records what it lost
    card = load_export(mexport.export(bundle, tmp_path / "wide", quantize="int8", calibration=blank,
                                      max_auc_drop=0.9, max_decisions_changed=1.0)).card
    assert card["precision"] == "int8" and card["gate"]["int8_auc"] == pytest.approx(auc8, abs=1e-4)
    assert card["gate"]["max_drop"] == 0.9 and card["quantization"]["format"] == "QDQ"
    from lepton_apps.medical import MedicalClassifier

    clf = MedicalClassifier.load(bundle, device="cpu")
    pixels = mexport.check_images(clf)["pixels"]
    p32 = mexport.run_session(load_export(fp32).session(), pixels)["probabilities"]
    p8 = mexport.run_session(load_export(tmp_path / "wide").session(), pixels)["probabilities"]
    flipped = ((p32[:, 1] >= clf.threshold) != (p8[:, 1] >= clf.threshold)).mean()
    assert card["gate"]["decisions_changed"] == pytest.approx(flipped)
    # the AUC gate alone opened: the decision gate still refuses a model that flips this many decisions
    assert flipped > mexport.MAX_DECISIONS_CHANGED
    with pytest.raises(ExportError, match=r"misses the decision gate: it changes \d+\.\d% of the decisions"):
        mexport.export(bundle, tmp_path / "auc-only", quantize="int8", calibration=blank, max_auc_drop=0.9)
    assert not (tmp_path / "auc-only").exists()
    assert card["gate"]["probability_abs_diff_to_fp32"]["max"] == pytest.approx(np.abs(p8 - p32).max(), abs=1e-6)
    import onnx

    ops = {n.op_type for n in onnx.load(str(tmp_path / "wide" / "model.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops


def test_without_its_training_data_the_check_falls_back_to_synthetic_images_and_int8_is_refused(small, tmp_path,
                                                                                                monkeypatch):
    bundle, _, _ = small
    monkeypatch.setattr(mexport, "_from_training_data", lambda clf: None)  # as when the data moved or changed
    card = load_export(mexport.export(bundle, tmp_path / "fp32")).card
    assert card["check"]["data"].startswith("synthetic sample") and card["check"]["rows"] == mexport.SYNTHETIC_IMAGES
    assert card["check"]["max_abs_diff"] <= mexport.TOLERANCE
    with pytest.raises(ExportError, match=r"int8 needs labelled validation images .*pass --data"):
        mexport.export(bundle, tmp_path / "int8", quantize="int8")


def test_cli_export(small, tmp_path, capsys):
    bundle, data, _ = small
    out = tmp_path / "onnx"
    assert main(["medical", "export", str(bundle), "--format", "onnx", "--out", str(out),
                 "--data", str(data / "manifest.csv")]) == 0
    said = capsys.readouterr().out
    assert "(fp32 ONNX): max abs difference to PyTorch" in said and "all its rows of" in said
    assert load_export(out).card["check"]["rows"] == 80
    assert main(["medical", "export", str(bundle), "--out", str(out)]) == 2  # exists: not overwritten silently
    assert "already exists" in capsys.readouterr().err
    assert main(["medical", "export", str(bundle), "--out", str(tmp_path / "q"), "--quantize", "int4"]) == 2
    assert "unknown --quantize 'int4'" in capsys.readouterr().err and not (tmp_path / "q").exists()
    assert main(["medical", "export", str(bundle), "--out", str(tmp_path / "q"), "--quantize", "int8",
                 "--max-auc-drop", "0.9", "--max-decisions-changed", "1", "--calibration-images", "16"]) == 0
    said = capsys.readouterr().out
    assert "int8 gate passed: AUC" in said and "16 images, a seeded sample" in said and "of the decisions differ" in said
    card = json.loads((tmp_path / "q" / "export.json").read_text())
    assert card["precision"] == "int8" and card["gate"]["max_drop"] == 0.9
