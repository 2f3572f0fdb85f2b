"""``train(config) -> bundle path``: encode the KB, fit fusion + confidence, train the heads, evaluate, bundle.

Steps, each reported to ``progress(stage, fraction)``:

1. read and validate the KB (and the optional questions, intent and sentiment data);
2. optionally fine-tune the bi-encoder on the KB's paraphrase pairs (before/after retrieval measured);
3. encode every KB text once (stored in the bundle);
4. choose the dense/BM25 fusion weight and fit the confidence model on validation queries: the
   ``split=val`` questions plus leave-one-out KB paraphrases (answerable: the paraphrase itself is
   hidden; out of scope: its whole FAQ is hidden), then pick the threshold for the target precision;
5. train the intent head (intent data, or the KB categories) and the sentiment / urgency head, whose
   escalation threshold is chosen by cross-validation for a target precision;
6. evaluate on the ``split=test`` questions (and ``split=test`` sentiment messages) and write the
   bundle with metrics and plots.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError

from .config import SupportConfig
from .data import kb_texts, read_kb, read_labelled, read_questions
from .index import FaqIndex
from .model import (ConfidenceModel, finetune_biencoder, head_config, retrieval_features, train_escalation_head,
                    train_head)
from .predict import SupportAssistant, Settings

WEIGHT_GRID = tuple(round(w, 2) for w in np.linspace(0.0, 1.0, 11))
MAX_LOO = 600
Progress = Callable[[str, float], None]


def _as_config(config: SupportConfig | dict | str | Path) -> SupportConfig:
    if isinstance(config, SupportConfig):
        return config
    if isinstance(config, dict):
        return SupportConfig.from_dict(config)
    return SupportConfig.from_yaml(config)


def dense_retrieval_metrics(encoder, texts: list[str], owner: list[int], kb_ids: list[str],
                            questions: pd.DataFrame, k: int = 5) -> dict:
    """Return dense-only top-1 accuracy and MRR@k of ``encoder`` on the answerable ``questions``."""
    q = questions[questions["faq_id"] != ""]
    if q.empty:
        return {}
    index = FaqIndex(encoder.encode(texts), owner, texts, ann_threshold=10**12)
    embs = encoder.encode(q["question"].tolist())
    row_of = {fid: i for i, fid in enumerate(kb_ids)}
    ranks = []
    for emb, fid in zip(embs, q["faq_id"]):
        dense, _, _, _ = index.row_scores(emb, "")
        order = np.argsort(-dense)[:k].tolist()
        ranks.append(order.index(row_of[fid]) + 1 if row_of[fid] in order else 0)
    ranks = np.array(ranks)
    return {"top1_accuracy": float((ranks == 1).mean()),
            "mrr": float(np.where(ranks > 0, 1.0 / np.maximum(ranks, 1), 0).mean()), "n": int(len(ranks))}


def calibration_queries(index: FaqIndex, kb_emb: np.ndarray, val: pd.DataFrame, val_emb: np.ndarray,
                        row_of: dict[str, int], seed: int, use_loo: bool = True) -> list[tuple]:
    """Return (row scores, gold row or -1) for the validation questions and leave-one-out KB paraphrases.

    A leave-one-out query hides its own text (answerable). When the validation questions hold no
    out-of-scope examples, every other one hides its whole FAQ instead (a synthetic out-of-scope query).
    """
    out = [(index.row_scores(e, t), row_of[f] if f else -1)
           for e, t, f in zip(val_emb, val["question"], val["faq_id"])]
    if not use_loo:
        return out
    rng = np.random.default_rng(seed)
    counts = np.bincount(index.owner, minlength=index.n_rows)
    candidates = np.flatnonzero(counts[index.owner] >= 2)
    picked = rng.permutation(candidates)[:MAX_LOO]
    with_oos = not (val["faq_id"] == "").any()
    for n, i in enumerate(picked):
        row = int(index.owner[i])
        if n % 2 == 0 or not with_oos:   # answerable: hide only this text
            mask, gold = np.arange(len(index.texts)) == i, row
        else:            # out of scope: hide the whole FAQ
            mask, gold = index.owner == row, -1
        out.append((index.row_scores(kb_emb[i], index.texts[i], mask), gold))
    return out


def choose_fusion_weight(queries: list[tuple], index: FaqIndex) -> tuple[float, dict]:
    """Return the weight of the grid with the best top-1 accuracy on answerable queries (ties: more dense)."""
    answerable = [(s, g) for s, g in queries if g >= 0]
    if not answerable:
        return 0.8, {}
    table = {}
    for w in WEIGHT_GRID:
        table[w] = float(np.mean([index.rank_rows(s, 1, w)[0].row == g for s, g in answerable]))
    best = max(WEIGHT_GRID, key=lambda w: (round(table[w], 6), w))
    return float(best), table


def fit_confidence(queries: list[tuple], index: FaqIndex, weight: float, k: int,
                   target_precision: float) -> tuple[ConfidenceModel, float, dict]:
    """Return (confidence model, threshold for the target precision on answered questions, summary)."""
    from lepton_apps.metrics import threshold_for_precision

    feats, correct = [], []
    for scores, gold in queries:
        hits = index.rank_rows(scores, k, weight)
        feats.append(retrieval_features(hits))
        correct.append(int(gold >= 0 and hits[0].row == gold))
    feats, correct = np.array(feats), np.array(correct)
    model = ConfidenceModel.fit(feats, correct)
    conf = model.predict(feats)
    note = None
    try:
        threshold = threshold_for_precision(correct, conf, target_precision) if 0 < correct.sum() < len(correct) else 0.5
    except DataError as exc:
        threshold, note = float(np.quantile(conf, 0.9)), f"target precision not reachable on validation: {exc.what}"
    answered = conf >= threshold
    summary = {"n_queries": int(len(correct)), "n_correct_top1": int(correct.sum()),
               "val_coverage": float(answered.mean()),
               "val_answered_precision": float(correct[answered].mean()) if answered.any() else 0.0}
    if note:
        summary["note"] = note
    return model, float(threshold), summary


def _split(q: pd.DataFrame, name: str) -> pd.DataFrame:
    return q[q["split"] == name].reset_index(drop=True)


def build(config: SupportConfig | dict | str | Path, progress: Progress | None = None) -> tuple[SupportAssistant, dict]:
    """Return (the in-memory assistant, build record with metrics) without writing a bundle."""
    from lepton_apps.device import seed_everything

    from .encoder import SentenceEncoder

    cfg = _as_config(config)
    say = progress or (lambda stage, frac: None)
    seed_everything(cfg.seed)
    say("reading the knowledge base", 0.02)
    kb = read_kb(cfg.kb)
    texts, owner = kb_texts(kb)
    ids = kb["id"].tolist()
    row_of = {fid: i for i, fid in enumerate(ids)}
    questions = read_questions(cfg.questions, kb_ids=set(ids)) if cfg.questions else None
    if questions is not None and not (questions["split"] != "").any():
        questions = questions.assign(split=np.where(np.arange(len(questions)) % 2 == 0, "val", "test"))
    val = _split(questions, "val") if questions is not None else None
    test = _split(questions, "test") if questions is not None else None

    say("loading the encoder", 0.05)
    encoder = SentenceEncoder(cfg.encoder, device=cfg.device, precision=cfg.precision)
    record: dict = {"metrics": {}, "encoder": {"name": cfg.encoder, "stored_in_bundle": False,
                                               "max_length": encoder.max_length}}
    if cfg.finetune_encoder:
        say("fine-tuning the bi-encoder", 0.1)
        before = dense_retrieval_metrics(encoder, texts, owner, ids, test) if test is not None else {}
        summary = finetune_biencoder(encoder, texts, owner, epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                                     batch_size=cfg.finetune_batch_size, seed=cfg.seed, precision=cfg.precision,
                                     progress=cfg.progress)
        after = dense_retrieval_metrics(encoder, texts, owner, ids, test) if test is not None else {}
        record["finetune"] = {**summary, "test_dense_before": before, "test_dense_after": after}
        record["encoder"]["stored_in_bundle"] = "skipped" not in summary
        if before and after:
            record["metrics"].update(finetune_top1_before=before["top1_accuracy"], finetune_top1_after=after["top1_accuracy"])

    say("encoding the knowledge base", 0.4)
    kb_emb = encoder.encode(texts, batch_size=cfg.batch_size, progress=cfg.progress)
    index = FaqIndex(kb_emb, owner, texts, ann_threshold=cfg.ann_threshold)

    say("choosing fusion weight and calibrating confidence", 0.55)
    val_q = val if val is not None else pd.DataFrame({"question": [], "faq_id": []})
    val_emb = encoder.encode(val_q["question"].tolist(), batch_size=cfg.batch_size)
    enough_val = len(val_q) >= 30 and (val_q["faq_id"] == "").sum() >= 5
    # after fine-tuning on the KB pairs, leave-one-out paraphrases are no longer unseen: use them only if needed
    use_loo = not (record["encoder"]["stored_in_bundle"] and enough_val)
    queries = calibration_queries(index, kb_emb, val_q, val_emb, row_of, cfg.seed, use_loo=use_loo)
    weight, table = (cfg.fusion_weight, {}) if cfg.fusion_weight is not None else choose_fusion_weight(queries, index)
    confidence, threshold, calib = fit_confidence(queries, index, weight, cfg.top_k, cfg.target_precision)
    record["calibration"] = {**calib, "fusion_weight": weight, "weight_grid_top1": table,
                             "leave_one_out": use_loo, "target_precision": cfg.target_precision}
    settings = Settings(fusion_weight=weight, threshold=threshold, ambiguity_margin=cfg.ambiguity_margin,
                        top_k=cfg.top_k, max_query_chars=cfg.max_query_chars,
                        escalation_threshold=cfg.escalation_threshold or 0.5,   # replaced when a sentiment head is trained
                        teams=dict(cfg.teams),
                        ann_threshold=cfg.ann_threshold)

    say("training the intent classifier", 0.65)
    intent = None
    intent_model = None
    if cfg.intent_backbone == "finetune" and not cfg.intent_data:
        from lepton_apps.errors import ConfigError

        raise ConfigError("intent_backbone='finetune' needs intent_data", where="intent_backbone",
                          fix="pass intent_data (a CSV of text,intent) or use intent_backbone='frozen'")
    if cfg.intent_data and cfg.intent_backbone == "finetune":
        data = read_labelled(cfg.intent_data, "intent", what="intent data")
        train_part = data[data["split"] != "test"] if "split" in data else data
        from .model import finetune_intent_model

        model, tokenizer, names, summary = finetune_intent_model(
            encoder.path, train_part["text"].tolist(), train_part["label"].tolist(), epochs=cfg.intent_epochs,
            lr=cfg.intent_lr, batch_size=32, seed=cfg.seed, device=cfg.device, precision=cfg.precision,
            progress=cfg.progress)
        intent_model = (model, tokenizer, names)
        record["intent"] = {"source": str(cfg.intent_data), **summary}
    elif cfg.intent_data:
        data = read_labelled(cfg.intent_data, "intent", what="intent data")
        train_part = data[data["split"] != "test"] if "split" in data else data
        intent = train_head(encoder.encode(train_part["text"].tolist(), batch_size=cfg.batch_size),
                            train_part["label"].tolist(), epochs=cfg.head_epochs, lr=cfg.head_lr, seed=cfg.seed,
                            device=cfg.device, precision=cfg.precision)
        record["intent"] = {"source": str(cfg.intent_data), **intent.summary}
    elif kb["category"].nunique() >= 2 and (kb["category"] != "").all():
        intent = train_head(kb_emb, [kb["category"].iloc[o] for o in owner], epochs=cfg.head_epochs,
                            lr=cfg.head_lr, seed=cfg.seed, device=cfg.device, precision=cfg.precision)
        record["intent"] = {"source": "knowledge base categories", **intent.summary}

    say("training the sentiment / urgency classifier", 0.75)
    sentiment, sent_test = None, None
    if cfg.sentiment_data:
        data = read_labelled(cfg.sentiment_data, "label", what="sentiment data")
        has_split = "split" in data and (data["split"] == "test").any()
        train_part = data[data["split"] != "test"] if has_split else data
        sent_test = data[data["split"] == "test"] if has_split else None
        # the KB's own questions are calm customer messages: extra neutral examples in every training fold
        sentiment, settings.escalation_threshold = train_escalation_head(
            encoder.encode(train_part["text"].tolist(), batch_size=cfg.batch_size), train_part["label"].tolist(),
            extra_neutral=kb_emb, C=cfg.sentiment_c, target_precision=cfg.escalation_target_precision,
            threshold=cfg.escalation_threshold, seed=cfg.seed)
        record["sentiment"] = {"source": str(cfg.sentiment_data), "n_held_out": int(len(sent_test) if has_split else 0),
                               **sentiment.summary}

    assistant = SupportAssistant(encoder, kb, index, confidence, settings,
                                 intent.head if intent else None, intent.labels if intent else (),
                                 sentiment.head if sentiment else None, sentiment.labels if sentiment else (),
                                 version="(in training)", batch_size=cfg.batch_size, intent_model=intent_model)
    record["intent_model"] = intent_model
    record["intent_result"], record["sentiment_result"] = intent, sentiment
    say("evaluating on the held-out questions", 0.85)
    if test is not None and len(test):
        from .evaluate import evaluate_assistant

        metrics, details, figures = evaluate_assistant(assistant, test, k=cfg.top_k)
        record["metrics"].update(metrics)
        record["figures"], record["details"] = figures, details
    if sent_test is not None and len(sent_test):
        from .evaluate import escalation_metrics

        record["metrics"].update(escalation_metrics(assistant, sent_test)[0])
    record.update(kb=kb, texts=texts, owner=owner, kb_emb=kb_emb, confidence=confidence, settings=settings,
                  config=cfg)
    return assistant, record


def write_bundle(assistant: SupportAssistant, record: dict, out: str | Path, overwrite: bool = True) -> Path:
    """Write the assistant built by :func:`build` as a bundle folder; return its path."""
    from lepton_apps.bundle import BundleWriter, fingerprint_data
    from lepton_apps.metrics import save_figure

    cfg: SupportConfig = record["config"]
    kb: pd.DataFrame = record["kb"]
    labels = (record["intent_result"].labels if record.get("intent_result")
              else record["intent_model"][2] if record.get("intent_model") else [])
    with BundleWriter(out, domain="support", task="faq-retrieval", overwrite=overwrite, label_names=labels,
                      preprocessing={"encoder": record["encoder"], "max_query_chars": cfg.max_query_chars},
                      training_config=cfg.model_dump(mode="json"), metrics=record["metrics"],
                      data_fingerprint=fingerprint_data(kb.assign(paraphrases=kb["paraphrases"].map("|".join)))) as w:
        w.save_json("kb.json", kb.to_dict(orient="records"))
        w.save_json("kb_texts.json", {"texts": record["texts"], "owner": record["owner"]})
        w.save_numpy("kb_embeddings.npy", record["kb_emb"].astype(np.float32))
        if assistant.index.ann is not None:   # large KB: keep the built HNSW graph, loading skips the rebuild
            w.save_numpy("faiss_hnsw.npy", assistant.index.ann_bytes())
        w.save_json("retrieval.json", {"settings": record["settings"].__dict__, "confidence": record["confidence"].to_dict(),
                                       "calibration": record["calibration"]})
        w.save_json("encoder.json", record["encoder"])
        if record["encoder"]["stored_in_bundle"]:
            with tempfile.TemporaryDirectory() as tmp:
                assistant.encoder.save(tmp)
                for f in sorted(Path(tmp).rglob("*")):
                    if f.is_file():
                        w.copy_file(f, "encoder/" + f.relative_to(tmp).as_posix())
        for kind in ("intent", "sentiment"):
            res = record.get(f"{kind}_result")
            if res is not None:
                w.save_torch(f"{kind}_head.safetensors", res.head.state_dict())
                w.save_json(f"{kind}_head.json", {**head_config(res.head, res.labels), "training": record.get(kind, {})})
        if record.get("intent_model"):
            with tempfile.TemporaryDirectory() as tmp:
                model, tokenizer, _ = record["intent_model"]
                model.save_pretrained(tmp, safe_serialization=True)
                tokenizer.save_pretrained(tmp)
                for f in sorted(Path(tmp).rglob("*")):
                    if f.is_file():
                        w.copy_file(f, "intent_model/" + f.relative_to(tmp).as_posix())
            w.save_json("intent_model.json", {"labels": record["intent_model"][2], "training": record.get("intent", {})})
        if "finetune" in record:
            w.save_json("finetune.json", record["finetune"])
        for name, fig in (record.get("figures") or {}).items():
            save_figure(fig, w.file(f"plots/{name}"))
        if record.get("details") is not None:
            w.save_parquet("eval_details.parquet", record["details"])
    return Path(out)


def train(config: SupportConfig | dict | str | Path, progress: Progress | None = None) -> Path:
    """Build the assistant from ``config`` and write its bundle to ``config.out``; return the bundle path."""
    cfg = _as_config(config)
    assistant, record = build(cfg, progress)
    (progress or (lambda s, f: None))("writing the bundle", 0.95)
    path = write_bundle(assistant, record, cfg.out)
    (progress or (lambda s, f: None))("done", 1.0)
    return path
