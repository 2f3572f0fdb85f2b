"""Monitoring benchmark (issue 12 item 8): the drift report's wall time and peak memory on this machine.

1. Tabular: a reference of 200,000 rows and a current window of ``--rows`` (default 1,000,000) × 30
   finance-like features (amounts, counts, rates, two categorical columns; half the columns shifted), through
   ``lepton_apps.monitor.compare`` — against a plain pandas / scipy loop computing the same large-window
   statistics (PSI on the reference's quantile bins, the Wasserstein distance in reference standard
   deviations, Jensen–Shannon on the categories).
2. Embeddings: ``--images`` (default 10,000) image embeddings of 1,280 dimensions (EfficientNet-Lite0's
   size) against a 1,000-row reference sample: the domain-classifier AUC and MMD of ``compare`` — against a
   plain scikit-learn loop (cross-validated logistic regression AUC on the same samples).

3. Stored samples: the same ``--rows`` × 30 window stored in the service database as ``serve
   --monitor-sample`` stores it (``Store.add_monitor_sample``, ``--rows-per-sample`` rows a predict request,
   SQLite), read back with ``Store.monitor_window`` and compared — what ``monitor report`` / ``check`` do —
   against the plain way (one DataFrame per stored sample, ``pd.concat``, the plain loop of 1).
4. Real image embeddings (``--medical-data``, default ``../shared/data/medical``): a medical bundle trained with
   the template's defaults on 500 PneumoniaMNIST images (or ``--medical-bundle``) embeds ``--images`` real chest
   X-rays — every PneumoniaMNIST image, then Kermany JPEGs (the same hospital's originals at full size) — with
   ``monitor_window``; the bundle's own profile (its validation embeddings) is the reference. Times the
   extraction, then the embedding drift of ``compare`` against the plain scikit-learn loop; also the report on
   the PneumoniaMNIST test split alone (same distribution: should be ok) and the false alarms of the whole report
   (image statistics, probabilities, embeddings) over 20 disjoint windows of 200 training images the model never
   saw.

Each measurement runs in a child process of its own, so its peak RSS is its own.

    .venv/bin/python bench/monitor_bench.py [--rows 1000000] [--images 10000] [--json out.json]
        [--evidently-python /tmp/evvenv/bin/python]   # also Evidently's DataDriftPreset, from a venv of its own
        [--parts tabular,embeddings,stored,images] [--medical-bundle DIR]
    .venv/bin/python bench/monitor_bench.py --parts false-alarms [--json out.json]   # issue 25, ~15 min

5. False alarms (``--parts false-alarms``, issue 25): how often ``monitor drift`` says warn or drift on windows drawn
   from the reference's distribution at the sizes users send — finance 1,000 / 5,000 / 20,000 consecutive
   transactions (simulated and ULB, middle of and after the training data, with and without labels;
   ``bench/false_alarms_finance.py``), medical 200 / 1,000 images, support 500 / 5,000 questions
   (``bench/false_alarms.py``), 20 windows per size.
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

N_NUMERIC, N_CATEGORICAL = 28, 2
# the medical bundle the image part trains when none is given (bench/results is not committed); later runs reuse it
TRAINED_BUNDLE = Path(__file__).resolve().parent / "results" / "monitor_bench_medical_bundle"


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


def build_store(url: str, rows: int, per_sample: int) -> dict:
    """Store ``rows`` shifted rows as monitoring samples of ``per_sample`` rows each; return the insert timings."""
    from lepton_apps.predictor import MonitorWindow
    from lepton_apps.store import Store

    store = Store.open(url)
    cur = table(rows, 1, True)
    scores = np.random.default_rng(2).random(rows)
    times = []
    for start in range(0, rows, per_sample):
        window = MonitorWindow(features=cur.iloc[start:start + per_sample].reset_index(drop=True),
                               scores=scores[start:start + per_sample])
        t0 = time.perf_counter()
        store.add_monitor_sample("finance", f"r{start}", "bench", window)
        times.append(time.perf_counter() - t0)
    return {"samples": len(times), "insert_ms_p50": round(float(np.median(times)) * 1000, 2),
            "insert_ms_p99": round(float(np.quantile(times, 0.99)) * 1000, 2)}


def plain_stored(url: str) -> pd.DataFrame:
    """Read the stored samples the plain way: one DataFrame per sample, then ``pd.concat``."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.connect() as conn:
        payloads = [json.loads(r[0]) for r in conn.execute(sa.text(
            "SELECT payload FROM monitor_samples WHERE domain = 'finance' ORDER BY created_at, id"))]
    return pd.concat([pd.DataFrame(p["features"]) for p in payloads], ignore_index=True)


def medical_setup(data_root: Path, bundle: Path | None, images: int, work: Path) -> dict:
    """Train (or take) the medical bundle, embed the real images; save the windows; return the timings."""
    import glob

    from lepton_apps.predictor import load

    npz = dict(np.load(data_root / "pneumoniamnist.npz"))
    picked = np.sort(np.random.default_rng(0).choice(len(npz["train_images"]), 500, replace=False))
    unseen = np.setdiff1d(np.arange(len(npz["train_images"])), picked)  # training images the model never saw
    t0 = time.perf_counter()
    if bundle is None and (TRAINED_BUNDLE / "bundle.json").is_file():
        bundle = TRAINED_BUNDLE  # trained by an earlier run of this script: reused
    if bundle is None:
        from lepton_apps.medical import MedicalConfig, train

        small = work / "pneumoniamnist-500.npz"  # 500 training images; the file's whole validation and test splits
        np.savez_compressed(small, **{**npz, "train_images": npz["train_images"][picked],
                                      "train_labels": npz["train_labels"][picked]})
        bundle = Path(train(MedicalConfig(data=str(small), out=str(TRAINED_BUNDLE), seed=0,
                                          progress=False, n_boot=50)))
    train_s = time.perf_counter() - t0
    model = load(bundle)
    test = list(npz["test_images"])
    mnist = [a for k in ("train_images", "val_images", "test_images") for a in npz[k]]
    jpegs = sorted(glob.glob(str(data_root / "chest_xray_kermany_train" / "**" / "*.jp*g"), recursive=True))
    items = (mnist + jpegs)[:images]
    t0 = time.perf_counter()
    same = model.monitor_window(test)
    t1 = time.perf_counter()
    window = model.monitor_window(items)
    t2 = time.perf_counter()
    np.save(work / "same.npy", np.asarray(same.embeddings, dtype=np.float32))
    np.save(work / "window.npy", np.asarray(window.embeddings, dtype=np.float32))
    if window.unreadable == 0 and len(items) >= len(npz["train_images"]):  # the unseen training images' windows
        window.features.iloc[unseen].reset_index(drop=True).to_parquet(work / "unseen.parquet")
        scores = window.scores if isinstance(window.scores, dict) else {"score": window.scores}
        np.savez(work / "unseen.npz", embeddings=np.asarray(window.embeddings, dtype=np.float32)[unseen],
                 **{f"score:{k}": np.asarray(v)[unseen] for k, v in scores.items()})
    return {"bundle": str(bundle), "train_s": round(train_s, 1), "images": len(items),
            "pneumoniamnist": min(len(mnist), len(items)), "kermany_jpegs": max(0, len(items) - len(mnist)),
            "unseen_training_images": int(len(unseen)),
            "unreadable": window.unreadable, "embedding_dim": int(np.asarray(window.embeddings).shape[1]),
            "extract_images_per_s": round(len(items) / (t2 - t1), 1),
            "extract_test_images_per_s": round(len(test) / (t1 - t0), 1)}


def false_alarms(work: Path, size: int = 200, draws: int = 20) -> dict:
    """The whole report (image statistics, probabilities, embeddings) on ``draws`` disjoint windows of ``size``
    real PneumoniaMNIST training images the model never saw (same distribution as its validation profile)."""
    from lepton_apps.monitor import compare
    from lepton_apps.monitor.profile import Profile

    prof = Profile.load(Path(json.loads((work / "setup.json").read_text())["bundle"]) / "profile")
    features = pd.read_parquet(work / "unseen.parquet")
    arrays = np.load(work / "unseen.npz")
    order = np.random.default_rng(1).permutation(len(features))
    statuses, reasons = [], []
    t0 = time.perf_counter()
    for d in range(min(draws, len(order) // size)):
        idx = order[d * size:(d + 1) * size]
        report = compare(prof, features.iloc[idx].reset_index(drop=True),
                         {k[6:]: arrays[k][idx] for k in arrays.files if k.startswith("score:")},
                         arrays["embeddings"][idx])
        statuses.append(report.status)
        reasons += [r for r in report.reasons][:2] if report.status == "drift" else []
    return {"what": "images-false-alarms", "seconds": round(time.perf_counter() - t0, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "answer": {"windows": len(statuses), "size": size, "drift": statuses.count("drift"),
                       "warn": statuses.count("warn"), "ok": statuses.count("ok"), "drift_reasons": reasons[:4]}}


def run_one(what: str, rows: int, images: int, extra: str = "") -> dict:
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
    elif what.startswith("stored"):
        ref = table(200_000, 0, False)
        numeric = [c for c in ref.columns if not c.startswith("category")]
        t0 = time.perf_counter()
        if what == "stored-template":
            from lepton_apps.store import Store

            features, scores, _, _, requests = Store.open(extra).monitor_window("finance")
            prof = build_profile(ref, numeric=numeric, categorical=[c for c in ref.columns if c.startswith("category")])
            report = compare(prof, features)
            answer = {"rows": int(len(features)), "samples": requests, "status": report.status,
                      "drifted": sum(r["status"] == "drift" for r in report.features)}
        else:
            cur = plain_stored(extra)
            stats = plain_tabular(ref, cur)
            answer = {"rows": int(len(cur)), "drifted": sum(1 for s in stats.values() if s.get("psi", 0) >= 0.25 or
                                                           s.get("wasserstein_std", 0) >= 0.3 or s.get("js", 0) >= 0.25)}
    elif what.startswith("images"):
        from lepton_apps.monitor.profile import Profile

        work = Path(extra)
        prof = Profile.load(Path(json.loads((work / "setup.json").read_text())["bundle"]) / "profile")
        ref = np.asarray(prof.embeddings["sample"], dtype=np.float32)
        cur = np.load(work / ("same.npy" if what.endswith("same") else "window.npy"))
        t0 = time.perf_counter()
        if what.startswith("images-template"):
            report = compare(prof, current_embeddings=cur)
            answer = {"n_reference": len(ref), "n_current": len(cur), "status": report.status,
                      "auc": round(report.embeddings["auc"], 3), "mmd_p": report.embeddings.get("mmd_p_value")}
        else:
            from sklearn.linear_model import LogisticRegression
            from sklearn.model_selection import cross_val_score

            pick = np.random.default_rng(0).choice(len(cur), min(1000, len(cur)), replace=False)
            x = np.vstack([ref, cur[pick]])
            y = np.r_[np.zeros(len(ref)), np.ones(len(pick))]
            answer = {"auc": round(float(cross_val_score(LogisticRegression(max_iter=1000), x, y, cv=5,
                                                         scoring="roc_auc").mean()), 3)}
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
        print(json.dumps(run_one(argv[1], int(argv[2]), int(argv[3]), argv[4] if len(argv) > 4 else "")))
        return 0
    if argv and argv[0] == "--_false_alarms":
        print(json.dumps(false_alarms(Path(argv[1]))))
        return 0
    if argv and argv[0] == "--_store":
        print(json.dumps(build_store(argv[1], int(argv[2]), int(argv[3]))))
        return 0
    if argv and argv[0] == "--_medical":
        bundle = Path(argv[3]) if argv[3] else None
        print(json.dumps(medical_setup(Path(argv[1]), bundle, int(argv[2]), Path(argv[4]))))
        return 0
    if argv and argv[0] == "--_evidently":
        print(json.dumps(run_evidently(int(argv[1]))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--evidently-python", help="A Python that has evidently installed (kept out of the project's "
                                               "venv: its dependencies are large); also time its DataDriftPreset.")
    ap.add_argument("--rows-per-sample", type=int, default=100, help="rows of one stored monitoring sample (one "
                                                                         "predict request)")
    ap.add_argument("--parts", default="tabular,embeddings,stored,images",
                    help="or false-alarms (alone): every domain's false alarms at realistic window sizes (issue 25)")
    ap.add_argument("--medical-data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "medical")
    ap.add_argument("--medical-bundle", type=Path, help="a medical bundle to embed with (default: train one on 500 "
                                                        "PneumoniaMNIST images into bench/results/, reused later)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    try:
        return _run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the 1M-row database, the embeddings


def run_false_alarms(args) -> int:
    """Issue 25: the false alarms of every domain at the sizes users send (bench/false_alarms_finance.py for finance,
    bench/false_alarms.py for medical and support), one markdown table each."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import false_alarms
    import false_alarms_finance

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        rows["finance"] = false_alarms_finance.run(Path(tmp))
        print(false_alarms_finance.table(rows["finance"]), flush=True)
        data_root = args.medical_data.parent
        rows["medical"] = false_alarms.medical_false_alarms(data_root, Path(tmp))
        rows["support"] = false_alarms.support_false_alarms(data_root, Path(tmp))
        print(false_alarms.table(rows["medical"] + rows["support"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1, default=str))
    return 0


def _run(args, work: Path) -> int:
    parts = set(args.parts.split(","))
    if parts == {"false-alarms"}:
        return run_false_alarms(args)
    results, setup = [], {}
    me = [sys.executable, __file__, "--_one"]

    def child(cmd: list[str]) -> dict:
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode:
            sys.exit(f"{' '.join(cmd[:4])} failed:\n{out.stderr[-3000:]}")
        answer = json.loads(out.stdout.strip().splitlines()[-1])
        print(json.dumps(answer), file=sys.stderr, flush=True)
        return answer

    for kind in ("tabular", "embeddings"):
        if kind in parts:
            results += [child(me + [f"{kind}-{who}", str(args.rows), str(args.images)]) for who in ("template", "plain")]
            if kind == "tabular" and args.evidently_python:
                results.append(child([args.evidently_python, __file__, "--_evidently", str(args.rows)]))
    if "stored" in parts:
        url = f"sqlite:///{work / 'service.db'}"
        setup["stored"] = child([sys.executable, __file__, "--_store", url, str(args.rows), str(args.rows_per_sample)])
        results += [child(me + [f"stored-{who}", str(args.rows), str(args.images), url]) for who in ("template", "plain")]
    if "images" in parts:
        if not (args.medical_data / "pneumoniamnist.npz").is_file():
            sys.exit(f"{args.medical_data / 'pneumoniamnist.npz'} not found: pass --medical-data or leave 'images' "
                     "out of --parts")
        setup["images"] = child([sys.executable, __file__, "--_medical", str(args.medical_data), str(args.images),
                                 str(args.medical_bundle or ""), str(work)])
        (work / "setup.json").write_text(json.dumps(setup["images"]))
        results += [child(me + [what, str(args.rows), str(args.images), str(work)])
                    for what in ("images-template", "images-plain", "images-template-same")]
        if (work / "unseen.parquet").is_file():
            results.append(child([sys.executable, __file__, "--_false_alarms", str(work)]))
    by = {r["what"]: r for r in results}
    print("| report | wall s | peak RSS MB | answer |")
    print("|---|---|---|---|")
    for r in results:
        print(f"| {r['what']} | {r['seconds']:.2f} | {r['peak_rss_mb']:.0f} | {json.dumps(r['answer'])} |")
    for kind in ("tabular", "embeddings", "stored", "images"):
        if f"{kind}-template" in by:
            print(f"{kind}: template / plain loop wall time = "
                  f"{by[f'{kind}-template']['seconds'] / by[f'{kind}-plain']['seconds']:.2f}x")
    for name, facts in setup.items():
        print(f"setup {name}: {json.dumps(facts)}")
    if args.json:
        args.json.write_text(json.dumps({"results": results, "setup": setup}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
