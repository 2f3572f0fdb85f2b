"""Device and precision policy: one object decides where and how tensors run.

``DevicePolicy.resolve()`` picks cuda > mps > cpu (or what the user names), the autocast
dtype (bf16 on GPUs that support it, fp16 + a grad scaler on older GPUs, fp32 on CPU),
TF32 for CUDA matmuls and convolutions, and whether to use channels_last and
``torch.compile``. Training and inference take the same policy object, so a model is
evaluated the way it was trained.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import random
from typing import Any, Literal

import numpy as np
import torch

from lepton_apps.errors import ConfigError

DeviceName = Literal["auto", "cuda", "mps", "cpu"]
PrecisionName = Literal["auto", "bf16", "fp16", "fp32"]


def detect_device() -> str:
    """Return the best available device type: ``cuda``, ``mps`` or ``cpu``."""
    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


@dataclasses.dataclass(frozen=True)
class DevicePolicy:
    """Where tensors live and how they are computed. Build it with :meth:`resolve`."""

    device: torch.device
    amp_dtype: torch.dtype | None  # None = full fp32
    channels_last: bool = False
    compile: bool = False

    @classmethod
    def resolve(cls, device: DeviceName | str = "auto", precision: PrecisionName = "auto",
                channels_last: bool | None = None, compile: bool | None = None) -> DevicePolicy:
        """Return the policy for the requested settings, validated against this machine.

        ``auto`` precision means bf16 on CUDA GPUs that support it (Ampere+), fp16 on older
        CUDA GPUs and on MPS, fp32 on CPU. ``channels_last`` defaults to True on CUDA;
        ``compile`` defaults to False (it pays off only on long GPU runs).
        """
        env_device = os.environ.get("LEPTON_DEVICE")
        if device == "auto" and env_device:
            device = env_device
        if device == "auto":
            device = detect_device()
        dev = torch.device(device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' was requested but no CUDA GPU is visible",
                              fix="use device='auto' or 'cpu', or check the NVIDIA driver and CUDA_VISIBLE_DEVICES")
        if dev.type == "mps" and detect_device() != "mps":
            raise ConfigError("device 'mps' was requested but Apple MPS is not available", fix="use device='auto' or 'cpu'")
        if dev.type not in ("cuda", "mps", "cpu"):
            raise ConfigError(f"unsupported device {device!r}", fix="use one of: auto, cuda, mps, cpu")

        amp_dtype = _amp_dtype(dev, precision)
        if dev.type == "cuda":
            # TF32 keeps fp32 range with tensor-core speed for the matmuls autocast leaves in fp32.
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        return cls(
            device=dev,
            amp_dtype=amp_dtype,
            channels_last=(dev.type == "cuda") if channels_last is None else channels_last,
            compile=bool(compile),
        )

    @property
    def use_grad_scaler(self) -> bool:
        """True when training needs loss scaling (fp16 autocast on CUDA)."""
        return self.amp_dtype is torch.float16 and self.device.type == "cuda"

    @property
    def precision(self) -> str:
        """The precision as a name: ``bf16``, ``fp16`` or ``fp32``."""
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.amp_dtype]

    def describe(self) -> dict[str, Any]:
        """Return the policy as a JSON-friendly dict (stored in bundles and logs)."""
        name = str(self.device)
        if self.device.type == "cuda":
            name += f" ({torch.cuda.get_device_name(self.device)})"
        return {"device": name, "precision": self.precision, "channels_last": self.channels_last,
                "compile": self.compile, "tf32": self.device.type == "cuda"}

    def autocast(self) -> contextlib.AbstractContextManager:
        """Return the autocast context for forward passes (a no-op in fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """Return a GradScaler, enabled only when fp16 needs it."""
        return torch.amp.GradScaler(self.device.type if self.device.type == "cuda" else "cpu",
                                    enabled=self.use_grad_scaler)

    def prepare_model(self, model: torch.nn.Module) -> torch.nn.Module:
        """Move ``model`` to the device (channels_last for 4-D convnets when asked); return it.

        Compilation is separate (:meth:`maybe_compile`) so that state dicts keep plain keys.
        """
        model = model.to(self.device)
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        return model

    def maybe_compile(self, model: torch.nn.Module) -> torch.nn.Module:
        """Return ``torch.compile(model)`` when the policy asks for it, else ``model``."""
        return torch.compile(model) if self.compile else model

    def to_device(self, batch: Any) -> Any:
        """Move a tensor, or tensors nested in dicts/lists/tuples, to the device."""
        if isinstance(batch, torch.Tensor):
            non_blocking = self.device.type == "cuda"
            if self.channels_last and batch.dim() == 4 and batch.is_floating_point():
                return batch.to(self.device, non_blocking=non_blocking, memory_format=torch.channels_last)
            return batch.to(self.device, non_blocking=non_blocking)
        if isinstance(batch, dict):
            return {k: self.to_device(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.to_device(v) for v in batch)
        return batch


def _amp_dtype(dev: torch.device, precision: str) -> torch.dtype | None:
    if precision not in ("auto", "bf16", "fp16", "fp32"):
        raise ConfigError(f"unknown precision {precision!r}", fix="use one of: auto, bf16, fp16, fp32")
    if precision == "fp32" or (precision == "auto" and dev.type == "cpu"):
        return None
    if precision == "auto":
        if dev.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16  # mps
    if precision == "bf16":
        if dev.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ConfigError("bf16 was requested but this GPU does not support it",
                              fix="use precision='fp16' or 'auto'")
        return torch.bfloat16
    if dev.type == "cpu":
        raise ConfigError("fp16 autocast is not supported on the CPU", fix="use precision='fp32', 'bf16' or 'auto'")
    return torch.float16


def seed_everything(seed: int, deterministic: bool = False) -> None:
    """Seed Python, NumPy and torch (all devices); optionally force deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """Return the Python, NumPy and torch RNG states in a form ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"kind": np_state[0], "keys": torch.from_numpy(np_state[1].copy()), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore states captured by :func:`rng_state`."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy(), n["pos"], n["has_gauss"], n["cached"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
