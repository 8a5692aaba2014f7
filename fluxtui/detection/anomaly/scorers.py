"""Scoring of the fitted models with numpy alone, vectorised over a whole tick.

scikit-learn's own `score_samples` / `decision_function` walk one tree (or one kernel block) at a
time with per-call checks and cost 10-20 ms for 1,000 rows here; the tick's budget for all of the
model is 5 ms. Each class is built once from the fitted estimator (`from_estimator`, in the
process that fitted it: fluxtui train, evaluate) and is otherwise plain arrays (`arrays` /
`from_arrays`): the model file holds those arrays, so the dashboard scores without importing
scikit-learn or scipy (about 120 MB resident). tests/test_anomaly_models.py checks that they give
scikit-learn's numbers. Every raw score here grows with abnormality.

`from_arrays` checks shapes, dtypes and index ranges: a file whose digests match but whose arrays
do not fit together is refused (ValueError) rather than failing at every tick.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

Arrays = dict[str, np.ndarray]
MAX_TREE_STEPS = 64  # an isolation tree of 256 samples is 8 deep; a file asking for more is odd


def average_path_length(n: np.ndarray) -> np.ndarray:
    """Expected path length of an unsuccessful search in a binary tree of n samples (the
    isolation forest's normaliser, as in Liu et al. and scikit-learn)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + np.euler_gamma) - 2.0 * (n[big] - 1.0) / n[big]
    return out


def _take(arrays: Mapping[str, np.ndarray], name: str, dtype: type, ndim: int) -> np.ndarray:
    a = arrays[name]
    if a.dtype != np.dtype(dtype) or a.ndim != ndim:
        raise ValueError(f"array {name!r} is {a.dtype}[{a.ndim}d], expected "
                         f"{np.dtype(dtype)}[{ndim}d]")
    return a


def _scalar(arrays: Mapping[str, np.ndarray], name: str) -> float:
    value = float(_take(arrays, name, np.float64, 0))
    if not np.isfinite(value):
        raise ValueError(f"{name!r} is not finite")
    return value


class ForestScorer:
    """IsolationForest: raw score = -score_samples (0.5 typical, towards 1 for outliers).

    All trees' nodes in one array; every (row, tree) pair walks down one level per step, leaves
    pointing at themselves, for as many steps as the deepest tree. Inputs are compared as
    float32, as scikit-learn's tree.apply does, against thresholds rounded down to float32
    (x <= t and x <= the largest float32 not above t agree for every float32 x)."""

    ARRAYS = ("children", "feature", "threshold", "value", "roots", "steps", "denominator")

    def __init__(self, children: np.ndarray, feature: np.ndarray, threshold: np.ndarray,
                 value: np.ndarray, roots: np.ndarray, steps: int, denominator: float) -> None:
        self.children = np.asarray(children, dtype=np.intp)
        self.feature = np.asarray(feature, dtype=np.intp)
        self.threshold = np.asarray(threshold, dtype=np.float32)
        self.value = np.asarray(value, dtype=np.float64)
        self.roots = np.asarray(roots, dtype=np.intp)
        self.steps = int(steps)
        self.denominator = float(denominator)

    @classmethod
    def from_estimator(cls, forest: Any) -> ForestScorer:
        """From a fitted sklearn.ensemble.IsolationForest."""
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
        denominator = len(forest.estimators_) * float(
            average_path_length(np.asarray([forest.max_samples_]))[0])
        return cls(np.concatenate(children), np.concatenate(features),
                   np.concatenate(thresholds), np.concatenate(values), np.asarray(roots), depth,
                   denominator)

    def arrays(self) -> Arrays:
        return {"children": self.children.astype(np.int64),
                "feature": self.feature.astype(np.int64), "threshold": self.threshold,
                "value": self.value, "roots": self.roots.astype(np.int64),
                "steps": np.asarray(self.steps, dtype=np.int64),
                "denominator": np.asarray(self.denominator, dtype=np.float64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], width: int) -> ForestScorer:
        """`width`: the number of PCA coordinates the features index."""
        children = _take(arrays, "children", np.int64, 1)
        feature = _take(arrays, "feature", np.int64, 1)
        threshold = _take(arrays, "threshold", np.float32, 1)
        value = _take(arrays, "value", np.float64, 1)
        roots = _take(arrays, "roots", np.int64, 1)
        steps = int(_take(arrays, "steps", np.int64, 0))
        nodes = len(value)
        if (len(children) != 2 * nodes or len(feature) != nodes or len(threshold) != nodes
                or nodes == 0 or len(roots) == 0):
            raise ValueError("forest arrays of different lengths")
        if ((children < 0) | (children >= nodes)).any() or ((roots < 0) | (roots >= nodes)).any():
            raise ValueError("forest node index out of range")
        if ((feature < 0) | (feature >= width)).any():
            raise ValueError("forest feature index out of range")
        if not 0 <= steps <= MAX_TREE_STEPS or not np.isfinite(value).all():
            raise ValueError("forest depth or path lengths out of range")
        return cls(children, feature, threshold, value, roots, steps,
                   _scalar(arrays, "denominator"))

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

    ARRAYS = ("vectors", "coef", "intercept", "gamma")

    def __init__(self, vectors: np.ndarray, coef: np.ndarray, intercept: float,
                 gamma: float) -> None:
        self.vectors = np.asarray(vectors, dtype=np.float64)
        self.coef = np.asarray(coef, dtype=np.float64)
        self.intercept = float(intercept)
        self.gamma = float(gamma)
        self.norms = (self.vectors ** 2).sum(axis=1)

    @classmethod
    def from_estimator(cls, svm: Any) -> SvmScorer:
        """From a fitted sklearn.svm.OneClassSVM (RBF kernel)."""
        return cls(svm.support_vectors_, np.asarray(svm.dual_coef_).ravel(),
                   float(np.asarray(svm.intercept_).ravel()[0]),
                   float(svm._gamma))  # the value 'scale' resolved to at fit time

    def arrays(self) -> Arrays:
        return {"vectors": self.vectors, "coef": self.coef,
                "intercept": np.asarray(self.intercept, dtype=np.float64),
                "gamma": np.asarray(self.gamma, dtype=np.float64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], width: int) -> SvmScorer:
        vectors = _take(arrays, "vectors", np.float64, 2)
        coef = _take(arrays, "coef", np.float64, 1)
        if vectors.shape != (len(coef), width) or len(coef) == 0:
            raise ValueError(f"support vectors {vectors.shape} do not fit {len(coef)} "
                             f"coefficients of width {width}")
        if not (np.isfinite(vectors).all() and np.isfinite(coef).all()):
            raise ValueError("support vectors or coefficients not finite")
        return cls(vectors, coef, _scalar(arrays, "intercept"), _scalar(arrays, "gamma"))

    def raw(self, z: np.ndarray) -> np.ndarray:
        d2 = (z ** 2).sum(axis=1)[:, None] + self.norms[None, :] - 2.0 * z @ self.vectors.T
        np.maximum(d2, 0.0, out=d2)
        return -(np.exp(-self.gamma * d2) @ self.coef + self.intercept)


class CoreDistanceScorer:
    """DBSCAN: raw score = distance to the nearest core sample; beyond `eps` a window belongs
    to no cluster (noise)."""

    ARRAYS = ("cores", "eps")

    def __init__(self, cores: np.ndarray, eps: float) -> None:
        self.cores = np.asarray(cores, dtype=np.float64)
        self.eps = float(eps)
        self.norms = (self.cores ** 2).sum(axis=1)

    def arrays(self) -> Arrays:
        return {"cores": self.cores, "eps": np.asarray(self.eps, dtype=np.float64)}

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], width: int) -> CoreDistanceScorer:
        cores = _take(arrays, "cores", np.float64, 2)
        if cores.shape[1] != width or not np.isfinite(cores).all():
            raise ValueError(f"core samples of width {cores.shape[1]} (expected {width}) or "
                             "not finite")
        return cls(cores, _scalar(arrays, "eps"))

    def raw(self, z: np.ndarray) -> np.ndarray:
        if len(self.cores) == 0:
            return np.full(z.shape[0], np.inf)
        d2 = (z ** 2).sum(axis=1)[:, None] + self.norms[None, :] - 2.0 * z @ self.cores.T
        return np.sqrt(np.maximum(d2.min(axis=1), 0.0))
