"""Fraud template quality benchmark (not a test).

1. Real data: ../shared/data/fraud/creditcard_ulb_all_frauds_subset.csv (ULB card fraud, a
   1,722-row subset with a 28.6 % fraud rate, no customer / terminal ids, 2 days of 'Time').
   The template (``lepton-apps finance train``) against a plain LightGBM with default parameters
   (``LGBMClassifier()``, all columns) trained on the same time-ordered training rows and scored
   on the same test rows. ROC-AUC and AUC-PR with 95 % bootstrap intervals.
2. The demo simulator at the Fraud Detection Handbook's size (5,000 customers, 10,000 terminals)
   and split (train 2018-07-25..07-31, 7-day delay, test 2018-08-08..08-14) against the
   Handbook's published XGBoost figures on its own simulated data (ROC-AUC 0.869, AP 0.687,
   Card Precision@100 0.303).

    .venv/bin/python bench/finance_quality.py [--data ../shared/data/fraud/...csv] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from lepton_apps import metrics as M
from lepton_apps.finance.data import read_table
from lepton_apps.finance.demo import simulate_transactions
from lepton_apps.finance.config import FraudConfig
from lepton_apps.finance.training import train

ROOT = Path(__file__).resolve().parents[1]
ULB = ROOT.parent / "shared" / "data" / "fraud" / "creditcard_ulb_all_frauds_subset.csv"
HANDBOOK = {"roc_auc": 0.869, "pr_auc": 0.687, "card_precision_at_k": 0.303}


def with_ci(y, s) -> dict:
    out = {}
    for name, fn in (("roc_auc", M.roc_auc), ("pr_auc", M.pr_auc)):
        point, lo, hi = M.bootstrap_ci(fn, y, s, n_boot=1000, seed=0, stratify=y)
        out[name] = {"value": round(point, 4), "ci95": [round(lo, 4), round(hi, 4)]}
    return out


def plain_columns(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """Return the raw table as a user would hand it to LightGBM: every column but the label and the
    template's ignored ones (a leading CSV index, the simulator's scenario), datetimes as epoch
    seconds, text as pandas categories."""
    from lepton_apps.finance.data import IGNORED_BY_DEFAULT

    out = df[[c for c in df.columns if c != label and str(c) not in IGNORED_BY_DEFAULT]].copy()
    for c in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[c]):
            out[c] = out[c].astype("datetime64[ns]").astype("int64") // 1_000_000_000
        elif not pd.api.types.is_numeric_dtype(out[c]) or pd.api.types.is_bool_dtype(out[c]):
            out[c] = out[c].astype("string").astype("category")
    return out


def template_vs_plain(df: pd.DataFrame, out: Path, *, seed: int = 0, **config) -> dict:
    """Train the template (``FraudConfig`` defaults plus ``config``, model seed ``seed``) and a plain
    ``LGBMClassifier(random_state=seed)`` on the raw columns, fitted on the template's training rows
    (fit + validation); return the labels and both scores on the template's test rows, the
    template's report and both training times."""
    import lightgbm as lgb

    from lepton_apps.finance.training import choose_split, prepare

    df = df.reset_index(drop=True)
    cfg = FraudConfig(data=config.pop("data", "table"), out=str(out), seed=seed, **config)
    started = time.perf_counter()
    bundle = train(cfg, frame=df)
    seconds = time.perf_counter() - started
    report = json.loads((bundle / "report.json").read_text())
    evals = pd.read_parquet(bundle / "eval_scores.parquet")
    test = evals[evals.split == "test"]
    # the same split for the peer: the template's own split of the same rows
    v, valid, stream = prepare(df, cfg)
    assert len(valid) == len(df), "every row must be valid (the template would leave invalid rows out)"
    split, _ = choose_split(cfg, stream, stream.label.astype(int))
    label = v.roles["label"]
    x = plain_columns(df, label)
    train_rows = np.r_[split.fit, split.val]
    started = time.perf_counter()
    peer = lgb.LGBMClassifier(random_state=seed, verbose=-1, n_jobs=1)
    peer.fit(x.iloc[train_rows], v.labels[train_rows])
    peer_seconds = time.perf_counter() - started
    y_test = v.labels[split.test].astype(int)
    assert np.array_equal(y_test, test["label"].to_numpy()), "template and peer test rows differ"
    return {"y_test": y_test, "template": test["score"].to_numpy(),
            "plain": peer.predict_proba(x.iloc[split.test])[:, 1], "report": report,
            "template_seconds": seconds, "plain_seconds": peer_seconds}


def ulb(path: Path, tmp: Path) -> dict:
    df = read_table(path)
    r = template_vs_plain(df, tmp / "ulb", data=str(path), threads=1)
    report, y_test = r["report"], r["y_test"]
    return {"rows": len(df), "test_rows": int(len(y_test)), "test_frauds": int(y_test.sum()),
            "split": report["split"]["description"], "features_built": report["features_built"],
            "features_not_built": report["features_not_built"], "train_seconds": round(r["template_seconds"], 1),
            "template": with_ci(y_test, r["template"]),
            "plain_lightgbm_default": with_ci(y_test, r["plain"]),
            "template_imbalance": report["model_choice"]["imbalance"], "device": report["device"]}


def handbook(tmp: Path) -> dict:
    sim = simulate_transactions(5000, 10000, 183, seed=0)
    sim = sim[sim.timestamp < "2018-08-15"].drop(columns=["scenario"])
    out = {"simulated_rows": len(sim), "fraud_rate": round(float(sim.label.mean()), 4)}
    for name, train_days in (("train_7_days", 7), ("train_9_days", 9)):
        started = time.perf_counter()
        bundle = train(FraudConfig(data="simulated", out=str(tmp / name), train_days=train_days, test_days=7,
                                   label_delay_days=7), frame=sim)
        report = json.loads((bundle / "report.json").read_text())
        t = report["test"]
        out[name] = {"split": report["split"]["description"], "roc_auc": round(t["roc_auc"], 4),
                     "pr_auc": round(t["pr_auc"], 4), "card_precision_at_k": round(t["card_precision_at_k"], 4),
                     "imbalance": report["model_choice"]["imbalance"], "seconds": round(time.perf_counter() - started, 1)}
    out["handbook_xgboost_published"] = HANDBOOK
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=ULB)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.data.is_file():
            results["ulb_subset"] = ulb(args.data, Path(tmp))
        else:
            print(f"skipping the real-data part: {args.data} is missing", file=sys.stderr)
        results["simulator_vs_handbook"] = handbook(Path(tmp))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
