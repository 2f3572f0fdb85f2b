"""The second stage: a cross-encoder that re-scores the first stage's top-k FAQs of a question.

The first stage (:mod:`.index`: dense + BM25 + the FAQ classifier) embeds the question and each FAQ text
apart; a cross-encoder reads the question and one FAQ's text together (``[CLS] question [SEP] FAQ [SEP]``), so
every word of one attends to every word of the other. It is trained at ``support train`` time from the
knowledge base itself and initialised from the encoder weights the project ships (MiniLM for English,
multilingual-e5-small for other languages), with a linear head on the mean-pooled last layer:

* positives: each KB question / paraphrase (and each labelled ``split=val`` question) paired with its own
  FAQ's text, the text it is matched to hidden from the index (leave-one-out, as calibration does);
* hard negatives: the same query paired with the other FAQs of the first stage's top-k;
* out-of-scope negatives: the shipped general out-of-scope questions (and the user's own out-of-scope ones)
  paired with the FAQs the first stage ranks highest for them.

A part of every kind of query is held out of that training (:func:`holdout`): the calibration of the hand-off
is fitted on those queries only, so its threshold sees scores of questions the re-ranker never learned from.
An FAQ's text in a pair is its question plus the text of it that the first stage matched best
(:func:`faq_document`). Its probability and the gap to the runner-up join the confidence model's features
(``rerank_top1``, ``rerank_margin``); the top-k is re-ordered by ``v * rerank + (1 - v) * fused score``, ``v``
chosen for top-1 on the held-out queries (0 keeps the first stage's order).

Measured (apps/support/README.md, "Second stage"): it gains with the user's labelled validation questions and
hardly with the KB alone, at 20-100x the build time, so ``reranker`` is off by default.
"""
from __future__ import annotations

import dataclasses
import tempfile
import threading
import zlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from lepton_apps.training import Trainer, TrainConfig

MAX_LENGTH = 96           # tokens of a (question, FAQ) pair; a longer pair keeps the question and cuts the FAQ
HOLDOUT = {"kb-paraphrase": 0.4, "val": 0.4, "user-oos": 0.5, "general-oos": 0.4}   # share held out per kind
NEGATIVES = 3             # hard negatives per in-scope query (the first stage's best wrong FAQs)
EXTRA_VIEWS = 2           # other texts of the gold FAQ each in-scope query is also paired with
OOS_NEGATIVES = 2         # FAQs paired with each out-of-scope query (its first-stage top ones)
FROZEN_LAYER_SHARE = 1 / 3   # the lowest third of the Transformer blocks keeps the encoder's weights (faster steps)
HEAD_LR_MULT = 25.0       # the new linear head learns at this multiple of the Transformer's learning rate
WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"
FILES = ("reranker/model.safetensors", "reranker/config.json")
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
WEIGHT_GRID = tuple(round(v, 1) for v in np.linspace(0.0, 1.0, 11))


def faq_document(question: str, matched: str, query: str) -> str:
    """Return an FAQ's side of a pair: its question, then the text the first stage matched best when that is
    another one — never the query itself (a KB text asked as a query must not find itself in the pair)."""
    parts = [t for t in dict.fromkeys((question, matched)) if t and t != query]
    return " | ".join(parts) or question


class CrossEncoder(torch.nn.Module):
    """A Transformer over the (question, FAQ) pair, mean-pooled, then one linear unit: the pair's logit."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Linear(int(backbone.config.hidden_size), 1)
        torch.nn.init.normal_(self.head.weight, std=0.02)
        torch.nn.init.zeros_(self.head.bias)

    def forward(self, input_ids, attention_mask, token_type_ids=None):
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return self.head(pooled).squeeze(-1)


def order(hits: list, weight: float) -> list:
    """Return re-scored ``hits`` with ``final`` = ``weight`` * rerank + (1 - ``weight``) * score set, highest first
    (a stable sort: ties keep the first stage's order)."""
    for h in hits:
        h.final = float(weight * h.rerank + (1.0 - weight) * h.score)
    return sorted(hits, key=lambda h: -h.final)


def _layers(backbone) -> list:
    """Return the Transformer blocks of a BERT-like backbone (empty when it has another layout)."""
    encoder = getattr(backbone, "encoder", None)
    return list(getattr(encoder, "layer", []) or [])


def _backbone(encoder_path: str):
    from transformers import AutoModel

    return AutoModel.from_pretrained(encoder_path, local_files_only=True)


class Reranker:
    """A trained cross-encoder and its tokenizer; :meth:`probabilities` is thread-safe."""

    def __init__(self, model: CrossEncoder, tokenizer, encoder_path: str, info: dict | None = None,
                 max_length: int = MAX_LENGTH, batch_size: int = 64):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.encoder_path = encoder_path
        self.info = dict(info or {})
        self.max_length = max_length
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._session = None   # an ONNX Runtime session (export.py) when one is attached

    def _tokenize(self, queries: Sequence[str], docs: Sequence[str], tensors: str = "pt"):
        return self.tokenizer(list(queries), list(docs), padding=True, truncation="only_second",
                              max_length=self.max_length, return_tensors=tensors)

    def logits(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """Return the logit of each (query, doc) pair, batched by length (little padding)."""
        n = len(queries)
        out = np.zeros(n, dtype=np.float32)
        if n == 0:
            return out
        order = np.argsort([len(q) + len(d) for q, d in zip(queries, docs)], kind="stable")
        with self._lock, torch.inference_mode():
            for start in range(0, n, self.batch_size):
                idx = order[start:start + self.batch_size]
                if self._session is not None:
                    enc = self._tokenize([queries[i] for i in idx], [docs[i] for i in idx], tensors="np")
                    feed = {k.name: enc[k.name].astype(np.int64) for k in self._session.get_inputs()}
                    out[idx] = self._session.run(None, feed)[0].reshape(-1)
                else:
                    enc = self._tokenize([queries[i] for i in idx], [docs[i] for i in idx])
                    out[idx] = self.model(**enc).float().numpy()
        return out

    def probabilities(self, queries: Sequence[str], docs: Sequence[str]) -> np.ndarray:
        """Return P(the FAQ answers the question) of each pair (the sigmoid of its logit)."""
        return 1.0 / (1.0 + np.exp(-self.logits(queries, docs).astype(np.float64)))

    def rerank(self, queries: Sequence[str], hits_per_query: Sequence[list], document: Callable,
               weight: float = 1.0) -> list[list]:
        """Return each query's hits with ``rerank`` (the pair's probability) and ``final`` = ``weight`` * rerank +
        (1 - ``weight``) * the first stage's score set, re-ordered by ``final`` (highest first); one forward pass
        over every (query, hit) pair; ``document(query, hit)`` gives the FAQ's side of the pair."""
        flat_q, flat_d, where = [], [], []
        for qi, (query, hits) in enumerate(zip(queries, hits_per_query)):
            for hi, hit in enumerate(hits):
                flat_q.append(query)
                flat_d.append(document(query, hit))
                where.append((qi, hi))
        probs = self.probabilities(flat_q, flat_d)
        out = [[dataclasses.replace(h) for h in hits] for hits in hits_per_query]
        for (qi, hi), p in zip(where, probs):
            out[qi][hi].rerank = float(p)
        return [order(hits, weight) for hits in out]

    def use_session(self, session) -> None:
        """Score pairs with an ONNX Runtime ``session`` of :meth:`to_onnx`'s graph (None: PyTorch again)."""
        self._session = session

    # ------------------------------------------------------------------ ONNX
    def to_onnx(self) -> bytes:
        """Return the ONNX bytes of the cross-encoder: the pair's token inputs -> ``logit`` (batch,), batch and
        length dynamic (opset 17, the TorchScript exporter, as the encoder's export)."""
        import copy
        import io
        import warnings

        names = [k for k in ONNX_INPUTS if k in self.tokenizer.model_input_names]
        model = copy.deepcopy(self.model).float().cpu().eval()
        sample = self._tokenize(["a question", "another question here"], ["an faq", "an faq text | more"])
        buf = io.BytesIO()
        axes = {n: {0: "batch", 1: "tokens"} for n in names}
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, tuple(sample[n] for n in names), buf, input_names=names, output_names=["logit"],
                              dynamic_axes={**axes, "logit": {0: "batch"}}, opset_version=17, dynamo=False)
        return buf.getvalue()

    def use_onnx(self, providers: list[str] | None = None) -> None:
        """Score pairs with ONNX Runtime: the graph of :meth:`to_onnx`, exported once per weights into
        ``$LEPTON_CACHE/support-onnx`` (the same logits as PyTorch within float32 rounding; faster on a CPU)."""
        import hashlib

        from lepton_apps.export import inference_session
        from lepton_apps.io import atomic_write_bytes, cache_dir

        digest = hashlib.sha256(torch.__version__.encode())
        for name, tensor in sorted(self.state_to_save().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        path = cache_dir("support-onnx") / f"reranker-{digest.hexdigest()[:32]}.onnx"
        if not path.is_file():
            atomic_write_bytes(path, self.to_onnx())
        self.use_session(inference_session(path, providers))

    # ------------------------------------------------------------------ storage
    def state_to_save(self) -> dict:
        """Return the weights to store: everything but the input word embeddings (the shipped encoder's)."""
        return {k: v for k, v in self.model.state_dict().items() if not k.endswith(WORD_EMBEDDINGS)}

    def config(self) -> dict:
        """Return what :meth:`from_state` needs besides the weights (the encoder is found again by its name)."""
        return {"max_length": self.max_length, "info": self.info}

    @classmethod
    def from_state(cls, config: dict, state: dict, encoder_path: str) -> Reranker:
        """Return the re-ranker stored by :meth:`state_to_save` / :meth:`config` on the encoder at ``encoder_path``."""
        from transformers import AutoTokenizer

        model = CrossEncoder(_backbone(encoder_path))
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or [m for m in missing if not m.endswith(WORD_EMBEDDINGS)]:
            raise ValueError(f"the stored re-ranker does not fit the encoder {encoder_path}: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
        tokenizer = AutoTokenizer.from_pretrained(encoder_path, local_files_only=True)
        return cls(model, tokenizer, encoder_path, config.get("info"), int(config.get("max_length", MAX_LENGTH)))


# ---------------------------------------------------------------------- which queries train, which calibrate
def _unit(text: str, seed: int) -> float:
    """A number in [0, 1) fixed by the text and the seed (the same text is always on the same side)."""
    return (zlib.crc32(f"{seed}\x00{text}".encode("utf-8")) & 0xFFFFFFFF) / 2 ** 32


def holdout(queries: Sequence, topics: dict[str, str], seed: int) -> np.ndarray:
    """Return a mask of the calibration queries held out of the re-ranker's training (:data:`HOLDOUT` of each kind).

    The shipped general out-of-scope questions are held out by topic (``topics``: text -> topic), so that the
    held-out ones are about subjects the re-ranker never saw as negatives, as a user's new questions are."""
    names = sorted(set(topics.values()))
    rng = np.random.default_rng(seed)
    held_topics = set(rng.permutation(names)[:int(round(HOLDOUT["general-oos"] * len(names)))]) if names else set()
    mask = np.zeros(len(queries), dtype=bool)
    for i, q in enumerate(queries):
        if q.source == "general-oos" and q.text in topics:
            mask[i] = topics[q.text] in held_topics
        else:
            mask[i] = _unit(q.text, seed) < HOLDOUT.get(q.source, 0.4)
    return mask


def training_pairs(queries: Sequence, hits: Sequence[list], document: Callable, faq_texts: Callable,
                   kb_question: Callable, seed: int) -> list[tuple[str, str, float]]:
    """Return (query, FAQ document, label) pairs.

    Each in-scope query: its FAQ (1) as the first stage matched it (or, when the first stage missed it, with its
    first other text) and with up to :data:`EXTRA_VIEWS` other texts of that FAQ; the best wrong FAQs of its hits
    (0), each as matched and with one other text of it. Each out-of-scope query: its top hits (0) as matched.
    Pairing an FAQ with several of its texts shows the re-ranker more of what the FAQ is about than one view.
    ``faq_texts(row)``: the texts of a KB row."""
    rng = np.random.default_rng(seed)

    def views(q, row: int, n: int) -> list[str]:   # the FAQ with n of its texts (never the query), at random
        others = [t for t in faq_texts(row) if t != q.text]
        return [faq_document(kb_question(row), others[i], q.text) for i in rng.permutation(len(others))[:n]]

    pairs = []
    for q, hs in zip(queries, hits):
        if q.gold >= 0:
            gold_hit = next((h for h in hs if h.row == q.gold), None)
            if gold_hit is not None:
                pairs += [(q.text, document(q.text, gold_hit), 1.0)]
                pairs += [(q.text, d, 1.0) for d in views(q, q.gold, EXTRA_VIEWS)]
            else:
                pairs += [(q.text, d, 1.0) for d in views(q, q.gold, EXTRA_VIEWS + 1)]
            for h in [h for h in hs if h.row != q.gold][:NEGATIVES]:
                pairs += [(q.text, document(q.text, h), 0.0)] + [(q.text, d, 0.0) for d in views(q, h.row, 1)]
        else:
            pairs += [(q.text, document(q.text, h), 0.0) for h in hs[:OOS_NEGATIVES]]
    return pairs


# ---------------------------------------------------------------------- training
def _bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), labels.float())


def train_reranker(encoder_path: str, pairs: list[tuple[str, str, float]], *, epochs: int, lr: float,
                   batch_size: int, seed: int, max_pairs: int, device: str = "auto", precision: str = "auto",
                   progress: bool = False) -> tuple[Reranker, dict]:
    """Return (the cross-encoder fine-tuned on ``pairs`` with binary cross-entropy, a summary).

    At most ``max_pairs`` pairs (a seeded uniform sample beyond); the input word
    embeddings stay frozen (the same as the shipped encoder's: not stored twice, and a vocabulary of 250k rows
    is most of a small model's weights)."""
    from transformers import AutoTokenizer

    rng = np.random.default_rng(seed)
    if len(pairs) > max_pairs:
        pairs = [pairs[i] for i in sorted(rng.choice(len(pairs), max_pairs, replace=False))]
    tokenizer = AutoTokenizer.from_pretrained(encoder_path, local_files_only=True)
    model = CrossEncoder(_backbone(encoder_path))
    model.backbone.get_input_embeddings().weight.requires_grad_(False)
    layers = _layers(model.backbone)
    for layer in layers[:int(len(layers) * FROZEN_LAYER_SHARE)]:   # no backward through the lowest layers
        layer.requires_grad_(False)

    def collate(batch):
        enc = tokenizer([b[0] for b in batch], [b[1] for b in batch], padding=True, truncation="only_second",
                        max_length=MAX_LENGTH, return_tensors="pt")
        return {**enc, "labels": torch.tensor([b[2] for b in batch])}

    cfg = TrainConfig(epochs=epochs, batch_size=min(batch_size, len(pairs)), lr=lr, weight_decay=0.01,
                      warmup_fraction=0.1, monitor="train_loss", mode="min", patience=None, seed=seed,
                      device=device, precision=precision, progress=progress, lr_mult={"head": HEAD_LR_MULT})
    with tempfile.TemporaryDirectory(prefix="lepton-support-rerank-") as run_dir:
        result = Trainer(model, pairs, None, cfg, run_dir=Path(run_dir), loss_fn=_bce, collate_fn=collate).fit()
    model = model.cpu().float().eval()
    positives = int(sum(p[2] > 0.5 for p in pairs))
    summary = {"model": "cross-encoder (mean pooling + linear) initialised from the encoder", "pairs": len(pairs),
               "positives": positives, "negatives": len(pairs) - positives, "epochs": result.epochs_run,
               "steps": result.global_step, "lr": lr, "first_train_loss": result.history[0]["train_loss"],
               "final_train_loss": result.history[-1]["train_loss"], "seconds": round(result.seconds, 1)}
    return Reranker(model, tokenizer, encoder_path, summary), summary


def save(reranker: Reranker, writer) -> None:
    """Write the re-ranker into a bundle being written (``reranker/model.safetensors`` + ``reranker/config.json``)."""
    writer.save_torch(FILES[0], reranker.state_to_save())
    writer.save_json(FILES[1], reranker.config())


def load(bundle, encoder_path: str) -> Reranker | None:
    """Return the bundle's re-ranker on the encoder at ``encoder_path``, or None when the bundle has none."""
    if not bundle.has(FILES[1]):
        return None
    return Reranker.from_state(bundle.load_json(FILES[1]), bundle.load_torch(FILES[0]), encoder_path)



# ---------------------------------------------------------------------- at build time
@dataclasses.dataclass
class SecondStage:
    """What :func:`fit_second_stage` returns: the re-ranker, the held-out calibration queries and their hits
    (first stage top-k, the first ``rerank_k`` re-scored — as answering does), and a summary."""

    reranker: Reranker
    queries: list
    hits: list
    summary: dict


def fit_second_stage(queries: list, index, questions: Sequence[str], *, weight: float, clf_weight: float,
                     top_k: int, rerank_k: int, topics: dict[str, str], extra_negatives: Sequence = (),
                     encoder_path: str, epochs: int, lr: float, batch_size: int, max_pairs: int, seed: int,
                     device: str = "auto", precision: str = "auto", progress: bool = False) -> SecondStage:
    """Train the re-ranker on the calibration queries not held out (plus ``extra_negatives``, out-of-scope queries
    used only for training) and re-score the held-out ones for the hand-off's calibration.

    ``queries``: :class:`~.calibration.CalibQuery` objects scored without their own text (leave-one-out) and by
    cross-fitted classifiers; ``questions``: each KB row's question."""
    def document(query: str, hit) -> str:
        return faq_document(questions[hit.row], index.texts[hit.text_index] if hit.text_index >= 0 else "", query)

    def faq_texts(row: int) -> list[str]:
        return index.texts[index.starts[row]:(index.starts[row + 1] if row + 1 < index.n_rows else None)]

    hits = [q.hits(index, top_k, weight, clf_weight) for q in queries]
    held = holdout(queries, topics, seed)
    train_q = [q for q, m in zip(queries, held) if not m] + list(extra_negatives)
    train_h = ([h for h, m in zip(hits, held) if not m]
               + [q.hits(index, top_k, weight, clf_weight) for q in extra_negatives])
    pairs = training_pairs(train_q, [h[:rerank_k] for h in train_h], document, faq_texts, lambda row: questions[row],
                           seed)
    model, summary = train_reranker(encoder_path, pairs, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                                    max_pairs=max_pairs, device=device, precision=precision, progress=progress)
    calib = [q for q, m in zip(queries, held) if m]
    first = [h for h, m in zip(hits, held) if m]
    top = model.rerank([q.text for q in calib], [h[:rerank_k] for h in first], document)
    # the ranking weight of the second stage: the grid value with the best top-1 on the held-out in-scope queries
    # (ties: the smaller weight — 0 keeps the first stage's order and uses the re-ranker for the confidence only)
    answerable = [i for i, q in enumerate(calib) if q.gold >= 0]
    table = {v: float(np.mean([max(top[i], key=lambda h: v * h.rerank + (1 - v) * h.score).row == calib[i].gold
                                for i in answerable])) if answerable else 0.0 for v in WEIGHT_GRID}
    weight_2 = min(WEIGHT_GRID, key=lambda v: (-round(table[v], 6), v))
    top = [order(hs, weight_2) for hs in top]
    calib_hits = [t + h[rerank_k:] for t, h in zip(top, first)]
    kinds = sorted({q.source for q in queries})
    summary.update({"rerank_k": rerank_k, "rerank_weight": weight_2, "rerank_weight_grid_top1": table,
                    "held_out_for_calibration": {
        kind: int(sum(m for q, m in zip(queries, held) if q.source == kind)) for kind in kinds},
        "trained_on": {kind: int(sum(1 for q in train_q if q.source == kind)) for kind in sorted({q.source for q in train_q})}})
    return SecondStage(model, calib, calib_hits, summary)
