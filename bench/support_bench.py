"""Support template speed benchmark (not a test).

Measures in one run, on CPU unless a GPU is present:

1. encoding throughput of the template's SentenceEncoder (default backend: ONNX Runtime on CPU,
   PyTorch bf16/fp16 on a GPU; also its PyTorch backend on CPU) against sentence-transformers' own
   ``encode`` on the same model (all-MiniLM-L6-v2) and the same texts (the demo KB's questions,
   paraphrases and answers), interleaved runs, median of ``--repeats``; also the template's
   optional int8 mode (CPU) with its cosine agreement to fp32;
2. query latency p50 / p99 of ``SupportAssistant.answer`` (encode + BM25 + dense search + fusion +
   confidence + intent/sentiment heads) for knowledge bases of 1,000 and 100,000 entries: the 66 real
   demo FAQs plus synthetic filler entries (template-made texts for BM25; random unit vectors as their
   embeddings, since encoding 100k filler texts would only measure the encoder again). The 100k KB is
   above the ANN threshold, so it is searched through FAISS HNSW. ``--reranker``: the same with the second
   stage (a cross-encoder re-scoring the top 5 on ONNX Runtime) on.

    .venv/bin/python bench/support_bench.py [--repeats 3] [--queries 300] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lepton_apps.support.demo import FILES, PACKAGE, demo_config
from lepton_apps.support.encoder import SentenceEncoder
from lepton_apps.support.index import FaqIndex
from lepton_apps.support.predict import SupportAssistant
from lepton_apps.support.training import build

VERBS = ["change", "cancel", "order", "freeze", "update", "close", "check", "report", "renew", "transfer", "verify", "reset"]
NOUNS = ["card", "loan", "pot", "mandate", "statement", "limit", "address", "plan", "pin", "account", "device", "alert"]
PLACES = ["abroad", "online", "in the app", "at a shop", "by phone", "at the weekend", "for my kid", "for work"]


def demo_texts() -> list[str]:
    recs = json.loads((PACKAGE / FILES["kb"]).read_text())["records"]
    return [t for r in recs for t in (r["question"], *r["paraphrases"], r["answer"])]


def throughput(repeats: int, batch_sizes: list[int]) -> dict:
    """Texts/s of each encoder at each batch size (interleaved runs, median of ``repeats``).

    The headline ratio is fair to the peer: the template at its own default batch size against
    sentence-transformers at the best of ``batch_sizes`` (its default is 32); the same-batch-size
    ratios are reported too.
    """
    from sentence_transformers import SentenceTransformer

    texts = demo_texts() * 2
    device = "cuda" if torch.cuda.is_available() else "cpu"
    ours = SentenceEncoder(device=device)
    peer = SentenceTransformer(ours.path, device=device)
    torch_backend = SentenceEncoder(device="cpu", backend="torch") if ours.backend != "torch" else None
    int8 = SentenceEncoder(device="cpu", quantize="int8") if device == "cpu" else None
    t = time.perf_counter()
    ours.encode(texts[:64])  # warm-up (for ONNX: exports the model to the cache once, or loads it)
    first_call_s = time.perf_counter() - t
    peer.encode(texts[:64])
    runs = {("template", None): lambda bs: ours.encode(texts, batch_size=bs)}
    for bs in batch_sizes:
        runs[("template", bs)] = lambda bs: ours.encode(texts, batch_size=bs)
        runs[("sentence_transformers", bs)] = lambda bs: peer.encode(texts, batch_size=bs, normalize_embeddings=True)
        if torch_backend is not None:
            runs[("template_torch_backend", bs)] = lambda bs: torch_backend.encode(texts, batch_size=bs)
    if int8 is not None:
        runs[("template_int8", None)] = lambda bs: int8.encode(texts, batch_size=bs)
    times: dict = {key: [] for key in runs}
    vectors: dict = {}
    for _ in range(repeats):   # interleaved, so background load hits all alike
        for key, fn in runs.items():
            t = time.perf_counter()
            vectors[key] = fn(key[1])
            times[key].append(time.perf_counter() - t)
    rate = {key: len(texts) / statistics.median(v) for key, v in times.items()}
    table = {f"{name}@{bs or 'default'}": round(r, 1) for (name, bs), r in rate.items()}
    st_best_bs = max(batch_sizes, key=lambda bs: rate[("sentence_transformers", bs)])
    st_best = rate[("sentence_transformers", st_best_bs)]
    ref = vectors[("sentence_transformers", st_best_bs)]
    out = {"device": device, "backend": ours.backend, "precision": ours.policy.precision, "n_texts": len(texts),
           "template_default_batch_size": ours.default_batch_size, "threads": torch.get_num_threads(),
           "first_call_s": round(first_call_s, 2), "texts_per_s": table,
           "sentence_transformers_best_batch_size": st_best_bs,
           "ratio_template_default_vs_st_best": round(rate[("template", None)] / st_best, 3),
           "ratio_same_batch_size": {bs: round(rate[("template", bs)] / rate[("sentence_transformers", bs)], 3)
                                     for bs in batch_sizes},
           "max_abs_diff_vs_st": float(np.abs(vectors[("template", None)] - ref).max())}
    if torch_backend is not None:
        out["ratio_torch_backend_vs_st_same_batch_size"] = {
            bs: round(rate[("template_torch_backend", bs)] / rate[("sentence_transformers", bs)], 3) for bs in batch_sizes}
    if int8 is not None:
        cos = (vectors[("template_int8", None)] * ref).sum(1)
        out.update(ratio_int8_default_vs_st_best=round(rate[("template_int8", None)] / st_best, 3),
                   int8_cosine_to_fp32_mean=round(float(cos.mean()), 4), int8_cosine_to_fp32_min=round(float(cos.min()), 4))
    return out


def filler_texts(n: int, rng: np.random.Generator) -> list[str]:
    return [f"How do I {VERBS[rng.integers(12)]} my {NOUNS[rng.integers(12)]} {PLACES[rng.integers(8)]} "
            f"(case {i})" for i in range(n)]


def with_filler(bot: SupportAssistant, n_entries: int, seed: int = 0) -> SupportAssistant:
    """Return a copy of ``bot`` whose KB is padded with synthetic entries up to ``n_entries``."""
    rng = np.random.default_rng(seed)
    n_fill = max(0, n_entries - len(bot.kb))
    fill = filler_texts(n_fill, rng)
    kb = pd.concat([bot.kb, pd.DataFrame({"id": [f"filler-{i}" for i in range(n_fill)], "question": fill,
                                          "answer": "synthetic filler answer", "paraphrases": [[]] * n_fill,
                                          "category": "filler", "url": ""})], ignore_index=True)
    emb = rng.normal(size=(n_fill, bot.index.embeddings.shape[1])).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    texts = bot.index.texts + fill
    owner = np.concatenate([bot.index.owner, np.arange(len(bot.kb), len(bot.kb) + n_fill)])
    t = time.perf_counter()
    index = FaqIndex(np.concatenate([bot.index.embeddings, emb]), owner, texts, ann_threshold=bot.settings.ann_threshold)
    build_s = time.perf_counter() - t
    clone = SupportAssistant(bot.encoder, kb, index, bot.confidence, bot.settings, bot.intent_head, bot.intent_labels,
                             bot.sentiment_head, bot.sentiment_labels, version="bench", reranker=bot.reranker)
    clone.index_build_seconds = build_s
    return clone


def latency(bot: SupportAssistant, questions: list[str], n: int) -> dict:
    for q in questions[:10]:
        bot.answer(q)
    ms = []
    for i in range(n):
        t = time.perf_counter()
        bot.answer(questions[i % len(questions)])
        ms.append((time.perf_counter() - t) * 1000)
    ms = np.array(ms)
    embs = bot.encoder.encode(questions)
    search_ms = []
    for i in range(n):   # the retrieval part alone: BM25 + dense (exact or HNSW) + fusion, no encoder
        t = time.perf_counter()
        bot.index.search(embs[i % len(questions)], questions[i % len(questions)], bot.settings.top_k,
                         bot.settings.fusion_weight)
        search_ms.append((time.perf_counter() - t) * 1000)
    return {"search_only_p50_ms": round(float(np.percentile(search_ms, 50)), 2),
            "search_only_p99_ms": round(float(np.percentile(search_ms, 99)), 2),"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2),
            "mean_ms": round(float(ms.mean()), 2), "queries": n}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", default="16,32,64", help="batch sizes tried for every encoder")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--sizes", default="1000,100000")
    ap.add_argument("--latency-threads", type=int, default=0,
                    help="intra-op threads (torch and ONNX Runtime) for the one-question-at-a-time latency runs; "
                         "0 = the default, every core (1 is what each worker of a multi-process server would use)")
    ap.add_argument("--skip-throughput", action="store_true")
    ap.add_argument("--reranker", action="store_true", help="latency with the second stage on (the demo built with "
                                                           "reranker: on, re-ranking on ONNX Runtime on a CPU)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    result = {"torch_threads": torch.get_num_threads()}
    if not args.skip_throughput:
        result["throughput"] = throughput(args.repeats, [int(b) for b in args.batch_sizes.split(",")])
        print(json.dumps(result["throughput"], indent=2), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        bot, _ = build(demo_config(tmp, **({"reranker": "on"} if args.reranker else {})))
    if bot.reranker is not None and not torch.cuda.is_available():
        bot.reranker.use_onnx()
    questions = [r["question"] for r in json.loads((PACKAGE / FILES["questions"]).read_text())["records"]]
    if args.latency_threads:
        torch.set_num_threads(args.latency_threads)
    result["latency"] = {"threads": torch.get_num_threads(), "second_stage": bot.reranker is not None}
    for size in map(int, args.sizes.split(",")):
        big = with_filler(bot, size)
        res = {"entries": len(big.kb), "index": big.index.kind, "index_build_s": round(big.index_build_seconds, 1),
               **latency(big, questions, args.queries)}
        # the answers must not change because of the filler (it is far from every real question)
        res["top1_same_as_demo_kb"] = float(np.mean([a.sources[0].faq_id == b.sources[0].faq_id for a, b in
                                                     zip(bot.answer_batch(questions[:100]), big.answer_batch(questions[:100]))]))
        result["latency"][str(size)] = res
        print(json.dumps(res), flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
