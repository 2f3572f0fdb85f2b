"""Backends (issue 14, item 3 and 5): medical predict and support answer run PyTorch, the fp32 ONNX export or the
int8 one; ``auto`` picks ONNX on a CPU with onnxruntime; the answering backend is in every result's model version,
hence in the audit log; int8 refused by its gate keeps fp32 and says why; a user's export folder must come from the
same bundle; without onnxruntime, auto falls back to PyTorch and an explicit ONNX backend says how to install it."""
import json
import sys
import warnings

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("onnxruntime", reason="the ONNX backends need onnxruntime (the 'fast' or 'test' extra)")
pytest.importorskip("onnx", reason="the ONNX backends need onnx (the 'fast' or 'test' extra)")

from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: E402,F401 - fixtures
from test_medical_pipeline import tiny_bundle  # noqa: E402
from test_support_fixtures import demo_build, demo_bundle  # noqa: E402,F401 - fixtures

from lepton_apps.cli import main  # noqa: E402
from lepton_apps.errors import BundleError, ConfigError, DependencyError  # noqa: E402
from lepton_apps.export import ExportError, choose_backend  # noqa: E402


@pytest.fixture(scope="module")
def med(tmp_path_factory):
    """(bundle, data folder, 12 image files) of a tiny medical model (64 px, gray)."""
    root = tmp_path_factory.mktemp("backends_medical")
    bundle, data = tiny_bundle(root, n=80, epochs=2, size=64)
    return bundle, data, sorted(str(p) for p in data.rglob("*.png"))[:12]


@pytest.fixture
def no_onnxruntime(monkeypatch):
    """onnxruntime cannot be imported (as on a machine without the 'fast' extra)."""
    monkeypatch.setitem(sys.modules, "onnxruntime", None)


# --------------------------------------------------------------------------- choosing


def test_auto_is_onnx_on_a_cpu_and_torch_on_a_gpu_and_int8_is_only_asked_for():
    assert choose_backend("auto", "cpu") == "onnx" and choose_backend(None, "cpu") == "onnx"
    assert choose_backend("auto", "cuda") == "torch"
    assert [choose_backend(b, "cpu") for b in ("torch", "onnx", "int8")] == ["torch", "onnx", "int8"]
    with pytest.raises(ConfigError, match="unknown backend 'tensorrt'.*use one of auto, torch, onnx, int8"):
        choose_backend("tensorrt", "cpu")
    with pytest.raises(ConfigError, match="int8 backend runs on the CPU only"):
        choose_backend("int8", "cuda")


def test_without_onnxruntime_auto_falls_back_to_torch_and_onnx_says_how_to_install(no_onnxruntime, med):
    from lepton_apps.medical import MedicalClassifier

    assert choose_backend("auto", "cpu") == "torch"
    with pytest.raises(DependencyError, match=r"onnx backend runs ONNX Runtime.*pip install 'lepton-apps\[fast\]'"):
        choose_backend("onnx", "cpu")
    clf = MedicalClassifier.load(med[0], device="cpu")  # default auto
    assert clf.backend == "torch" and clf.model_version.endswith("/torch") and clf.session is None
    assert clf.predict(med[2][0]).model_version == clf.model_version
    with pytest.raises(DependencyError, match="int8 backend runs ONNX Runtime"):
        MedicalClassifier.load(med[0], device="cpu", backend="int8")


# --------------------------------------------------------------------------- medical


def test_medical_onnx_backend_gives_the_torch_probabilities_and_names_itself(med):
    from lepton_apps.medical import MedicalClassifier

    bundle, _, files = med
    torch_clf = MedicalClassifier.load(bundle, device="cpu", backend="torch")
    onnx_clf = MedicalClassifier.load(bundle, device="cpu")  # auto on a CPU
    assert onnx_clf.backend == "onnx-fp32" and torch_clf.backend == "torch"
    a, b = torch_clf.predict(files), onnx_clf.predict(files)
    assert [r.model_version for r in a] == [torch_clf.model_version] * len(files)
    assert all(r.model_version.endswith("/onnx-fp32") for r in b)
    assert a[0].model_version.rsplit("/", 1)[0] == b[0].model_version.rsplit("/", 1)[0]  # same bundle version
    pa = np.array([r.probabilities["lesion"] for r in a])
    pb = np.array([r.probabilities["lesion"] for r in b])
    assert np.abs(pa - pb).max() < 1e-4 and [r.decision for r in a] == [r.decision for r in b]
    # the export was built once into the per-machine cache, with its card and check
    card = onnx_clf.export.card
    assert onnx_clf.export.path.parent.name == "exports" and card["precision"] == "fp32"
    assert card["check"]["data"].startswith("synthetic sample") and card["check"]["max_abs_diff"] < 1e-4
    frame = onnx_clf.predict_frame(pd.DataFrame({"path": files[:3] + ["missing.png"]}))
    assert frame["model_version"].str.endswith("/onnx-fp32").all() and frame["error"].notna().tolist() == [
        False, False, False, True]


def test_medical_int8_refused_by_the_gate_keeps_fp32_says_why_and_remembers(med, monkeypatch):
    from lepton_apps.io import cache_dir
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical import export as mexport

    # whether this tiny model's int8 export passes its gates depends on the CPU's int8 kernels (it passed on one
    # machine of this kind, failed on another): the refusal is forced, and what follows it is what is tested
    monkeypatch.setattr(mexport, "decisions_changed", lambda clf, a, b: 1.0)
    with pytest.warns(UserWarning, match=r"int8 refused, predicting with fp32 ONNX: the int8 model misses the "
                                         r"(accuracy|decision) gate"):
        clf = MedicalClassifier.load(med[0], device="cpu", backend="int8")
    assert clf.backend == "onnx-fp32" and clf.model_version.endswith("/onnx-fp32")
    assert "nothing was written" in clf.backend_note and clf.predict(med[2][0]).ok
    refused = list(cache_dir("exports").glob("medical-*-int8.refused.json"))
    assert len(refused) == 1 and "misses the" in json.loads(refused[0].read_text())["message"]
    with pytest.warns(UserWarning, match=r"measured .*delete .*refused\.json to measure again"):
        again = MedicalClassifier.load(med[0], device="cpu", backend="int8")  # read back, not re-measured
    assert again.backend == "onnx-fp32"


def test_medical_int8_that_passes_its_gate_is_used_and_named(med, tmp_path):
    from lepton_apps.export import load_export
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical import export as mexport

    bundle, _, files = med
    out = mexport.export(bundle, tmp_path / "int8", quantize="int8", max_auc_drop=0.99, max_decisions_changed=1.0)
    clf = MedicalClassifier.load(bundle, device="cpu", export=out)  # the folder's precision decides
    assert clf.backend == "onnx-int8" and clf.predict(files[0]).model_version.endswith("/onnx-int8")
    assert load_export(out).card["gate"]["passed"]
    with pytest.raises(ConfigError, match="--backend onnx asks for fp32, but the export at .* is int8"):
        MedicalClassifier.load(bundle, device="cpu", backend="onnx", export=out)


def test_an_export_of_another_bundle_or_with_a_changed_byte_is_refused(med, tmp_path):
    from lepton_apps.medical import MedicalClassifier
    from lepton_apps.medical import export as mexport

    other, _ = tiny_bundle(tmp_path / "other", n=40, epochs=1, size=64)
    foreign = mexport.export(other, tmp_path / "other-fp32", synthetic_check=True)
    with pytest.raises(BundleError, match="made from another bundle"):
        MedicalClassifier.load(med[0], device="cpu", export=foreign)
    own = mexport.export(med[0], tmp_path / "own-fp32", synthetic_check=True)
    data = bytearray((own / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (own / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="model.onnx"):
        MedicalClassifier.load(med[0], device="cpu", export=own)


def test_a_damaged_cached_export_is_built_again(med):
    from lepton_apps.medical import MedicalClassifier

    first = MedicalClassifier.load(med[0], device="cpu", backend="onnx")
    (first.export.path / "model.onnx").write_bytes(b"not a model")
    again = MedicalClassifier.load(med[0], device="cpu", backend="onnx")
    assert again.backend == "onnx-fp32" and again.predict(med[2][0]).ok


def test_medical_predict_cli_takes_backend_and_writes_it_in_model_version(med, tmp_path, capsys):
    bundle, data, _ = med
    out = tmp_path / "pred.csv"
    main(["medical", "predict", str(bundle), str(data), "--out", str(out), "--backend", "torch"])
    assert pd.read_csv(out)["model_version"].str.endswith("/torch").all() and "/torch" in capsys.readouterr().out


def test_a_template_without_backends_refuses_the_option(fraud_bundle):  # noqa: F811
    from lepton_apps.predictor import load

    with pytest.raises(ConfigError, match="the finance template has no --backend option"):
        load(fraud_bundle, backend="onnx")
    assert load(fraud_bundle).model_version  # without the option it loads as before


def test_serve_backend_choices():
    from lepton_apps.cli import backend_choices

    refs = {"medical": "m", "support": "s", "finance": "f"}
    assert backend_choices([], refs) == {}
    assert backend_choices(["onnx"], refs) == {"medical": "onnx", "support": "onnx"}
    assert backend_choices(["torch", "support=int8"], refs) == {"medical": "torch", "support": "int8"}
    with pytest.raises(ConfigError, match="the finance model has no ONNX backend"):
        backend_choices(["finance=onnx"], refs)
    with pytest.raises(ConfigError, match="unknown backend 'fast'"):
        backend_choices(["medical=fast"], refs)
    with pytest.raises(ConfigError, match="'medical', which is not served"):
        backend_choices(["medical=onnx"], {"support": "s"})


def test_the_service_answers_with_the_configured_backend_and_audits_it(med, demo_bundle, tmp_path):  # noqa: F811
    from fastapi.testclient import TestClient

    from lepton_apps.serve.app import ServeConfig, create_app
    from lepton_apps.store import Store

    store = Store.open(f"sqlite:///{tmp_path / 'service.db'}")
    _, token = store.create_key("tests", ["*"])
    refs = {"medical": str(med[0]), "support": str(demo_bundle)}
    app = create_app(refs, config=ServeConfig(backends={"medical": "torch", "support": "onnx"}), load_now=True,
                     store=store)
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as c:
        models = c.get("/v1/models").json()["models"]
        assert models["medical"]["backend"] == "torch" and models["support"]["backend"] == "onnx-fp32"
        png = open(med[2][0], "rb").read()
        r = c.post("/v1/medical/predict", files=[("files", ("a.png", png, "image/png"))]).json()
        assert r["model_version"].endswith("/torch") and r["results"][0]["model_version"] == r["model_version"]
        s = c.post("/v1/support/predict", json={"questions": ["I lost my card"]}).json()
        assert s["model_version"].endswith("/onnx-fp32")
    audit = store.audit_frame()
    assert sorted(audit["model_version"].str.rsplit("/", n=1).str[1]) == ["onnx-fp32", "torch"]


# --------------------------------------------------------------------------- support


def test_support_backends_name_themselves_and_agree(demo_bundle, tmp_path):  # noqa: F811
    from lepton_apps.support import SupportAssistant
    from lepton_apps.support import export as sexport

    qs = ["I lost my card", "how do I reset my PIN", "what is the weather like"]
    bots = {b: SupportAssistant.load(demo_bundle, device="cpu", backend=b) for b in ("torch", "auto")}
    assert bots["torch"].backend == "torch" and bots["auto"].backend == "onnx-fp32"
    a, b = bots["torch"].answer_batch(qs), bots["auto"].answer_batch(qs)
    assert [x.faq_id for x in a] == [y.faq_id for y in b] and [x.handoff for x in a] == [y.handoff for y in b]
    assert all(x.model_version.endswith("/torch") for x in a) and all(y.model_version.endswith("/onnx-fp32") for y in b)
    out = sexport.export(demo_bundle, tmp_path / "fp32")
    bot = SupportAssistant.load(demo_bundle, device="cpu", export=out)
    c = bot.answer_batch(qs)
    assert bot.backend == "onnx-fp32" and [x.faq_id for x in c] == [x.faq_id for x in a]
    assert max(abs(x.confidence - y.confidence) for x, y in zip(a, c)) < 1e-4


@pytest.fixture(scope="module")
def fused_demo_bundle(tmp_path_factory):
    """The demo bundle without the Mahalanobis feature: its int8 export passes the gate. (With it, the
    demo's int8 export hands off one out-of-scope question fewer than fp32 — recall 0.80 against 0.85 on
    20 on this machine — and is refused with fp32 ONNX and a warning, the path the medical test above forces.)"""
    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import train

    return train(demo_config(tmp_path_factory.mktemp("support-fused"), distance_score="off"))


def test_support_int8_backend_is_the_gated_export(fused_demo_bundle):
    from lepton_apps.support import SupportAssistant

    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # this bundle's int8 passes its gate: no refusal warning
        bot = SupportAssistant.load(fused_demo_bundle, device="cpu", backend="int8")
    assert bot.backend == "onnx-int8" and bot.backend_note is None
    assert bot.encoder.session_label == "onnx-int8" and bot.encoder.describe()["answered_by"] == "onnx-int8"
    reply = bot.answer("I lost my card")
    assert reply.faq_id == "lost-card" and reply.model_version.endswith("/onnx-int8")


def test_support_answer_cli_backend(demo_bundle, capsys):  # noqa: F811
    main(["support", "answer", str(demo_bundle), "-q", "I lost my card", "--backend", "torch"])
    out = json.loads(capsys.readouterr().out)
    assert out["faq_id"] == "lost-card" and out["model_version"].endswith("/torch")


# --------------------------------------------------------------------------- GPU


def _cuda_provider() -> str | None:
    import onnxruntime as ort
    import torch

    if not torch.cuda.is_available():
        return "no CUDA GPU on this machine"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return f"this onnxruntime has no CUDA provider ({', '.join(ort.get_available_providers())})"
    return None


@pytest.mark.skipif(_cuda_provider() is not None, reason=f"ONNX Runtime CUDA path: {_cuda_provider()}")
def test_medical_onnx_on_a_gpu_runs_the_cuda_provider(med):
    from lepton_apps.medical import MedicalClassifier

    clf = MedicalClassifier.load(med[0], device="cuda", backend="onnx")
    ref = MedicalClassifier.load(med[0], device="cpu", backend="torch")
    assert clf.backend == "onnx-fp32-cuda" and clf.session.get_providers()[0] in ("TensorrtExecutionProvider",
                                                                                 "CUDAExecutionProvider")
    a = np.array([r.score for r in clf.predict(med[2])])
    b = np.array([r.score for r in ref.predict(med[2])])
    assert np.abs(a - b).max() < 1e-3


def test_support_without_onnxruntime_encodes_with_torch_and_int8_says_how_to_install(no_onnxruntime,
                                                                                  demo_bundle):  # noqa: F811
    from lepton_apps.support import SupportAssistant

    bot = SupportAssistant.load(demo_bundle, device="cpu")
    assert bot.backend == "torch" and bot.answer("I lost my card").model_version.endswith("/torch")
    with pytest.raises(DependencyError, match=r"int8 backend runs ONNX Runtime.*--backend torch"):
        SupportAssistant.load(demo_bundle, device="cpu", backend="int8")
