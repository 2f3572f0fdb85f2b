"""The medical Streamlit page under AppTest: model card, an upload with prediction and Grad-CAM, bad uploads."""
import io

import numpy as np
import pytest
from conftest import ROOT
from PIL import Image
from streamlit.testing.v1 import AppTest
from test_medical_pipeline import tiny_bundle

from lepton_apps.registry import Registry

PAGE = str(ROOT / "apps" / "medical" / "page.py")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("medical_page")
    path, data = tiny_bundle(root, n=48, epochs=1, size=32, val_fraction=0.3, test_fraction=0.2)
    return path, data


@pytest.fixture
def page(bundle, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("LEPTON_HOME", str(home))
    Registry(home).register(bundle[0], "medical-test-model")
    return AppTest.from_file(PAGE, default_timeout=60)


def png(arr) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_page_without_models_says_how_to_get_one(tmp_path, monkeypatch):
    monkeypatch.setenv("LEPTON_HOME", str(tmp_path / "empty"))
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("lepton-apps demo --domain medical" in i.value for i in at.info)


def test_model_card_and_operating_point_slider(page, bundle):
    import json

    at = page.run()
    assert not at.exception and not at.error
    report = json.loads((bundle[0] / "report.json").read_text())
    metrics = {m.label: m.value for m in at.metric}
    assert metrics[f"ROC AUC (test, n={report['n']})"] == f"{report['roc_auc']:.3f}"
    assert metrics["Sensitivity"] == f"{report['sensitivity']:.3f}"
    slider = at.slider(key="medical_threshold")
    at = slider.set_value(0.0).run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Validation sensitivity"] == "1.000" and metrics["Validation specificity"] == "0.000"


def test_upload_shows_prediction_gradcam_and_bad_files_as_messages(page, bundle):
    at = page.run()
    lesion = sorted((bundle[1] / "lesion").glob("*.png"))[0].read_bytes()
    at.toggle(key="medical_gradcam").set_value(True)
    at.file_uploader(key="medical_upload").set_value([
        ("lesion.png", lesion, "image/png"),
        ("broken.png", b"\x89PNG\r\n\x1a\nbroken", "image/png"),
        ("empty.dcm", b"", "application/dicom"),
    ])
    at.run()
    assert not at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "**lesion.png** — prediction:" in text and "Decision at threshold" in text
    errors = [e.value for e in at.error]
    assert any(e.startswith("broken.png") and "not an image" in e for e in errors), errors
    assert any(e.startswith("empty.dcm") and "empty" in e for e in errors), errors
    assert len(at.get("imgs")) >= 2 or len(at.get("image")) >= 2  # the image and its Grad-CAM overlay


def test_train_tab_checks_a_folder(page, bundle):
    at = page.run()
    at.text_input(key="medical_data").set_value(str(bundle[1] / "manifest.csv"))
    at.button(key="medical_check").click().run()
    assert not at.exception
    assert any("48 images, 2 classes (binary); 0 unreadable" in s.value for s in at.success)


def test_train_tab_trains_and_registers_a_bundle(page, bundle, tmp_path, monkeypatch):
    import os

    monkeypatch.chdir(tmp_path)  # the Train tab writes runs/medical-<time>/bundle under the working folder
    home = Registry(os.environ["LEPTON_HOME"])
    before = {e.name for e in home.list("medical")}
    at = page.run()
    at.text_input(key="medical_data").set_value(str(bundle[1] / "manifest.csv"))
    at.number_input(key="medical_epochs").set_value(1)
    at.number_input(key="medical_size").set_value(28)
    at.checkbox(key="medical_pretrained").uncheck()
    at.text_input(key="medical_name").set_value("medical-from-page")
    at.button(key="medical_train").click().run(timeout=120)
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert any(s.value.startswith("Registered medical-from-page") for s in at.success), [s.value for s in at.success]
    new = {e.name for e in home.list("medical")} - before
    assert new == {"medical-from-page"}
    from lepton_apps.bundle import load_bundle

    b = load_bundle(home.resolve("medical-from-page", domain="medical"), domain="medical")
    assert b.load_json("model.json")["image_size"] == 28 and b.load_json("history.json")["epochs_run"] == 1
    assert b.load_json("model.json")["initial_weights"] == "random initialisation"


def test_backend_picker_chooses_how_the_page_predicts_and_the_page_says_which(page, bundle):
    pytest.importorskip("onnxruntime")
    lesion = sorted((bundle[1] / "lesion").glob("*.png"))[0].read_bytes()
    at = page.run()
    assert at.selectbox(key="medical_backend").value == "auto"
    for choice, label in (("auto", "onnx-fp32"), ("torch", "torch")):
        at.selectbox(key="medical_backend").set_value(choice)
        at.file_uploader(key="medical_upload").set_value([("lesion.png", lesion, "image/png")])
        at.run()
        assert not at.exception and not at.error, [e.value for e in at.error]
        captions = [c.value for c in at.caption]
        assert f"probabilities computed by {label}" in captions, captions
        assert any(c.startswith("model ") and c.endswith(f"/{label}") for c in captions), captions
