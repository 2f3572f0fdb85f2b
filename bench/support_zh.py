"""Chinese customer-service questions (issue 13 item 5): AFQMC question pairs through the support template's encoders.

``../shared/data/support/afqmc_dev_part/pairs.jsonl``: 2,158 pairs of Alipay customer-service questions (label 1 =
same meaning; the negatives are hard: the same product, another question). The pairs are split at random (seeded)
into two halves, A and B. For each encoder the cosine of every pair of B is scored:

* ROC-AUC of the cosine on B;
* pair accuracy on B at the threshold that maximises accuracy on A (never chosen on B), beside the majority
  baseline of B;

for all-MiniLM-L6-v2 (the English default), multilingual-e5-small zero-shot (``encoder: multilingual``), and
multilingual-e5-small after the template's own bi-encoder fine-tuning (``finetune_biencoder`` with
``labelled_pairs``: the CoSENT loss over all of A's labelled pairs, matching and not; ``--loss mnrl``: in-batch
negatives over A's matching pairs only; the template's default epochs / learning rate / batch, never tuned on
this data; input embeddings frozen), then the same with the halves swapped (fine-tune on B, measure on A). Published beside it: BERT-base fine-tuned
on the full task's 34,334 training pairs, accuracy 73.7 / AUC 0.768 (see ../shared/data/README.md).

    .venv/bin/python bench/support_zh.py [--pairs ../shared/data/support/afqmc_dev_part/pairs.jsonl] [--seed 0]
        [--json out.json] [--no-finetune] [--loss cosent|mnrl] [--halves AB,BA] [--cross-encoder | --only-cross-encoder]

``--cross-encoder``: also the template's second-stage cross-encoder (``apps/support/reranker.py``, initialised from
multilingual-e5-small) trained on one half's labelled pairs and scored on the other — the model that re-scores the
top FAQs and whose probability joins the hand-off's confidence when ``reranker: on``.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PAIRS = ROOT.parent / "shared" / "data" / "support" / "afqmc_dev_part" / "pairs.jsonl"
PUBLISHED = {"model": "BERT-base fine-tuned on AFQMC train (34,334 pairs), CLUE", "accuracy": 0.737, "roc_auc": 0.768}


def read_pairs(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    """Return (sentence1s, sentence2s, labels) of a CLUE AFQMC JSONL file."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return ([r["sentence1"] for r in rows], [r["sentence2"] for r in rows],
            np.array([int(r["label"]) for r in rows], dtype=int))


def cosines(encoder, a: list[str], b: list[str]) -> np.ndarray:
    """Return the cosine of each (a[i], b[i]) pair under ``encoder`` (normalised embeddings)."""
    ea, eb = encoder.encode(a), encoder.encode(b)
    return (ea * eb).sum(axis=1)


def best_threshold(score: np.ndarray, y: np.ndarray) -> float:
    """Return the cut maximising accuracy of ``score >= cut`` on (score, y) (midpoints between sorted scores)."""
    order = np.sort(np.unique(score))
    cuts = np.r_[order[0] - 1e-6, (order[1:] + order[:-1]) / 2, order[-1] + 1e-6]
    acc = [((score >= c).astype(int) == y).mean() for c in cuts]
    return float(cuts[int(np.argmax(acc))])


def measure(name: str, encoder, s1, s2, y, fit: np.ndarray, held: np.ndarray) -> dict:
    """Score both halves; return ROC-AUC on ``held`` and accuracy there at the cut chosen on ``fit``."""
    from lepton_apps.metrics import roc_auc

    t0 = time.perf_counter()
    cos = cosines(encoder, [s1[i] for i in range(len(s1))], [s2[i] for i in range(len(s2))])
    seconds = time.perf_counter() - t0
    cut = best_threshold(cos[fit], y[fit])
    return {"encoder": name, "held_out_n": int(len(held)), "roc_auc": round(float(roc_auc(y[held], cos[held])), 4),
            "accuracy": round(float(((cos[held] >= cut).astype(int) == y[held]).mean()), 4),
            "threshold": round(cut, 4), "majority": round(float(max(y[held].mean(), 1 - y[held].mean())), 4),
            "pairs_per_s": round(len(s1) / seconds, 1)}


def finetune(encoder, s1, s2, y, part: np.ndarray, seed: int, loss: str) -> dict:
    """Fine-tune ``encoder`` in place on the pairs of ``part`` with the template's bi-encoder tuning: ``cosent`` =
    every labelled pair (matching and not, ``labelled_pairs``), ``mnrl`` = the matching pairs only, in-batch
    negatives (the template's KB fine-tuning)."""
    from lepton_apps.support.config import SupportConfig
    from lepton_apps.support.finetune import finetune_biencoder

    defaults = SupportConfig(kb="-")
    kw = dict(epochs=defaults.finetune_epochs, lr=defaults.finetune_lr, batch_size=defaults.finetune_batch_size,
              seed=seed, progress=False)
    positives = [i for i in part if y[i] == 1]
    if loss == "cosent":
        summary = finetune_biencoder(encoder, [], [], labelled_pairs=[(s1[i], s2[i], int(y[i])) for i in part], **kw)
    else:
        texts = [t for i in positives for t in (s1[i], s2[i])]
        owner = [k for k in range(len(positives)) for _ in (0, 1)]
        summary = finetune_biencoder(encoder, texts, owner, **kw)
    return {"positive_pairs": len(positives), "negative_pairs": len(part) - len(positives) if loss == "cosent" else 0,
            **summary}


def cross_encoder(s1, s2, y, fit: np.ndarray, held: np.ndarray, seed: int) -> dict:
    """Train the template's second-stage cross-encoder (``reranker.train_reranker`` on multilingual-e5-small, the
    template's default epochs / learning rate / batch / pair cap) on the labelled pairs of ``fit``; return ROC-AUC of
    its probability on ``held`` and the accuracy there at the cut that is best on ``fit``."""
    from lepton_apps.metrics import roc_auc
    from lepton_apps.support.config import SupportConfig
    from lepton_apps.support.encoder import resolve_encoder_path
    from lepton_apps.support.reranker import train_reranker

    d = SupportConfig(kb="-")
    t0 = time.perf_counter()
    model, summary = train_reranker(resolve_encoder_path("multilingual"), [(s1[i], s2[i], float(y[i])) for i in fit],
                                    epochs=d.reranker_epochs, lr=d.reranker_lr, batch_size=d.reranker_batch_size,
                                    seed=seed, max_pairs=d.reranker_max_pairs)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    p = model.probabilities(list(s1), list(s2))
    seconds = time.perf_counter() - t0
    cut = best_threshold(p[fit], y[fit])
    return {"roc_auc": round(float(roc_auc(y[held], p[held])), 4), "held_out_n": int(len(held)),
            "accuracy": round(float(((p[held] >= cut).astype(int) == y[held]).mean()), 4), "threshold": round(cut, 4),
            "majority": round(float(max(y[held].mean(), 1 - y[held].mean())), 4),
            "pairs_per_s": round(len(s1) / seconds, 1), "train_seconds": round(train_s, 1), "training": summary}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=Path, default=DEFAULT_PAIRS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--loss", choices=("cosent", "mnrl"), default="cosent",
                    help="cosent: all labelled pairs of the half (default); mnrl: its matching pairs, in-batch negatives")
    ap.add_argument("--halves", default="AB,BA", help="fine-tune/measure runs, e.g. AB (fit A, measure B) or AB,BA")
    ap.add_argument("--cross-encoder", action="store_true",
                    help="also: the template's second-stage cross-encoder trained on one half, measured on the other")
    ap.add_argument("--only-cross-encoder", action="store_true", help="the cross-encoder runs only")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not args.pairs.is_file():
        sys.exit(f"{args.pairs} not found: pass --pairs (the AFQMC JSONL of ../shared/data/support/)")
    from lepton_apps.device import seed_everything
    from lepton_apps.support.encoder import SentenceEncoder

    s1, s2, y = read_pairs(args.pairs)
    order = np.random.default_rng(args.seed).permutation(len(y))
    halves = {"A": np.sort(order[: len(y) // 2]), "B": np.sort(order[len(y) // 2:])}
    rows = []
    for name in () if args.only_cross_encoder else ("all-MiniLM-L6-v2", "multilingual"):
        enc = SentenceEncoder(name)
        rows.append({**measure(f"{name} zero-shot", enc, s1, s2, y, halves["A"], halves["B"]), "measured_on": "B"})
        print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr, flush=True)
    if args.cross_encoder or args.only_cross_encoder:
        for fit, held in (tuple(run) for run in args.halves.split(",")):
            seed_everything(args.seed)
            rows.append({"encoder": f"cross-encoder (the template's re-ranker) trained on {fit}", "measured_on": held,
                         **cross_encoder(s1, s2, y, halves[fit], halves[held], args.seed)})
            print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr, flush=True)
    if not args.no_finetune and not args.only_cross_encoder:
        for fit, held in (tuple(run) for run in args.halves.split(",")):
            seed_everything(args.seed)
            enc = SentenceEncoder("multilingual")
            t0 = time.perf_counter()
            tuned = finetune(enc, s1, s2, y, halves[fit], args.seed, args.loss)
            row = measure(f"multilingual fine-tuned on {fit} ({args.loss})", enc, s1, s2, y, halves[fit], halves[held])
            rows.append({**row, "measured_on": held, "finetune": tuned,
                         "finetune_seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1], ensure_ascii=False), file=sys.stderr, flush=True)
    print(f"AFQMC dev part, {len(y)} pairs ({y.mean():.3f} positive), halves A/B of {len(halves['A'])}/{len(halves['B'])}"
          f" (seed {args.seed})")
    print("| encoder | measured on | ROC-AUC | accuracy (cut from the other half) | majority | pairs/s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['encoder']} | {r['measured_on']} | {r['roc_auc']:.3f} | {r['accuracy']:.3f} | {r['majority']:.3f} "
              f"| {r['pairs_per_s']:.0f} |")
    print(f"| {PUBLISHED['model']} | CLUE dev | {PUBLISHED['roc_auc']:.3f} | {PUBLISHED['accuracy']:.3f} | | |")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "published": PUBLISHED}, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
