"""Benchmarks of the shared core against the plain-library way of doing the same work.

    .venv/bin/python bench/bench_core.py            # prints a Markdown table, writes bench/results/core.json

Each line compares the core (with its guarantees: checkpoints, atomic parts, checksums) to a
peer measured in the same run on the same machine, and reports the ratio — never an absolute
timing on its own.
"""
from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, TensorDataset

from lepton_apps.batch import run_batch
from lepton_apps.bundle import BundleWriter, load_bundle
from lepton_apps.training import Trainer, TrainConfig

RESULTS = Path(__file__).parent / "results"


def best_of(fn, repeats=3):
    """Return the fastest wall time of ``repeats`` calls (seconds)."""
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def small_cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(16, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(32, 2))


def bench_trainer(n=4096, epochs=2, batch=64):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(n, 1, 28, 28, generator=g), torch.randint(0, 2, (n,), generator=g))

    def plain():
        model = small_cnn()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loader = DataLoader(data, batch_size=batch, shuffle=True)
        for _ in range(epochs):
            for x, y in loader:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

    def core():
        with tempfile.TemporaryDirectory() as d:
            # same work as the plain loop (no clipping); the Trainer still schedules, logs and checkpoints
            cfg = TrainConfig(epochs=epochs, batch_size=batch, lr=1e-3, monitor="train_loss", patience=None,
                              max_grad_norm=None, progress=False, device="cpu")
            Trainer(small_cnn(), data, None, cfg, run_dir=d).fit()

    t_plain, t_core = best_of(plain), best_of(core)
    return {"name": f"Trainer vs plain PyTorch loop (small CNN, {n}×28×28, {epochs} epochs, CPU)",
            "peer_s": t_plain, "core_s": t_core, "unit": "samples/s",
            "peer_rate": n * epochs / t_plain, "core_rate": n * epochs / t_core}


def bench_batch(n=1_000_000, chunk=100_000):
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        rng = np.random.default_rng(0)
        pd.DataFrame({"id": np.arange(n), "amount": rng.gamma(2, 50, n), "x": rng.normal(size=n)}).to_parquet(
            d / "in.parquet", index=False)

        def score(df):
            z = 0.01 * df["amount"].to_numpy() + df["x"].to_numpy()
            return pd.DataFrame({"score": 1 / (1 + np.exp(-z))}, index=df.index)

        def plain():
            df = pd.read_parquet(d / "in.parquet")
            out = score(df)
            out.insert(0, "id", df["id"])
            out.to_parquet(d / "plain.parquet", index=False)

        def core():
            run_batch(d / "in.parquet", d / "core.parquet", score, id_column="id", chunk_size=chunk,
                      resume=False, progress=False)

        t_plain, t_core = best_of(plain), best_of(core)
        assert len(pd.read_parquet(d / "core.parquet")) == n
    return {"name": f"run_batch vs one-shot pandas (Parquet, {n:,} rows, chunks of {chunk:,})",
            "peer_s": t_plain, "core_s": t_core, "unit": "rows/s", "peer_rate": n / t_plain, "core_rate": n / t_core}


def bench_bundle_load(n_params=11_000_000):
    from safetensors.torch import load_file, save_file

    state = {"w": torch.randn(n_params)}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        save_file(state, str(d / "plain.safetensors"))
        with BundleWriter(d / "bundle", domain="medical", task="binary") as w:
            w.save_torch("model.safetensors", state)
        # safetensors maps the file lazily; touching every tensor makes the peer read the bytes once too
        t_plain = best_of(lambda: [v.sum() for v in load_file(str(d / "plain.safetensors")).values()])
        t_core = best_of(lambda: [v.sum() for v in load_bundle(d / "bundle").load_torch().values()])
    mb = n_params * 4 / 1e6
    return {"name": f"load_bundle (sha256 of every file verified) vs bare safetensors load, tensors read "
                    f"({mb:.0f} MB of weights)",
            "peer_s": t_plain, "core_s": t_core, "unit": "MB/s", "peer_rate": mb / t_plain, "core_rate": mb / t_core}


def main():
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = [bench_trainer(), bench_batch(), bench_bundle_load()]
    env = {"python": platform.python_version(), "torch": torch.__version__, "cpu_threads": torch.get_num_threads(),
           "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "core.json").write_text(json.dumps({"env": env, "rows": rows}, indent=2))
    print(f"env: {env}")
    print("| benchmark | peer | Lepton core | core / peer time |")
    print("|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['peer_rate']:,.0f} {r['unit']} | {r['core_rate']:,.0f} {r['unit']} "
              f"| {r['core_s'] / r['peer_s']:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
