"""Robustness of the fraud template's defaults: its default ``train`` against a plain LightGBM.

For each data set, size and seed, the template's default ``train`` (``FraudConfig`` defaults) and a
plain ``lightgbm.LGBMClassifier()`` on the raw table columns (as a user would do it) are trained on
the same training rows and scored on the same held-out test rows — the template's own split (see
``finance_quality.template_vs_plain``). Metrics: AUC-PR (average precision) and ROC-AUC.

* ``ulb_subset``: ``<data_root>/fraud/creditcard_ulb_all_frauds_subset.csv`` (1,722 rows, 28.6 %
  fraud, no customer / terminal ids, 2 days of ``Time``: the template falls back to a time-ordered
  60/20/20 split). Sizes 500 and 1,000 rows (a stratified subsample drawn with the seed) and all rows.
* ``simulator``: the template's own demo simulator (``apps/finance/demo.py``) at the demo size
  (1,000 customers, 2,000 terminals, 60 days), simulated with the seed; time-based split.

The seed is the subsample / simulation seed and the model seed of both sides.

    .venv/bin/python bench/robust_finance.py [--quick] [--seeds 0,1,2] [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from finance_quality import template_vs_plain  # noqa: E402

from lepton_apps import metrics as M  # noqa: E402

DOMAIN = "finance"
ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"
ULB_FILE = Path("fraud") / "creditcard_ulb_all_frauds_subset.csv"
ULB_SIZES = (500, 1000, "all")
ULB_SIZES_QUICK = (500, "all")
SIMULATOR = {"n_customers": 1000, "n_terminals": 2000, "n_days": 60}  # the demo size (demo.DEMO_SIZE)
SIMULATOR_QUICK = {"n_customers": 400, "n_terminals": 800, "n_days": 30}


def say(text: str) -> None:
    """Print a progress line to stderr."""
    print(f"[robust_finance] {text}", file=sys.stderr, flush=True)


def stratified_subsample(df: pd.DataFrame, label: str, size: int, seed: int) -> pd.DataFrame:
    """Return ``size`` rows of ``df`` with its label rate (stratified, drawn with ``seed``), in file order."""
    from sklearn.model_selection import train_test_split

    if size >= len(df):
        return df.reset_index(drop=True)
    keep, _ = train_test_split(np.arange(len(df)), train_size=size, stratify=df[label].to_numpy(), random_state=seed)
    return df.iloc[np.sort(keep)].reset_index(drop=True)


def compare(df: pd.DataFrame, dataset: str, size, seed: int, tmp: Path) -> list[dict]:
    """Return the default and baseline rows of one (data set, size, seed)."""
    r = template_vs_plain(df, tmp / f"{dataset}-{size}-{seed}", seed=seed, data=dataset)
    y = r["y_test"]
    common = {"domain": DOMAIN, "dataset": dataset, "size": size, "seed": seed, "rows": int(len(df)),
              "test_rows": int(len(y)), "test_frauds": int(y.sum()), "split": r["report"]["split"]["kind"]}
    rows = []
    for method, scores, seconds in (("default", r["template"], r["template_seconds"]),
                                    ("baseline", r["plain"], r["plain_seconds"])):
        rows.append({**common, "method": method, "seconds": round(float(seconds), 3),
                     "pr_auc": float(M.pr_auc(y, scores)), "roc_auc": float(M.roc_auc(y, scores))})
    d, b = rows
    say(f"{dataset} size={size} seed={seed}: AUC-PR {d['pr_auc']:.4f} vs {b['pr_auc']:.4f}, "
        f"ROC-AUC {d['roc_auc']:.4f} vs {b['roc_auc']:.4f} (default vs baseline; {d['seconds']:.1f}s vs "
        f"{b['seconds']:.1f}s)")
    return rows


def run(quick: bool, seeds: list[int], data_root: Path) -> list[dict]:
    """Return one row per (data set, size, method, seed); see the module docstring."""
    from lepton_apps.finance.data import read_table
    from lepton_apps.finance.demo import simulate_transactions

    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        ulb = Path(data_root) / ULB_FILE
        if ulb.is_file():
            table = read_table(ulb)
            for size in ULB_SIZES_QUICK if quick else ULB_SIZES:
                n = len(table) if size == "all" else int(size)
                for seed in seeds:
                    df = stratified_subsample(table, "Class", n, seed)
                    rows += compare(df, "ulb_subset", size, seed, Path(tmp))
        else:
            say(f"skipping ulb_subset: {ulb} is missing")
        sim = SIMULATOR_QUICK if quick else SIMULATOR
        size = f"{sim['n_customers']} customers, {sim['n_days']} days"
        for seed in seeds:
            df = simulate_transactions(**sim, seed=seed).drop(columns=["scenario"])
            rows += compare(df, "simulator", size, seed, Path(tmp))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="seed 0 only and fewer sizes")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2; --quick: 0)")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT)
    args = ap.parse_args(argv)
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    rows = run(args.quick, seeds, args.data_root)
    from robustness import markdown_table

    print(json.dumps(rows, indent=1))
    print(markdown_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
