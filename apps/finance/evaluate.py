"""The fraud team's metrics and plots: AUC-PR, Card Precision@k per day, cost and alert budget.

Built on :mod:`lepton_apps.metrics` (ROC-AUC, AP, threshold metrics, cost threshold) plus
what fraud teams read: Card Precision@k (per day, the share of compromised cards among the k
cards with the highest score that day, after the Fraud Detection Handbook), alerts per day and
the expected cost of a threshold (a missed fraud costs ``cost_missed`` × its amount, every
alert costs ``cost_review``).
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from lepton_apps import metrics as M


def card_precision_at_k(y: np.ndarray, score: np.ndarray, k: int = 100, day: np.ndarray | None = None,
                        card: np.ndarray | None = None, exclude_detected: bool = True) -> float:
    """Return the mean over days of the daily Card Precision@k (the Fraud Detection Handbook's definition).

    Each day, every card gets its highest score and is compromised if any of its transactions
    that day is fraud; the metric is the share of compromised cards among the top ``k`` (or all
    cards when fewer). With ``exclude_detected`` (the Handbook's choice) a compromised card found
    in a day's top k is left out of the following days, as it would be blocked. Without cards it
    is precision@k on rows; without days, over the whole set.
    """
    frame = pd.DataFrame({"y": np.asarray(y, dtype=int), "s": np.asarray(score, dtype=float),
                          "day": 0 if day is None else np.asarray(day),
                          "card": np.arange(len(y)) if card is None else np.asarray(card)})
    per_card = frame.groupby(["day", "card"], sort=False).agg(s=("s", "max"), y=("y", "max")).reset_index()
    per_card = per_card.sort_values(["day", "s"], ascending=[True, False], kind="stable")
    detected: set = set()
    daily = []
    for _, cards in per_card.groupby("day", sort=True):
        if exclude_detected and card is not None and detected:
            cards = cards[~cards["card"].isin(detected)]
        top = cards.head(k)
        if len(top):
            daily.append(float(top["y"].mean()))
            detected.update(top.loc[top["y"] == 1, "card"].tolist())
    return float(np.mean(daily)) if daily else float("nan")


def operating_point(y: np.ndarray, score: np.ndarray, threshold: float, amount: np.ndarray | None = None,
                    n_days: float = 1.0, cost_missed: float = 1.0, cost_review: float = 1.0) -> dict[str, float]:
    """Return precision, recall, alerts, alerts_per_day and expected cost at ``threshold``.

    Cost = ``cost_missed`` × amount (or 1) of every missed fraud + ``cost_review`` × alerts.
    """
    y = np.asarray(y, dtype=int)
    flagged = np.asarray(score) >= threshold
    value = np.ones(len(y)) if amount is None else np.asarray(amount, dtype=float)
    tp = int((flagged & (y == 1)).sum())
    alerts = int(flagged.sum())
    positives = int((y == 1).sum())
    missed = float(value[(~flagged) & (y == 1)].sum())
    return {"threshold": float(threshold), "alerts": alerts, "alerts_per_day": alerts / max(n_days, 1e-9),
            "precision": tp / alerts if alerts else float("nan"), "recall": tp / positives if positives else float("nan"),
            "tp": tp, "fp": alerts - tp, "fn": positives - tp,
            "cost": cost_missed * missed + cost_review * alerts, "missed_amount": missed}


def fraud_report(y: np.ndarray, score: np.ndarray, threshold: float, *, amount: np.ndarray | None = None,
                 day: np.ndarray | None = None, card: np.ndarray | None = None, k: int = 100,
                 cost_missed: float = 1.0, cost_review: float = 1.0) -> dict[str, Any]:
    """Return the fraud team's metrics for one evaluation set (NaN where a metric is undefined)."""
    y = np.asarray(y, dtype=int)
    both = 0 < y.sum() < len(y)
    n_days = float(len(np.unique(day))) if day is not None else 1.0
    out: dict[str, Any] = {
        "rows": int(len(y)), "frauds": int(y.sum()),
        "roc_auc": M.roc_auc(y, score) if both else float("nan"),
        "pr_auc": M.pr_auc(y, score) if both else float("nan"),
        "card_precision_at_k": card_precision_at_k(y, score, k, day, card),
        "k": int(k), "cp_at_k_unit": ("cards" if card is not None else "rows") + (" per day" if day is not None else ""),
    }
    point = operating_point(y, score, threshold, amount, n_days, cost_missed, cost_review)
    out.update({f"{key}_at_threshold" if key in ("precision", "recall", "cost") else key: v
                for key, v in point.items() if key in ("threshold", "precision", "recall", "alerts_per_day", "cost")})
    return out


def evaluate_scorer(scorer, df: pd.DataFrame, k: int) -> dict[str, Any]:
    """Return :func:`fraud_report` of a :class:`~lepton_apps.finance.predict.FraudScorer` on labelled transactions
    ``df`` at its threshold and costs, with ``rows_skipped_invalid`` (rows that cannot be scored)."""
    from lepton_apps.errors import DataError

    label = scorer.spec.roles.get("label")
    if not label or label not in df.columns:
        raise DataError(f"evaluation needs the label column {label!r}", fix="pass labelled transactions")
    x, errors = scorer.features(df)
    ok = errors.isna().to_numpy().copy()
    v = scorer.validate_table(df)
    y = v.labels
    ok = ok & (y >= 0)
    s = scorer.predict_matrix(x[ok])
    day = v.seconds[ok] // 86400 if v.seconds is not None else None
    card = df[scorer.spec.roles["customer"]].to_numpy()[ok] if scorer.spec.has("customer") else None
    amount = pd.to_numeric(df[scorer.spec.roles["amount"]]).to_numpy()[ok] if scorer.spec.has("amount") else None
    th = scorer.threshold_info
    report = fraud_report(y[ok], s, scorer.threshold, amount=amount, day=day, card=card, k=k,
                          cost_missed=th.get("cost_missed", 1.0), cost_review=th.get("cost_review", 1.0))
    report["rows_skipped_invalid"] = int((~errors.isna()).sum())
    return report


def summary(r: dict[str, Any]) -> str:
    """Return one line with the headline numbers of a :func:`fraud_report`."""
    return (f"{r['rows']:,} transactions, {r['frauds']:,} frauds: ROC-AUC {r['roc_auc']:.4f}  AUC-PR {r['pr_auc']:.4f}  "
            f"CP@{r['k']} {r['card_precision_at_k']:.4f} ({r['cp_at_k_unit']})  precision "
            f"{r['precision_at_threshold']:.3f} recall {r['recall_at_threshold']:.3f} at threshold "
            f"{r['threshold']:.4f} ({r['alerts_per_day']:.1f} alerts/day)")


def summarise_folds(reports: list[dict[str, Any]], keys=("roc_auc", "pr_auc", "card_precision_at_k")) -> dict[str, Any]:
    """Return ``{key: {"mean", "std", "folds"}}`` over prequential folds."""
    out = {}
    for key in keys:
        vals = np.array([r[key] for r in reports], dtype=float)
        out[key] = {"mean": float(np.nanmean(vals)) if len(vals) else float("nan"),
                    "std": float(np.nanstd(vals)) if len(vals) else float("nan"), "folds": vals.tolist()}
    return out


def threshold_sweep(y: np.ndarray, score: np.ndarray, amount: np.ndarray | None = None, n_days: float = 1.0,
                    cost_missed: float = 1.0, cost_review: float = 1.0, n: int = 200) -> pd.DataFrame:
    """Return precision, recall, alerts per day and cost over ``n`` thresholds (score quantiles)."""
    score = np.asarray(score, dtype=float)
    grid = np.unique(np.quantile(score, np.linspace(0, 1, n))) if len(score) else np.array([0.5])
    return pd.DataFrame([operating_point(y, score, th, amount, n_days, cost_missed, cost_review) for th in grid])


def plot_threshold(sweep: pd.DataFrame, threshold: float | None = None):
    """Return a Figure of precision, recall and alerts per day against the threshold."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4.5))
    ax = fig.add_subplot(111)
    ax.plot(sweep["threshold"], sweep["precision"], label="precision")
    ax.plot(sweep["threshold"], sweep["recall"], label="recall")
    ax.set_xlabel("threshold (score)")
    ax.set_ylabel("precision / recall")
    ax2 = ax.twinx()
    ax2.plot(sweep["threshold"], sweep["alerts_per_day"], color="grey", linestyle="--", label="alerts per day")
    ax2.set_ylabel("alerts per day")
    ax2.set_yscale("symlog")
    if threshold is not None:
        ax.axvline(threshold, color="red", linewidth=1, label="chosen threshold")
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="center right", fontsize=8)
    ax.set_title("Threshold trade-off (validation)")
    fig.tight_layout()
    return fig


def plot_score_distribution(y: np.ndarray, score: np.ndarray, threshold: float | None = None):
    """Return a Figure of the score histograms of legitimate and fraud rows (log counts)."""
    from matplotlib.figure import Figure

    y = np.asarray(y, dtype=int)
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot(111)
    bins = np.linspace(0, 1, 41)
    ax.hist(np.asarray(score)[y == 0], bins=bins, alpha=0.6, label="legitimate", log=True)
    ax.hist(np.asarray(score)[y == 1], bins=bins, alpha=0.6, label="fraud", log=True)
    if threshold is not None:
        ax.axvline(threshold, color="red", linewidth=1, label="threshold")
    ax.set_xlabel("fraud score")
    ax.set_ylabel("transactions (log)")
    ax.legend(fontsize=8)
    ax.set_title("Score distribution (test)")
    fig.tight_layout()
    return fig


FRAUD_LABELS = {"1": 1, "fraud": 1, "true": 1, "yes": 1, "chargeback": 1, "0": 0, "legit": 0, "genuine": 0,
                "false": 0, "no": 0}


LIVE_K = 100  # the daily alert budget of the live Card Precision@k (evaluate's --k default)


def live_metrics(items: pd.DataFrame, k: int = LIVE_K) -> dict[str, Any]:
    """Return one window's live fraud metrics from served items (``score``, ``decision``, ``created_at``,
    ``customer_id``) and the outcomes returned for them (``label``: 1 / fraud / chargeback or 0 / legit):
    ROC-AUC and AUC-PR of the scores, precision and recall of the alerts, Card Precision@k per served day
    (``card_precision_at_100``: the labelled cards with the day's ``k`` highest scores; on transactions when the
    model has no customer column) and the alert rate over every served item. Only labelled items enter the
    label metrics, so a window younger than the label delay gives provisional numbers (the weekly table marks
    it ``labels_complete = False``). Raises DataError for an outcome label it cannot read."""
    from lepton_apps.errors import DataError

    if not len(items) or "score" not in items:
        return {}
    decision = items["decision"] if "decision" in items else items["score"].isna()  # no decision: no alerts
    out: dict[str, Any] = {"alert_rate": float(decision.fillna(False).astype(bool).mean())}
    keep = (items["label"].notna() & items["score"].notna()).to_numpy()
    lab = items[keep]
    unknown = sorted({str(v) for v in lab["label"] if str(v).strip().lower() not in FRAUD_LABELS})
    if unknown:
        raise DataError(f"outcome labels {unknown[:5]} are neither fraud nor legitimate",
                        where="finance outcomes", fix=f"use one of {sorted(FRAUD_LABELS)}")
    y = np.array([FRAUD_LABELS[str(v).strip().lower()] for v in lab["label"]], dtype=int)
    score = lab["score"].to_numpy(dtype=float) if len(lab) else np.zeros(0)
    alert = decision[keep].fillna(False).astype(bool).to_numpy()
    both = 0 < y.sum() < len(y)
    out.update({"frauds": int(y.sum()),
                "roc_auc": M.roc_auc(y, score) if both else float("nan"),
                "pr_auc": M.pr_auc(y, score) if both else float("nan"),
                "precision_at_threshold": float(y[alert].mean()) if alert.any() else float("nan"),
                "recall_at_threshold": float(alert[y == 1].mean()) if y.any() else float("nan")})
    if len(lab):
        day = pd.to_datetime(lab["created_at"]).dt.date.to_numpy() if "created_at" in lab else None
        cards = lab["customer_id"] if "customer_id" in lab else None
        card = None if cards is None or cards.isna().all() else cards.fillna("(none)").astype(str).to_numpy()
        out[f"card_precision_at_{k}"] = card_precision_at_k(y, score, k, day, card)
    return out
