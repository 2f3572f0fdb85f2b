"""The estimator: LightGBM with early stopping on validation AUC-PR, imbalance handling chosen
on validation, native categoricals, an optional optuna search, TreeSHAP reasons.

Models are stored in LightGBM's text format (``booster.model_to_string()``), never pickled.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import time
from typing import Any, Callable

import numpy as np

from lepton_apps.errors import ConfigError, require

from .features import FeatureSpec

log = logging.getLogger(__name__)
IMBALANCE = ("none", "sqrt", "balanced")


def base_params(seed: int = 0, threads: int = 2, learning_rate: float = 0.1, num_leaves: int = 31,
                device: str = "cpu", max_depth: int = 8) -> dict[str, Any]:
    """Return the LightGBM parameters every model starts from (deterministic for a seed)."""
    params = {
        "objective": "binary", "metric": "average_precision", "learning_rate": learning_rate,
        "num_leaves": num_leaves, "max_depth": max_depth, "min_child_samples": 50, "feature_fraction": 0.9, "bagging_fraction": 0.9,
        "bagging_freq": 1, "lambda_l2": 1.0, "max_cat_to_onehot": 8, "cat_smooth": 10,
        "seed": seed, "deterministic": True, "force_row_wise": True, "num_threads": threads, "verbosity": -1,
    }
    if device != "cpu":
        params["device_type"] = device
    return params


@functools.lru_cache(maxsize=None)
def gpu_device() -> str | None:
    """Return "cuda" or "gpu" when this LightGBM build trains on a GPU, else None (CPU build)."""
    lgb = require("lightgbm", feature="Fraud model training")
    x = np.random.default_rng(0).random((64, 2))
    y = (x[:, 0] > 0.5).astype(int)
    for device in ("cuda", "gpu"):
        try:
            with _quiet_stderr():  # a CPU build prints a [Fatal] line before raising
                lgb.train({"device_type": device, "verbosity": -1, "num_iterations": 1, "min_data_in_leaf": 1},
                          lgb.Dataset(x, y))
            return device
        except Exception:  # noqa: BLE001 - any failure means "not available in this build"
            continue
    return None


@contextlib.contextmanager
def _quiet_stderr():
    import os
    import sys

    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def resolve_device(device: str) -> tuple[str, str]:
    """Return (LightGBM device, sentence for the report) for device "auto", "cpu" or "gpu"."""
    if device not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"unknown device {device!r}", where="device", fix="use auto, cpu or gpu")
    if device == "cpu":
        return "cpu", "CPU (asked for)"
    gpu = gpu_device()
    if gpu:
        return gpu, f"GPU (LightGBM device_type={gpu})"
    if device == "gpu":
        raise ConfigError("this LightGBM build has no GPU support", where="device",
                          fix="install a GPU-enabled LightGBM build or use device: cpu")
    return "cpu", "CPU (this LightGBM build has no GPU support)"


def imbalance_params(kind: str, y: np.ndarray) -> dict[str, Any]:
    """Return the LightGBM parameters for imbalance handling ``kind`` (none, sqrt, balanced)."""
    pos = max(int((y == 1).sum()), 1)
    neg = max(int((y == 0).sum()), 1)
    if kind == "none":
        return {}
    if kind == "sqrt":
        return {"scale_pos_weight": float(np.sqrt(neg / pos))}
    if kind == "balanced":
        return {"scale_pos_weight": float(neg / pos)}
    raise ConfigError(f"unknown imbalance handling {kind!r}", where="imbalance", fix=f"use auto or one of {IMBALANCE}")


def fit(params: dict[str, Any], x_fit: np.ndarray, y_fit: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
        feature_names: list[str], categorical: list[str], max_rounds: int = 1000, patience: int = 50,
        callback: Callable[[int], None] | None = None):
    """Train a booster with early stopping on validation AUC-PR; return (booster, best val AP)."""
    lgb = require("lightgbm", feature="Fraud model training")
    names = [_safe(n) for n in feature_names]
    cats = [_safe(c) for c in categorical]
    train_set = lgb.Dataset(x_fit, y_fit, feature_name=names, categorical_feature=cats or "auto", free_raw_data=False)
    val_set = lgb.Dataset(x_val, y_val, reference=train_set)
    callbacks = [lgb.early_stopping(patience, first_metric_only=True, verbose=False)]
    if callback is not None:
        callbacks.append(lambda env: callback(env.iteration + 1))
    booster = lgb.train(params, train_set, num_boost_round=max_rounds, valid_sets=[val_set], valid_names=["val"],
                        callbacks=callbacks)
    best = booster.best_score.get("val", {}).get("average_precision", float("nan"))
    return booster, float(best)


def refit_rounds(best_iteration: int, n_fit: int, n_refit: int) -> int:
    """Return the boosting rounds of a refit on ``n_refit`` rows after early stopping chose
    ``best_iteration`` on ``n_fit`` rows: the rounds scaled by the row ratio (at least 1).

    More rows support more rounds at the same learning rate before over-fitting; the choice
    between this and the unscaled count was measured on ``bench/robustness.py`` (apps/finance/README.md).
    """
    if n_fit <= 0 or n_refit < n_fit:
        raise ValueError(f"refit rows ({n_refit}) must be at least the fit rows ({n_fit}, > 0)")
    return max(1, int(round(max(1, best_iteration) * n_refit / n_fit)))


def refit(params: dict[str, Any], x: np.ndarray, y: np.ndarray, feature_names: list[str], categorical: list[str],
          rounds: int):
    """Train a booster on all of ``x`` for exactly ``rounds`` rounds (no early stopping); return it."""
    lgb = require("lightgbm", feature="Fraud model training")
    names = [_safe(n) for n in feature_names]
    cats = [_safe(c) for c in categorical]
    train_set = lgb.Dataset(x, y, feature_name=names, categorical_feature=cats or "auto", free_raw_data=False)
    return lgb.train(params, train_set, num_boost_round=int(rounds))


def _safe(name: str) -> str:
    """LightGBM refuses some characters in feature names; keep names readable but safe."""
    return "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in name)


def search(params: dict[str, Any], data: tuple, feature_names: list[str], categorical: list[str], *,
           trials: int, timeout_s: float, seed: int, max_rounds: int, patience: int) -> tuple[dict[str, Any], list[dict]]:
    """Run a bounded optuna TPE search on validation AUC-PR; return (best params, trial log)."""
    optuna = require("optuna", feature="Hyper-parameter search", extra="tune")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    x_fit, y_fit, x_val, y_val = data
    trials_log: list[dict] = []

    def objective(trial):
        p = dict(params)
        p.update(num_leaves=trial.suggest_int("num_leaves", 8, 128, log=True),
                 learning_rate=trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
                 min_child_samples=trial.suggest_int("min_child_samples", 10, 300, log=True),
                 feature_fraction=trial.suggest_float("feature_fraction", 0.5, 1.0),
                 lambda_l2=trial.suggest_float("lambda_l2", 1e-3, 10, log=True))
        started = time.perf_counter()
        booster, ap = fit(p, x_fit, y_fit, x_val, y_val, feature_names, categorical, max_rounds, patience)
        trials_log.append({**trial.params, "val_pr_auc": ap, "rounds": booster.best_iteration,
                           "seconds": round(time.perf_counter() - started, 2)})
        return ap

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(objective, n_trials=trials, timeout=timeout_s)
    best = dict(params)
    best.update(study.best_params)
    return best, trials_log


def contributions(booster, x: np.ndarray) -> np.ndarray:
    """Return exact TreeSHAP contributions (rows, features + 1 bias column) in log-odds."""
    return booster.predict(x, pred_contrib=True)


def predict_threads(rows: int) -> int:
    """One thread for small inputs (no OpenMP start-up or contention cost), all cores for large ones."""
    return 1 if rows < 50_000 else 0


REASON_METHODS = ("path", "treeshap")


def reason_texts(booster, spec: FeatureSpec, x: np.ndarray, top: int = 3, explainer=None) -> list[str]:
    """Return, per row of ``x``, the ``top`` features pushing the score up, as readable text: their path
    attributions when ``explainer`` (a :class:`~.reasons.PathExplainer` of ``booster``) is given, else exact
    TreeSHAP."""
    if len(x) == 0:
        return []
    if explainer is not None:
        contrib = explainer.contributions(x, num_threads=predict_threads(len(x)))[:, :-1]
    else:
        contrib = booster.predict(x, pred_contrib=True, num_threads=predict_threads(len(x)))[:, :-1]
    out = []
    for row, values in zip(contrib, x):
        idx = [j for j in np.argsort(-row)[:top] if row[j] > 0]
        out.append("; ".join(f"{spec.readable(spec.names[j])} = {_fmt(values[j], spec, j)} "
                             f"(+{row[j]:.2f})" for j in idx))
    return out


def _fmt(value: float, spec: FeatureSpec, j: int) -> str:
    name = spec.names[j]
    if np.isnan(value):
        return "missing"
    if name.startswith("col:") and name[4:] in spec.categorical:
        cats = spec.categorical[name[4:]]
        return cats[int(value)] if 0 <= int(value) < len(cats) else "unknown"
    if name in ("is_weekend", "is_night"):
        return "yes" if value else "no"
    return f"{value:.3g}" if abs(value) < 1e4 else f"{value:,.0f}"
