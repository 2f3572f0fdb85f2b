"""Hybrid FAQ retrieval: dense cosine (best text per FAQ) fused with BM25 (``bm25s``).

Every FAQ owns several texts (its question and paraphrases), stored grouped by FAQ. A query's
dense score for an FAQ is its best cosine over that FAQ's texts; its lexical score is the best
BM25 score over the same texts, divided by the query's best BM25 score in the KB (0..1). The
fused score is ``w * dense + (1 - w) * lexical``; with an FAQ classifier (probability ``clf`` of
each FAQ) the ranking score is ``b * clf + (1 - b) * fused``. Small KBs are searched exactly (one matrix
product); above ``ann_threshold`` texts a FAISS HNSW index proposes the dense candidates.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from lepton_apps.errors import DependencyError

ANN_CANDIDATES = 64


@dataclasses.dataclass
class Hit:
    """One retrieved FAQ: its KB row, fused / dense / lexical scores, and the text that matched best."""

    row: int
    score: float
    dense: float
    lexical: float
    lexical_raw: float
    text_index: int
    clf: float = 0.0
    rerank: float | None = None   # the second stage's P(this FAQ answers the question), when it ran
    final: float | None = None    # what the second stage ranked by: v * rerank + (1 - v) * score
    distance: float | None = None  # Mahalanobis distance of the question to this FAQ (distance.py), when scored


def rank_score(hit: Hit) -> float:
    """Return the score a hit was ranked by: the second stage's when it ran, else the fused score."""
    return hit.score if hit.final is None else hit.final


def top_gap(hits: list[Hit]) -> float:
    """Return how far the first hit leads the second on the score that ranked them (the re-ranker's when it
    ran, else the fused score); infinite with fewer than two hits."""
    if len(hits) < 2:
        return float("inf")
    return rank_score(hits[0]) - rank_score(hits[1])


def _tokenize(texts: list[str]) -> list[list[str]]:
    """Return the BM25 tokens of each text's search key (:mod:`.text`: Chinese segmented, English as before)."""
    from .text import normalize, tokenize

    return tokenize([normalize(t) for t in texts])


class FaqIndex:
    """Search structure over KB texts; build once, then :meth:`search` is thread-safe (read-only)."""

    def __init__(self, embeddings: np.ndarray, owner: list[int] | np.ndarray, texts: list[str],
                 ann_threshold: int = 50_000, ann_bytes: np.ndarray | None = None):
        import bm25s

        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.owner = np.asarray(owner, dtype=np.int64)
        if len(self.owner) and np.any(np.diff(self.owner) < 0):
            raise ValueError("texts must be grouped by FAQ row (owner non-decreasing)")
        self.texts = list(texts)
        self.n_rows = int(self.owner.max()) + 1 if len(self.owner) else 0
        self.starts = np.searchsorted(self.owner, np.arange(self.n_rows))
        self.bm25 = bm25s.BM25()
        self.bm25.index(_tokenize(self.texts), show_progress=False)
        self.ann = None
        if len(self.texts) > ann_threshold:
            self.ann = _load_hnsw(ann_bytes) if ann_bytes is not None else _build_hnsw(self.embeddings)

    def ann_bytes(self) -> np.ndarray | None:
        """Return the FAISS index serialised as a uint8 array (stored in bundles; no pickle), or None."""
        if self.ann is None:
            return None
        import faiss

        return faiss.serialize_index(self.ann)

    @property
    def kind(self) -> str:
        """'exact' or 'faiss-hnsw'."""
        return "exact" if self.ann is None else "faiss-hnsw"

    def _per_row_max(self, per_text: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (best value per FAQ row, index of the best text per row)."""
        best = np.maximum.reduceat(per_text, self.starts)
        # argmax per segment: the first text of the row that reaches the row's max
        hit = per_text == best[self.owner]
        first = np.full(self.n_rows, -1, dtype=np.int64)
        idx = np.flatnonzero(hit)[::-1]
        first[self.owner[idx]] = idx
        return best, first

    def lexical_scores(self, query_text: str) -> np.ndarray:
        """Return the raw BM25 score of every text for ``query_text``."""
        tokens = _tokenize([query_text])[0]
        if not tokens:
            return np.zeros(len(self.texts), dtype=np.float32)
        return np.asarray(self.bm25.get_scores(tokens), dtype=np.float32)

    def row_scores(self, query_emb: np.ndarray, query_text: str, exclude_texts: np.ndarray | None = None):
        """Return exact per-FAQ (dense, best dense text, lexical raw, KB-wide best lexical) for one query.

        ``exclude_texts`` (boolean mask over texts) hides texts, for leave-one-out calibration.
        """
        lex_text = self.lexical_scores(query_text)
        dense_text = self.embeddings @ np.asarray(query_emb, dtype=np.float32)
        if exclude_texts is not None:
            dense_text = np.where(exclude_texts, -2.0, dense_text)
            lex_text = np.where(exclude_texts, 0.0, lex_text)
        dense, dense_at = self._per_row_max(dense_text)
        lex, _ = self._per_row_max(lex_text)
        return dense, dense_at, lex, float(lex_text.max(initial=0.0))

    def rank_rows(self, scores, k: int, weight: float, clf: np.ndarray | None = None,
                  clf_weight: float = 0.0) -> list[Hit]:
        """Return the top-``k`` hits from :meth:`row_scores` output fused with ``weight`` (and ``clf`` with ``clf_weight``)."""
        dense, dense_at, lex, top_lex = scores
        return self._rank(np.arange(self.n_rows), dense, dense_at, lex, k, weight, top_lex, clf, clf_weight)

    def search(self, query_emb: np.ndarray, query_text: str, k: int, weight: float, clf: np.ndarray | None = None,
               clf_weight: float = 0.0) -> list[Hit]:
        """Return the top-``k`` FAQ hits for one query, best first (FAISS candidates above the size threshold).

        ``clf``: the FAQ classifier's probability of every KB row for this query (or None).
        """
        if self.n_rows == 0:
            return []
        if self.ann is not None:
            return self._search_ann(np.asarray(query_emb, dtype=np.float32), self.lexical_scores(query_text), k, weight,
                                    clf, clf_weight)
        return self.rank_rows(self.row_scores(query_emb, query_text), k, weight, clf, clf_weight)

    def _rank(self, rows, dense, dense_at, lex, k, weight, top_lex, clf=None, clf_weight=0.0) -> list[Hit]:
        lex_rel = lex / top_lex if top_lex > 0 else np.zeros_like(lex)
        fused = weight * dense + (1.0 - weight) * lex_rel
        prob = np.asarray(clf, dtype=np.float64)[rows] if clf is not None else np.zeros(len(rows))
        if clf is not None:
            fused = clf_weight * prob + (1.0 - clf_weight) * fused
        k = min(k, len(rows))
        order = np.argpartition(-fused, k - 1)[:k] if k < len(rows) else np.arange(len(rows))
        order = order[np.argsort(-fused[order], kind="stable")]
        return [Hit(int(rows[i]), float(fused[i]), float(dense[i]), float(lex_rel[i]), float(lex[i]), int(dense_at[i]),
                    float(prob[i])) for i in order]

    def _search_ann(self, query_emb: np.ndarray, lex_text: np.ndarray, k: int, weight: float,
                    clf: np.ndarray | None = None, clf_weight: float = 0.0) -> list[Hit]:
        n_cand = max(ANN_CANDIDATES, 4 * k)
        _, text_ids = self.ann.search(query_emb.reshape(1, -1).astype(np.float32), n_cand)
        text_ids = text_ids[0][text_ids[0] >= 0]
        lex_top = np.argpartition(-lex_text, min(n_cand, len(lex_text) - 1))[:n_cand]
        parts = [self.owner[text_ids], self.owner[lex_top]]
        if clf is not None:   # the classifier's likeliest FAQs are candidates too
            parts.append(np.argpartition(-clf, min(n_cand, self.n_rows - 1))[:n_cand])
        rows = np.unique(np.concatenate(parts))
        dense = np.empty(len(rows), dtype=np.float32)
        dense_at = np.empty(len(rows), dtype=np.int64)
        lex = np.empty(len(rows), dtype=np.float32)
        ends = np.append(self.starts[1:], len(self.texts))
        for j, r in enumerate(rows):
            s, e = self.starts[r], ends[r]
            sims = self.embeddings[s:e] @ query_emb
            dense[j], dense_at[j] = sims.max(), s + int(sims.argmax())
            lex[j] = lex_text[s:e].max()
        return self._rank(rows, dense, dense_at, lex, k, weight, float(lex_text.max(initial=0.0)), clf, clf_weight)


def _build_hnsw(embeddings: np.ndarray):
    try:
        import faiss
    except ImportError:
        raise DependencyError("a knowledge base this large is searched with FAISS, which is not installed",
                              where="ann_threshold", fix="pip install faiss-cpu, or raise ann_threshold to search exactly") from None
    index = faiss.IndexHNSWFlat(embeddings.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.hnsw.efSearch = 96
    index.add(embeddings)
    return index


def _load_hnsw(data: np.ndarray):
    try:
        import faiss
    except ImportError:
        raise DependencyError("this bundle's knowledge base is searched with FAISS, which is not installed",
                              fix="pip install faiss-cpu") from None
    index = faiss.deserialize_index(np.ascontiguousarray(data, dtype=np.uint8))
    index.hnsw.efSearch = 96
    return index
