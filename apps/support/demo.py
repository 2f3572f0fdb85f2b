"""The demo: Nimbus Bank, a fictional online bank's FAQ written for Lepton Apps, shipped as package data.

``demo_kb.json`` (66 FAQs, 3+ paraphrases each), ``demo_questions.json`` (132 held-out customer
questions mapped to FAQ ids + 40 out-of-scope questions, split val / test) and
``demo_sentiment.json`` (465 messages labelled neutral / negative / urgent, 348 train / 117 held-out test).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

PACKAGE = Path(__file__).parent
FILES = {"kb": "demo_kb.json", "questions": "demo_questions.json", "sentiment": "demo_sentiment.json"}


def write_demo_data(out: str | Path) -> dict[str, Path]:
    """Copy the demo KB, questions and sentiment examples (plus a CSV copy of the questions) to ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for key, name in FILES.items():
        shutil.copyfile(PACKAGE / name, out / name)
        paths[key] = out / name
    import pandas as pd

    records = json.loads((PACKAGE / FILES["questions"]).read_text(encoding="utf-8"))["records"]
    csv = out / "demo_questions.csv"
    pd.DataFrame(records).to_csv(csv, index=False)
    paths["questions_csv"] = csv
    return paths


def demo_config(workdir: str | Path, **overrides):
    """Return the SupportConfig that builds the demo bundle from the data in ``workdir``."""
    from .config import SupportConfig

    paths = write_demo_data(workdir)
    return SupportConfig(kb=str(paths["kb"]), questions=str(paths["questions"]), sentiment_data=str(paths["sentiment"]),
                         out=str(Path(workdir) / "bundle"),
                         teams={"cards": "Cards team", "security": "Fraud & security", "transfers": "Payments team",
                                "payments": "Payments team", "loans": "Lending", "savings": "Savings",
                                "account": "Accounts", "fees": "Accounts", "app": "App support"},
                         progress=False, **overrides)


def build_demo(workdir: str | Path, registry) -> str:
    """Write the demo data to ``workdir``, build the demo bundle, register it and return its registry name."""
    from .training import train

    bundle = train(demo_config(workdir))
    name = f"support-demo-{time.strftime('%Y%m%d-%H%M%S')}"
    registry.register(bundle, name)
    return name
