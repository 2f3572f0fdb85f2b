"""Robustness of the support template's defaults on CLINC150: its default ``train`` against a plain nearest neighbour.

For each of the 8 CLINC150 domains in ``<data_root>/support/clinc150_dev/`` (``data.json``,
``domains.json``) and each seed, one 15-FAQ knowledge base is built from 20 training paraphrases
per intent, drawn with the seed (the FAQ question is the first of them, the other 19 are its
paraphrases, the answer is the intent name). It is asked that domain's ``test`` questions
(30 per intent, in scope) plus the 100 ``oos_val`` questions (out of scope), in two settings
(``size``):

* ``kb``: the KB alone (the template calibrates its hand-off on its shipped general out-of-scope set);
* ``kb+val``: the KB plus the user's own labelled validation questions passed as ``questions``
  (that domain's ``val`` split, 20 per intent, and the 100 ``oos_train`` questions, all ``split=val``).

Methods: ``default`` = the template's ``build`` with ``SupportConfig`` defaults; ``baseline`` = the
nearest neighbour over all-MiniLM-L6-v2 embeddings of the KB texts with a fixed 0.5 cosine cut
(hand off below it), measured in the same run on the same questions. Metrics:
``answered_correct`` (share of in-scope questions answered with the right FAQ), ``handoff_recall``
(share of out-of-scope questions handed off), ``top1`` (right FAQ ranked first, in scope) and
``answered_correct_at_default_recall`` (the baseline's threshold moved so that its hand-off recall
matches the template's, on these test questions; for the template row, its own answered-correct) and
``oracle_at_0.90`` (the template row only: the best answered-correct any threshold on its confidence reaches
at hand-off recall >= 0.90 on these test questions — an oracle ceiling beside the threshold it chose).

``--tune`` (development only): asks the ``val`` split + ``oos_train`` instead of ``test`` + ``oos_val``,
KB alone, so that settings can be compared without looking at the reported test questions.

    .venv/bin/python bench/robust_support.py [--quick] [--seeds 0,1,2] [--domains travel,home] [--json out.json]
    .venv/bin/python bench/robust_support.py --scale 1000    # default build time, synthetic 1,000-FAQ x 21-text KB
    .venv/bin/python bench/robust_support.py --variant fused:distance_score=off --variant maha:   # methods side by side
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

DOMAIN = "support"
ROOT = Path(__file__).resolve().parents[1]
DATA_ROOT = ROOT.parent / "shared" / "data"
CLINC = Path("support") / "clinc150_dev"
PER_INTENT = 20
BASELINE_CUT = 0.5
QUICK_DOMAINS = ("kitchen_and_dining", "travel", "small_talk")
METRICS = ("answered_correct", "handoff_recall", "top1", "answered_correct_at_default_recall", "oracle_at_0.90")


def say(text: str) -> None:
    """Print a progress line to stderr."""
    print(f"[robust_support] {text}", file=sys.stderr, flush=True)


def load_clinc(data_root: Path) -> tuple[dict, dict] | None:
    """Return (data.json, domains.json) of CLINC150, or None (with a note) when the folder is absent."""
    folder = Path(data_root) / CLINC
    if not (folder / "data.json").is_file():
        say(f"skipping CLINC150: {folder} not found")
        return None
    return (json.loads((folder / "data.json").read_text()), json.loads((folder / "domains.json").read_text()))


def domain_kb(data: dict, intents: list[str], seed: int) -> pd.DataFrame:
    """Return a KB with one FAQ per intent from ``PER_INTENT`` training texts drawn with ``seed``."""
    rng = np.random.default_rng(seed)
    rows = []
    for intent in intents:
        texts = [t for t, i in data["train"] if i == intent]
        pick = [texts[j] for j in rng.choice(len(texts), PER_INTENT, replace=False)]
        rows.append({"id": intent, "question": pick[0], "answer": f"Answer about {intent.replace('_', ' ')}.",
                     "paraphrases": pick[1:]})
    return pd.DataFrame(rows)


def questions(data: dict, intents: list[str], split: str, oos_split: str) -> pd.DataFrame:
    """Return the in-scope ``split`` questions of ``intents`` plus the ``oos_split`` ones (faq_id '')."""
    keep = set(intents)
    rows = [(t, i) for t, i in data[split] if i in keep] + [(t, "") for t, _ in data[oos_split]]
    return pd.DataFrame(rows, columns=["question", "faq_id"])


def decision_metrics(pred: list, handoff: np.ndarray, top: list, gold: np.ndarray) -> dict:
    """Return answered-correct, hand-off recall and top-1 from per-question predictions."""
    oos = gold == ""
    right = np.array([p == g for p, g in zip(pred, gold)])
    return {"answered_correct": float((~handoff & right)[~oos].mean()), "handoff_recall": float(handoff[oos].mean()),
            "top1": float(np.mean([t == g for t, g in zip(np.asarray(top)[~oos], gold[~oos])]))}


def baseline(encoder, kb: pd.DataFrame, test: pd.DataFrame, recall: float) -> dict:
    """Return the nearest-neighbour baseline's metrics at the 0.5 cosine cut and at the template's recall."""
    from lepton_apps.support.calibration import threshold_for_recall

    texts, owner = [], []
    for row, (q, paras) in enumerate(zip(kb["question"], kb["paraphrases"])):
        texts += [q, *paras]
        owner += [row] * (1 + len(paras))
    sims = encoder.encode(test["question"].tolist()) @ encoder.encode(texts).T
    best = sims.argmax(1)
    cos = sims.max(1)
    top = kb["id"].to_numpy()[np.asarray(owner)[best]]
    gold = test["faq_id"].to_numpy()
    m = decision_metrics(list(top), cos < BASELINE_CUT, list(top), gold)
    oos = gold == ""
    m["oracle_at_0.90"] = float("nan")
    t = threshold_for_recall(cos[oos], np.zeros(oos.sum(), dtype=bool), recall)
    m["answered_correct_at_default_recall"] = decision_metrics(list(top), cos < t, list(top), gold)["answered_correct"]
    return m


_PLAIN: list = []


def plain_encoder():
    """Return the stock all-MiniLM-L6-v2 encoder, loaded once: the baseline never sees a fine-tuned
    encoder, even when ``--set finetune_encoder=true`` fine-tunes the template's own."""
    if not _PLAIN:
        from lepton_apps.support.encoder import SentenceEncoder

        _PLAIN.append(SentenceEncoder())
    return _PLAIN[0]


def run_one(data: dict, domain: str, intents: list[str], seed: int, size: str, tune: bool,
            overrides: dict | None = None, variants: dict[str, dict] | None = None) -> list[dict]:
    """Return the default (or each of ``variants``: method name -> SupportConfig values) and baseline rows of
    one (domain, seed, setting); the baseline is measured once, at the first method's hand-off recall."""
    kb = domain_kb(data, intents, seed)
    test = questions(data, intents, "val", "oos_train") if tune else questions(data, intents, "test", "oos_val")
    base = {"domain": DOMAIN, "dataset": f"clinc150/{domain}", "size": size, "seed": seed}
    rows, first = [], None
    for method, values in (variants or {"default": overrides or {}}).items():
        m, seconds, calib = template_row(data, kb, intents, test, seed, size, values)
        first = first or m
        rows.append({**base, "method": method, "seconds": seconds, **m})
        say(f"{domain:<20} seed {seed} {size:<7} {method}: answered-correct {m['answered_correct']:.3f} "
            f"recall {m['handoff_recall']:.3f} top1 {m['top1']:.3f} oracle@0.90 {m['oracle_at_0.90']:.3f} "
            f"({seconds:.0f} s; clf_w {calib['classifier_weight']}, dense_w {calib['fusion_weight']}, "
            f"oos {calib['out_of_scope_source']}, dropped {calib.get('general_oos_dropped', 0)})")
    t0 = time.perf_counter()
    b = baseline(plain_encoder(), kb, test, first["handoff_recall"])
    say(f"{domain:<20} seed {seed} {size:<7} baseline: {b['answered_correct']:.3f} / {b['handoff_recall']:.3f}, "
        f"at the same recall {b['answered_correct_at_default_recall']:.3f}")
    return rows + [{**base, "method": "baseline", "seconds": time.perf_counter() - t0, **b}]


def template_row(data: dict, kb: pd.DataFrame, intents: list[str], test: pd.DataFrame, seed: int, size: str,
                 overrides: dict) -> tuple[dict, float, dict]:
    """Return (metrics, build seconds, calibration record) of the template built with ``overrides``."""
    import tempfile

    from lepton_apps.support.config import SupportConfig
    from lepton_apps.support.training import build

    with tempfile.TemporaryDirectory(prefix="robust-support-") as tmp:
        kb_path = Path(tmp) / "kb.json"
        kb_path.write_text(json.dumps(kb.to_dict(orient="records")))
        cfg = {"kb": str(kb_path), "out": str(Path(tmp) / "bundle"), "seed": seed, "progress": False,
               **(overrides or {})}
        if size == "kb+val":
            val = questions(data, intents, "val", "oos_train").assign(split="val")
            val.to_csv(Path(tmp) / "val.csv", index=False)
            cfg["questions"] = str(Path(tmp) / "val.csv")
        t0 = time.perf_counter()
        assistant, record = build(SupportConfig(**cfg))
        seconds = time.perf_counter() - t0
    replies = assistant.answer_batch(test["question"].tolist())
    gold = test["faq_id"].to_numpy()
    m = decision_metrics([r.faq_id for r in replies], np.array([r.handoff for r in replies]),
                         [r.sources[0].faq_id if r.sources else None for r in replies], gold)
    m["answered_correct_at_default_recall"] = m["answered_correct"]
    from lepton_apps.support.evaluate import ceiling

    m["oracle_at_0.90"] = ceiling(replies, gold, 0.9)["oracle_answered_correct"]
    return m, seconds, record["calibration"]


def run(quick: bool, seeds: list[int], data_root: Path, domains: list[str] | None = None,
        tune: bool = False, overrides: dict | None = None, variants: dict[str, dict] | None = None) -> list[dict]:
    """Return one row per (domain, setting, method, seed) on CLINC150 (empty when the data is absent)."""
    loaded = load_clinc(data_root)
    if loaded is None:
        return []
    data, domain_map = loaded
    names = domains or (list(QUICK_DOMAINS) if quick else sorted(domain_map))
    seeds = seeds[:1] if quick else seeds
    sizes = ("kb",) if tune else ("kb", "kb+val")
    rows = []
    for domain in names:
        for seed in seeds:
            for size in sizes:
                rows += run_one(data, domain, domain_map[domain], seed, size, tune, overrides, variants)
    return rows


def synthetic_kb(n_faq: int, n_para: int, seed: int = 0) -> pd.DataFrame:
    """Return a synthetic KB of ``n_faq`` FAQs with ``n_para`` paraphrases each (random topic words in templates)."""
    rng = np.random.default_rng(seed)
    words = [f"{a}{b}" for a in ("card", "plan", "order", "parcel", "ticket", "device", "account", "voucher", "seat",
                                 "router", "meter", "policy", "refund", "booking", "licence", "battery", "screen",
                                 "invoice", "subscription", "warranty")
             for b in ("", "s", " fee", " limit", " status", " renewal", " upgrade", " setup", " code", " issue")]
    verbs = ["change", "cancel", "check", "renew", "reset", "update", "track", "transfer", "replace", "activate"]
    templates = ["how do I {v} my {a} and {b}", "I want to {v} the {a} for {b}", "can you help me {v} {a} with {b}",
                 "what happens if I {v} my {a} after {b}", "is it possible to {v} a {a} during {b}",
                 "where can I {v} {a} {b}", "need to {v} {a} asap, {b}", "{v} {a} {b} please"]
    rows = []
    for i in range(n_faq):
        a, b = rng.choice(len(words), 2, replace=False)
        v = verbs[i % len(verbs)]
        texts = [templates[int(rng.integers(len(templates)))].format(v=v, a=words[a], b=words[b]) + f" (case {j})"
                 for j in range(n_para + 1)]
        rows.append({"id": f"faq-{i}", "question": texts[0], "answer": f"Answer {i}.", "paraphrases": texts[1:]})
    return pd.DataFrame(rows)


def scale_check(n_faq: int = 1000, n_para: int = 20, overrides: dict | None = None) -> dict:
    """Return the wall time of the default build (or with ``overrides``) on a synthetic KB of ``n_faq`` x
    (1 + ``n_para``) texts."""
    import tempfile

    from lepton_apps.support.config import SupportConfig
    from lepton_apps.support.training import build

    kb = synthetic_kb(n_faq, n_para)
    stages = []
    with tempfile.TemporaryDirectory(prefix="robust-support-scale-") as tmp:
        (Path(tmp) / "kb.json").write_text(json.dumps(kb.to_dict(orient="records")))
        t0 = time.perf_counter()
        _, record = build(SupportConfig(kb=str(Path(tmp) / "kb.json"), out=str(Path(tmp) / "b"), progress=False,
                                        **(overrides or {})),
                          progress=lambda stage, f: stages.append((stage, round(time.perf_counter() - t0, 1))))
        seconds = time.perf_counter() - t0
    for stage, at in stages:
        say(f"scale {n_faq}x{n_para + 1}: {at:7.1f} s  {stage}")
    calib = record["calibration"]
    return {"n_faq": n_faq, "n_texts": n_faq * (n_para + 1), "seconds": round(seconds, 1), "stages": stages,
            "overrides": overrides or {}, "finetune": record.get("finetune", {}).get("seconds"),
            "finetune_pairs_x_epochs": [record.get("finetune", {}).get(k) for k in ("pairs", "epochs")],
            "faq_classifier": calib["faq_classifier"], "folds_run": calib["folds_run"], "n_in_scope": calib["n_in_scope"]}


def summary(rows: list[dict]) -> pd.DataFrame:
    """Return mean and std over seeds per (dataset, size, method)."""
    df = pd.DataFrame(rows)
    return df.groupby(["dataset", "size", "method"])[list(METRICS)].agg(["mean", "std"]).round(3)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="one seed, 3 domains")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--domains", default=None, help="comma-separated CLINC domains (default: all 8)")
    parser.add_argument("--tune", action="store_true", help="development: ask val + oos_train instead of test + oos_val")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="development: a SupportConfig value other than the default (YAML syntax), repeatable")
    parser.add_argument("--variant", action="append", default=[], metavar="NAME:KEY=VALUE,KEY=VALUE",
                        help="compare: a method named NAME built with these SupportConfig values (YAML; NAME: alone = "
                             "the defaults), repeatable; all variants and the baseline run on the same questions")
    parser.add_argument("--scale", type=int, default=0, metavar="N_FAQ",
                        help="instead: time the default build on a synthetic KB of N_FAQ FAQs x 21 texts")
    parser.add_argument("--data-root", type=Path, default=DATA_ROOT)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import yaml

    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    if args.scale:
        print(json.dumps(scale_check(args.scale, overrides=overrides), indent=1))
        return
    variants = None
    if args.variant:
        variants = {}
        for item in args.variant:
            name, _, values = item.partition(":")
            variants[name] = {**overrides, **{k: yaml.safe_load(v) for k, v in
                                              (kv.split("=", 1) for kv in values.split(",") if kv)}}
    rows = run(args.quick, [int(s) for s in args.seeds.split(",")], args.data_root,
               args.domains.split(",") if args.domains else None, args.tune, overrides, variants)
    if not rows:
        return
    with pd.option_context("display.width", 250, "display.max_rows", 200, "display.max_columns", 20):
        print(summary(rows))
        df = pd.DataFrame(rows)
        print(df.groupby(["size", "method"])[list(METRICS)].mean().round(3))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
