"""The ceiling of a support bundle's hand-off: the best answered-correct any threshold reaches on a labelled
question set at hand-off recall >= each target — thresholds tried on that set itself, so an oracle that no
build can have; it tells whether the confidence model or the threshold choice is what limits a build.

    .venv/bin/python bench/support_ceiling.py BUNDLE QUESTIONS.csv [--split test] [--targets 0.8,0.9]

QUESTIONS: question, faq_id ('' = out of scope), optional split (the demo's ``demo_questions*.csv``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bundle", type=Path)
    ap.add_argument("questions", type=Path)
    ap.add_argument("--split", default="test", help="rows of this split only ('' = all rows)")
    ap.add_argument("--targets", default="0.8,0.9")
    args = ap.parse_args(argv)
    from lepton_apps.support.evaluate import evaluate_assistant, tradeoff_table
    from lepton_apps.support.predict import SupportAssistant

    q = pd.read_csv(args.questions, keep_default_na=False, dtype=str)
    if args.split and "split" in q:
        q = q[q["split"] == args.split]
    bot = SupportAssistant.load(args.bundle, device="cpu")
    metrics, details, _ = evaluate_assistant(bot, q)
    curve = tradeoff_table(details, points=None)
    print(f"{args.bundle}: {len(q)} questions ({(q['faq_id'] == '').sum()} out of scope); at the bundle's threshold "
          f"{bot.settings.threshold:.3f}: answered-correct {metrics['answered_correct']:.3f}, "
          f"hand-off recall {metrics['handoff_recall']:.3f}")
    for target in (float(t) for t in args.targets.split(",")):
        ok = curve[curve["handoff_recall"] >= target]
        best = ok.loc[ok["answered_correct"].idxmax()]
        print(f"best answered-correct at hand-off recall >= {target:.2f}: {best['answered_correct']:.3f} "
              f"(threshold {best['threshold']:.3f}, recall {best['handoff_recall']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
