"""Out-of-scope evidence by distance: how far a question lies from each FAQ's cloud of paraphrases.

A cosine to the best-matching text says how close the nearest paraphrase is; it does not say whether
the question sits where that FAQ's questions sit. The class-conditional Gaussian of Lee et al. (2018),
used for intent out-of-scope detection by Podolskiy et al. (2021), does: each FAQ is the mean of its
texts' embeddings, all FAQs share one covariance (pooled within-FAQ scatter, shrunk towards a scaled
identity with Ledoit-Wolf so that a KB of a few hundred texts in 384 dimensions stays well posed), and
a question's distance to an FAQ is its Mahalanobis distance to the mean (divided by the dimension, so
that values read the same for every encoder). The hand-off's confidence model takes the distance to
the top FAQ and its gap to the nearest of the other candidates as features (``maha_top1``,
``maha_gap``); calibration fits the scorer without each query's fold, like the FAQ classifier.
"""
from __future__ import annotations

import dataclasses

import numpy as np

MIN_SPREAD = 1e-6   # eigenvalue floor of the shrunk covariance (relative to its mean eigenvalue)


@dataclasses.dataclass
class DistanceScorer:
    """Whitening matrix and whitened FAQ means; :meth:`distances` is a pair of matrix products."""

    whiten: np.ndarray     # (d, d): x @ whiten has identity covariance within FAQs
    means: np.ndarray      # (n_rows, d): the FAQs' means, whitened
    shrinkage: float

    @classmethod
    def fit(cls, embeddings: np.ndarray, rows: np.ndarray, n_rows: int) -> DistanceScorer:
        """Return the scorer of embeddings labelled with their FAQ ``rows`` (0..n_rows-1); a row without any
        embedding (possible in a calibration fold) is given the mean of all of them."""
        from sklearn.covariance import ledoit_wolf

        x = np.asarray(embeddings, dtype=np.float64)
        rows = np.asarray(rows, dtype=np.int64)
        d = x.shape[1]
        counts = np.bincount(rows, minlength=n_rows).astype(np.float64)
        sums = np.zeros((n_rows, d))
        np.add.at(sums, rows, x)
        means = np.divide(sums, counts[:, None], out=np.tile(x.mean(0), (n_rows, 1)), where=counts[:, None] > 0)
        centred = x - means[rows]
        shared = counts[rows] > 1          # a row with one text says nothing about the spread
        if shared.sum() > 1:
            cov, shrinkage = ledoit_wolf(centred[shared], assume_centered=True)
        else:
            cov, shrinkage = np.eye(d) * max(float(x.var(0).mean()), 1e-4), 1.0
        values, vectors = np.linalg.eigh(cov)
        values = np.maximum(values, MIN_SPREAD * max(float(values.mean()), 1e-12))
        whiten = vectors / np.sqrt(values)
        white = means @ whiten
        return cls(whiten.astype(np.float32), white.astype(np.float32), float(shrinkage))

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Return (n, n_rows) squared Mahalanobis distances of each embedding to each FAQ, divided by the dimension."""
        z = np.atleast_2d(np.asarray(embeddings, dtype=np.float32)) @ self.whiten
        m = self.means
        sq = (z * z).sum(1)[:, None] - 2.0 * z @ m.T + (m * m).sum(1)[None, :]
        return (np.maximum(sq, 0.0) / z.shape[1]).astype(np.float32)

    def state(self) -> dict[str, np.ndarray]:
        """Return the arrays stored in a bundle (``distance.safetensors``)."""
        return {"whiten": self.whiten, "means": self.means, "shrinkage": np.array([self.shrinkage], dtype=np.float32)}

    @classmethod
    def from_state(cls, state: dict) -> DistanceScorer:
        """Return the scorer from :meth:`state` output (tensors or arrays)."""
        arr = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v, dtype=np.float32) for k, v in state.items()}
        return cls(arr["whiten"], arr["means"], float(arr["shrinkage"][0]))


def attach(hits, distances: np.ndarray | None):
    """Set each hit's ``distance`` to its FAQ's entry of ``distances`` (one query's row of
    :meth:`DistanceScorer.distances`); return ``hits``."""
    if distances is not None:
        for h in hits:
            h.distance = float(distances[h.row])
    return hits
