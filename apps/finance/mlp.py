"""Optional PyTorch MLP on the same features, trained by the core Trainer and blended with
LightGBM only when the blend beats LightGBM alone on validation AUC-PR (``FraudConfig(mlp=True)``).

Inputs are standardised (missing values -> the fit median, then 0 after scaling); weights are
stored as safetensors, the scaling and the blend weight as JSON. Reasons stay TreeSHAP of the
LightGBM part.
"""
from __future__ import annotations

import tempfile
from typing import Any

import numpy as np

from lepton_apps.errors import require

BLEND_WEIGHTS = (0.25, 0.5, 0.75)  # weight of LightGBM in the blend
MIN_GAIN = 0.002  # validation AUC-PR a blend must add over LightGBM alone to be used (not noise)


def build(n_features: int, hidden: int = 64):
    """Return the MLP: two hidden layers with ReLU and dropout, one logit out."""
    torch = require("torch", feature="The fraud MLP")
    nn = torch.nn
    return nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Dropout(0.1),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(0.1), nn.Linear(hidden, 1))


def scaling(x: np.ndarray) -> dict[str, list[float]]:
    """Return the per-feature median, mean and std (of median-filled values) of the fit rows."""
    median = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    median = np.where(np.isnan(median), 0.0, median)
    filled = np.where(np.isnan(x), median, x)
    std = filled.std(axis=0)
    return {"median": median.tolist(), "mean": filled.mean(axis=0).tolist(), "std": np.where(std > 0, std, 1.0).tolist()}


def transform(x: np.ndarray, scale: dict[str, list[float]]) -> np.ndarray:
    """Return standardised float32 inputs."""
    median, mean, std = (np.asarray(scale[k]) for k in ("median", "mean", "std"))
    return ((np.where(np.isnan(x), median, x) - mean) / std).astype(np.float32)


def fit(x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, *, seed: int = 0,
        epochs: int = 8, batch_size: int = 512) -> tuple[Any, dict[str, Any]]:
    """Train the MLP with the core Trainer (early stopping on validation AP); return (model, scaling)."""
    torch = require("torch", feature="The fraud MLP")
    from sklearn.metrics import average_precision_score
    from torch.utils.data import TensorDataset

    from lepton_apps.training import TrainConfig, Trainer, make_loss

    torch.manual_seed(seed)
    scale = scaling(x_fit)
    train_ds = TensorDataset(torch.from_numpy(transform(x_fit, scale)), torch.from_numpy(y_fit.astype(np.float32)))
    val_ds = TensorDataset(torch.from_numpy(transform(x_val, scale)), torch.from_numpy(y_val.astype(np.float32)))
    model = build(x_fit.shape[1])
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=2e-3, monitor="val_ap", mode="max", patience=3,
                      seed=seed, device="cpu", precision="fp32", progress=False)

    def loss_fn(out, target):
        return make_loss("bce")(out.squeeze(-1), target)

    def metric_fn(out: np.ndarray, target: np.ndarray) -> dict[str, float]:
        return {"ap": float(average_precision_score(target, out.reshape(-1)))}

    with tempfile.TemporaryDirectory() as run_dir:
        Trainer(model, train_ds, val_ds, cfg, run_dir=run_dir, loss_fn=loss_fn, metric_fn=metric_fn).fit()
    model.eval()
    return model, scale


def predict(model, x: np.ndarray, scale: dict[str, list[float]]) -> np.ndarray:
    """Return fraud probabilities of the MLP."""
    torch = require("torch", feature="The fraud MLP")
    with torch.no_grad():
        logits = model(torch.from_numpy(transform(x, scale))).squeeze(-1).numpy()
    return 1 / (1 + np.exp(-logits.astype(float)))


def load(state: dict, n_features: int):
    """Return the MLP with weights ``state`` (from the bundle's safetensors), in eval mode."""
    model = build(n_features)
    model.load_state_dict(state)
    model.eval()
    return model
