"""Scoring of the fitted scikit-learn models, vectorised over a whole tick.

scikit-learn's own `score_samples` / `decision_function` walk one tree (or one kernel block) at a
time with per-call checks and cost 10-20 ms for 1,000 rows here; the tick's budget for all of the
model is 5 ms. These classes read the fitted estimators' arrays once and score every row with a
few numpy operations. tests/test_anomaly_models.py checks that they give scikit-learn's numbers.
Every raw score here grows with abnormality.
"""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.svm import OneClassSVM


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a binary tree of n samples (the
    isolation forest's normaliser, as in Liu et al. and scikit-learn)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class ForestScorer:
    """IsolationForest: raw score = -score_samples (0.5 typical, towards 1 for outliers).

    All trees' nodes in one array; every (row, tree) pair walks down one level per step, leaves
    pointing at themselves, for as many steps as the deepest tree. Inputs are compared as
    float32, as scikit-learn's tree.apply does, against thresholds rounded down to float32
    (x <= t and x <= the largest float32 not above t agree for every float32 x)."""

    def __init__(self, forest: IsolationForest) -> None:
        children, features, thresholds, values, roots = [], [], [], [], []
        offset = 0
        depth = 0
        for est in forest.estimators_:
            tree = est.tree_
            n = tree.node_count
            left = tree.children_left.astype(np.int64)
            right = tree.children_right.astype(np.int64)
            leaf = left < 0
            node = np.arange(n, dtype=np.int64)
            pair = np.stack([np.where(leaf, node, left), np.where(leaf, node, right)], axis=1)
            children.append((pair + offset).ravel())
            features.append(np.where(leaf, 0, tree.feature))
            thr = tree.threshold.astype(np.float64)
            thr32 = thr.astype(np.float32)
            too_big = thr32.astype(np.float64) > thr
            thr32[too_big] = np.nextafter(thr32[too_big], np.float32(-np.inf))
            thresholds.append(np.where(leaf, np.float32(np.inf), thr32))
            depths = tree.compute_node_depths().astype(np.float64)
            values.append(depths + average_path_length(tree.n_node_samples) - 1.0)
            roots.append(offset)
            offset += n
            depth = max(depth, tree.max_depth)
        self.children = np.concatenate(children).astype(np.intp)
        self.feature = np.concatenate(features).astype(np.intp)
        self.threshold = np.concatenate(thresholds).astype(np.float32)
        self.value = np.concatenate(values)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.steps = depth
        self.denominator = len(forest.estimators_) * float(
            average_path_length(np.asarray([forest.max_samples_]))[0])

    def raw(self, z: np.ndarray) -> np.ndarray:
        n_rows, width = z.shape
        flat = np.ascontiguousarray(z, dtype=np.float32).ravel()
        trees = len(self.roots)
        base = np.repeat(np.arange(n_rows, dtype=np.intp) * width, trees)
        node = np.tile(self.roots, n_rows)
        for _ in range(self.steps):
            go_right = flat[base + self.feature[node]] > self.threshold[node]
            node = self.children[2 * node + go_right]
        depths = self.value[node].reshape(n_rows, trees).sum(axis=1)
        if self.denominator == 0:
            return np.full(n_rows, -1.0)
        return 2.0 ** (-depths / self.denominator)


class SvmScorer:
    """One-Class SVM with an RBF kernel: raw score = -decision_function."""

    def __init__(self, svm: OneClassSVM) -> None:
        self.vectors = np.asarray(svm.support_vectors_, dtype=np.float64)
        self.coef = np.asarray(svm.dual_coef_, dtype=np.float64).ravel()
        self.intercept = float(np.asarray(svm.intercept_).ravel()[0])
        self.gamma = float(svm._gamma)  # the value 'scale' resolved to at fit time
        self.norms = (self.vectors ** 2).sum(axis=1)

    def raw(self, z: np.ndarray) -> np.ndarray:
        d2 = (z ** 2).sum(axis=1)[:, None] + self.norms[None, :] - 2.0 * z @ self.vectors.T
        np.maximum(d2, 0.0, out=d2)
        return -(np.exp(-self.gamma * d2) @ self.coef + self.intercept)


class CoreDistanceScorer:
    """DBSCAN: raw score = distance to the nearest core sample; beyond `eps` a window belongs
    to no cluster (noise)."""

    def __init__(self, cores: np.ndarray, eps: float) -> None:
        self.cores = np.asarray(cores, dtype=np.float64)
        self.eps = float(eps)
        self.norms = (self.cores ** 2).sum(axis=1)

    def raw(self, z: np.ndarray) -> np.ndarray:
        if len(self.cores) == 0:
            return np.full(z.shape[0], np.inf)
        d2 = (z ** 2).sum(axis=1)[:, None] + self.norms[None, :] - 2.0 * z @ self.cores.T
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))
