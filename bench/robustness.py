"""Robust defaults: each template's default ``train`` against a plain baseline, on several data sets,
sizes and seeds, measured in the same run.

Runs ``bench/robust_<domain>.py`` for each domain one after another (a domain that fails is
reported and the others still run), writes every row to JSON (atomically) and prints one Markdown
table per domain: a line per (data set, size), each metric's mean ± std over seeds for the default
and the baseline side by side, and default − baseline (mean ± std of the per-seed differences).

    .venv/bin/python bench/robustness.py [--quick] [--domains medical,support,finance] [--seeds 0,1,2]
                                         [--out bench/results/robustness.json] [--data-root ../shared/data]
    .venv/bin/python bench/robustness.py --table part1.json part2.json ...   # tables of runs made in pieces

``--table`` reads rows written by this driver (``{"rows": [...]}``) or by a module's own ``--out``
(a list of rows), merges them (a later file's row replaces an earlier one with the same domain,
data set, size, method and seed) and prints the tables without running anything.

Each module exposes ``run(quick, seeds, data_root) -> list[dict]`` with one dict per (dataset, size,
method, seed): ``domain, dataset, size, method`` ("default" or "baseline"), ``seed``, ``seconds`` and
float metric keys. ``--quick`` runs seed 0 and each module's quick subset.
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib
import math
import platform
import sys
import time
import traceback
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
DOMAINS = ("medical", "support", "finance")
DATA_ROOT = ROOT.parent / "shared" / "data"
OUT = BENCH / "results" / "robustness.json"
KEYS = ("domain", "dataset", "size", "method", "seed")
DASH = "—"


def say(text: str) -> None:
    """Print a progress line to stderr."""
    print(f"[robustness] {text}", file=sys.stderr, flush=True)


def run_domains(domains: list[str], quick: bool, seeds: list[int], data_root: Path) -> tuple[list[dict], dict]:
    """Run each domain's module; return (all rows, {domain: error text} for the domains that failed)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    rows: list[dict] = []
    failures: dict[str, str] = {}
    for domain in domains:
        started = time.perf_counter()
        say(f"{domain}: starting (quick={quick}, seeds={seeds})")
        try:
            module = importlib.import_module(f"robust_{domain}")
            got = module.run(quick, list(seeds), Path(data_root))
            problems = [r for r in got if any(k not in r for k in (*KEYS, "seconds"))]
            if problems:
                raise ValueError(f"{len(problems)} rows lack one of {(*KEYS, 'seconds')}, e.g. {problems[0]}")
            rows += got
            say(f"{domain}: {len(got)} rows in {time.perf_counter() - started:.0f}s")
        except Exception as exc:  # noqa: BLE001 - one failing domain must not stop the others
            failures[domain] = f"{type(exc).__name__}: {exc}"
            say(f"{domain}: FAILED after {time.perf_counter() - started:.0f}s: {failures[domain]}")
            traceback.print_exc(file=sys.stderr)
    return rows, failures


def metric_keys(rows: list[dict]) -> list[str]:
    """Return the float metric keys of ``rows`` in first-seen order, ``seconds`` last."""
    keys: list[str] = []
    for r in rows:
        for k, v in r.items():
            if k not in KEYS and k != "seconds" and isinstance(v, float) and k not in keys:
                keys.append(k)
    return keys + (["seconds"] if any("seconds" in r for r in rows) else [])


def mean_std(values: list[float]) -> tuple[float, float] | None:
    """Return (mean, sample standard deviation; 0 for one value) of the finite ``values``, or None if none."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    mean = sum(vals) / len(vals)
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else 0.0
    return mean, std


def fmt(stat: tuple[float, float] | None, n: int) -> str:
    """Return "mean ± std" (only the mean for one seed), or "—" when there is no value."""
    if stat is None:
        return DASH
    digits = 4 if abs(stat[0]) < 10 else 1
    return f"{stat[0]:.{digits}f}" if n <= 1 else f"{stat[0]:.{digits}f} ± {stat[1]:.{digits}f}"


def summarize(rows: list[dict]) -> list[dict]:
    """Return one summary per (domain, dataset, size), in first-seen order: for each metric the
    default's and the baseline's (mean, std) over seeds and the per-seed difference default − baseline
    (None where a side is missing), plus the seed counts."""
    groups: dict[tuple, dict[str, dict[int, dict]]] = {}
    for r in rows:
        g = groups.setdefault((r["domain"], r["dataset"], str(r["size"])), {"default": {}, "baseline": {}})
        g.setdefault(r["method"], {})[r["seed"]] = r
    out = []
    for (domain, dataset, size), by in groups.items():
        metrics = metric_keys([r for side in by.values() for r in side.values()])
        both = sorted(set(by["default"]) & set(by["baseline"]))
        summary = {"domain": domain, "dataset": dataset, "size": size, "n_default": len(by["default"]),
                   "n_baseline": len(by["baseline"]), "n_paired": len(both), "metrics": {}}
        for m in metrics:
            summary["metrics"][m] = {
                "default": mean_std([r[m] for r in by["default"].values() if m in r]),
                "baseline": mean_std([r[m] for r in by["baseline"].values() if m in r]),
                "difference": mean_std([by["default"][s][m] - by["baseline"][s][m] for s in both
                                        if m in by["default"][s] and m in by["baseline"][s]]),
            }
        out.append(summary)
    return out


def markdown_table(rows: list[dict]) -> str:
    """Return one Markdown table per domain: a line per (dataset, size) with each metric's
    default, baseline and default − baseline as mean ± std over seeds ("—" where missing)."""
    summaries = summarize(rows)
    parts = []
    for domain in dict.fromkeys(s["domain"] for s in summaries):
        mine = [s for s in summaries if s["domain"] == domain]
        metrics = list(dict.fromkeys(m for s in mine for m in s["metrics"]))
        head = ["dataset", "size", "seeds"] + [f"{m} {side}" for m in metrics
                                               for side in ("default", "baseline", "default − baseline")]
        lines = [f"### {domain}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for s in mine:
            cells = [s["dataset"], s["size"], f"{s['n_default']}/{s['n_baseline']}"]
            for m in metrics:
                st = s["metrics"].get(m, {})
                cells += [fmt(st.get("default"), s["n_default"]), fmt(st.get("baseline"), s["n_baseline"]),
                          fmt(st.get("difference"), s["n_paired"])]
            lines.append("| " + " | ".join(cells) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n" if parts else "(no rows)\n"


def merge_rows(files: list[Path]) -> list[dict]:
    """Return the rows of ``files`` (driver output or a module's list of rows), later files replacing
    earlier rows with the same (domain, dataset, size, method, seed), in first-seen order."""
    import json

    merged: dict[tuple, dict] = {}
    for f in files:
        data = json.loads(Path(f).read_text())
        for r in (data["rows"] if isinstance(data, dict) else data):
            merged[tuple(str(r[k]) for k in KEYS)] = r
    return list(merged.values())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Each template's default train against a plain baseline.")
    ap.add_argument("--table", type=Path, nargs="+", default=None, metavar="JSON",
                    help="print the tables of rows already written (merged in order) and exit")
    ap.add_argument("--quick", action="store_true", help="seed 0 and each module's quick subset")
    ap.add_argument("--domains", default=",".join(DOMAINS), help="comma-separated (default medical,support,finance)")
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (default 0,1,2; --quick: 0)")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON file for all rows (default bench/results/robustness.json)")
    ap.add_argument("--data-root", type=Path, default=DATA_ROOT, help="folder of the shared data sets")
    args = ap.parse_args(argv)
    if args.table:
        print(markdown_table(merge_rows(args.table)))
        return 0
    domains = [d.strip() for d in args.domains.split(",") if d.strip()]
    unknown = [d for d in domains if d not in DOMAINS]
    if unknown:
        ap.error(f"unknown domain(s) {', '.join(unknown)}; choose among {', '.join(DOMAINS)}")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    if not args.data_root.is_dir():
        say(f"note: {args.data_root} is missing; modules skip the data sets they cannot find")
    from lepton_apps.io import atomic_write_json

    started = time.perf_counter()
    rows, failures = run_domains(domains, args.quick, seeds, args.data_root)
    table = markdown_table(rows)
    atomic_write_json(args.out, {
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "quick": args.quick,
        "seeds": seeds, "domains": domains, "data_root": str(args.data_root), "failures": failures,
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "seconds": round(time.perf_counter() - started, 1), "rows": rows, "table": table})
    print(table)
    for domain, error in failures.items():
        print(f"**{domain} failed**: {error}")
    say(f"wrote {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
