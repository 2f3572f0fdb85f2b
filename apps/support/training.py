"""``train(config) -> bundle path``: encode the KB, fit fusion + confidence, train the heads, evaluate, bundle.

Steps, each reported to ``progress(stage, fraction)``:

1. read and validate the KB (and the optional questions, intent and sentiment data);
2. optionally fine-tune the bi-encoder on the KB's paraphrase pairs (before/after retrieval measured);
3. encode every KB text once (stored in the bundle);
4. when the FAQs carry paraphrases, learn from them: a linear classifier over the FAQ ids on the
   encoder's embeddings of the KB texts (and of the labelled ``split=val`` questions), fused with the
   dense + BM25 scores (:mod:`.calibration`); choose the fusion weights on cross-fitted queries, fit
   the confidence model, and pick the hand-off threshold for a target hand-off recall on out-of-scope
   questions (the user's own, or the general set shipped with the template);
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

from .config import DEFAULT_ENCODER, Settings, SupportConfig, choose_encoder
from .data import kb_texts, read_kb, read_labelled, read_labelled_pairs, read_questions
from .finetune import finetune_biencoder
from .index import FaqIndex
from .model import (DISTANCE_FEATURES, RERANK_FEATURES, head_config, train_escalation_head, train_faq_classifier,
                    train_head)
from .predict import SupportAssistant
from .text import kb_language, tokenizer_info

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


def describe_calibration(n_user_oos: int, fit_summary: dict, dropped: dict, use_kb: bool) -> str:
    """Return in words which out-of-scope and in-scope questions calibrated the hand-off threshold."""
    from .calibration import MIN_USER_OOS

    oos = f"your {n_user_oos} out-of-scope validation questions"
    if n_user_oos < MIN_USER_OOS:
        n = dropped.get("general_oos_total", 0)
        shipped = (f"the general out-of-scope set shipped with the template ({dropped.get('general_oos_used', n)} of {n} "
                   f"questions: {dropped.get('general_oos_dropped', 0)} dropped as answered by this KB, then the "
                   f"{dropped.get('general_oos_nearest', 1.0):.0%} nearest to it kept)")
        oos = f"{oos} and {shipped}" if n_user_oos else shipped
    inside = ["held-out KB paraphrases"] if use_kb else []
    if fit_summary.get("n_val_in_scope"):
        inside.append(f"your {fit_summary['n_val_in_scope']} labelled validation questions")
    return f"{oos} + {' and '.join(inside) or 'no in-scope questions'}"


def use_faq_classifier(mode: str, owner: list[int]) -> bool:
    """Return whether to train the FAQ classifier: "on", "off", or "auto" = when the median FAQ has 3+ texts."""
    if mode != "auto":
        return mode == "on"
    counts = np.bincount(np.asarray(owner, dtype=np.int64))
    return bool(len(counts)) and float(np.median(counts)) >= 3


def use_finetuning(mode: str, vocab_rows: int, owner: list[int], labelled_pairs: bool = False) -> bool:
    """Return whether to fine-tune the bi-encoder: "on", "off", or "auto" = when the encoder's vocabulary has at
    most :data:`~.model.FREEZE_VOCAB` rows (MiniLM; a tuned multilingual-e5-small bundle would weigh ~470 MB) and the
    median FAQ has 3+ texts to pair (or labelled pairs are given)."""
    if mode != "auto":
        return mode == "on"
    from .finetune import FREEZE_VOCAB

    return vocab_rows <= FREEZE_VOCAB and (labelled_pairs or use_faq_classifier("auto", owner))


def use_reranker(mode: str, use_classifier: bool, enough_val: bool) -> bool:
    """Whether to train the second stage: "on", or "auto" when the FAQ classifier is on (the KB has paraphrases to
    learn from) and the user gave labelled validation questions (30+ in scope, 50+ out of scope) — where it was
    measured to gain (apps/support/README.md, "Second stage")."""
    if mode != "auto":
        return mode == "on"
    return use_classifier and enough_val


def second_stage(cfg: SupportConfig, encoder, index: FaqIndex, kb: pd.DataFrame, queries, language: str,
                 weight: float, clf_weight: float, oos_source: str):
    """Train the re-ranker (:func:`reranker.fit_second_stage`) on the calibration queries, with the shipped
    general out-of-scope questions as negatives even when the user's own calibrate the hand-off."""
    from .calibration import CalibQuery, general_oos_topics
    from .reranker import fit_second_stage

    topics = general_oos_topics(language)
    extra = []
    if "general-oos" not in oos_source:   # the shipped set is not among the calibration queries: train on it
        general = list(topics)
        emb = encoder.encode(general, batch_size=cfg.batch_size)
        extra = [CalibQuery(t, index.row_scores(e, t), None, -1, "general-oos-training") for t, e in zip(general, emb)]
    return fit_second_stage(
        queries, index, kb["question"].tolist(), weight=weight, clf_weight=clf_weight,
        top_k=cfg.top_k, rerank_k=min(cfg.rerank_k, cfg.top_k), topics=topics, extra_negatives=extra,
        encoder_path=encoder.path, epochs=cfg.reranker_epochs, lr=cfg.reranker_lr,
        batch_size=cfg.reranker_batch_size, max_pairs=cfg.reranker_max_pairs, seed=cfg.seed, device=cfg.device,
        precision=cfg.precision, progress=cfg.progress)


FINETUNE_HOLDOUT = 0.3   # share of each FAQ's paraphrases kept out of bi-encoder tuning to calibrate on (KB alone)


def finetune_holdout(owner: np.ndarray, share: float, seed: int) -> np.ndarray:
    """Return a mask of KB texts held out of bi-encoder fine-tuning: ``share`` of the paraphrases of each FAQ
    with 3+ texts, never its first text (the FAQ's question), at least one text left to tune on."""
    rng = np.random.default_rng(seed)
    held = np.zeros(len(owner), dtype=bool)
    for row in np.unique(owner):
        idx = np.flatnonzero(owner == row)
        if len(idx) >= 3:
            n = min(len(idx) - 2, max(1, int(round(share * len(idx)))))
            held[rng.choice(idx[1:], n, replace=False)] = True
    return held


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
    language = kb_language(texts)
    ids = kb["id"].tolist()
    row_of = {fid: i for i, fid in enumerate(ids)}
    questions = read_questions(cfg.questions, kb_ids=set(ids)) if cfg.questions else None
    if questions is not None and not (questions["split"] != "").any():
        questions = questions.assign(split=np.where(np.arange(len(questions)) % 2 == 0, "val", "test"))
    val = _split(questions, "val") if questions is not None else None
    test = _split(questions, "test") if questions is not None else None

    say("loading the encoder", 0.05)
    encoder_name = choose_encoder(cfg.encoder, language)
    if language not in ("en", "und") and encoder_name.lower() == DEFAULT_ENCODER.lower():
        import warnings

        warnings.warn(f"the knowledge base is in '{language}' but the encoder {DEFAULT_ENCODER} knows English only: "
                      "questions will be matched mostly on shared words. Use encoder: multilingual (or auto)",
                      stacklevel=2)
    encoder = SentenceEncoder(encoder_name, device=cfg.device, precision=cfg.precision)
    record: dict = {"metrics": {}, "encoder": {"name": encoder_name, "chosen_for": f"{cfg.encoder} ({language} KB)",
                                               "stored_in_bundle": False, "max_length": encoder.max_length}}
    from .calibration import MIN_USER_OOS

    n_val_in = int((val["faq_id"] != "").sum()) if val is not None else 0
    n_val_oos = int((val["faq_id"] == "").sum()) if val is not None else 0
    enough_val = n_val_in >= 30 and n_val_oos >= MIN_USER_OOS
    kb_queries = None   # KB texts that may calibrate as unseen queries (all, unless the encoder is tuned on them)
    vocab = encoder.model.get_input_embeddings()
    if use_finetuning(cfg.finetune_encoder, vocab.weight.shape[0] if vocab is not None else 0, owner,
                      bool(cfg.finetune_pairs)):
        say("fine-tuning the bi-encoder", 0.1)
        before = dense_retrieval_metrics(encoder, texts, owner, ids, test) if test is not None else {}
        labelled = read_labelled_pairs(cfg.finetune_pairs) if cfg.finetune_pairs else None
        tune = np.ones(len(texts), dtype=bool)
        if not enough_val:   # the KB's paraphrases calibrate: hold some out of the tuning, unseen
            tune = ~finetune_holdout(np.asarray(owner), FINETUNE_HOLDOUT, cfg.seed)
            kb_queries = ~tune
        summary = finetune_biencoder(encoder, [t for t, m in zip(texts, tune) if m],
                                     [o for o, m in zip(owner, tune) if m], epochs=cfg.finetune_epochs, lr=cfg.finetune_lr,
                                     batch_size=cfg.finetune_batch_size, seed=cfg.seed, precision=cfg.precision,
                                     progress=cfg.progress, max_pairs=cfg.finetune_max_pairs,
                                     max_pair_steps=cfg.finetune_max_pair_steps, labelled_pairs=labelled,
                                     hard_negatives=cfg.finetune_hard_negatives)
        after = dense_retrieval_metrics(encoder, texts, owner, ids, test) if test is not None else {}
        record["finetune"] = {**summary, "test_dense_before": before, "test_dense_after": after,
                              "held_out_for_calibration": int((~tune).sum())}
        record["encoder"]["stored_in_bundle"] = "skipped" not in summary
        if before and after:
            record["metrics"].update(finetune_top1_before=before["top1_accuracy"], finetune_top1_after=after["top1_accuracy"])

    say("encoding the knowledge base", 0.4)
    kb_emb = encoder.encode(texts, batch_size=cfg.batch_size, progress=cfg.progress)
    index = FaqIndex(kb_emb, owner, texts, ann_threshold=cfg.ann_threshold)

    say("calibrating retrieval and hand-off", 0.5)
    from .calibration import (choose_margin, choose_weights, cross_fitted_queries,
                              drop_covered_general_oos, fit_handoff, general_oos_questions)

    val_q = val if val is not None else pd.DataFrame({"question": [], "faq_id": []})
    val_emb = encoder.encode(val_q["question"].tolist(), batch_size=cfg.batch_size)
    use_classifier = use_faq_classifier(cfg.faq_classifier, owner)
    user_oos = val_q[val_q["faq_id"] == ""]["question"].tolist()
    oos_texts, oos_emb = user_oos, val_emb[(val_q["faq_id"] == "").to_numpy()]
    oos_source = "user-oos"
    if len(user_oos) < MIN_USER_OOS:   # too few of the user's own: add the general set shipped with the template
        general = general_oos_questions(language)
        oos_texts = user_oos + general
        oos_emb = np.concatenate([oos_emb, encoder.encode(general, batch_size=cfg.batch_size)])
        oos_source = "user-oos+general-oos" if user_oos else "general-oos"
    oos_sources = ["user-oos"] * len(user_oos) + ["general-oos"] * (len(oos_texts) - len(user_oos))
    # after fine-tuning on the KB pairs, the KB's paraphrases are no longer unseen: use them only if needed
    use_kb = not (record["encoder"]["stored_in_bundle"] and enough_val)
    use_distance = cfg.distance_score == "mahalanobis"
    queries, fit_summary = cross_fitted_queries(
        index, kb_emb, val_q, val_emb, row_of, oos_texts, oos_emb, oos_sources, use_classifier=use_classifier,
        use_kb=use_kb, l2=cfg.classifier_l2, seed=cfg.seed, use_distance=use_distance, kb_queries=kb_queries)
    weight, clf_weight, w_table, b_table = choose_weights(queries, index, use_classifier, cfg.fusion_weight)
    queries, dropped = drop_covered_general_oos(queries, index, weight, clf_weight, cfg.general_oos_nearest)
    stage2, rerank_k, rerank_weight, calib_queries, calib_hits = None, 0, 1.0, queries, None
    extra = DISTANCE_FEATURES if use_distance else ()
    if use_reranker(cfg.reranker, use_classifier, enough_val):
        say("training the re-ranker (second stage)", 0.55)
        stage2 = second_stage(cfg, encoder, index, kb, queries, language, weight, clf_weight, oos_source)
        rerank_k, rerank_weight = stage2.summary["rerank_k"], stage2.summary["rerank_weight"]
        calib_queries, calib_hits, extra = stage2.queries, stage2.hits, extra + RERANK_FEATURES
        record["reranker"] = stage2.summary
    if cfg.ambiguity_margin is None:
        margin, confidence, threshold, calib = choose_margin(
            calib_queries, index, weight, clf_weight, cfg.top_k, cfg.target_handoff_recall, use_classifier,
            cfg.target_precision, cfg.handoff_recall_confidence, hits=calib_hits, extra_features=extra)
    else:
        margin = cfg.ambiguity_margin
        confidence, threshold, calib = fit_handoff(calib_queries, index, weight, clf_weight, cfg.top_k,
                                                   cfg.target_handoff_recall, margin, use_classifier,
                                                   cfg.target_precision, cfg.handoff_recall_confidence,
                                                   hits=calib_hits, extra_features=extra)
    record["calibration"] = {**calib, **fit_summary, **dropped, "fusion_weight": weight, "weight_grid_top1": w_table,
                             "classifier_weight": clf_weight, "classifier_weight_grid_top1": b_table,
                             "faq_classifier": use_classifier, "leave_one_out": use_kb,
                             "out_of_scope_source": oos_source, "target_precision": cfg.target_precision,
                             "n_user_out_of_scope": len(user_oos), "second_stage": bool(rerank_k),
                             "calibration_source": describe_calibration(len(user_oos), fit_summary, dropped, use_kb)
                             + (f"; with the second stage, only the {len(calib_queries)} of them held out of the "
                                "re-ranker's training" if stage2 else "")}
    faq_head = None
    # every labelled text: the KB's questions and paraphrases and the answerable val questions, with their FAQ rows
    answerable = (val_q["faq_id"] != "").to_numpy()
    labelled_x = np.concatenate([kb_emb, val_emb[answerable]])
    labelled_y = np.concatenate([owner, [row_of[f] for f in val_q["faq_id"][answerable]]])
    if use_classifier:
        faq_head = train_faq_classifier(labelled_x, labelled_y, len(ids), l2=cfg.classifier_l2)
        record["faq_classifier"] = {"model": "linear softmax over FAQ ids on the encoder's embeddings (L-BFGS)",
                                    "l2": cfg.classifier_l2, "n_train": int(len(kb_emb) + answerable.sum()),
                                    "n_kb_texts": int(len(kb_emb)), "n_val_questions": int(answerable.sum())}
    distance = None
    if use_distance:
        from .distance import DistanceScorer

        distance = DistanceScorer.fit(labelled_x, labelled_y, len(ids))
        record["distance"] = {"model": "class-conditional Gaussian, shared Ledoit-Wolf covariance (Mahalanobis)",
                              "shrinkage": round(distance.shrinkage, 4), "n_train": int(len(labelled_y))}
    settings = Settings(fusion_weight=weight, threshold=threshold, ambiguity_margin=margin,
                        top_k=cfg.top_k, max_query_chars=cfg.max_query_chars,
                        escalation_threshold=cfg.escalation_threshold or 0.5,   # replaced when a sentiment head is trained
                        teams=dict(cfg.teams),
                        ann_threshold=cfg.ann_threshold, classifier_weight=clf_weight, kb_language=language,
                        handoff_messages=dict(cfg.handoff_messages), rerank_k=rerank_k,
                        rerank_weight=rerank_weight)
    record["text"] = {"kb_language": language, **tokenizer_info()}

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
        from .finetune import finetune_intent_model

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
                                 version="(in training)", batch_size=cfg.batch_size, intent_model=intent_model,
                                 faq_head=faq_head, calibration=record["calibration"],
                                 reranker=stage2.reranker if stage2 else None, distance=distance)
    record["intent_model"] = intent_model
    record["faq_head"] = faq_head
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
    say("profiling the held-out questions for monitoring", 0.9)
    record["profile"], record["profile_info"] = reference_profile(assistant, *reference_questions(val, test, texts),
                                                                  seed=cfg.seed)
    record.update(kb=kb, texts=texts, owner=owner, kb_emb=kb_emb, confidence=confidence, settings=settings,
                  config=cfg)
    return assistant, record


PROFILE_QUESTIONS = 2000  # reference questions profiled at most (a seeded sample beyond)


def reference_questions(val: pd.DataFrame | None, test: pd.DataFrame | None, kb_texts_all: list[str]
                        ) -> tuple[list[str], str]:
    """Return (the questions of the monitoring reference, what they are): the held-out test questions, which
    the built assistant never learned from (its FAQ classifier, confidence model and hand-off threshold are
    fitted on the validation questions, so their confidences there are in-sample and higher); else the
    validation questions; else the KB's own texts (questions and paraphrases), the only customer-like text."""
    if test is not None and len(test):
        return test["question"].tolist(), "held-out test questions"
    if val is not None and len(val):
        return val["question"].tolist(), "validation questions"
    return list(kb_texts_all), "knowledge-base questions and paraphrases (no labelled questions given)"


def reference_profile(assistant: SupportAssistant, questions: list[str], what: str, seed: int = 0):
    """Return (the monitoring profile, a note of what it took) of up to :data:`PROFILE_QUESTIONS` of
    ``questions`` as ``assistant`` answers them: lengths, script and intent mix, confidence and hand-off
    distributions, question embeddings."""
    import time

    from lepton_apps.monitor import build_profile

    started = time.perf_counter()
    total = len(questions)
    if total > PROFILE_QUESTIONS:
        keep = np.sort(np.random.default_rng(seed).choice(total, PROFILE_QUESTIONS, replace=False))
        questions = [questions[i] for i in keep]
    win = assistant.monitor_window(questions)
    features = win.features
    categorical = [c for c in ("script", "intent") if c in features.columns]
    profile = build_profile(features, scores=win.scores, embeddings=win.embeddings if len(win.embeddings) else None,
                            numeric=["length_chars", "length_words"], categorical=categorical,
                            source=f"{what} ({len(questions)} of {total})", seed=seed)
    return profile, {"source": what, "questions": len(questions), "not_questions": win.unreadable,
                     "seconds": round(time.perf_counter() - started, 2)}


def write_bundle(assistant: SupportAssistant, record: dict, out: str | Path, overwrite: bool = True) -> Path:
    """Write the assistant built by :func:`build` as a bundle folder; return its path."""
    from lepton_apps.bundle import BundleWriter, fingerprint_data
    from lepton_apps.plots import save_figure

    cfg: SupportConfig = record["config"]
    kb: pd.DataFrame = record["kb"]
    labels = (record["intent_result"].labels if record.get("intent_result")
              else record["intent_model"][2] if record.get("intent_model") else [])
    with BundleWriter(out, domain="support", task="faq-retrieval", overwrite=overwrite, label_names=labels,
                      preprocessing={"encoder": record["encoder"], "max_query_chars": cfg.max_query_chars,
                                     "text": record.get("text")},
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
        if assistant.distance is not None:
            import torch

            w.save_torch("distance.safetensors", {k: torch.from_numpy(v) for k, v in assistant.distance.state().items()})
            w.save_json("distance.json", record.get("distance", {}))
        if assistant.reranker is not None:
            from . import reranker

            reranker.save(assistant.reranker, w)
        if record.get("profile") is not None:
            record["profile"].save(w.file("profile/profile.json").parent)
            w.save_json("profile/info.json", record["profile_info"])
        if record["encoder"]["stored_in_bundle"]:
            with tempfile.TemporaryDirectory() as tmp:
                assistant.encoder.save(tmp)
                for f in sorted(Path(tmp).rglob("*")):
                    if f.is_file():
                        w.copy_file(f, "encoder/" + f.relative_to(tmp).as_posix())
        if record.get("faq_head") is not None:
            w.save_torch("faq_classifier.safetensors", record["faq_head"].state_dict())
            w.save_json("faq_classifier.json", {**head_config(record["faq_head"], kb["id"].tolist()),
                                                "training": record.get("faq_classifier", {})})
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
