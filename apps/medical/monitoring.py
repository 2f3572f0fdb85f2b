"""What the medical model sees and says, for drift monitoring: image statistics, backbone embeddings and
calibrated probabilities of a set of images (:meth:`MedicalClassifier.monitor_window`), and the reference
profile that training writes into the bundle (``profile/``).

Image statistics are taken on the decoded image before resizing (DICOM after its windowing): ``height``,
``width``, ``mode`` ("L" gray or "RGB"), ``mean_intensity`` / ``std_intensity`` (0–255, colour images on
their luminance), ``saturated_share`` (pixels at 255) and ``black_share`` (pixels at 0). The embeddings are
the backbone's pooled penultimate-layer features (before the classifier) at the model's input size.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError, LeptonError

from .evaluate import probabilities
from .imageio import SUFFIXES, read_image, resize, to_channels

NUMERIC = ["height", "width", "mean_intensity", "std_intensity", "saturated_share", "black_share"]
CATEGORICAL = ["mode"]
PROFILE_IMAGES = 500  # validation images profiled at training at most (a seeded sample beyond)


def image_statistics(img: np.ndarray) -> dict[str, Any]:
    """Return the monitoring statistics of one decoded uint8 image (H, W) or (H, W, 3) (see the module docstring)."""
    gray = to_channels(img, 1)
    return {"height": int(img.shape[0]), "width": int(img.shape[1]), "mode": "L" if img.ndim == 2 else "RGB",
            "mean_intensity": float(gray.mean()), "std_intensity": float(gray.std()),
            "saturated_share": float((gray == 255).mean()), "black_share": float((gray == 0).mean())}


def window_items(data: Any) -> tuple[list[Any], list[str]]:
    """Return (items, names) of the images in ``data``: a folder (every image file below it, by suffix), a
    manifest ``.csv`` (its ``path`` column, relative to the manifest), a MedMNIST ``.npz`` (every array of
    every split), a DataFrame with a ``path`` column, a list of items (paths, bytes, arrays, PIL images,
    DICOM datasets) or one item."""
    if isinstance(data, pd.DataFrame):
        if "path" not in data.columns:
            raise DataError("the table has no 'path' column", where="monitor_window",
                            fix="pass a table with one image path per row in a 'path' column")
        paths = data["path"].astype(str).tolist()
        return paths, paths
    if isinstance(data, (list, tuple)):
        return list(data), [str(it) if isinstance(it, (str, os.PathLike)) else f"item {i} ({type(it).__name__})"
                            for i, it in enumerate(data)]
    if isinstance(data, (str, os.PathLike)):
        path = Path(data)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            return files, [str(p) for p in files]
        if path.is_file() and path.suffix.lower() == ".csv":
            header = pd.read_csv(path, dtype=str, keep_default_na=False)
            header.columns = [c.strip().lower() for c in header.columns]
            if "path" not in header.columns:
                raise DataError("the manifest has no 'path' column", where=str(path),
                                fix="add a header with a 'path' column")
            items = [p if Path(p).is_absolute() else str(path.parent / p) for p in header["path"].str.strip()]
            return items, items
        if path.is_file() and path.suffix.lower() == ".npz":
            from .data import read_npz

            md = read_npz(path)
            return list(md.arrays), md.table["item"].tolist()
        if path.is_file():
            return [path], [str(path)]
        raise DataError("no such file or folder", where=str(path),
                        fix="pass a folder of images, a manifest.csv, a MedMNIST .npz or a list of images")
    return [data], [f"item 0 ({type(data).__name__})"]


def embed(model, pixels: np.ndarray, policy=None, batch_size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """Return (pooled penultimate-layer features (n, d), logits (n, k)) of uint8 model inputs (n, C, S, S),
    from one forward pass of a :class:`~lepton_apps.medical.model.MedicalNet`'s timm backbone."""
    import torch

    backbone = model.backbone
    device = policy.device if policy is not None else next(model.parameters()).device
    feats, logits = [], []
    model.eval()
    with torch.inference_mode():
        for i in range(0, len(pixels), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(pixels[i:i + batch_size])).to(device)
            x = backbone.forward_features(model.normalise(batch))
            feats.append(backbone.forward_head(x, pre_logits=True).float().flatten(1).cpu())
            logits.append(backbone.forward_head(x).float().cpu())
    if not feats:
        return (np.zeros((0, backbone.num_features), np.float32),
                np.zeros((0, backbone.num_classes), np.float32))
    return torch.cat(feats).numpy(), torch.cat(logits).numpy()


def score_columns(probs: np.ndarray, task: str, label_names: Sequence[str]) -> dict[str, np.ndarray]:
    """Return the calibrated probabilities as monitored score columns, named like the fields of a served
    ``Prediction`` (so the service's audit log can be compared with the profile): binary ``score``
    (P(positive class)), otherwise ``probabilities.<class>`` per class (or label)."""
    if task == "binary":
        return {"score": probs[:, 1]}
    return {f"probabilities.{name}": probs[:, j] for j, name in enumerate(label_names)}


def read_window(items: Sequence[Any], names: Sequence[str], size: int, channels: int
                ) -> tuple[pd.DataFrame, np.ndarray, int]:
    """Return (statistics of every readable image, their model inputs uint8 (n, C, S, S), unreadable count)."""
    stats, pixels = [], []
    unreadable = 0
    for item, name in zip(items, names):
        try:
            img = read_image(item, name=name)
        except LeptonError:
            unreadable += 1
            continue
        stats.append(image_statistics(img))
        x = resize(to_channels(img, channels), size)
        pixels.append(x[None] if x.ndim == 2 else x.transpose(2, 0, 1))
    frame = pd.DataFrame(stats, columns=NUMERIC[:2] + CATEGORICAL + NUMERIC[2:])
    arr = np.stack(pixels) if pixels else np.zeros((0, channels, size, size), np.uint8)
    return frame, arr, unreadable


def window(model, policy, items: Sequence[Any], names: Sequence[str], *, size: int, channels: int, task: str,
           temperature: float, label_names: Sequence[str]):
    """Return the :class:`~lepton_apps.predictor.MonitorWindow` of ``items``: image statistics, embeddings
    and calibrated probabilities of the readable ones, and the count of unreadable ones."""
    from lepton_apps.predictor import MonitorWindow

    frame, pixels, unreadable = read_window(items, names, size, channels)
    emb, logits = embed(model, pixels, policy)
    probs = probabilities(logits, task, temperature) if len(logits) else np.zeros((0, len(label_names)))
    return MonitorWindow(features=frame, scores=score_columns(probs, task, label_names), embeddings=emb,
                         unreadable=unreadable)


def reference_profile(win, *, source: str, seed: int = 0):
    """Return the monitoring :class:`~lepton_apps.monitor.Profile` of a window (image statistics, probabilities,
    embeddings)."""
    from lepton_apps.monitor import build_profile

    return build_profile(win.features, scores=win.scores, embeddings=win.embeddings if len(win.embeddings) else None,
                         numeric=NUMERIC, categorical=CATEGORICAL, source=source, seed=seed)


def profile_rows(rows: np.ndarray, limit: int = PROFILE_IMAGES, seed: int = 0) -> np.ndarray:
    """Return ``rows``, or a seeded sorted sample of ``limit`` of them."""
    if len(rows) <= limit:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, limit, replace=False))
