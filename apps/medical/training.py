"""``train(config) -> bundle path``: data -> splits -> uint8 pixels -> Trainer -> report -> bundle.

Read top to bottom: open the data, refuse what cannot be trained on (empty class folders,
unreadable files, a validation split with one class), decode every image once to uint8 at the
configured size (up front into memory, or, for sets too large for that, in DataLoader workers
into a disk cache during the first epoch), train with on-device augmentation and early stopping
on validation AUC, fit the temperature and operating point on validation, evaluate on test,
write the bundle.
"""
from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from .config import MedicalConfig
from .data import MedicalData, decode_rows, load_pixels, open_for_training, usable_split
from .pixelcache import PixelCache

MODEL_FILE = "model.safetensors"
# With epochs unset: 10 epochs, raised to min_steps / capped at max_steps optimizer steps. The floor decides below
# ~960 training images (300 steps of 32); above it 10 epochs beat 5 on both large sets measured (2026-12-08, seed 0,
# channels-last): full PneumoniaMNIST ROC-AUC 0.959 -> 0.972 (148 -> 270 s), Kermany patient-level 0.990 -> 0.9975
# (192 -> 352 s; the plain ResNet-18 baseline: 0.996).
AUTO_EPOCHS = 10
MIN_VAL_PER_CLASS_FOR_BEST = 50
# Train the convnet channels-last (NHWC) on every device, not only on CUDA: oneDNN's NHWC kernels made a training
# step of efficientnet_lite0 at 64 px, batch 32, 1.46x faster on 2 CPU cores (230 -> 158 ms, 2026-12-08;
# bench/medical_bench.py --formats); 500 PneumoniaMNIST images train in 57 s instead of 76.
CHANNELS_LAST = True


def coerce_config(config: MedicalConfig | dict | str | os.PathLike) -> MedicalConfig:
    """Return a MedicalConfig from a config object, a dict or a YAML path."""
    if isinstance(config, MedicalConfig):
        return config
    if isinstance(config, dict):
        return MedicalConfig.from_dict(config)
    return MedicalConfig.from_yaml(config)


def default_out() -> Path:
    """Return ``runs/medical-<UTC time>/bundle``."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"medical-{stamp}" / "bundle"


def schedule(cfg: MedicalConfig, n_train: int, n_val_per_class: list[int], head: str = "backbone.classifier"
             ) -> dict[str, Any]:
    """Return the Trainer settings the data calls for: ``epochs``, ``min_steps``, ``max_steps``, ``keep``,
    ``ema_decay`` and ``lr_mult`` (see :class:`MedicalConfig`); ``head`` is the parameter prefix of the new
    classifier head, which learns at the full ``lr``.

    With ``epochs`` unset the run is :data:`AUTO_EPOCHS` (10) epochs, raised to ``min_steps`` and capped at ``max_steps``
    optimizer steps; the EMA averages over about a tenth of the run; the best validation epoch is kept
    only when every class has at least 50 validation images (below that its AUC is too noisy to pick
    an epoch by, and the end of the decayed schedule is the better bet).
    """
    from lepton_apps.training import planned_steps

    steps_per_epoch = max(1, -(-n_train // cfg.batch_size))
    auto = cfg.epochs is None
    epochs = AUTO_EPOCHS if auto else cfg.epochs
    min_steps, max_steps = (cfg.min_steps, max(cfg.min_steps, cfg.max_steps)) if auto else (None, None)
    total, _ = planned_steps(steps_per_epoch, epochs, min_steps, max_steps)
    keep = cfg.model_selection
    if keep == "auto":
        keep = "best" if n_val_per_class and min(n_val_per_class) >= MIN_VAL_PER_CLASS_FOR_BEST else "last"
    lr_mult = {"backbone": cfg.backbone_lr_mult, head: 1.0} if (cfg.pretrained or cfg.weights) else {}
    return {"epochs": epochs, "min_steps": min_steps, "max_steps": max_steps, "total_steps": total,
            "keep": keep, "ema_decay": (1 - 1 / max(10.0, total / 10)) if cfg.ema else None,
            "lr_mult": lr_mult}



def prepare_data(cfg: MedicalConfig, progress: Callable[[int, int], None] | None = None
                 ) -> tuple[MedicalData, np.ndarray, np.ndarray, np.ndarray, int]:
    """Return ``(data, split per row, pixels uint8 (N, C, S, S), targets, channels)`` decoded into memory.

    Raises DataError as :func:`open_for_training` and :func:`usable_split` do.
    """
    md, split, channels, size = open_for_training(cfg)
    pixels, errors = load_pixels(md, size, channels, cache_dir=cfg.cache_dir, progress=progress)
    return md, usable_split(md, split, errors, cfg), pixels, md.targets(), channels


def train(config: MedicalConfig | dict | str | os.PathLike, *, callback: Callable[[dict], None] | None = None
          ) -> Path:
    """Train a classifier as ``config`` says; return the path of the written bundle.

    ``callback`` receives the Trainer's step / epoch events plus ``{"event": "decode", "done", "total"}``
    while images are decoded and ``{"event": "evaluate"}`` before the report.
    """
    import torch

    from lepton_apps.bundle import BundleWriter, fingerprint_data
    from lepton_apps.device import seed_everything
    from lepton_apps.training import Trainer, TrainConfig, balanced_class_weights
    from lepton_apps.metrics import macro_auc, roc_auc

    from .augment import make_augment
    from .evaluate import build_report, calibrate, headline, probabilities, save_plots
    from .model import build_network, head_prefix
    from .model import predict_logits
    from .stream import CachedRows, DecodedImages, default_workers, loading_mode

    cfg = coerce_config(config)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    out = Path(cfg.out) if cfg.out else default_out()
    run_dir = out.with_name(out.name + "-run")  # checkpoints + metrics.jsonl, next to the bundle
    if run_dir.exists() and not cfg.resume:
        import shutil

        shutil.rmtree(run_dir)

    def decoded(done: int, total: int) -> None:
        if callback:
            callback({"event": "decode", "done": done, "total": total})

    md, split, channels, image_size = open_for_training(cfg)
    cfg = cfg.model_copy(update={"image_size": image_size})  # the bundle records the size actually used
    task, names, y = md.task, md.label_names, md.targets()
    targets = torch.from_numpy(np.array(y))
    streaming = loading_mode(md, channels, cfg.image_size, cfg.data_loading, cfg.memory_budget_gb) == "stream"
    if streaming:  # decode in DataLoader workers into a disk cache; the first epoch fills it
        items = md.table["item"].tolist()
        cache = PixelCache.for_items(items, cfg.image_size, channels, cfg.cache_dir or run_dir / "decoded")
        given_split, split = split, usable_split(md, split, cache.errors(items), cfg)
        num_workers = default_workers() if cfg.num_workers is None else cfg.num_workers

        def subset(s: str):
            return DecodedImages(cache.folder, cache.pixels.shape, items, y, np.flatnonzero(split == s))

        def source(s: str):
            return CachedRows(cache, np.flatnonzero(split == s))
    else:
        pixels, errors = load_pixels(md, cfg.image_size, channels, cache_dir=cfg.cache_dir, progress=decoded)
        split = usable_split(md, split, errors, cfg)
        tensors = torch.from_numpy(pixels)
        num_workers = 0  # a TensorDataset gains nothing from worker processes

        def subset(s: str):
            rows = np.flatnonzero(split == s)
            return torch.utils.data.TensorDataset(tensors[rows], targets[rows])

        def source(s: str):
            return tensors[np.flatnonzero(split == s)]

    checked: list[bool] = []

    def on_event(event: dict) -> None:
        if streaming and event.get("event") == "epoch" and not checked:
            # After the first pass every train / val row is decoded or known bad: decode the rows no
            # loader reached (the test split), then apply the same rule as the in-memory path.
            checked.append(True)
            decode_rows(cache, items, cache.pending(), progress=decoded)
            cache.flush()
            split[:] = usable_split(md, given_split, cache.errors(items), cfg)
        if callback:
            callback(event)

    seed_everything(cfg.seed)  # the head (and a from-scratch backbone) is initialised from the seed, not the process
    net, weights_info = build_network(cfg.backbone, len(names), pretrained=cfg.pretrained, weights=cfg.weights,
                                      allow_download=cfg.allow_download)
    if task == "multilabel":
        pos = y[split == "train"].sum(0)
        pos_weight = ((split == "train").sum() - pos) / np.maximum(pos, 1) if cfg.class_weighting == "balanced" else None
        loss_fn = torch.nn.BCEWithLogitsLoss(
            pos_weight=None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32))
    else:
        weights = balanced_class_weights(y[split == "train"], len(names)) if cfg.class_weighting == "balanced" else None
        loss_fn = torch.nn.CrossEntropyLoss(
            weight=None if weights is None else torch.as_tensor(weights, dtype=torch.float32),
            label_smoothing=cfg.label_smoothing)

    def metric_fn(outputs: np.ndarray, tgt: np.ndarray) -> dict[str, float]:
        probs = probabilities(outputs, task)
        if task == "binary":
            return {"auc": roc_auc(tgt, probs[:, 1]), "acc": float((probs.argmax(1) == tgt).mean())}
        if task == "multiclass":
            return {"auc": macro_auc(tgt, probs), "acc": float((probs.argmax(1) == tgt).mean())}
        return {"auc": macro_auc(tgt, probs)}

    val_y = y[split == "val"]
    val_counts = list(val_y.sum(0).astype(int)) if task == "multilabel" else list(np.bincount(val_y, minlength=len(names)))
    plan = schedule(cfg, int((split == "train").sum()), [int(c) for c in val_counts],
                    head=f"backbone.{head_prefix(net.backbone)}")
    tcfg = TrainConfig(epochs=plan["epochs"], min_steps=plan["min_steps"], max_steps=plan["max_steps"],
                       batch_size=cfg.batch_size, lr=cfg.lr, lr_mult=plan["lr_mult"], ema_decay=plan["ema_decay"],
                       keep=plan["keep"], weight_decay=cfg.weight_decay,
                       monitor="val_auc", mode="max", patience=cfg.patience, seed=cfg.seed, device=cfg.device,
                       precision=cfg.precision, compile=cfg.compile, progress=cfg.progress,
                       resume=cfg.resume, num_workers=num_workers, channels_last=CHANNELS_LAST)
    trainer = Trainer(net, subset("train"), subset("val"), tcfg, run_dir=run_dir, loss_fn=loss_fn,
                      metric_fn=metric_fn, augment_fn=make_augment(cfg.augment), callback=on_event)
    result = trainer.fit()
    if callback:
        callback({"event": "evaluate"})

    model = trainer.model.eval()
    rows = {s: np.flatnonzero(split == s) for s in ("train", "val", "test")}
    logits = {s: predict_logits(model, source(s), trainer.policy) for s in ("val", "test")}
    calibration = calibrate(logits["val"], y[rows["val"]], task, cfg.operating_point, cfg.target_sensitivity)
    eval_split = "test" if len(rows["test"]) else "val"
    report = build_report(logits[eval_split], y[rows[eval_split]], task, names, calibration, split=eval_split,
                          n_boot=cfg.n_boot, seed=cfg.seed)
    val_probs = probabilities(logits["val"], task, calibration["temperature"])

    summary = data_summary(md, split, cfg)
    profile, profile_info = validation_profile(md, split, model, trainer.policy, cfg, channels, task, names,
                                               calibration["temperature"])
    model_info = {"backbone": cfg.backbone, "num_classes": len(names), "channels": channels,
                  "image_size": cfg.image_size, "mean": list(weights_info.mean), "std": list(weights_info.std),
                  "initial_weights": weights_info.source}
    with BundleWriter(out, domain="medical", task=task, overwrite=True, label_names=names,
                      preprocessing={"image_size": cfg.image_size, "channels": channels, "resize": "square (box/bilinear)",
                                     "dicom": "modality LUT, VOI LUT / window, else 8-bit as stored or 0.5-99.5 percentile, MONOCHROME1 inverted",
                                     "normalisation": {"mean": list(weights_info.mean), "std": list(weights_info.std)}},
                      training_config=cfg.model_dump(mode="json"), metrics=headline(report),
                      data_fingerprint=fingerprint_data(cache.pixels if streaming else pixels)) as w:
        w.save_torch(MODEL_FILE, model.state_dict())
        w.save_json("model.json", model_info)
        w.save_json("calibration.json", calibration)
        w.save_json("report.json", report)
        w.save_json("data_summary.json", summary)
        w.save_json("history.json", {"history": result.history, "best_epoch": result.best_epoch,
                                     "epochs_run": result.epochs_run, "seconds": result.seconds,
                                     "optimizer_steps": result.global_step, "kept": plan["keep"],
                                     "ema_decay": plan["ema_decay"], "lr_mult": plan["lr_mult"],
                                     "train_images": int(len(rows["train"])), "policy": trainer.policy.describe()})
        w.save_numpy("val_probs.npy", val_probs.astype(np.float32))
        w.save_numpy("val_labels.npy", y[rows["val"]])
        profile.save(w.file("profile/profile.json").parent)
        w.save_json("profile/info.json", profile_info)
        save_plots(logits[eval_split], y[rows[eval_split]], task, names, calibration, w.workdir / "plots")
    return out


def validation_profile(md: MedicalData, split: np.ndarray, model, policy, cfg: MedicalConfig, channels: int,
                       task: str, names: list[str], temperature: float):
    """Return (the monitoring profile of up to ``PROFILE_IMAGES`` validation images, a note of what it took):
    the images are read again from the source for their statistics before resizing, then embedded and
    scored by the trained ``model``."""
    import time

    from .monitoring import PROFILE_IMAGES, profile_rows, reference_profile, window

    started = time.perf_counter()
    rows = profile_rows(np.flatnonzero(split == "val"), PROFILE_IMAGES, cfg.seed)
    items = list(md.arrays[rows]) if md.arrays is not None else md.table["item"].iloc[rows].tolist()
    win = window(model, policy, items, md.table["item"].iloc[rows].tolist(), size=cfg.image_size,
                 channels=channels, task=task, temperature=temperature, label_names=names)
    profile = reference_profile(win, source=f"validation split ({len(rows)} of {int((split == 'val').sum())} images)",
                                seed=cfg.seed)
    return profile, {"split": "val", "images": int(len(rows)), "unreadable": win.unreadable,
                     "seconds": round(time.perf_counter() - started, 2)}


def data_summary(md: MedicalData, split: np.ndarray, cfg: MedicalConfig | None = None) -> dict[str, Any]:
    """Return counts per class and split and how the splits were made (no paths, no patient ids) for the model card.

    ``split_method`` says whether the data's own splits were used or the template made them, and
    ``patient_level_split`` whether no patient can sit in two splits (patient ids known, and the
    template's splits keep each patient whole, or the data's own splits were checked to do so).
    """
    counts: dict[str, dict[str, int]] = {}
    y = md.targets()
    for s in ("train", "val", "test", "unreadable"):
        rows = split == s
        if not rows.any():
            continue
        if md.task == "multilabel":
            counts[s] = {n: int(y[rows, j].sum()) for j, n in enumerate(md.label_names)}
            counts[s]["(images)"] = int(rows.sum())
        else:
            counts[s] = {n: int((y[rows] == j).sum()) for j, n in enumerate(md.label_names)}
    given = md.table["split"].notna().to_numpy()
    used = np.isin(split, ("train", "val", "test"))
    if given[used].all():
        method = "the data's own splits (folders / split column / npz keys)"
    elif given[used].any():
        method = "the data's own splits where given; the rest split by the template (stratified, patient-level)"
    else:
        method = "made by the template: stratified, patient-level (StratifiedGroupKFold on the patient id)"
    patients: dict[str, int] = {}
    across = None
    if md.has_patients:
        pid = md.table["patient_id"].to_numpy(dtype=object)
        known = used & ~pd.isna(pid)
        owners: dict[Any, set] = {}
        for p, s in zip(pid[known], split[known]):
            owners.setdefault(p, set()).add(s)
        across = sum(1 for ss in owners.values() if len(ss) > 1)
        patients = {s: int(len(set(pid[known & (split == s)]))) for s in ("train", "val", "test")
                    if (known & (split == s)).any()}
    return {"source": Path(md.source).name, "kind": md.kind, "task": md.task, "label_names": md.label_names,
            "counts": counts, "split_method": method,
            "patient_ids": md.patient_source or ("given" if md.has_patients else None),
            "patients": patients, "patients_in_two_splits": across,
            "patient_level_split": bool(md.has_patients and across == 0),
            "validation_images": int((split == "val").sum())}

