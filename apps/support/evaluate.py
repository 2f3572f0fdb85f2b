"""Evaluation of a support assistant on held-out questions: retrieval, hand-off, coverage, intent, escalation.

Answerable questions (with a faq_id) give top-1 accuracy, MRR and recall@k of the ranking and
answered-correct (share answered with the right FAQ); out-of-scope questions (empty faq_id) give
hand-off precision / recall; all questions give the trade-off curve (hand-off recall vs
answered-correct for every confidence threshold) and the answered-precision vs coverage curve. Labelled messages
(``text,label``; label ``neutral`` = calm) give escalation precision / recall / F1.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import read_labelled, read_questions


def answered_precision_curve(confidence: np.ndarray, correct: np.ndarray) -> pd.DataFrame:
    """Return coverage and precision of the answered questions for every confidence threshold (descending)."""
    order = np.argsort(-confidence, kind="stable")
    hits = np.cumsum(correct[order])
    n = np.arange(1, len(order) + 1)
    return pd.DataFrame({"threshold": confidence[order], "coverage": n / len(order), "precision": hits / n})


def evaluate_assistant(assistant, questions, k: int = 5) -> tuple[dict, pd.DataFrame, dict]:
    """Return (metrics, per-question table, matplotlib figures) for ``assistant`` on ``questions``.

    ``questions``: a path or table with question, faq_id ('' = out of scope) and optional intent.
    """
    from sklearn.metrics import f1_score

    from lepton_apps.plots import plot_calibration

    q = read_questions(questions, kb_ids=set(assistant.kb["id"]))
    replies = assistant.answer_batch(q["question"].tolist())
    gold = q["faq_id"].tolist()
    ranked = [[s.faq_id for s in r.sources] for r in replies]
    rank = np.array([rk.index(g) + 1 if g and g in rk else 0 for rk, g in zip(ranked, gold)])
    answerable = np.array([bool(g) for g in gold])
    top1 = np.array([bool(rk) and rk[0] == g for rk, g in zip(ranked, gold)])
    handoff = np.array([r.handoff for r in replies])
    conf = np.array([r.confidence for r in replies])
    answered_right = np.array([(not r.handoff) and r.faq_id == g for r, g in zip(replies, gold)])
    m: dict = {"n_questions": int(len(q)), "n_answerable": int(answerable.sum()), "n_out_of_scope": int((~answerable).sum())}
    if answerable.any():
        r_a = rank[answerable]
        m["top1_accuracy"] = float(top1[answerable].mean())
        m["mrr"] = float(np.where(r_a > 0, 1.0 / np.maximum(r_a, 1), 0.0).mean())
        m[f"recall_at_{k}"] = float(((r_a > 0) & (r_a <= k)).mean())
        m["answerable_answered_rate"] = float((~handoff[answerable]).mean())
        m["answered_correct"] = float(answered_right[answerable].mean())
    if (~answerable).any():
        m["handoff_recall"] = float(handoff[~answerable].mean())
        m["handoff_precision"] = float((~answerable[handoff]).mean()) if handoff.any() else 0.0
    m["coverage"] = float((~handoff).mean())
    m["answered_precision"] = float(answered_right[~handoff].mean()) if (~handoff).any() else 0.0
    intent_gold = [i or (assistant.kb.set_index("id").loc[g, "category"] if g else "")
                   for i, g in zip(q["intent"], gold)]
    pairs = [(g, r.intent) for g, r in zip(intent_gold, replies) if g and r.intent is not None]
    if pairs and any(g in assistant.intent_labels for g, _ in pairs):
        y, p = zip(*pairs)
        m["intent_accuracy"] = float(np.mean([a == b for a, b in pairs]))
        m["intent_macro_f1"] = float(f1_score(y, p, average="macro", zero_division=0))
    margin = assistant.settings.ambiguity_margin
    ambiguous = [len(r.sources) > 1 and _gap(r.sources) < margin for r in replies]
    details = q.assign(predicted=[r.faq_id for r in replies], top1=[rk[0] if rk else None for rk in ranked],
                       rank=rank, confidence=conf, ambiguous=ambiguous, unusable=[not r.sources for r in replies],
                       handoff=handoff, handoff_reason=[r.handoff_reason for r in replies],
                       intent_predicted=[r.intent for r in replies], escalate=[r.escalate for r in replies])
    correct = np.array([bool(rk) and rk[0] == g for rk, g in zip(ranked, gold)], dtype=float)
    curve = answered_precision_curve(conf, correct)
    figures = {"coverage_curve.png": _plot_coverage(curve, assistant.settings.threshold, conf),
               "tradeoff_curve.png": plot_tradeoff(tradeoff_table(details), assistant.settings.threshold),
               "confidence_calibration.png": plot_calibration(correct.astype(int), conf,
                                                              title="Confidence vs. top-1 correct")}
    return m, details, figures


def _gap(sources) -> float:
    """How far the first source leads the second on the score that ranked them (the re-ranker's when it ran)."""
    first, second = ((s.score if s.rerank is None else s.rerank) for s in sources[:2])
    return first - second


def summary(assistant, metrics: dict, details: pd.DataFrame | None = None) -> str:
    """Return the headline numbers of an evaluation as a few lines (with the trade-off table when the questions
    include out-of-scope ones)."""
    lines = []
    if "top1_accuracy" in metrics:
        k = assistant.settings.top_k
        lines.append(f"{metrics['n_questions']} questions ({metrics['n_out_of_scope']} out of scope): top-1 "
                     f"{metrics['top1_accuracy']:.3f}, MRR {metrics['mrr']:.3f}, recall@{k} "
                     f"{metrics.get(f'recall_at_{k}', float('nan')):.3f}, coverage {metrics['coverage']:.3f}")
    if "handoff_recall" in metrics and "answered_correct" in metrics:
        lines.append(f"at the bundle's threshold {assistant.settings.threshold:.3f} (calibrated on "
                     f"{assistant.calibration_source or 'unknown'}): answered-correct {metrics['answered_correct']:.3f}, "
                     f"hand-off recall {metrics['handoff_recall']:.3f}")
    if "escalation_f1" in metrics:
        lines.append(f"escalation: precision {metrics['escalation_precision']:.3f}, recall "
                     f"{metrics['escalation_recall']:.3f}, F1 {metrics['escalation_f1']:.3f}")
    if details is not None and metrics.get("n_answerable") and metrics.get("n_out_of_scope"):
        lines.append("trade-off as the threshold moves (every point in tradeoff_curve.csv with --out):")
        lines.append(tradeoff_table(details, points=21).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    return "\n".join(lines)


def tradeoff_table(details: pd.DataFrame, points: int | None = 41) -> pd.DataFrame:
    """Return hand-off recall (out of scope) and answered-correct (in scope) for every confidence threshold.

    ``details``: the per-question table of :func:`evaluate_assistant`. A question is handed off when its
    confidence is below the threshold, when the top two FAQs are tied (``ambiguous``) or when it is
    unusable (empty, binary …); ``points`` thresholds spread over the range (None: every one).
    """
    from .calibration import tradeoff_curve

    gold = details["faq_id"].to_numpy()
    correct = (details["top1"].to_numpy() == gold) & (gold != "")
    always = details["ambiguous"].to_numpy(bool) | details["unusable"].to_numpy(bool)
    return tradeoff_curve(details["confidence"].to_numpy(float), correct, gold == "", always, points=points)


def ceiling(replies, gold, target: float = 0.9) -> dict:
    """Return the oracle ceiling of a hand-off on labelled questions: the best answered-correct that any threshold
    on the replies' confidence reaches at hand-off recall >= ``target`` — thresholds tried on these questions
    themselves, which no build can do; the gap to the bundle's own threshold shows whether the confidence signal or
    its calibration limits it. ``gold``: each question's FAQ id ('' = out of scope)."""
    from .calibration import tradeoff_curve

    gold = np.asarray(gold, dtype=object)
    correct = np.array([bool(r.sources) and r.sources[0].faq_id == g for r, g in zip(replies, gold)]) & (gold != "")
    always = np.array([r.handoff and r.handoff_code != "low_confidence" for r in replies])
    curve = tradeoff_curve(np.array([r.confidence for r in replies], dtype=float), correct, gold == "", always,
                           points=None)
    ok = curve[curve["handoff_recall"] >= target - 1e-12]
    if not len(ok):
        return {"oracle_answered_correct": float("nan"), "oracle_threshold": float("nan"), "oracle_recall": float("nan")}
    best = ok.loc[ok["answered_correct"].idxmax()]
    return {"oracle_answered_correct": float(best["answered_correct"]), "oracle_threshold": float(best["threshold"]),
            "oracle_recall": float(best["handoff_recall"])}


def plot_tradeoff(table: pd.DataFrame, threshold: float):
    """Return a figure of answered-correct vs hand-off recall as the threshold moves, the chosen one marked."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    ax.plot(table["handoff_recall"], table["answered_correct"], lw=2)
    at = table[table["threshold"] >= threshold]   # the first point at or above the threshold: its decisions
    if len(at):
        ax.scatter([at["handoff_recall"].iloc[0]], [at["answered_correct"].iloc[0]], color="crimson", zorder=3,
                   label=f"threshold {threshold:.2f}")
        ax.legend(loc="lower left")
    ax.set(xlabel="hand-off recall (out-of-scope questions handed off)",
           ylabel="answered correctly (in-scope questions)", title="Hand-off trade-off", ylim=(0, 1.02), xlim=(0, 1.02))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def escalation_metrics(assistant, messages) -> tuple[dict, pd.DataFrame]:
    """Return (metrics, per-message table) of the escalation decision on labelled messages.

    ``messages``: a path or table with text, label (``neutral`` = should not escalate) and optional
    split; when some rows have split=test only those (the held-out part) are scored. Metrics:
    escalation precision / recall / F1 and PR AUC of P(escalate), sentiment accuracy, the threshold.
    """
    from sklearn.metrics import precision_recall_fscore_support

    from lepton_apps.errors import ConfigError
    from lepton_apps.metrics import pr_auc

    from .model import NEUTRAL

    if assistant.sentiment_head is None:
        raise ConfigError("this bundle has no sentiment / urgency classifier", where="bundle",
                          fix="train it with --sentiment-data (text,label with label 'neutral' for calm messages)")
    data = read_labelled(messages, "label", what="sentiment data")
    if "split" in data and (data["split"] == "test").any():
        data = data[data["split"] == "test"].reset_index(drop=True)
    replies = assistant.answer_batch(data["text"].tolist())
    upset = (data["label"] != NEUTRAL).to_numpy()
    flagged = np.array([r.escalate for r in replies])
    score = np.array([r.escalation_score if r.escalation_score is not None else 0.0 for r in replies])
    precision, recall, f1, _ = precision_recall_fscore_support(upset, flagged, average="binary", zero_division=0)
    m = {"n_sentiment_test": int(len(data)), "n_should_escalate": int(upset.sum()),
         "escalation_threshold": float(assistant.settings.escalation_threshold),
         "escalation_precision": float(precision), "escalation_recall": float(recall), "escalation_f1": float(f1),
         "false_escalations": int((flagged & ~upset).sum()), "missed_escalations": int((upset & ~flagged).sum()),
         "sentiment_accuracy": float(np.mean([r.sentiment == g for r, g in zip(replies, data["label"])]))}
    if 0 < upset.sum() < len(upset):
        m["escalation_pr_auc"] = float(pr_auc(upset.astype(int), score))
    details = data.assign(sentiment=[r.sentiment for r in replies], escalation_score=score, escalate=flagged,
                          correct=flagged == upset)
    return m, details


def assistant_evaluation(assistant, data=None, *, out: str | Path | None = None,
                         sentiment: str | Path | None = None):
    """Return :meth:`SupportAssistant.evaluate <lepton_apps.support.predict.SupportAssistant.evaluate>`'s
    :class:`~lepton_apps.predictor.Evaluation`: the metrics on labelled questions ``data`` and / or ``sentiment``
    messages, the summary line, and with ``out`` the report folder."""
    from lepton_apps.errors import ConfigError
    from lepton_apps.predictor import Evaluation

    if data is None and sentiment is None:
        raise ConfigError("nothing to evaluate", fix="pass a questions file and/or sentiment=labelled_messages.json")
    metrics, details, figures, escalation = {}, None, {}, None
    if data is not None:
        metrics, details, figures = evaluate_assistant(assistant, data, k=assistant.settings.top_k)
    if sentiment is not None:
        m, escalation = escalation_metrics(assistant, sentiment)
        metrics.update(m)
    metrics["model_version"] = assistant.model_version
    curve = None
    if details is not None and metrics.get("n_answerable") and metrics.get("n_out_of_scope"):
        curve = tradeoff_table(details, points=None)
    folder = None
    if out:
        folder = write_report(metrics, details, figures, out, escalation)
        if curve is not None:
            curve.to_csv(folder / "tradeoff_curve.csv", index=False)
    return Evaluation(metrics=metrics, summary=summary(assistant, metrics, details), folder=folder)


def _plot_coverage(curve: pd.DataFrame, threshold: float, conf: np.ndarray):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    ax.plot(curve["coverage"], curve["precision"], lw=2)
    cov = float((conf >= threshold).mean())
    at = curve[curve["coverage"] <= cov + 1e-9]
    if len(at):
        ax.scatter([at["coverage"].iloc[-1]], [at["precision"].iloc[-1]], color="crimson", zorder=3,
                   label=f"threshold {threshold:.2f}")
        ax.legend(loc="lower left")
    ax.set(xlabel="coverage (share of questions answered)", ylabel="precision of answered questions",
           title="Answered precision vs coverage", ylim=(0, 1.02), xlim=(0, 1.0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def write_report(metrics: dict, details: pd.DataFrame | None, figures: dict, out: str | Path,
                 escalation_details: pd.DataFrame | None = None) -> Path:
    """Write report.json, details.csv (+ escalation_details.csv) and the PNG plots to ``out``; return the folder."""
    import json

    from lepton_apps.io import atomic_write_json
    from lepton_apps.plots import save_figure

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "report.json", metrics)
    if details is not None:
        details.to_csv(out / "details.csv", index=False)
    if escalation_details is not None:
        escalation_details.to_csv(out / "escalation_details.csv", index=False)
    for name, fig in figures.items():
        save_figure(fig, out / name)
    (out / "README.txt").write_text(json.dumps(metrics, indent=2) + "\n")
    return out


OUT_OF_SCOPE_LABELS = {"", "out_of_scope", "out-of-scope", "oos", "handoff", "none"}


def live_metrics(items: pd.DataFrame) -> dict[str, Any]:
    """Return one window's live support metrics from served answers (``faq_id``, ``handoff``) and the
    resolutions returned for them (``label``: the FAQ id that answered the customer, or ``out_of_scope`` when
    no FAQ did): the hand-off rate over every answer, answered accuracy (answered with the right FAQ, among the
    labelled answered ones), hand-off precision (handed off and really out of scope), and the thumbs-down
    rate of rated answers."""
    out: dict[str, Any] = {}
    if not len(items):
        return out
    handoff = items["handoff"].fillna(True).astype(bool) if "handoff" in items else pd.Series(True, index=items.index)
    out["handoff_rate"] = float(handoff.mean())
    lab = items[items["label"].notna()]
    if len(lab):
        truth = lab["label"].astype(str).str.strip()
        oos = truth.str.lower().isin(OUT_OF_SCOPE_LABELS)
        answered = ~handoff.loc[lab.index]
        right = lab["faq_id"].astype(str).to_numpy() == truth.to_numpy()
        out["answered_accuracy"] = float(right[answered.to_numpy()].mean()) if answered.any() else float("nan")
        out["handoff_precision"] = float(oos[~answered].mean()) if (~answered).any() else float("nan")
    rated = items["rating"].dropna() if "rating" in items else pd.Series(dtype=float)
    out["thumbs_down_rate"] = float((rated == -1).mean()) if len(rated) else float("nan")
    return out
