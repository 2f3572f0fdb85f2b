"""The Trainer: one readable training loop for every PyTorch model in the suite.

AdamW with linear warmup + cosine decay, gradient accumulation and clipping, optional class
weights, a schedule sized in optimizer steps (``min_steps`` / ``max_steps``: enough updates on a
small set, no wasted epochs on a large one), per-parameter learning-rate multipliers (a lower rate
for a pretrained backbone than for its new head), an exponential moving average of the weights
(``ema_decay``, validated and kept instead of the raw weights), mixed precision from the
:class:`~lepton_apps.device.DevicePolicy`, early stopping
on a chosen validation metric, the best weights kept, a checkpoint after every epoch written
atomically, and ``resume=True`` to continue after a crash. Under ``torchrun`` (WORLD_SIZE > 1)
the model is wrapped in DistributedDataParallel with a DistributedSampler and only rank 0
writes files.

Read :meth:`Trainer.fit` top to bottom: that is the whole loop.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
import torch.distributed as dist
from pydantic import Field, model_validator
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from tqdm.auto import tqdm

from lepton_apps.config import LeptonConfig
from lepton_apps.device import DevicePolicy, rng_state, seed_everything, set_rng_state
from lepton_apps.errors import ConfigError, require
from lepton_apps.io import atomic_path, atomic_write_json, atomic_write_text

CHECKPOINTS = "checkpoints"
POINTER = "latest.json"
BEST = "best.safetensors"
METRICS_LOG = "metrics.jsonl"


class TrainConfig(LeptonConfig):
    """Optimisation settings shared by every PyTorch model of the suite."""

    epochs: int = Field(10, ge=1)
    batch_size: int = Field(32, ge=1, description="samples per optimizer micro-step, summed over all processes")
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_fraction: float = Field(0.05, ge=0, lt=1, description="share of optimizer steps with linear warmup")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final lr of the cosine decay, as a share of lr")
    min_steps: int | None = Field(None, ge=1, description="train at least this many optimizer steps (more epochs "
                                                           "than `epochs` on a small set); None = epochs decide")
    max_steps: int | None = Field(None, ge=1, description="train at most this many optimizer steps (the last epoch "
                                                           "may be partial); None = epochs decide")
    lr_mult: dict[str, float] = Field(default_factory=dict,
                                      description="parameter-name prefix -> lr multiplier (longest prefix wins), "
                                                  "e.g. {'backbone': 0.1, 'backbone.classifier': 1.0}")
    ema_decay: float | None = Field(None, gt=0, lt=1, description="keep an exponential moving average of the "
                                                                  "weights (validated, checkpointed and returned)")
    keep: Literal["best", "last"] = Field("best", description="weights returned by fit(): best on `monitor`, or "
                                                               "those of the last epoch")
    grad_accum_steps: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0, description="clip the gradient norm; None = no clipping")
    monitor: str = Field("val_loss", description="metric for early stopping and the best checkpoint")
    mode: Literal["min", "max"] = "min"
    patience: int | None = Field(5, ge=1, description="epochs without improvement before stopping; None = never")
    seed: int = 0
    num_workers: int = Field(0, ge=0)
    device: str = "auto"
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    channels_last: bool | None = None
    compile: bool = False
    resume: bool = False
    progress: bool = True

    @model_validator(mode="after")
    def _monitor_direction(self):
        if self.monitor.endswith("loss") and self.mode == "max":
            raise ValueError(f"monitor={self.monitor!r} is a loss; use mode='min'")
        if self.min_steps and self.max_steps and self.min_steps > self.max_steps:
            raise ValueError(f"min_steps={self.min_steps} is above max_steps={self.max_steps}")
        return self


@dataclasses.dataclass
class TrainResult:
    """What :meth:`Trainer.fit` returns."""

    best_epoch: int
    best_metric: float
    epochs_run: int
    global_step: int
    stopped_early: bool
    history: list[dict[str, float]]
    run_dir: Path
    seconds: float

    @property
    def best_weights(self) -> Path:
        """Path of the best weights (safetensors)."""
        return self.run_dir / BEST


def make_loss(kind: Literal["cross_entropy", "bce", "mse"] = "cross_entropy",
              class_weights: list[float] | torch.Tensor | None = None) -> torch.nn.Module:
    """Return a loss module; ``class_weights`` weigh classes (cross-entropy) or positives (BCE, per label)."""
    w = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
    if kind == "cross_entropy":
        return torch.nn.CrossEntropyLoss(weight=w)
    if kind == "bce":
        return torch.nn.BCEWithLogitsLoss(pos_weight=w)
    if kind == "mse":
        return torch.nn.MSELoss()
    raise ConfigError(f"unknown loss {kind!r}", fix="use one of: cross_entropy, bce, mse")


def balanced_class_weights(labels: np.ndarray, n_classes: int) -> list[float]:
    """Return ``n / (k * count_c)`` per class (sklearn's 'balanced'); absent classes get weight 1."""
    counts = np.bincount(np.asarray(labels, dtype=int), minlength=n_classes).astype(float)
    return [float(len(labels) / (n_classes * c)) if c else 1.0 for c in counts]


def planned_steps(steps_per_epoch: int, epochs: int, min_steps: int | None = None,
                  max_steps: int | None = None) -> tuple[int, int]:
    """Return ``(optimizer steps, epochs)`` of a run: ``epochs`` worth of steps, raised to ``min_steps``
    and capped at ``max_steps``; the epoch count covers the steps (its last epoch may be partial)."""
    total = steps_per_epoch * epochs
    if min_steps:
        total = max(total, min_steps)
    if max_steps:
        total = min(total, max_steps)
    return total, math.ceil(total / max(1, steps_per_epoch))


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float) -> Callable[[int], float]:
    """Return the lr multiplier per step: linear warmup, then cosine decay to ``min_ratio``."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def default_batch_fn(batch: Any) -> tuple[Any, torch.Tensor]:
    """Split a ``(inputs, targets)`` batch; dict batches use the ``labels`` key as targets."""
    if isinstance(batch, dict):
        batch = dict(batch)
        return batch, batch.pop("labels")
    inputs, targets = batch
    return inputs, targets


class Trainer:
    """Trains ``model`` on ``train_data``, validating on ``val_data`` after every epoch.

    loss_fn:    ``loss_fn(outputs, targets) -> scalar``; default cross-entropy.
    metric_fn:  ``metric_fn(outputs: np.ndarray, targets: np.ndarray) -> {name: value}`` on the
                whole validation set; names are logged with a ``val_`` prefix.
    batch_fn:   turns a DataLoader batch into ``(inputs, targets)``; dict inputs are passed as
                keyword arguments, and outputs with a ``.logits`` attribute (transformers) are unwrapped.
    augment_fn: applied to the inputs on the device during training only (batched GPU augmentation).
    callback:   called with a dict after every optimizer step (``{"event": "step", …}``) and epoch
                (``{"event": "epoch", …}``) — for UI progress bars.
    run_dir:    where checkpoints, ``best.safetensors`` and ``metrics.jsonl`` go.
    """

    def __init__(self, model: torch.nn.Module, train_data: Dataset, val_data: Dataset | None,
                 config: TrainConfig, *, run_dir: str | os.PathLike,
                 loss_fn: Callable | None = None, metric_fn: Callable | None = None,
                 batch_fn: Callable = default_batch_fn, augment_fn: Callable | None = None,
                 collate_fn: Callable | None = None, policy: DevicePolicy | None = None,
                 callback: Callable[[dict], None] | None = None):
        self.config = config
        self.run_dir = Path(run_dir)
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world_size > 1
        if config.batch_size % self.world_size:
            raise ConfigError(f"batch_size={config.batch_size} is not divisible by the {self.world_size} processes",
                              fix=f"use a multiple of {self.world_size}")
        if val_data is None and config.monitor.startswith("val_"):
            raise ConfigError(f"monitor={config.monitor!r} needs validation data", fix="pass val_data or monitor='train_loss'")
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() and config.device in ("auto", "cuda") else "gloo"
            dist.init_process_group(backend=backend)
        if self.distributed and torch.cuda.is_available() and config.device in ("auto", "cuda"):
            device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
            torch.cuda.set_device(torch.device(device))
        else:
            device = config.device
        self.policy = policy or DevicePolicy.resolve(device, config.precision, config.channels_last, config.compile)
        seed_everything(config.seed)

        self.model = self.policy.prepare_model(model)
        engine = self.model
        self.ddp = None
        if self.distributed:
            ids = [self.policy.device.index] if self.policy.device.type == "cuda" else None
            engine = self.ddp = torch.nn.parallel.DistributedDataParallel(engine, device_ids=ids)
        self.engine = self.policy.maybe_compile(engine)

        loss_fn = loss_fn or make_loss()
        self.loss_fn = loss_fn.to(self.policy.device) if isinstance(loss_fn, torch.nn.Module) else loss_fn
        self.metric_fn = metric_fn
        self.batch_fn = batch_fn
        self.augment_fn = augment_fn
        self.callback = callback
        self.val_data = val_data

        # Single-process training uses the same sampler as DDP (one replica), so a 2-process
        # run sees exactly the same global batches as a 1-process run with the same seed.
        self.sampler = DistributedSampler(train_data, num_replicas=self.world_size, rank=self.rank,
                                          shuffle=True, seed=config.seed, drop_last=False)
        pin = self.policy.device.type == "cuda"
        self.train_loader = DataLoader(train_data, batch_size=config.batch_size // self.world_size,
                                       sampler=self.sampler, num_workers=config.num_workers,
                                       collate_fn=collate_fn, pin_memory=pin,
                                       persistent_workers=config.num_workers > 0)
        self.val_loader = None
        if val_data is not None:
            shard = Subset(val_data, list(range(self.rank, len(val_data), self.world_size)))
            self.val_loader = DataLoader(shard, batch_size=max(1, config.batch_size // self.world_size) * 2,
                                         shuffle=False, num_workers=config.num_workers, collate_fn=collate_fn,
                                         pin_memory=pin)

        self.steps_per_epoch = math.ceil(len(self.train_loader) / config.grad_accum_steps)
        total, self.epochs = planned_steps(self.steps_per_epoch, config.epochs, config.min_steps, config.max_steps)
        self.total_steps = total
        self.optimizer = torch.optim.AdamW(_param_groups(self.model, config.weight_decay, config.lr, config.lr_mult),
                                           lr=config.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(total, int(config.warmup_fraction * total), config.min_lr_ratio))
        self.scaler = self.policy.grad_scaler()
        self.ema = None
        if config.ema_decay:
            self.ema = copy.deepcopy(self.model).eval()
            for p in self.ema.parameters():
                p.requires_grad_(False)

        # loop state (saved in every checkpoint)
        self.epoch = 0
        self.global_step = 0
        self.best_metric = math.inf if config.mode == "min" else -math.inf
        self.best_epoch = -1
        self.bad_epochs = 0
        self.stopped_early = False
        self.history: list[dict[str, float]] = []

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and shows progress (rank 0)."""
        return self.rank == 0

    # ------------------------------------------------------------------------------------
    def fit(self) -> TrainResult:
        """Train until ``epochs`` or early stopping; return the result with the best weights loaded."""
        cfg = self.config
        start = time.perf_counter()
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        if cfg.resume:
            self._load_checkpoint()
        elif self.is_main and (self.run_dir / CHECKPOINTS / POINTER).exists():
            raise ConfigError(f"{self.run_dir} already holds a training run",
                              fix="pass resume=True to continue it, or choose an empty run folder")
        mlflow = self._start_mlflow()

        while self.epoch < self.epochs and not self.stopped_early and self.global_step < self.total_steps:
            self.sampler.set_epoch(self.epoch)
            train_loss = self._train_one_epoch()
            metrics = {"epoch": self.epoch + 1, "step": self.global_step, "train_loss": train_loss,
                       "lr": self.scheduler.get_last_lr()[0]}
            if self.val_loader is not None:
                metrics.update(self._validate())
            if cfg.monitor not in metrics:
                raise ConfigError(f"monitor={cfg.monitor!r} is not among the computed metrics",
                                  fix=f"choose one of: {', '.join(k for k in metrics if k not in ('epoch', 'step', 'lr'))}")
            value = float(metrics[cfg.monitor])
            improved = value < self.best_metric if cfg.mode == "min" else value > self.best_metric
            if improved:
                self.best_metric, self.best_epoch, self.bad_epochs = value, self.epoch, 0
                if self.is_main:
                    self._save_weights(self.run_dir / BEST)
            else:
                self.bad_epochs += 1
            self.history.append(metrics)
            self.epoch += 1
            self.stopped_early = cfg.patience is not None and self.bad_epochs >= cfg.patience
            if self.is_main:
                with open(self.run_dir / METRICS_LOG, "a", encoding="utf-8") as fh:
                    fh.write(json.dumps(metrics) + "\n")
                self._save_checkpoint()
                if mlflow:
                    mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k not in ("epoch", "step")},
                                       step=self.epoch)
                if cfg.progress:
                    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k not in ("epoch", "step", "lr"))
                    tqdm.write(f"epoch {self.epoch}/{self.epochs}: {shown}{'  (best)' if improved else ''}")
            if self.callback:
                self.callback({"event": "epoch", "epoch": self.epoch, "epochs": self.epochs, "metrics": metrics})

        if self.distributed:
            dist.barrier()
        if cfg.keep == "best" and (self.run_dir / BEST).exists():
            from safetensors.torch import load_file

            self.model.load_state_dict(load_file(str(self.run_dir / BEST), device=str(self.policy.device)))
        elif self.ema is not None:
            self.model.load_state_dict(self.ema.state_dict())
        if mlflow:
            mlflow.end_run()
        return TrainResult(best_epoch=self.best_epoch + 1, best_metric=self.best_metric, epochs_run=self.epoch,
                           global_step=self.global_step, stopped_early=self.stopped_early, history=self.history,
                           run_dir=self.run_dir, seconds=time.perf_counter() - start)

    def _train_one_epoch(self) -> float:
        cfg = self.config
        self.engine.train()
        n_batches = len(self.train_loader)
        total_loss = torch.zeros((), device=self.policy.device)
        seen = 0
        bar = tqdm(total=n_batches, desc=f"epoch {self.epoch + 1}/{self.epochs}", leave=False,
                   disable=not (cfg.progress and self.is_main), dynamic_ncols=True)
        self.optimizer.zero_grad(set_to_none=True)
        for i, batch in enumerate(self.train_loader):
            group_start = (i // cfg.grad_accum_steps) * cfg.grad_accum_steps
            group_size = min(cfg.grad_accum_steps, n_batches - group_start)
            last_in_group = i == group_start + group_size - 1
            inputs, targets = self.batch_fn(batch)
            inputs, targets = self.policy.to_device(inputs), self.policy.to_device(targets)
            if self.augment_fn is not None:
                inputs = self.augment_fn(inputs)
            sync = self.ddp.no_sync() if (self.ddp is not None and not last_in_group) else contextlib.nullcontext()
            with sync:
                with self.policy.autocast():
                    loss = self.loss_fn(_forward(self.engine, inputs), targets)
                self.scaler.scale(loss / group_size).backward()
            total_loss += loss.detach().float()
            seen += 1
            if last_in_group:
                if cfg.max_grad_norm is not None:
                    self.scaler.unscale_(self.optimizer)
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
                self.scaler.step(self.optimizer)
                self.scaler.update()
                self.optimizer.zero_grad(set_to_none=True)
                self.scheduler.step()
                self.global_step += 1
                if self.ema is not None:
                    self._update_ema()
                if self.callback:
                    self.callback({"event": "step", "epoch": self.epoch, "step": self.global_step,
                                   "total_steps": self.total_steps, "loss": loss.item()})
            bar.update(1)
            if i % 10 == 0 or i == n_batches - 1:
                bar.set_postfix(loss=f"{(total_loss / seen).item():.4f}", best=f"{self.best_metric:.4g}")
            if last_in_group and self.global_step >= self.total_steps:
                break  # the step budget ends inside this epoch
        bar.close()
        mean = total_loss / max(1, seen)
        if self.distributed:
            dist.all_reduce(mean)
            mean /= self.world_size
        return float(mean)

    @torch.no_grad()
    def _update_ema(self) -> None:
        """Move the averaged weights toward the current ones; the decay warms up so early steps count."""
        decay = min(self.config.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        for avg, cur in zip(self.ema.state_dict().values(), self.model.state_dict().values()):
            if avg.dtype.is_floating_point:
                avg.lerp_(cur.detach(), 1 - decay)
            else:
                avg.copy_(cur)

    @torch.inference_mode()
    def _validate(self) -> dict[str, float]:
        """Return ``val_loss`` and ``val_<metric>`` over the whole validation set (gathered across ranks)."""
        self.engine.eval()
        net = self.ema if self.ema is not None else self.engine
        outs, tgts = [], []
        for batch in self.val_loader:
            inputs, targets = self.batch_fn(batch)
            with self.policy.autocast():
                out = _forward(net, self.policy.to_device(inputs))
            outs.append(out.float().cpu())
            tgts.append(torch.as_tensor(targets).cpu())
        outputs = torch.cat(outs) if outs else torch.empty(0)
        targets = torch.cat(tgts) if tgts else torch.empty(0)
        if self.distributed:
            gathered: list[Any] = [None] * self.world_size
            dist.all_gather_object(gathered, (outputs, targets))
            outputs, targets = _interleave([g[0] for g in gathered]), _interleave([g[1] for g in gathered])
        loss_fn = self.loss_fn.cpu() if isinstance(self.loss_fn, torch.nn.Module) else self.loss_fn
        metrics = {"val_loss": float(loss_fn(outputs, targets))}
        if isinstance(self.loss_fn, torch.nn.Module):
            self.loss_fn.to(self.policy.device)
        if self.metric_fn is not None:
            for k, v in self.metric_fn(outputs.numpy(), targets.numpy()).items():
                metrics[f"val_{k}"] = float(v)
        return metrics

    # -- persistence ------------------------------------------------------------------------
    def _save_weights(self, path: Path, model: torch.nn.Module | None = None) -> None:
        """Write ``model``'s weights (default: the averaged ones when EMA is on, else the model's)."""
        from safetensors.torch import save_file

        model = model or (self.ema if self.ema is not None else self.model)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp))

    def _save_checkpoint(self) -> None:
        """Write ``checkpoints/epoch-NNNN/`` (new name, then rename) and point ``latest.json`` at it."""
        ckpt_root = self.run_dir / CHECKPOINTS
        name = f"epoch-{self.epoch:04d}"
        tmp = ckpt_root / f".{name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        self._save_weights(tmp / "model.safetensors", self.model)
        if self.ema is not None:
            self._save_weights(tmp / "ema.safetensors", self.ema)
        torch.save({
            "epoch": self.epoch, "global_step": self.global_step, "best_metric": self.best_metric,
            "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs, "stopped_early": self.stopped_early,
            "history": json.dumps(self.history),
            "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng_state(),
            "config": self.config.model_dump_json(),
        }, tmp / "state.pt")
        final = ckpt_root / name
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        atomic_write_json(ckpt_root / POINTER, {"epoch": self.epoch, "dir": name})
        for old in ckpt_root.glob("epoch-*"):
            if old.name != name:
                shutil.rmtree(old, ignore_errors=True)

    def _load_checkpoint(self) -> None:
        """Restore the state of the last finished epoch, if there is one (else start fresh)."""
        pointer = self.run_dir / CHECKPOINTS / POINTER
        if not pointer.exists():
            return
        from safetensors.torch import load_file

        ckpt = self.run_dir / CHECKPOINTS / json.loads(pointer.read_text())["dir"]
        self.model.load_state_dict(load_file(str(ckpt / "model.safetensors"), device=str(self.policy.device)))
        if self.ema is not None:  # a checkpoint written without EMA starts the average from its weights
            ema_file = ckpt / "ema.safetensors" if (ckpt / "ema.safetensors").exists() else ckpt / "model.safetensors"
            self.ema.load_state_dict(load_file(str(ema_file), device=str(self.policy.device)))
        # weights_only=True: the checkpoint holds tensors and plain Python values only, no pickled code.
        state = torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        self.epoch, self.global_step = state["epoch"], state["global_step"]
        self.best_metric, self.best_epoch, self.bad_epochs = state["best_metric"], state["best_epoch"], state["bad_epochs"]
        self.stopped_early = state["stopped_early"]
        self.history = json.loads(state["history"])
        if self.is_main:
            # Drop log lines of the epoch that was running when the process died.
            log = self.run_dir / METRICS_LOG
            if log.exists():
                kept = [ln for ln in log.read_text().splitlines() if ln and json.loads(ln)["epoch"] <= self.epoch]
                atomic_write_text(log, "".join(ln + "\n" for ln in kept))
            if self.config.progress:
                tqdm.write(f"resuming {self.run_dir} after epoch {self.epoch} (step {self.global_step})")

    def _start_mlflow(self):
        if not (self.is_main and os.environ.get("MLFLOW_TRACKING_URI")):
            return None
        mlflow = require("mlflow", feature="MLflow logging (MLFLOW_TRACKING_URI is set)", extra="mlflow")
        mlflow.start_run(run_name=self.run_dir.name)
        mlflow.log_params(self.config.model_dump(mode="json"))
        return mlflow


def _forward(engine: torch.nn.Module, inputs: Any) -> torch.Tensor:
    out = engine(**inputs) if isinstance(inputs, dict) else engine(inputs)
    return out.logits if hasattr(out, "logits") else out


def _interleave(parts: list[torch.Tensor]) -> torch.Tensor:
    """Undo ``rank::world`` sharding: element i of the result came from part i % world."""
    world = len(parts)
    total = sum(len(p) for p in parts)
    out = torch.empty((total, *parts[0].shape[1:]), dtype=parts[0].dtype)
    for r, p in enumerate(parts):
        out[r::world] = p
    return out


def lr_multiplier(name: str, lr_mult: dict[str, float]) -> float:
    """Return the lr multiplier of parameter ``name``: that of the longest matching prefix in ``lr_mult``, else 1."""
    best, mult = -1, 1.0
    for prefix, m in lr_mult.items():
        if (name == prefix or name.startswith(prefix.rstrip(".") + ".")) and len(prefix) > best:
            best, mult = len(prefix), float(m)
    return mult


def _param_groups(model: torch.nn.Module, weight_decay: float, lr: float | None = None,
                  lr_mult: dict[str, float] | None = None) -> list[dict]:
    """Return AdamW parameter groups: no weight decay on biases and norm weights (1-D parameters), as is
    standard, and one group per lr multiplier of ``lr_mult`` (group ``lr`` = ``lr`` x multiplier)."""
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            mult = lr_multiplier(name, lr_mult or {})
            groups.setdefault((mult, p.ndim >= 2), []).append(p)
    if not lr_mult:  # the historical two groups, in their historical order
        groups = {(1.0, True): groups.get((1.0, True), []), (1.0, False): groups.get((1.0, False), [])}
    out = []
    for (mult, decays), params in sorted(groups.items(), key=lambda kv: (-kv[0][0], not kv[0][1])):
        group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
        if lr is not None:
            group["lr"] = lr * mult
        out.append(group)
    return out
