"""Encoder backends: ONNX Runtime gives PyTorch's vectors, follows weight changes, and falls back clearly."""
import threading
import warnings

import numpy as np
import pytest

from lepton_apps.errors import ConfigError, DependencyError
from lepton_apps.support import encoder as enc_mod
from lepton_apps.support.encoder import SentenceEncoder
from test_support_fixtures import tiny_encoder_dir  # noqa: F401

pytest.importorskip("onnxruntime", reason="the ONNX backend needs the 'fast' extra (onnxruntime)")

TEXTS = ["a", "How do I freeze my card?", "", "emoji 🙂 and 漢字", "word " * 400, "Reset my PIN abroad please"]


def test_onnx_backend_matches_torch_on_the_real_minilm():
    onnx, torch_ = SentenceEncoder(device="cpu"), SentenceEncoder(device="cpu", backend="torch")
    assert onnx.backend == "onnx" and torch_.backend == "torch"
    a, b = onnx.encode(TEXTS, batch_size=4), torch_.encode(TEXTS, batch_size=4)
    assert onnx.describe()["backend"] == "onnx"
    assert np.abs(a - b).max() < 1e-5
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.abs(onnx.encode(TEXTS[1:2]) - a[1]).max() < 1e-5  # batch of one, no padding


def test_onnx_backend_is_cached_and_follows_weight_changes(tiny_encoder_dir, tmp_path, monkeypatch):
    import torch

    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "cache"))
    enc = SentenceEncoder(tiny_encoder_dir, device="cpu")
    ref = SentenceEncoder(tiny_encoder_dir, device="cpu", backend="torch")
    first = enc.encode(TEXTS)
    files = list((tmp_path / "cache" / "support-onnx").glob("*.onnx"))
    assert len(files) == 1
    again = SentenceEncoder(tiny_encoder_dir, device="cpu")
    again.encode(TEXTS[:1])
    assert list((tmp_path / "cache" / "support-onnx").glob("*.onnx")) == files  # reused, not exported again
    with torch.no_grad():  # what an optimizer step does: an in-place update of the weights
        next(enc.model.parameters()).mul_(1.5)
    changed = enc.encode(TEXTS)
    ref.model.load_state_dict(enc.model.state_dict())
    assert np.abs(changed - first).max() > 1e-3
    assert np.abs(changed - ref.encode(TEXTS)).max() < 1e-5


def test_onnx_encode_is_thread_safe(tiny_encoder_dir):
    enc = SentenceEncoder(tiny_encoder_dir, device="cpu")
    expected = enc.encode(TEXTS)
    results = [None] * 6

    def work(i):
        results[i] = enc.encode(TEXTS)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert all(np.array_equal(r, expected) for r in results)


def test_backend_choice_errors_and_fallbacks(tiny_encoder_dir, monkeypatch):
    with pytest.raises(ConfigError, match="backend must be one of"):
        SentenceEncoder(tiny_encoder_dir, device="cpu", backend="tensorrt")
    assert SentenceEncoder(tiny_encoder_dir, device="cpu", quantize="int8").backend == "torch"
    monkeypatch.setattr(enc_mod, "onnx_available", lambda: "onnxruntime is not usable (ImportError: none)")
    assert SentenceEncoder(tiny_encoder_dir, device="cpu").backend == "torch"
    with pytest.raises(DependencyError, match=r"lepton-apps\[fast\]"):
        SentenceEncoder(tiny_encoder_dir, device="cpu", backend="onnx")


def test_export_failure_falls_back_to_torch_with_a_warning(tiny_encoder_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "empty-cache"))

    def broken(*args, **kwargs):
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(enc_mod, "_export_onnx", broken)
    enc = SentenceEncoder(tiny_encoder_dir, device="cpu")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = enc.encode(TEXTS)
    assert enc.backend == "torch" and out.shape == (len(TEXTS), 32)
    assert any("exporter exploded" in str(w.message) for w in caught)
    np.testing.assert_allclose(out, SentenceEncoder(tiny_encoder_dir, device="cpu", backend="torch").encode(TEXTS),
                               atol=1e-6)
