"""Monitoring benchmark (issue 12 item 8): the drift report's wall time and peak memory on this machine.

1. Tabular: a reference of 200,000 rows and a current window of ``--rows`` (default 1,000,000) × 30
   finance-like features (amounts, counts, rates, two categorical columns; half the columns shifted), through
   ``lepton_apps.monitor.compare`` — against a plain pandas / scipy loop computing the same large-window
   statistics (PSI on the reference's quantile bins, the Wasserstein distance in reference standard
   deviations, Jensen–Shannon on the categories).
2. Embeddings: ``--images`` (default 10,000) image embeddings of 1,280 dimensions (EfficientNet-Lite0's
   size) against a 1,000-row reference sample: the domain-classifier AUC and MMD of ``compare`` — against a
   plain scikit-learn loop (cross-validated logistic regression AUC on the same samples).

Each measurement runs in a child process of its own, so its peak RSS is its own.

    .venv/bin/python bench/monitor_bench.py [--rows 1000000] [--images 10000] [--json out.json]
        [--evidently-python /tmp/evvenv/bin/python]   # also Evidently's DataDriftPreset, from a venv of its own
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 28, 2


def table(n: int, seed: int, shift: bool) -> pd.DataFrame:
    """Return ``n`` rows of 30 finance-like features (half the numeric ones shifted when ``shift``)."""
    rng = np.random.default_rng(seed)
    cols = {}
    for j in range(N_NUMERIC):
        kind = j % 3
        moved = shift and j % 2 == 0
        if kind == 0:
            cols[f"amount_{j}"] = rng.lognormal(3.5 + (0.3 if moved else 0.0), 1.0, n)
        elif kind == 1:
            cols[f"count_{j}"] = rng.poisson(4 + (2 if moved else 0), n).astype(float)
        else:
            cols[f"rate_{j}"] = rng.beta(2, 20 - (8 if moved else 0), n)
    cats = np.array([f"mcc_{i}" for i in range(40)])
    p = np.linspace(1, 3, 40)
    p /= p.sum()
    for j in range(N_CATEGORICAL):
        cols[f"category_{j}"] = rng.choice(cats, n, p=p)
    return pd.DataFrame(cols)


def plain_tabular(ref: pd.DataFrame, cur: pd.DataFrame) -> dict:
    """The same large-window statistics in a plain pandas / scipy loop."""
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    out = {}
    for c in ref.columns:
        if not pd.api.types.is_numeric_dtype(ref[c]):
            keys = sorted(set(ref[c]) | set(cur[c]))
            a = ref[c].value_counts().reindex(keys, fill_value=0).to_numpy(float)
            b = cur[c].value_counts().reindex(keys, fill_value=0).to_numpy(float)
            out[c] = {"js": float(jensenshannon(a / a.sum(), b / b.sum(), base=2))}
            continue
        r, x = ref[c].to_numpy(float), cur[c].to_numpy(float)
        edges = np.unique(np.quantile(r, np.linspace(0, 1, 11)))
        edges[0], edges[-1] = -np.inf, np.inf
        e = np.histogram(r, edges)[0] / len(r)
        a = np.histogram(x, edges)[0] / len(x)
        e, a = np.clip(e, 1e-4, None), np.clip(a, 1e-4, None)
        out[c] = {"psi": float(np.sum((a - e) * np.log(a / e))),
                  "wasserstein_std": float(wasserstein_distance(r, x) / (r.std() or 1.0))}
    return out


def run_one(what: str, rows: int, images: int) -> dict:
    """Run one measurement in this process; return seconds, peak RSS and a digest of the answer."""
    from lepton_apps.monitor import build_profile, compare

    if what.startswith("tabular"):
        ref, cur = table(200_000, 0, False), table(rows, 1, True)
        numeric = [c for c in ref.columns if not c.startswith("category")]
        t0 = time.perf_counter()
        if what == "tabular-template":
            prof = build_profile(ref, numeric=numeric, categorical=[c for c in ref.columns if c.startswith("category")])
            report = compare(prof, cur)
            answer = {"status": report.status, "drifted": sum(r["status"] == "drift" for r in report.features)}
        else:
            stats = plain_tabular(ref, cur)
            answer = {"drifted": sum(1 for s in stats.values() if s.get("psi", 0) >= 0.25 or
                                     s.get("wasserstein_std", 0) >= 0.3 or s.get("js", 0) >= 0.25)}
    else:
        rng = np.random.default_rng(0)
        ref = rng.normal(size=(1000, 1280)).astype(np.float32)
        cur = rng.normal(size=(images, 1280)).astype(np.float32)
        cur[:, :64] += 0.25
        t0 = time.perf_counter()
        if what == "embeddings-template":
            prof = build_profile(embeddings=ref)
            report = compare(prof, current_embeddings=cur)
            answer = {"status": report.status, "auc": report.embeddings.get("auc") if report.embeddings else None}
        else:
            from sklearn.linear_model import LogisticRegression
            from sklearn.model_selection import cross_val_score

            pick = rng.choice(images, 1000, replace=False)
            x = np.vstack([ref, cur[pick]])
            y = np.r_[np.zeros(len(ref)), np.ones(1000)]
            answer = {"auc": float(cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=5,
                                                   scoring="roc_auc").mean())}
    seconds = time.perf_counter() - t0
    return {"what": what, "seconds": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1), "answer": answer}


def run_evidently(rows: int) -> dict:
    """Evidently's own data-drift report on the same tabular data (run under an interpreter that has it)."""
    import evidently
    from evidently import Report
    from evidently.presets import DataDriftPreset

    ref, cur = table(200_000, 0, False), table(rows, 1, True)
    t0 = time.perf_counter()
    result = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
    seconds = time.perf_counter() - t0
    text = json.dumps(result.dict(), default=str)
    return {"what": f"tabular-evidently-{evidently.__version__}", "seconds": round(seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "answer": {"report_bytes": len(text)}}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--_one":
        print(json.dumps(run_one(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if argv and argv[0] == "--_evidently":
        print(json.dumps(run_evidently(int(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--evidently-python", help="A Python that has evidently installed (kept out of the project's "
                                               "venv: its dependencies are large); also time its DataDriftPreset.")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    results = []
    runs = [[sys.executable, __file__, "--_one", what, str(args.rows), str(args.images)]
            for what in ("tabular-template", "tabular-plain", "embeddings-template", "embeddings-plain")]
    if args.evidently_python:
        runs.insert(2, [args.evidently_python, __file__, "--_evidently", str(args.rows)])
    for cmd in runs:
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    by = {r["what"]: r for r in results}
    print("| report | wall s | peak RSS MB | answer |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['what']} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {json.dumps(r['answer'])} |")
    for kind in ("tabular", "embeddings"):
        print(f"{kind}: template / plain loop wall time = "
              f"{by[f'{kind}-template']['seconds'] / by[f'{kind}-plain']['seconds']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
