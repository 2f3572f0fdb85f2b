"""False alarms of the drift report (issue 25 item 2): how often ``lepton_apps.monitor.compare`` says "warn" or
"drift" on windows drawn from the same distribution as a bundle's reference profile, at realistic sizes.

Goal: no "drift" and at most 1 "warn" in 20 windows, on every (domain, data, size).

* medical: the bundle ``bench/monitor_bench.py`` trains with the template's defaults on 500 PneumoniaMNIST
  training images (reused from ``bench/results/monitor_bench_medical_bundle`` when there, else trained there);
  its reference is its validation split (500 images). Pool: the 4,208 training images it never saw. Windows of
  200 and 1,000 images.
* support / banking77: a bundle built with ``SupportConfig`` defaults on a Banking77 KB — one FAQ per intent
  (question + 9 paraphrases drawn from ``train.csv``, the intent as answer and category, so the assistant has
  an intent head) — with 2,000 labelled ``split=test`` questions: its reference (the template profiles up to
  2,000 held-out test questions). Those, and the pool, are drawn at random from the same shuffled set: every
  other Banking77 text (train + test, duplicates of a KB text left out), so that the pool is exactly the
  reference's distribution (``train.csv`` alone has another intent mix than ``test.csv``). Windows of 500
  and 5,000 questions.
* support / demo (``--demo``): the shipped English demo bundle; its reference is its 86 test questions, the only
  held-out questions of that distribution (the 86 ``val`` ones calibrated it), so its windows are resampled
  from those 86 with replacement — a check of the report's tests on ties and repeats, not of the data.

Each window's monitoring features (statistics, scores, embeddings) do not depend on the window, so the pool is
run through ``monitor_window`` once and windows are subsets of its rows. Windows are disjoint slices of one
shuffle where the pool holds ``size × draws`` items, else each window is a random draw without replacement from
the pool (windows then share items); the ``sampling`` column says which.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 nice .venv/bin/python bench/false_alarms.py \\
        [--domains medical,support] [--data ../shared/data] [--work DIR] [--draws 20] [--demo] [--json out.json]
"""
from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

BENCH = Path(__file__).resolve().parent
DATA_ROOT = BENCH.parents[1] / "shared" / "data"
MEDICAL_BUNDLE = BENCH / "results" / "monitor_bench_medical_bundle"  # shared with bench/monitor_bench.py
KB_TEXTS = 10  # Banking77 texts per FAQ: the question and 9 paraphrases
REFERENCE_QUESTIONS = 2000  # = apps/support/training.PROFILE_QUESTIONS: all of them are profiled


def say(text: str) -> None:
    """Print a progress line to stderr."""
    print(f"[false_alarms] {text}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------- windows

def window_rows(n_pool: int, size: int, draws: int, seed: int = 1) -> tuple[list[np.ndarray], str]:
    """Return (the row indices of ``draws`` windows of ``size`` from a pool of ``n_pool``, how they were drawn)."""
    rng = np.random.default_rng(seed)
    if n_pool >= size * draws:
        order = rng.permutation(n_pool)
        return [order[d * size:(d + 1) * size] for d in range(draws)], f"disjoint (pool {n_pool:,})"
    if n_pool >= size:
        return ([rng.choice(n_pool, size, replace=False) for _ in range(draws)],
                f"random draws without replacement inside each window (pool {n_pool:,} < {size:,} x {draws}; "
                f"{n_pool // size} disjoint possible)")
    return ([rng.choice(n_pool, size, replace=True) for _ in range(draws)],
            f"bootstrap, with replacement (pool {n_pool:,} < {size:,})")


def subset(win, idx: np.ndarray):
    """Return the MonitorWindow of rows ``idx`` of ``win`` (as tests/test_monitor_domains.py::_subset)."""
    from lepton_apps.predictor import MonitorWindow

    scores = win.scores if isinstance(win.scores, dict) else {"score": win.scores}
    return MonitorWindow(features=win.features.iloc[idx].reset_index(drop=True),
                         scores={k: np.asarray(v)[idx] for k, v in scores.items()},
                         embeddings=None if win.embeddings is None else np.asarray(win.embeddings)[idx])


def fired_rows(report) -> list[str]:
    """Return ``section:name[:check]`` of every row of ``report`` that is not ok."""
    return [":".join(str(x) for x in (r["section"], r["name"], r.get("check")) if x) + f" ({r['status']})"
            for r in report.rows() if r["status"] in ("warn", "drift")]


def closest(report, worst: dict) -> None:
    """Fold into ``worst`` each tested row's statistic nearest its band: the smallest Holm-adjusted p (KS,
    chi-squared), the largest PSI and distance (Wasserstein / std, Jensen–Shannon), the largest embedding AUC."""
    for r in report.features + report.predictions + ([report.embeddings] if report.embeddings else []):
        if r.get("p_adjusted") is not None:
            worst[f"{r['name']} p_adj min"] = min(worst.get(f"{r['name']} p_adj min", 1.0), r["p_adjusted"])
        for key in ("psi", "distance", "auc"):
            if r.get(key) is not None and r.get("test") != "ks":
                worst[f"{r['name']} {key} max"] = max(worst.get(f"{r['name']} {key} max", 0.0), r[key])


def count(profile, win, *, domain: str, data: str, sizes, draws: int, reference: int) -> list[dict]:
    """Return one row per window size: ok / warn / drift counts of ``draws`` windows of the pool ``win``, the
    reasons of every window that was not ok, which report rows fired, and the seconds."""
    from lepton_apps.monitor import compare

    rows = []
    for size in sizes:
        picks, sampling = window_rows(len(win.features), size, draws)
        statuses, reasons, fired, worst = [], [], collections.Counter(), {}
        t0 = time.perf_counter()
        for d, idx in enumerate(picks):
            w = subset(win, idx)
            report = compare(profile, w.features, w.scores, w.embeddings)
            statuses.append(report.status)
            closest(report, worst)
            if report.status != "ok":
                reasons.append({"window": d, "status": report.status, "reasons": report.reasons})
                fired.update(fired_rows(report))
        seconds = time.perf_counter() - t0
        row = {"domain": domain, "data": data, "size": size, "windows": len(picks), "sampling": sampling,
               "reference_rows": reference, "ok": statuses.count("ok"), "warn": statuses.count("warn"),
               "drift": statuses.count("drift"), "goal_met": statuses.count("drift") == 0 and
               statuses.count("warn") <= len(picks) / 20, "fired": dict(fired), "reasons": reasons,
               "closest": {k: float(f"{v:.3g}") for k, v in worst.items()},
               "seconds": round(seconds, 1)}
        say(f"{domain}/{data} size {size}: {row['ok']} ok, {row['warn']} warn, {row['drift']} drift "
            f"({seconds:.0f} s) {dict(fired) or ''}")
        rows.append(row)
    return rows


def reference_rows(profile) -> int:
    """Return the number of rows the profile's reference was built from (its first feature's)."""
    first = next(iter(profile.features.values()), {})
    return int(first.get("n_finite", first.get("n_nonmissing", 0)))


# ------------------------------------------------------------------------------------------- medical

def medical_bundle(npz: dict, picked: np.ndarray, work: Path) -> Path:
    """Return the medical bundle of bench/monitor_bench.py (template defaults, the 500 ``picked`` training images,
    the file's whole validation and test splits): reused when there, else trained into it."""
    if (MEDICAL_BUNDLE / "bundle.json").is_file():
        say(f"medical: reusing {MEDICAL_BUNDLE}")
        return MEDICAL_BUNDLE
    from lepton_apps.medical import MedicalConfig, train

    small = work / "pneumoniamnist-500.npz"
    np.savez_compressed(small, **{**npz, "train_images": npz["train_images"][picked],
                                  "train_labels": npz["train_labels"][picked]})
    say(f"medical: training the bundle into {MEDICAL_BUNDLE} (a few minutes on CPU)")
    return Path(train(MedicalConfig(data=str(small), out=str(MEDICAL_BUNDLE), seed=0, progress=False, n_boot=50)))


def medical_false_alarms(data_root: Path, work: Path, sizes=(200, 1000), draws: int = 20) -> list[dict]:
    """False alarms of the medical bundle's report on windows of PneumoniaMNIST training images it never saw."""
    from lepton_apps.monitor.profile import Profile
    from lepton_apps.predictor import load

    npz = dict(np.load(Path(data_root) / "medical" / "pneumoniamnist.npz"))
    # the same 500 training images as bench/monitor_bench.py::medical_setup
    picked = np.sort(np.random.default_rng(0).choice(len(npz["train_images"]), 500, replace=False))
    unseen = np.setdiff1d(np.arange(len(npz["train_images"])), picked)
    bundle = medical_bundle(npz, picked, Path(work))
    t0 = time.perf_counter()
    win = load(bundle).monitor_window(list(npz["train_images"][unseen]))
    say(f"medical: {len(unseen)} unseen training images through monitor_window in {time.perf_counter() - t0:.0f} s")
    if win.unreadable:
        raise RuntimeError(f"{win.unreadable} PneumoniaMNIST images unreadable")
    profile = Profile.load(bundle / "profile")
    return count(profile, win, domain="medical", data="pneumoniamnist (unseen train)", sizes=sizes, draws=draws,
                 reference=reference_rows(profile))


# ------------------------------------------------------------------------------------------- support

def norm(text: str) -> str:
    """Return ``text`` lower-cased with its whitespace collapsed (to find duplicates)."""
    return re.sub(r"\s+", " ", str(text).strip().lower())


def banking77_split(folder: Path, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Return (KB, the reference questions with split=test, the pool) from Banking77's train + test texts."""
    train = pd.read_csv(folder / "train.csv")
    rng = np.random.default_rng(seed)
    kb_rows, used = [], set()
    for intent, group in train.groupby("category", sort=True):
        pick = group["text"].iloc[rng.choice(len(group), KB_TEXTS, replace=False)].tolist()
        used.update(norm(t) for t in pick)
        kb_rows.append({"id": intent, "question": pick[0], "paraphrases": pick[1:], "category": intent,
                        "answer": f"Answer about {intent.replace('_', ' ')}."})
    rest = pd.concat([train, pd.read_csv(folder / "test.csv")], ignore_index=True)
    rest = rest[~rest["text"].map(norm).isin(used)]
    rest = rest.iloc[rng.permutation(len(rest))].reset_index(drop=True)
    questions = pd.DataFrame({"question": rest["text"], "faq_id": rest["category"], "split": "test"})
    return pd.DataFrame(kb_rows), questions.iloc[:REFERENCE_QUESTIONS], questions.iloc[REFERENCE_QUESTIONS:]


def banking77_bundle(data_root: Path, work: Path):
    """Return (the built SupportAssistant, its profile, the pool questions) of the Banking77 bundle."""
    from lepton_apps.monitor.profile import Profile
    from lepton_apps.support.config import SupportConfig
    from lepton_apps.support.training import build, write_bundle

    kb, reference, pool = banking77_split(Path(data_root) / "support" / "banking77")
    folder = Path(work) / "banking77"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kb.json").write_text(json.dumps(kb.to_dict(orient="records")))
    reference.to_csv(folder / "questions.csv", index=False)
    t0 = time.perf_counter()
    assistant, record = build(SupportConfig(kb=str(folder / "kb.json"), questions=str(folder / "questions.csv"),
                                            out=str(folder / "bundle"), seed=0, progress=False))
    bundle = write_bundle(assistant, record, folder / "bundle")
    say(f"support: Banking77 bundle ({len(kb)} FAQs x {KB_TEXTS} texts, {len(reference)} test questions) built "
        f"in {time.perf_counter() - t0:.0f} s; profile: {json.loads((bundle / 'profile' / 'info.json').read_text())}")
    return assistant, Profile.load(bundle / "profile"), pool["question"].tolist()


def demo_bundle(work: Path):
    """Return (the English demo SupportAssistant, its profile, its 86 test questions) built as the tests do."""
    from lepton_apps.monitor.profile import Profile
    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.training import build, write_bundle

    folder = Path(work) / "support-demo"
    cfg = demo_config(folder)
    assistant, record = build(cfg)
    bundle = write_bundle(assistant, record, folder / "bundle")
    records = json.loads(Path(cfg.questions).read_text(encoding="utf-8"))["records"]
    return assistant, Profile.load(bundle / "profile"), [r["question"] for r in records if r.get("split") == "test"]


def support_false_alarms(data_root: Path, work: Path, sizes=(500, 5000), draws: int = 20,
                         demo: bool = False) -> list[dict]:
    """False alarms of the support report on windows of held-out Banking77 questions (and, with ``demo``, of the
    English demo bundle's own test questions, resampled)."""
    rows = []
    builds = [("banking77 (held-out train+test)", lambda: banking77_bundle(data_root, work))]
    if demo:
        builds.append(("demo en (its 86 test questions, resampled)", lambda: demo_bundle(work)))
    for data, make in builds:
        assistant, profile, pool = make()
        t0 = time.perf_counter()
        win = assistant.monitor_window(pool)
        say(f"support: {len(pool)} pool questions through monitor_window in {time.perf_counter() - t0:.0f} s "
            f"({win.unreadable} not questions)")
        rows += count(profile, win, domain="support", data=data, sizes=sizes, draws=draws,
                      reference=reference_rows(profile))
    return rows


# ------------------------------------------------------------------------------------------- report

def table(rows: list[dict]) -> str:
    """Return the markdown table of ``rows``."""
    lines = ["| domain | data | reference rows | window | windows | sampling | ok | warn | drift | goal | "
             "rows that fired | s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        fired = "; ".join(f"{k} x{v}" for k, v in sorted(r["fired"].items(), key=lambda kv: -kv[1])) or "-"
        lines.append(f"| {r['domain']} | {r['data']} | {r['reference_rows']:,} | {r['size']:,} | {r['windows']} | "
                     f"{r['sampling']} | {r['ok']} | {r['warn']} | {r['drift']} | "
                     f"{'met' if r['goal_met'] else '**missed**'} | {fired} | {r['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--domains", default="medical,support")
    ap.add_argument("--data", type=Path, default=DATA_ROOT, help="the shared data root (medical/, support/)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one)")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--demo", action="store_true", help="also the shipped English support demo bundle")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    domains = set(args.domains.split(","))
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="false-alarms-") as tmp:
        work = args.work or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = []
        if "medical" in domains:
            rows += medical_false_alarms(args.data, work, draws=args.draws)
        if "support" in domains:
            rows += support_false_alarms(args.data, work, draws=args.draws, demo=args.demo)
    print(table(rows))
    for r in rows:
        print(f"- closest to a band, {r['domain']} / {r['data']} / {r['size']:,}: {json.dumps(r['closest'])}")
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "seconds": round(time.perf_counter() - t0, 1)}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
