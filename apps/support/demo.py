"""The demo: Nimbus Bank, a fictional online bank's FAQ written for Lepton Apps, shipped as package data.

``demo_kb.json`` (66 FAQs, 3+ paraphrases each), ``demo_questions.json`` (132 held-out customer
questions mapped to FAQ ids + 40 out-of-scope questions, split val / test) and
``demo_sentiment.json`` (465 messages labelled neutral / negative / urgent, 348 train / 117 held-out test).

The Chinese demo (``--lang zh``), written for the project in Chinese (not translated line by line): the same bank's
``demo_kb_zh.json`` (83 FAQs, 4–5 paraphrases each, some in the keyword style and with English words mixed in),
``demo_questions_zh.json`` (166 held-out questions — 26 in Traditional characters, some mixed with English, with
full-width punctuation or emoji, with typos — and 50 out of scope, split val / test) and ``demo_sentiment_zh.json``
(320 messages, 243 train / 77 held-out test).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

PACKAGE = Path(__file__).parent
LANGUAGES = ("en", "zh")
FILES = {"kb": "demo_kb.json", "questions": "demo_questions.json", "sentiment": "demo_sentiment.json"}
TEAMS = {"en": {"cards": "Cards team", "security": "Fraud & security", "transfers": "Payments team",
                "payments": "Payments team", "loans": "Lending", "savings": "Savings", "account": "Accounts",
                "fees": "Accounts", "app": "App support"},
         "zh": {"cards": "银行卡组", "security": "反欺诈与安全组", "transfers": "支付结算组", "payments": "支付结算组",
                "loans": "信贷组", "savings": "储蓄理财组", "account": "账户服务组", "fees": "账户服务组",
                "app": "手机银行支持组"}}


def demo_files(lang: str = "en") -> dict[str, str]:
    """Return the demo's file names in ``lang`` (en: demo_kb.json ...; zh: demo_kb_zh.json ...)."""
    if lang not in LANGUAGES:
        from lepton_apps.errors import ConfigError

        raise ConfigError(f"no demo in language {lang!r}", where="--lang", fix=f"choose one of {', '.join(LANGUAGES)}")
    return {k: v if lang == "en" else v.replace(".json", f"_{lang}.json") for k, v in FILES.items()}


def write_demo_data(out: str | Path, lang: str = "en") -> dict[str, Path]:
    """Copy the demo KB, questions and sentiment examples in ``lang`` (plus a CSV copy of the questions) to
    ``out``; return the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    files = demo_files(lang)
    for key, name in files.items():
        shutil.copyfile(PACKAGE / name, out / name)
        paths[key] = out / name
    import pandas as pd

    records = json.loads((PACKAGE / files["questions"]).read_text(encoding="utf-8"))["records"]
    csv = out / files["questions"].replace(".json", ".csv")
    pd.DataFrame(records).to_csv(csv, index=False)
    paths["questions_csv"] = csv
    return paths


def demo_config(workdir: str | Path, lang: str = "en", **overrides):
    """Return the SupportConfig that builds the demo bundle in ``lang`` from the data in ``workdir``."""
    from .config import SupportConfig

    paths = write_demo_data(workdir, lang)
    return SupportConfig(kb=str(paths["kb"]), questions=str(paths["questions"]), sentiment_data=str(paths["sentiment"]),
                         out=str(Path(workdir) / ("bundle" if lang == "en" else f"bundle-{lang}")),
                         teams=TEAMS[lang], progress=False, **overrides)


def build_demo(workdir: str | Path, registry) -> list[str]:
    """Write the demo data to ``workdir``, build the English and the Chinese demo bundles, register them
    (``support-demo-<time>``, ``support-demo-zh-<time>``) and return their registry names."""
    from .training import train

    names = []
    for lang in LANGUAGES:
        bundle = train(demo_config(workdir, lang))
        names.append(registry.register(bundle, registry.free_name("support-demo" if lang == "en" else
                                                                   f"support-demo-{lang}")).name)
    return names
