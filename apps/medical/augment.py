"""Batched augmentation on the device: one affine grid and a few intensity ops per batch.

Input and output are images on the 0–255 scale (uint8 in, float out), ``(N, C, H, W)``, so the
data can stay uint8 in memory and on the bus and be augmented where the model runs.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .config import AugmentConfig


def make_augment(cfg: AugmentConfig):
    """Return ``augment(x) -> x'`` applying ``cfg`` to a batch, or None when augmentation is off."""
    if not cfg.enabled:
        return None

    def augment(x: torch.Tensor) -> torch.Tensor:
        return augment_batch(x, cfg)

    return augment


def augment_batch(x: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a randomly flipped, rotated, scaled, shifted and intensity-jittered copy of ``x`` (0–255 float)."""
    x = x.float()
    n, dev = x.shape[0], x.device

    def u(lo: float, hi: float) -> torch.Tensor:
        return torch.rand(n, device=dev, generator=generator) * (hi - lo) + lo

    angle = u(-cfg.rotate_degrees, cfg.rotate_degrees) * math.pi / 180
    scale = u(1 - cfg.scale, 1 + cfg.scale)
    sx = torch.where(torch.rand(n, device=dev, generator=generator) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n, device=dev)
    sy = torch.where(torch.rand(n, device=dev, generator=generator) < 0.5, -1.0, 1.0) if cfg.vflip else torch.ones(n, device=dev)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([
        torch.stack([cos * sx, -sin * sy, u(-cfg.translate, cfg.translate) * 2], 1),
        torch.stack([sin * sx, cos * sy, u(-cfg.translate, cfg.translate) * 2], 1),
    ], 1)
    if cfg.rotate_degrees or cfg.scale or cfg.translate or cfg.hflip or cfg.vflip:
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    y = x / 255.0
    if cfg.gamma:
        y = y.clamp_min(1e-6) ** u(1 - cfg.gamma, 1 + cfg.gamma).view(n, 1, 1, 1)
    if cfg.contrast:
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * u(1 - cfg.contrast, 1 + cfg.contrast).view(n, 1, 1, 1) + mean
    if cfg.brightness:
        y = y + u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1) * 0.5
    if cfg.noise:
        y = y + torch.randn(y.shape, device=dev, generator=generator) * cfg.noise
    return (y.clamp(0, 1) * 255.0)
