"""The trainable parts: classifier heads on frozen embeddings and the confidence model.

* :class:`EmbeddingHead` — a linear (optionally one hidden layer) classifier on sentence
  embeddings, trained with the core :class:`~lepton_apps.training.Trainer` (mixed precision,
  early stopping on validation accuracy); used for intents.
* :func:`train_escalation_head` — sentiment / urgency: a multinomial logistic regression on the
  embeddings (stored as an :class:`EmbeddingHead`) and the threshold on P(not neutral) that reaches
  a target escalation precision on cross-validated probabilities; :func:`escalate` applies it to a reply.
* :func:`train_faq_classifier` — a linear softmax classifier over the FAQ ids on the frozen
  embeddings of the KB's questions and paraphrases (the KB's paraphrases as training data).
* :class:`ConfidenceModel` — logistic regression on retrieval features, giving P(the top FAQ is
  the right answer); weights stored as JSON.
* :func:`classify_texts` — runs the fine-tuned intent classifier (the encoder's own fine-tuning is in
  :mod:`lepton_apps.support.finetune`).
"""
from __future__ import annotations

import dataclasses
import tempfile
from typing import Callable

import numpy as np
import torch

from lepton_apps.errors import DataError
from lepton_apps.training import Trainer, TrainConfig, balanced_class_weights, make_loss

NEUTRAL = "neutral"   # the sentiment label that never escalates; every other label does


class EmbeddingHead(torch.nn.Module):
    """Classifier on fixed sentence embeddings: dropout + linear (or a one-hidden-layer MLP)."""

    def __init__(self, dim: int, n_classes: int, hidden: int = 0, dropout: float = 0.1):
        super().__init__()
        self.dim, self.n_classes, self.hidden = dim, n_classes, hidden
        layers: list[torch.nn.Module] = [torch.nn.Dropout(dropout)]
        if hidden:
            layers += [torch.nn.Linear(dim, hidden), torch.nn.GELU(), torch.nn.Dropout(dropout)]
        layers.append(torch.nn.Linear(hidden or dim, n_classes))
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def predict_proba(self, embeddings: np.ndarray) -> np.ndarray:
        """Return class probabilities (n, n_classes) for embeddings (n, dim)."""
        self.eval()
        with torch.inference_mode():
            logits = self(torch.as_tensor(embeddings, dtype=torch.float32)).float().numpy()
        # the softmax of a few rows in NumPy: torch's would wake its thread pool for microseconds of work,
        # which costs milliseconds per call on a 2-core machine shared with ONNX Runtime's threads
        z = np.exp(logits - logits.max(axis=-1, keepdims=True))
        return z / z.sum(axis=-1, keepdims=True)


@dataclasses.dataclass
class HeadResult:
    """A trained head, its label names and its training summary."""

    head: EmbeddingHead
    labels: list[str]
    summary: dict


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    val = []
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        if len(idx) >= 3:
            val.extend(idx[: max(1, int(round(fraction * len(idx))))])
    val_mask = np.zeros(len(y), dtype=bool)
    val_mask[val] = True
    return np.flatnonzero(~val_mask), np.flatnonzero(val_mask)


def accuracy_metric(outputs: np.ndarray, targets: np.ndarray) -> dict:
    return {"accuracy": float((outputs.argmax(1) == targets).mean())}


def embedding_spread(embeddings: np.ndarray) -> float:
    """Return the root-mean-square distance of the embeddings to their mean (1.0 for fewer than 2 rows or no
    spread). The FAQ classifier is fitted on embeddings divided by it, so that its L2 penalty means the same
    for every encoder (all-MiniLM-L6-v2 spreads 0.91 on the demo KB, multilingual-e5-small 0.38)."""
    arr = np.asarray(embeddings, dtype=np.float32)
    spread = float(np.sqrt(((arr - arr.mean(axis=0)) ** 2).sum(axis=1).mean())) if len(arr) > 1 else 1.0
    return spread if spread > 1e-6 else 1.0


def fold_standardization(head: EmbeddingHead, centre: np.ndarray, spread: float) -> EmbeddingHead:
    """Fold the input standardization (x - centre) / spread into the head's first linear layer, in place, so that
    the head fed raw x gives the logits it gave on standardized x: W (x - c) / s + b = (W / s) x + (b - W c / s)."""
    first = next(m for m in head.net if isinstance(m, torch.nn.Linear))
    with torch.no_grad():
        first.weight /= spread
        first.bias -= first.weight @ torch.as_tensor(centre, dtype=torch.float32)
    return head


def train_head(embeddings: np.ndarray, labels: list[str], *, epochs: int, lr: float, seed: int,
               device: str = "auto", precision: str = "auto", hidden: int = 0, batch_size: int = 64,
               label_order: list[str] | None = None, progress: bool = False, standardize: bool | None = None,
               callback: Callable[[dict], None] | None = None) -> HeadResult:
    """Train an :class:`EmbeddingHead` on (embeddings, labels); return it with its label names.

    20% of each class (classes with 3+ examples) is held out for early stopping on accuracy; the
    loss weighs classes by inverse frequency (scikit-learn's 'balanced').

    ``standardize=True`` fits the head on centred embeddings divided by their spread (:func:`embedding_spread`
    of the training part) and folds that into its first linear layer (:func:`fold_standardization`), so it
    takes raw embeddings; ``False`` fits the raw embeddings; ``None`` (default) fits both and keeps the one
    with the better held-out accuracy (ties: raw). Encoders spread their vectors very differently
    (multilingual-e5-small's share a large common component): on a dev split of Banking77's training set
    standardizing took e5 from 0.878 to 0.909 (MiniLM 0.916 -> 0.917), while on the small demo KBs it cost
    test intent accuracy (English, MiniLM: 0.727 -> 0.712; Chinese, e5: 0.795 -> 0.759) — hence chosen per
    build, on held-out data (both demos keep raw, both Banking77 runs' choices are in the support README).
    """
    if standardize is None:
        tried = [_train_head(embeddings, labels, epochs=epochs, lr=lr, seed=seed, device=device, precision=precision,
                             hidden=hidden, batch_size=batch_size, label_order=label_order, progress=progress,
                             standardize=flag, callback=callback) for flag in (False, True)]
        best = max(tried, key=lambda r: (round(r.summary["val_accuracy"] or 0.0, 6), not r.summary["standardized"]))
        best.summary["val_accuracy_raw_standardized"] = [r.summary["val_accuracy"] for r in tried]
        return best
    return _train_head(embeddings, labels, epochs=epochs, lr=lr, seed=seed, device=device, precision=precision,
                       hidden=hidden, batch_size=batch_size, label_order=label_order, progress=progress,
                       standardize=standardize, callback=callback)


def _train_head(embeddings, labels, *, epochs, lr, seed, device, precision, hidden, batch_size, label_order, progress,
                standardize: bool, callback) -> HeadResult:
    names = label_order or sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    raw = np.asarray(embeddings, dtype=np.float32)
    tr, va = stratified_split(y, 0.2, seed)
    centre = raw[tr].mean(axis=0) if standardize else np.zeros(raw.shape[1], dtype=np.float32)
    spread = embedding_spread(raw[tr]) if standardize else 1.0
    x = torch.as_tensor((raw - centre) / spread, dtype=torch.float32)
    train_ds = torch.utils.data.TensorDataset(x[tr], torch.as_tensor(y[tr]))
    val_ds = torch.utils.data.TensorDataset(x[va], torch.as_tensor(y[va])) if len(va) else None
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=1e-4, warmup_fraction=0.0,
                      monitor="val_accuracy" if val_ds else "train_loss", mode="max" if val_ds else "min",
                      patience=max(5, epochs // 4), seed=seed, device=device, precision=precision, progress=progress)
    head = EmbeddingHead(x.shape[1], len(names), hidden=hidden)
    with tempfile.TemporaryDirectory(prefix="lepton-support-head-") as run_dir:
        loss = make_loss("cross_entropy", balanced_class_weights(y[tr], len(names)))
        result = Trainer(head, train_ds, val_ds, cfg, run_dir=run_dir, loss_fn=loss, metric_fn=accuracy_metric,
                         callback=callback).fit()
    head = fold_standardization(head.cpu().float().eval(), centre, spread)
    return HeadResult(head, names, {"standardized": standardize, "best_epoch": result.best_epoch,
                                    "epochs_run": result.epochs_run,
                                    "val_accuracy": result.best_metric if val_ds else None,
                                    "n_train": int(len(tr)), "n_val": int(len(va)), "seconds": round(result.seconds, 2)})


def head_config(head: EmbeddingHead, labels: list[str]) -> dict:
    """Return the JSON description needed to rebuild a head."""
    return {"dim": head.dim, "n_classes": head.n_classes, "hidden": head.hidden, "labels": labels}


def head_from_state(config: dict, state: dict) -> EmbeddingHead:
    """Return a head rebuilt from :func:`head_config` output and its state dict."""
    head = EmbeddingHead(config["dim"], config["n_classes"], hidden=config.get("hidden", 0))
    head.load_state_dict(state)
    return head.eval()


# ------------------------------------------------------------------------------ sentiment / urgency
def _logistic(embeddings: np.ndarray, labels: np.ndarray, C: float):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=C, class_weight="balanced", max_iter=3000).fit(embeddings, labels)


def _as_head(model, dim: int) -> EmbeddingHead:
    """Return the fitted (multinomial or binary) logistic regression as a linear :class:`EmbeddingHead`."""
    coef, bias = model.coef_, model.intercept_
    if len(model.classes_) == 2:   # sklearn keeps one logit z for class 1; softmax([0, z]) = sigmoid(z)
        coef, bias = np.vstack([np.zeros_like(coef), coef]), np.concatenate([[0.0], bias])
    head = EmbeddingHead(dim, len(model.classes_))
    with torch.no_grad():
        head.net[-1].weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        head.net[-1].bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return head.eval()


def _best_f1_threshold(upset: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import precision_recall_curve

    precision, recall, thr = precision_recall_curve(upset, score)
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))])


def train_escalation_head(embeddings: np.ndarray, labels: list[str], *, extra_neutral: np.ndarray | None = None,
                          C: float = 10.0, target_precision: float = 0.9, threshold: float | None = None,
                          folds: int = 5, seed: int = 0) -> tuple[HeadResult, float]:
    """Return (sentiment head, escalation threshold) for labelled messages; label ``neutral`` = no escalation.

    The head is an L2 logistic regression with class-balanced weights (scikit-learn; convex, so it
    is fully fitted and deterministic), stored as a linear :class:`EmbeddingHead`. A message is
    escalated when P(escalate) = 1 - P(neutral) reaches the threshold. Unless ``threshold`` is
    given, it is the lowest one whose escalation precision reaches ``target_precision`` on
    out-of-fold probabilities (stratified ``folds``-fold cross-validation of the labelled messages;
    when no threshold reaches it, the best-F1 one, with a note). ``extra_neutral`` (e.g. the KB's
    own questions) joins every training fold as calm examples but is never scored.
    """
    from sklearn.model_selection import StratifiedKFold

    from lepton_apps.metrics import threshold_for_precision, threshold_metrics

    y = np.asarray(labels, dtype=object)
    names, counts = np.unique(y, return_counts=True)
    if NEUTRAL not in names:
        raise DataError(f"sentiment data has no {NEUTRAL!r} label (found: {', '.join(map(str, names))})",
                        where="sentiment_data", fix=f"label calm messages {NEUTRAL!r}; every other label escalates")
    if counts.min() < 2:
        raise DataError(f"sentiment label {names[counts.argmin()]!r} has only one example", where="sentiment_data",
                        fix="give at least 2 examples of every label (a few dozen each for a useful threshold)")
    extra = np.zeros((0, embeddings.shape[1]), dtype=embeddings.dtype) if extra_neutral is None else extra_neutral
    upset = (y != NEUTRAL).astype(int)
    score = np.zeros(len(y))
    k = int(min(folds, counts.min()))
    for train_idx, val_idx in StratifiedKFold(k, shuffle=True, random_state=seed).split(embeddings, y):
        model = _logistic(np.concatenate([embeddings[train_idx], extra]),
                          np.concatenate([y[train_idx], [NEUTRAL] * len(extra)]), C)
        score[val_idx] = 1.0 - model.predict_proba(embeddings[val_idx])[:, list(model.classes_).index(NEUTRAL)]
    note = None
    if threshold is None:
        try:
            threshold = threshold_for_precision(upset, score, target_precision)
        except DataError as exc:
            threshold, note = _best_f1_threshold(upset, score), f"{exc.what}; using the best-F1 threshold instead"
    at = threshold_metrics(upset, score, threshold)
    model = _logistic(np.concatenate([embeddings, extra]), np.concatenate([y, [NEUTRAL] * len(extra)]), C)
    summary = {"model": "logistic regression (scikit-learn, class-balanced)", "C": C, "n_messages": int(len(y)),
               "n_extra_neutral": int(len(extra)), "escalation_threshold": float(threshold),
               "target_precision": target_precision, "cv_folds": k, "cv_escalation_precision": at["precision"],
               "cv_escalation_recall": at["sensitivity"], "cv_escalation_f1": at["f1"]}
    if note:
        summary["note"] = note
    return HeadResult(_as_head(model, embeddings.shape[1]), [str(c) for c in model.classes_], summary), float(threshold)


def escalate(reply, labels: list[str], probs: np.ndarray, threshold: float) -> None:
    """Set the escalation fields of ``reply`` (an :class:`~lepton_apps.support.predict.Answer`) from the sentiment
    head's probabilities ``probs`` over ``labels``: escalated when P(escalate) = 1 - P(neutral) reaches ``threshold``
    (:func:`train_escalation_head`'s). The reported sentiment agrees with the decision: the likeliest non-neutral
    label when escalated, else neutral."""
    upset = [(float(p), lab) for lab, p in zip(labels, probs) if lab != NEUTRAL]
    p_escalate = sum(p for p, _ in upset)
    reply.escalation_score = p_escalate
    reply.escalate = bool(upset) and p_escalate >= threshold
    if reply.escalate:
        p_worst, worst = max(upset)
        reply.sentiment, reply.sentiment_confidence = worst, p_worst
        reply.escalation_reason = (f"the customer seems {worst} (P(escalate)={p_escalate:.2f} "
                                   f">= {threshold:.2f})")
        reply.escalation_detail = {"sentiment": worst, "p_escalate": p_escalate,
                                   "threshold": float(threshold)}
    else:
        reply.sentiment, reply.sentiment_confidence = NEUTRAL, 1.0 - p_escalate


# ------------------------------------------------------------------------------- FAQ classifier
def train_faq_classifier(embeddings: np.ndarray, rows: np.ndarray, n_rows: int, *, l2: float,
                         max_iter: int = 150) -> EmbeddingHead:
    """Return a linear softmax classifier over the ``n_rows`` FAQs fitted on (embeddings, FAQ row of each).

    Multinomial logistic regression: mean cross-entropy + ``l2`` * ||W||^2, minimised by full-batch
    L-BFGS from zero weights (convex, so deterministic and fully fitted; no held-out split needed).
    Stored as a linear :class:`EmbeddingHead`. FAQs without any example keep zero weights and a
    low bias, so they are never predicted with confidence.

    The fit runs on the embeddings divided by their spread (the root-mean-square distance to their mean), and
    the weights are scaled back, so that ``l2`` means the same for every encoder: all-MiniLM-L6-v2 spreads
    0.91 on the demo KB, multilingual-e5-small, whose vectors all lie close together, 0.38 — without the
    rescaling its classifier stays nearly flat (top FAQ ~0.3 among 83).
    """
    raw = np.asarray(embeddings, dtype=np.float32)
    spread = embedding_spread(raw)
    x = torch.as_tensor(np.ascontiguousarray(raw / spread), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(rows), dtype=torch.int64)
    head = EmbeddingHead(x.shape[1], n_rows)
    linear = head.net[-1]
    with torch.no_grad():
        linear.weight.zero_()
        linear.bias.zero_()
    opt = torch.optim.LBFGS(linear.parameters(), lr=1.0, max_iter=max_iter, history_size=20,
                            tolerance_grad=1e-6, tolerance_change=1e-9, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(linear(x), y) + l2 * (linear.weight ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        linear.weight /= spread  # W' (x / s) = (W' / s) x: the head takes raw embeddings
    return head.eval()


# ------------------------------------------------------------------------------------ confidence
FEATURES = ("fused_top1", "dense_top1", "dense_margin", "fused_margin", "lexical_top1")
# with an FAQ classifier: its probability of the top FAQ and the gap to the second
CLASSIFIER_FEATURES = FEATURES + ("clf_top1", "clf_margin")
# with the second stage (reranker.py): the cross-encoder's probability of the top FAQ and the gap to the second
RERANK_FEATURES = ("rerank_top1", "rerank_margin")
# with the distance scorer (distance.py): the top FAQ's Mahalanobis distance and how much nearer another candidate is
DISTANCE_FEATURES = ("maha_top1", "maha_gap")


def retrieval_features(hits, names: tuple[str, ...] | list[str] = FEATURES) -> np.ndarray:
    """Return the confidence features ``names`` of one query's ranked hits (see :data:`CLASSIFIER_FEATURES`)."""
    if not hits:
        return np.zeros(len(names), dtype=np.float64)
    h1 = hits[0]
    h2 = hits[1] if len(hits) > 1 else None
    clf2 = max((h.clf for h in hits[1:]), default=0.0)
    rr2 = max(((h.rerank or 0.0) for h in hits[1:]), default=0.0)
    d1 = h1.distance or 0.0
    values = {"fused_top1": h1.score, "dense_top1": h1.dense, "dense_margin": h1.dense - (h2.dense if h2 else 0.0),
              "fused_margin": h1.score - (h2.score if h2 else 0.0),
              "lexical_top1": h1.lexical_raw / (1.0 + h1.lexical_raw),
              "clf_top1": h1.clf, "clf_margin": h1.clf - clf2,
              "rerank_top1": h1.rerank or 0.0, "rerank_margin": (h1.rerank or 0.0) - rr2,
              "maha_top1": d1, "maha_gap": d1 - min((h.distance or 0.0 for h in hits), default=0.0)}
    return np.array([values[n] for n in names], dtype=np.float64)


@dataclasses.dataclass
class ConfidenceModel:
    """Logistic regression P(correct) on standardised retrieval features; JSON round-trip."""

    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    features: tuple[str, ...] = FEATURES

    @classmethod
    def fit(cls, features: np.ndarray, correct: np.ndarray, C: float = 1.0,
            names: tuple[str, ...] = FEATURES) -> ConfidenceModel:
        """Return the model fitted on (features named ``names``, correct in {0,1})."""
        from sklearn.linear_model import LogisticRegression

        mean = features.mean(0)
        scale = features.std(0) + 1e-9
        if len(np.unique(correct)) < 2:  # degenerate: every answer right (or wrong)
            return cls(mean.tolist(), scale.tolist(), [0.0] * features.shape[1], 4.0 if correct.all() else -4.0,
                       tuple(names))
        lr = LogisticRegression(C=C, max_iter=1000).fit((features - mean) / scale, correct)
        return cls(mean.tolist(), scale.tolist(), lr.coef_[0].tolist(), float(lr.intercept_[0]), tuple(names))

    def features_of(self, hits) -> np.ndarray:
        """Return this model's input features for one query's ranked hits."""
        return retrieval_features(hits, self.features)

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Return P(correct) for each row of ``features``."""
        z = ((np.atleast_2d(features) - np.array(self.mean)) / np.array(self.scale)) @ np.array(self.coef) + self.intercept
        return 1.0 / (1.0 + np.exp(-z))

    def to_dict(self) -> dict:
        """Return the JSON-serialisable parameters."""
        return {**dataclasses.asdict(self), "features": list(self.features)}

    @classmethod
    def from_dict(cls, d: dict) -> ConfidenceModel:
        """Return the model from :meth:`to_dict` output."""
        return cls(d["mean"], d["scale"], d["coef"], d["intercept"], tuple(d.get("features", FEATURES)))


def classify_texts(intent_model: tuple, texts: list[str], batch_size: int | None,
                   lock) -> list[tuple[str, float, np.ndarray]] | None:
    """Intent from the fine-tuned sequence classifier ``intent_model`` = (model, tokenizer, labels) of
    :func:`finetune_intent_model` (a second forward pass; ``lock`` serialises it): (label, P, all P) per text."""
    if not texts:
        return None
    model, tokenizer, labels = intent_model
    probs = []
    with lock, torch.inference_mode():
        step = batch_size or 64
        for start in range(0, len(texts), step):
            enc = tokenizer(texts[start:start + step], padding=True, truncation=True, max_length=64,
                            return_tensors="pt").to(model.device)
            probs.append(torch.softmax(model(**enc).logits.float(), -1).cpu().numpy())
    return [(labels[int(p.argmax())], float(p.max()), p) for p in np.concatenate(probs)]
