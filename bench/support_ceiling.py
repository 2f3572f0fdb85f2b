"""The ceiling of a support bundle's hand-off: the best answered-correct any threshold reaches on a labelled
question set at hand-off recall >= each target — thresholds tried on that set itself, so an oracle that no
build can have — beside what the bundle's own threshold gives; it tells whether the confidence model or the
threshold choice is what limits a build.

    .venv/bin/python bench/support_ceiling.py BUNDLE QUESTIONS.csv [--split test] [--targets 0.8,0.9]
    .venv/bin/python bench/support_ceiling.py --sets demo,demo-zh,clinc [--set KEY=VALUE ...] [--json out.json]

QUESTIONS: question, faq_id ('' = out of scope), optional split (the demo's ``demo_questions*.csv``).
``--sets`` builds each set with the template's defaults (``--set`` changes a SupportConfig value, e.g.
``--set 'reranker="on"'``) and prints one row per set: the chosen threshold's answered-correct and hand-off
recall, the oracle at recall >= 0.90 and the gap. ``demo`` / ``demo-zh``: the English / Chinese demo, asked
its ``test`` split; ``clinc``: the 8 CLINC150 domains of ``bench/robust_support.py`` (seed 0, KB alone and with
the validation questions; needs ``../shared/data``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]


def one_bundle(bundle: Path, questions: Path, split: str, targets: list[float]) -> None:
    """Print the bundle's threshold and the oracle ceilings on ``questions``."""
    from lepton_apps.support.evaluate import ceiling, evaluate_assistant
    from lepton_apps.support.predict import SupportAssistant

    q = pd.read_csv(questions, keep_default_na=False, dtype=str)
    if split and "split" in q:
        q = q[q["split"] == split]
    bot = SupportAssistant.load(bundle, device="cpu")
    metrics, _, _ = evaluate_assistant(bot, q)
    replies = bot.answer_batch(q["question"].tolist())
    print(f"{bundle}: {len(q)} questions ({(q['faq_id'] == '').sum()} out of scope); at the bundle's threshold "
          f"{bot.settings.threshold:.3f}: answered-correct {metrics['answered_correct']:.3f}, "
          f"hand-off recall {metrics['handoff_recall']:.3f}")
    for target in targets:
        best = ceiling(replies, q["faq_id"].tolist(), target)
        print(f"best answered-correct at hand-off recall >= {target:.2f}: {best['oracle_answered_correct']:.3f} "
              f"(threshold {best['oracle_threshold']:.3f}, recall {best['oracle_recall']:.3f})")


def demo_row(lang: str, overrides: dict) -> dict:
    """Build the demo in ``lang`` with ``overrides`` and return its row (test split)."""
    from lepton_apps.support.demo import demo_config
    from lepton_apps.support.evaluate import ceiling
    from lepton_apps.support.training import build

    with tempfile.TemporaryDirectory(prefix="support-ceiling-") as tmp:
        cfg = demo_config(tmp, lang, **overrides)
        records = json.loads(Path(cfg.questions).read_text(encoding="utf-8"))["records"]
        assistant, _ = build(cfg)
    test = [r for r in records if r.get("split") == "test"]
    replies = assistant.answer_batch([r["question"] for r in test])
    gold = [r["faq_id"] or "" for r in test]
    oos = [g == "" for g in gold]
    chosen_ac = sum(1 for r, g in zip(replies, gold) if g and not r.handoff and r.faq_id == g) / sum(not o for o in oos)
    recall = sum(1 for r, o in zip(replies, oos) if o and r.handoff) / max(1, sum(oos))
    return {"set": f"demo-{lang}", "answered_correct": chosen_ac, "handoff_recall": recall,
            "oracle_at_0.90": ceiling(replies, gold, 0.9)["oracle_answered_correct"],
            "second_stage": assistant.reranker is not None}


def clinc_rows(overrides: dict) -> list[dict]:
    """Return one row per CLINC150 domain and setting (seed 0), from bench/robust_support.py."""
    sys.path.insert(0, str(ROOT / "bench"))
    import robust_support

    rows = robust_support.run(False, [0], robust_support.DATA_ROOT, overrides=overrides)
    return [{"set": f"{r['dataset']} {r['size']}", "answered_correct": r["answered_correct"],
             "handoff_recall": r["handoff_recall"], "oracle_at_0.90": r["oracle_at_0.90"]}
            for r in rows if r["method"] == "default"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path, nargs="?")
    ap.add_argument("questions", type=Path, nargs="?")
    ap.add_argument("--split", default="test", help="rows of this split only ('' = all rows)")
    ap.add_argument("--targets", default="0.8,0.9")
    ap.add_argument("--sets", default=None, help="instead of a bundle: demo,demo-zh,clinc (built with the defaults)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a SupportConfig value (YAML)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if not args.sets:
        if args.bundle is None or args.questions is None:
            ap.error("give BUNDLE QUESTIONS, or --sets")
        one_bundle(args.bundle, args.questions, args.split, [float(t) for t in args.targets.split(",")])
        return 0
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    rows = []
    for name in args.sets.split(","):
        if name in ("demo", "demo-en"):
            rows.append(demo_row("en", overrides))
        elif name == "demo-zh":
            rows.append(demo_row("zh", overrides))
        elif name == "clinc":
            rows += clinc_rows(overrides)
        else:
            ap.error(f"unknown set {name!r}: use demo, demo-zh, clinc")
    table = pd.DataFrame(rows)
    table["gap_to_oracle"] = table["oracle_at_0.90"] - table["answered_correct"]
    with pd.option_context("display.width", 200, "display.max_rows", 100):
        print(table.round(3).to_string(index=False))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
