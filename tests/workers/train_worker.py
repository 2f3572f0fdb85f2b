"""Trains a tiny MLP with the core Trainer; used by the kill/resume and DDP tests.

usage: train_worker.py RUN_DIR [--resume] [--step-delay SECONDS] [--epochs N]
Prints one JSON line with the result on success.
"""
import argparse
import json
import time

import numpy as np
import torch
from torch.utils.data import TensorDataset

from lepton_apps.training import Trainer, TrainConfig


def make_data(n=256, seed=0):
    w = torch.randn(8, 3, generator=torch.Generator().manual_seed(123))
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 8, generator=g)
    y = (x @ w + 0.5 * torch.randn(n, 3, generator=g)).argmax(1)
    return TensorDataset(x, y)


def accuracy(outputs, targets):
    return {"acc": float((outputs.argmax(1) == targets).mean())}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--step-delay", type=float, default=0.0)
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--dropout", type=float, default=0.1)
    ap.add_argument("--accum", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(args.dropout),
                                torch.nn.Linear(32, 3))
    cfg = TrainConfig(epochs=args.epochs, batch_size=32, lr=3e-2, monitor="val_acc", mode="max", patience=None,
                      seed=7, resume=args.resume, progress=False, device="cpu", grad_accum_steps=args.accum)

    def slow(event):
        if event["event"] == "step" and args.step_delay:
            time.sleep(args.step_delay)

    trainer = Trainer(model, make_data(256, 0), make_data(128, 1), cfg, run_dir=args.run_dir,
                      metric_fn=accuracy, callback=slow)
    result = trainer.fit()
    if trainer.is_main:
        last = result.history[-1]
        print(json.dumps({"global_step": result.global_step, "epochs_run": result.epochs_run,
                          "val_loss": last["val_loss"], "val_acc": last["val_acc"], "train_loss": last["train_loss"],
                          "best_epoch": result.best_epoch,
                          "weights": {k: v.tolist() for k, v in trainer.model.state_dict().items()}}))


if __name__ == "__main__":
    main()
