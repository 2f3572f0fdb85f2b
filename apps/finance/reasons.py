"""Alert reasons at scoring speed: path attributions of the booster's trees, precomputed per leaf.

Exact TreeSHAP (``booster.predict(pred_contrib=True)``) costs about 0.8 ms per row on 2 cores for the demo's
model (its work grows with trees x leaves x depth^2), so reasons for every alert of a 1M-row batch took most of
its time. A path attribution (Saabas) gives each split on a row's path the change of the tree's expected value
it makes, credited to the split's feature; it sums with the bias to the row's raw score exactly, like TreeSHAP,
but it is not a Shapley value: on alerts it names TreeSHAP's top reason first in 55-69 % of rows and among its
three in 85-99 % (``bench/finance_bench.py``, apps/finance/README.md), so it is the opt-in fast method
(``reasons_method="path"``), TreeSHAP the default. Because a row's attribution depends only on the leaf
it reaches in each tree, every leaf's attribution vector is computed once per model: a batch then needs only
LightGBM's leaf indices (``pred_leaf``, native code) and one sparse product, rows x trees additions.
"""
from __future__ import annotations

import numpy as np


class PathExplainer:
    """Per-feature path attributions (log-odds) of a LightGBM booster's rows; build once per model."""

    def __init__(self, booster):
        from scipy import sparse

        dump = booster.dump_model()
        self.n_features = int(dump["max_feature_idx"]) + 1
        rows, cols, vals = [], [], []
        offsets, total, bias = [], 0, 0.0
        for info in dump["tree_info"]:
            root = info["tree_structure"]
            offsets.append(total)
            bias += _value(root)
            stack = [(root, {})]
            while stack:
                node, acc = stack.pop()
                if "split_feature" not in node:      # a leaf (a one-leaf tree has no leaf_index)
                    leaf = total + int(node.get("leaf_index", 0))
                    for f, d in acc.items():
                        rows.append(leaf)
                        cols.append(f)
                        vals.append(d)
                    continue
                f, v = int(node["split_feature"]), float(node["internal_value"])
                for child in (node["left_child"], node["right_child"]):
                    path = dict(acc)
                    path[f] = path.get(f, 0.0) + _value(child) - v
                    stack.append((child, path))
            total += int(info["num_leaves"])
        self.booster = booster
        self.offsets = np.asarray(offsets, dtype=np.int64)
        self.n_leaves = total
        self.bias = bias
        self.leaf_contrib = sparse.csr_matrix((np.asarray(vals, dtype=np.float64), (rows, cols)),
                                              shape=(total, self.n_features))

    def contributions(self, x: np.ndarray, num_threads: int = 0) -> np.ndarray:
        """Return (rows, features + 1) attributions in log-odds, the bias last (the layout of ``pred_contrib``);
        each row sums to the booster's raw score."""
        from scipy import sparse

        x = np.asarray(x, dtype=np.float64)
        out = np.zeros((len(x), self.n_features + 1))
        out[:, -1] = self.bias
        if len(x) == 0 or self.n_leaves == 0:
            return out
        leaves = np.asarray(self.booster.predict(x, pred_leaf=True, num_threads=num_threads), dtype=np.int64)
        leaves = leaves.reshape(len(x), -1) + self.offsets[None, :]
        n, t = leaves.shape
        picked = sparse.csr_matrix((np.ones(n * t), leaves.ravel(), np.arange(0, n * t + 1, t)),
                                   shape=(n, self.n_leaves))
        out[:, :-1] = (picked @ self.leaf_contrib).toarray()
        return out


def _value(node: dict) -> float:
    return float(node["internal_value"] if "split_feature" in node else node["leaf_value"])


def top_agreement(a: np.ndarray, b: np.ndarray, top: int = 3) -> dict[str, float]:
    """How far two attribution matrices (rows, features [+ bias]) name the same reasons: the share of rows whose
    top feature is the same, and the mean share of the ``top`` features (by value, positive ones) both name."""
    a, b = np.asarray(a)[:, :-1], np.asarray(b)[:, :-1]
    if len(a) == 0:
        return {"rows": 0, "top1_same": float("nan"), f"top{top}_overlap": float("nan")}
    first = float((a.argmax(1) == b.argmax(1)).mean())
    ta, tb = np.argsort(-a, axis=1)[:, :top], np.argsort(-b, axis=1)[:, :top]
    overlap = [len(set(r) & set(s)) / top for r, s in zip(ta, tb)]
    return {"rows": int(len(a)), "top1_same": round(first, 4), f"top{top}_overlap": round(float(np.mean(overlap)), 4)}
