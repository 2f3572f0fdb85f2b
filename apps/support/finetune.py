"""Fine-tuning the sentence encoder, with the core :class:`~lepton_apps.training.Trainer`:

* :func:`finetune_biencoder` — the bi-encoder tuned on the KB's own question / paraphrase pairs (linear in its
  size): in-batch negatives (MultipleNegativesRanking) plus hard negatives mined from the frozen encoder's
  neighbours (:func:`mine_hard_negatives`, pairs from :func:`kb_pairs`), or CoSENT on labelled pairs
  (:func:`~lepton_apps.support.data.read_labelled_pairs`); the distance scorer of the hand-off reads the tuned
  embeddings;
* :func:`finetune_intent_model` — a sequence classifier on the encoder's backbone, for intents
  (:func:`~lepton_apps.support.model.classify_texts` runs it).
"""
from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from lepton_apps.training import Trainer, TrainConfig

from .model import accuracy_metric, stratified_split


class _PairScorer(torch.nn.Module):
    """Scores every anchor against every positive in the batch (cosine * scale)."""

    SCALE = 20.0

    def __init__(self, encoder, scale: float = SCALE):
        super().__init__()
        self.model = encoder.model
        self._encoder = encoder
        self.scale = scale

    def forward(self, **batch):
        def side(prefix):
            return self._encoder.forward_features({k[2:]: v for k, v in batch.items() if k.startswith(prefix)})

        a, p = side("a_"), side("p_")
        if any(k.startswith("n_") for k in batch):   # hard negatives: one more column per pair
            p = torch.cat([p, side("n_")])
        return a @ p.T * self.scale


def _mnrl_loss(scores: torch.Tensor, owners: torch.Tensor) -> torch.Tensor:
    """In-batch-negatives cross-entropy; other pairs of the same FAQ are masked out (not negatives).

    With hard negatives, ``scores`` is (n, 2n) (positives, then each pair's hard negative) and ``owners`` is
    (n, 2): each pair's FAQ and its negative's FAQ; the anchor side sees every positive and every negative."""
    n = scores.shape[0]
    owners = owners.to(scores.device)
    rows = owners if owners.dim() == 1 else owners[:, 0]
    cols = owners if owners.dim() == 1 else torch.cat([owners[:, 0], owners[:, 1]])
    same = rows[:, None] == cols[None, :]
    own = torch.zeros_like(same)
    own[:, :n] = torch.eye(n, dtype=torch.bool, device=scores.device)
    scores = scores.float().masked_fill(same & ~own, float("-inf"))
    target = torch.arange(n, device=scores.device)
    back = scores[:, :n].T   # each positive against every anchor
    return (torch.nn.functional.cross_entropy(scores, target) + torch.nn.functional.cross_entropy(back, target)) / 2


def mine_hard_negatives(embeddings: np.ndarray, owner: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Return, for each text, the index of the most similar text of another FAQ (-1 when there is none);
    exact, in chunks of rows (memory ``chunk`` x n)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    owner = np.asarray(owner)
    out = np.full(len(emb), -1, dtype=np.int64)
    for s in range(0, len(emb), chunk):
        sims = emb[s:s + chunk] @ emb.T
        sims[owner[s:s + chunk, None] == owner[None, :]] = -np.inf
        best = sims.argmax(1)
        ok = np.isfinite(sims[np.arange(len(best)), best])
        out[s:s + chunk] = np.where(ok, best, -1)
    return out


def kb_pairs(texts: list[str], owner: list[int], seed: int, max_pairs: int | None = None) -> list[tuple[str, str, int]]:
    """Return (anchor, positive, faq row) pairs, linear in the KB size: each text of an FAQ with 2+ texts
    is the anchor of one pair whose positive is another text of the same FAQ, drawn at random.

    At most ``max_pairs`` pairs (a random subset when there are more), shuffled. In-batch duplicates
    of the same FAQ are not negatives: :func:`_mnrl_loss` masks them.
    """
    rng = random.Random(seed)
    groups: dict[int, list[str]] = {}
    for t, o in zip(texts, owner):
        groups.setdefault(o, []).append(t)
    pairs = []
    for o, ts in groups.items():
        if len(ts) < 2:
            continue
        for i, a in enumerate(ts):
            j = rng.randrange(len(ts) - 1)
            pairs.append((a, ts[j + (j >= i)], o))
    rng.shuffle(pairs)
    return pairs[:max_pairs] if max_pairs is not None else pairs


COSENT_SCALE = 20.0      # CoSENT's lambda: cosine gaps are multiplied by it before the soft ranking loss


def _cosent_loss(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CoSENT loss of labelled pairs: log(1 + sum over (negative i, positive j) of exp(lambda (cos_i - cos_j))).

    ``scores`` is the batch's anchor x partner matrix of :class:`_PairScorer` (cosine * scale); its diagonal
    holds each pair's own cosine. Every different-label couple of pairs in the batch is ranked, so the loss
    learns from the labelled non-matching pairs (AFQMC's hard negatives: same product, another question)
    as well as from the matching ones, and directly raises the ranking measured by ROC-AUC."""
    cos = torch.diagonal(scores).float() / _PairScorer.SCALE
    y = labels.to(cos.device)
    gaps = COSENT_SCALE * (cos[:, None] - cos[None, :])                    # [i, j] = lambda (cos_i - cos_j)
    mask = (y[:, None] == 0) & (y[None, :] == 1)                            # i negative, j positive
    gaps = gaps.masked_fill(~mask, float("-inf"))
    zero = torch.zeros(1, device=cos.device, dtype=cos.dtype)
    return torch.logsumexp(torch.cat([zero, gaps.flatten()]), dim=0)


FREEZE_VOCAB = 100_000  # bi-encoder fine-tuning leaves a larger vocabulary's input embeddings as they are


def finetune_biencoder(encoder, texts: list[str], owner: list[int], *, epochs: int, lr: float, batch_size: int,
                       seed: int, precision: str = "auto", progress: bool = False, max_pairs: int | None = None,
                       max_pair_steps: int | None = None,
                       labelled_pairs: list[tuple[str, str, int]] | None = None, hard_negatives: bool = False,
                       callback: Callable[[dict], None] | None = None) -> dict:
    """Fine-tune ``encoder`` in place on sampled paraphrase pairs of the KB (:func:`kb_pairs`); return a summary.

    Without ``labelled_pairs`` the loss is in-batch negatives (:func:`_mnrl_loss`). With them — (question,
    question, 1 = same meaning / 0 = not) pairs such as a team's reviewed duplicates and near-misses — the
    KB's pairs join them as matching pairs and the loss is CoSENT (:func:`_cosent_loss`), which learns from
    the non-matching pairs too. ``hard_negatives`` (in-batch loss only): each pair also carries the text of
    another FAQ nearest to its anchor under the encoder before tuning (:func:`mine_hard_negatives`).
    ``max_pair_steps`` bounds pairs x epochs: past it the epochs are cut (to at least one), which bounds the
    build time of a large KB.

    A vocabulary of more than :data:`FREEZE_VOCAB` rows (multilingual-e5-small: 250,037 x 384, 80 % of its
    weights) keeps its input embeddings frozen: a few hundred pairs touch a tiny share of the rows, and
    updating the whole table with Adam would cost most of each step's time and memory."""
    pairs = kb_pairs(texts, owner, seed, max_pairs)
    if labelled_pairs:
        rng = random.Random(seed)
        pairs = [(a, b, 1) for a, b, _ in pairs] + [(str(a), str(b), int(y)) for a, b, y in labelled_pairs]
        rng.shuffle(pairs)
    if len(pairs) < 2:
        return {"skipped": "the KB has no paraphrases to learn from", "pairs": len(pairs)}
    asked_epochs = epochs
    if max_pair_steps is not None:
        epochs = max(1, min(epochs, max_pair_steps // len(pairs)))
    negatives = None
    if hard_negatives and not labelled_pairs:
        at = {(t, int(o)): i for i, (t, o) in enumerate(zip(texts, owner))}
        near = mine_hard_negatives(encoder.encode(list(texts)), np.asarray(owner))
        negatives = {(a, o): (texts[near[at[a, o]]], int(owner[near[at[a, o]]])) for a, _, o in pairs
                     if near[at[a, o]] >= 0}
        if len(negatives) < len(pairs):   # a KB of one FAQ has nothing to contrast
            negatives = None
    embeddings = encoder.model.get_input_embeddings()
    freeze = embeddings is not None and embeddings.weight.shape[0] > FREEZE_VOCAB
    if freeze:
        embeddings.weight.requires_grad_(False)

    def collate(batch):
        a = encoder.tokenize([b[0] for b in batch])
        p = encoder.tokenize([b[1] for b in batch])
        out = {f"a_{k}": v for k, v in a.items()}
        out.update({f"p_{k}": v for k, v in p.items()})
        out["labels"] = torch.tensor([b[2] for b in batch])
        if negatives is not None:
            n = encoder.tokenize([negatives[b[0], b[2]][0] for b in batch])
            out.update({f"n_{k}": v for k, v in n.items()})
            out["labels"] = torch.tensor([[b[2], negatives[b[0], b[2]][1]] for b in batch])
        return out

    scorer = _PairScorer(encoder)
    cfg = TrainConfig(epochs=epochs, batch_size=min(batch_size, len(pairs)), lr=lr, weight_decay=0.01,
                      warmup_fraction=0.1, monitor="train_loss", mode="min", patience=None, seed=seed,
                      device=str(encoder.policy.device), precision=precision, progress=progress)
    encoder.model.train()
    try:
        with tempfile.TemporaryDirectory(prefix="lepton-support-ft-") as run_dir:
            result = Trainer(scorer, pairs, None, cfg, run_dir=Path(run_dir),
                             loss_fn=_cosent_loss if labelled_pairs else _mnrl_loss, collate_fn=collate,
                             callback=callback).fit()
    finally:
        encoder.model.eval()
        if freeze:
            embeddings.weight.requires_grad_(True)
    return {"pairs": len(pairs), "loss": ("cosent" if labelled_pairs else "in-batch + hard negatives"
                                          if negatives is not None else "in-batch negatives"),
            "labelled_pairs": len(labelled_pairs or []), "epochs": result.epochs_run, "steps": result.global_step,
            "epochs_asked": asked_epochs,
            "input_embeddings": "frozen" if freeze else "trained",
            "final_train_loss": result.history[-1]["train_loss"], "first_train_loss": result.history[0]["train_loss"],
            "seconds": round(result.seconds, 1)}


# ------------------------------------------------------------------------- intent: full fine-tuning
def finetune_intent_model(encoder_path: str, texts: list[str], labels: list[str], *, epochs: int, lr: float,
                          batch_size: int, seed: int, device: str = "auto", precision: str = "auto",
                          max_length: int = 64, progress: bool = False,
                          callback: Callable[[dict], None] | None = None):
    """Fine-tune ``AutoModelForSequenceClassification`` on the encoder's backbone with the core Trainer.

    Returns (model, tokenizer, label names, summary). Mixed precision comes from the device policy;
    early stopping watches accuracy on a stratified 20% of the data.
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    names = sorted(set(labels))
    index = {n: i for i, n in enumerate(names)}
    y = np.array([index[label] for label in labels], dtype=np.int64)
    tr, va = stratified_split(y, 0.2, seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder_path, local_files_only=True)
    model = AutoModelForSequenceClassification.from_pretrained(
        encoder_path, num_labels=len(names), id2label=dict(enumerate(names)), label2id=index, local_files_only=True)

    def collate(batch):
        enc = tokenizer([b[0] for b in batch], padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        return {**enc, "labels": torch.tensor([b[1] for b in batch])}

    train_ds = [(texts[i], int(y[i])) for i in tr]
    val_ds = [(texts[i], int(y[i])) for i in va] or None
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.01, warmup_fraction=0.06,
                      monitor="val_accuracy" if val_ds else "train_loss", mode="max" if val_ds else "min",
                      patience=2, seed=seed, device=device, precision=precision, progress=progress)
    with tempfile.TemporaryDirectory(prefix="lepton-support-intent-") as run_dir:
        result = Trainer(model, train_ds, val_ds, cfg, run_dir=run_dir, metric_fn=accuracy_metric, collate_fn=collate,
                         callback=callback).fit()
    model = model.cpu().float().eval()
    return model, tokenizer, names, {"backbone": "fine-tuned", "best_epoch": result.best_epoch,
                                     "epochs_run": result.epochs_run, "val_accuracy": result.best_metric if val_ds else None,
                                     "n_train": int(len(tr)), "n_val": int(len(va)), "seconds": round(result.seconds, 1)}
