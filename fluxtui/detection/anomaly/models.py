"""The fitted anomaly model and its scoring: numpy only (fit.py fits it with scikit-learn).

Pipeline: feature rows (features.py) -> the columns that varied in training, centred and scaled
-> PCA to at most fit.PCA_COMPONENTS dimensions -> three detectors (isolation forest, One-Class
SVM, distance to DBSCAN's core samples), each giving a raw score that grows with abnormality.
Calibration maps a raw score to 0-100 per model: the median of the calibration windows is 0, the
calibrated threshold is 50, twice as far is 100. The ensemble score is the median of the three
(>= 50 when at least two of them are past their threshold). The window's score is the larger of
the ensemble's and the profile's (profile.py).

Everything here is arrays (scorers.py): the dashboard loads a model (modelfile.py) without
importing scikit-learn or scipy. `AnomalyModel.estimators` holds the fitted scikit-learn objects
only in the process that fitted the model (tests compare the scorers with them).

The split of recorded windows into training, calibration and verification parts is here too
(numpy only; fit.py and the evaluation use it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fluxtui.detection.anomaly.features import (
    BIGRAM_BASE,
    BIGRAM_BUCKETS,
    N_FEATURES,
    FeatureWindow,
    bigram_bucket,
    describe_value,
    feature_matrix,
    feature_name,
)
from fluxtui.detection.anomaly.profile import Profiles
from fluxtui.detection.anomaly.scorers import CoreDistanceScorer, ForestScorer, SvmScorer
from fluxtui.events import ProcessKey

MODEL_NAMES = ("isolation forest", "one-class SVM", "DBSCAN")
Z_CLIP = 100.0
ALARM = 50.0  # a score at or above this is an alarm (the calibrated threshold)
EXPLAIN_FROM = 25.0  # rows scoring below this get no feature-level reasons (saves time)
MAX_REASONS = 5
SCORE_ROWS = 256  # windows scored at once (bounds the matrices' memory)
SEED = 0  # subsamples are drawn from the recorded windows with a fixed seed: same store, same model


@dataclass(frozen=True, slots=True)
class AnomalyVerdict:
    key: ProcessKey
    score: float  # 0-100
    reasons: tuple[str, ...]
    model_scores: tuple[float, ...] = (0.0, 0.0, 0.0)  # in MODEL_NAMES order
    profile_score: float = 0.0


class AnomalyModel:
    """A fitted model. `score` is cheap (see scorers.py); everything else is data."""

    def __init__(self, *, active: np.ndarray, mean: np.ndarray, scale: np.ndarray,
                 components: np.ndarray, center: np.ndarray, forest: ForestScorer,
                 svm: SvmScorer, dbscan: CoreDistanceScorer, medians: np.ndarray,
                 thresholds: np.ndarray, profiles: Profiles, names: Mapping[int, str],
                 metadata: dict[str, Any], estimators: Mapping[str, Any] | None = None) -> None:
        """`components`, `center`: the PCA's (rows: coordinates; the mean it subtracts).
        `estimators`: the scikit-learn objects, when fitted in this process."""
        self.active = np.asarray(active, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.components = np.asarray(components, dtype=np.float64)
        self.center = np.asarray(center, dtype=np.float64)
        self.forest, self.svm, self.dbscan = forest, svm, dbscan
        self.medians = np.asarray(medians, dtype=np.float64)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.profiles = profiles
        self.names = dict(names)
        self.metadata = metadata
        self.estimators = dict(estimators) if estimators is not None else None
        self._inactive = np.setdiff1d(np.arange(N_FEATURES), self.active)

    def name(self, nr: int) -> str:
        return self.names.get(nr) or f"syscall {nr}"

    # --- scoring -----------------------------------------------------------------------------

    def project(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature rows -> (scaled active columns, PCA coordinates)."""
        z = np.clip((x[:, self.active] - self.mean) / self.scale, -Z_CLIP, Z_CLIP)
        return z, (z - self.center) @ self.components.T

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """Raw scores, one column per model (MODEL_NAMES order)."""
        _, p = self.project(x)
        return self._raw(p)

    def _raw(self, p: np.ndarray) -> np.ndarray:
        return np.column_stack([self.forest.raw(p), self.svm.raw(p), self.dbscan.raw(p)])

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        spread = np.maximum(self.thresholds - self.medians, 1e-9)
        return np.clip(ALARM * (raw - self.medians) / spread, 0.0, 100.0)

    def score(self, windows: Sequence[FeatureWindow]) -> list[AnomalyVerdict]:
        """One verdict per window. Scored SCORE_ROWS windows at a time: every row is scored on
        its own, and the dense matrices (N_FEATURES floats a row, several copies) stay a few MB
        however many processes were active, instead of tens of MB at a few thousand."""
        out: list[AnomalyVerdict] = []
        for start in range(0, len(windows), SCORE_ROWS):
            out.extend(self._score(windows[start:start + SCORE_ROWS]))
        return out

    def _score(self, windows: Sequence[FeatureWindow]) -> list[AnomalyVerdict]:
        x = feature_matrix(windows)
        z, p = self.project(x)
        raw = self._raw(p)
        per_model = self.calibrated(raw)
        ensemble = np.median(per_model, axis=1)
        new, rate = self.profiles.screen(windows, x)
        # Python floats once for the whole tick: the loop below touches no numpy scalar.
        ensemble_l, rate_l, models_l = ensemble.tolist(), rate.tolist(), per_model.tolist()
        new_l = new.tolist()
        out = []
        for i, w in enumerate(windows):
            score = ensemble_l[i]
            if not new_l[i] and score < EXPLAIN_FROM and rate_l[i] < EXPLAIN_FROM:
                out.append(AnomalyVerdict(w.key, round(score, 1), (), tuple(models_l[i]), 0.0))
                continue
            judged = self.profiles.judge(w, self.name)
            profile = max(new_l[i], rate_l[i])
            reasons = list(judged.reasons[:1])  # a new syscall first: the strongest reason
            if score >= EXPLAIN_FROM:
                reasons.extend(self._explain(w, x[i], z[i], per_model[i]))
            reasons.extend(judged.reasons[1:])
            out.append(AnomalyVerdict(w.key, round(max(score, profile), 1),
                                      tuple(reasons[:MAX_REASONS]), tuple(models_l[i]),
                                      profile))
        return out

    def _explain(self, w: FeatureWindow, x: np.ndarray, z: np.ndarray,
                 per_model: np.ndarray) -> list[str]:
        past = [name for name, s in zip(MODEL_NAMES, per_model, strict=True) if s >= ALARM]
        reasons = []
        if past:
            reasons.append(f"unlike training for {len(past)} of 3 models ({', '.join(past)})")
        shown = []
        for j in np.argsort(-np.abs(z))[:2]:
            if abs(z[j]) < 3:
                break
            col = int(self.active[j])
            shown.append(f"{self._feature(w, col)} {describe_value(col, x[col])} "
                         f"(training {describe_value(col, self.mean[j])})")
        new_cols = [int(c) for c in self._inactive[x[self._inactive] != 0][:2]]
        shown += [f"{self._feature(w, c)} {describe_value(c, x[c])} (never in training)"
                  for c in new_cols]
        if shown:
            reasons.append("; ".join(shown))
        return reasons

    def _feature(self, w: FeatureWindow, col: int) -> str:
        """A column's name; a bigram bucket is named by the window's bigrams that fall in it."""
        if BIGRAM_BASE <= col < BIGRAM_BASE + BIGRAM_BUCKETS:
            pairs = [p for p in w.bigrams if bigram_bucket(*p) == col - BIGRAM_BASE]
            if pairs:
                named = ", ".join(f"{self.name(a)}->{self.name(b)}" for a, b in pairs[:2])
                return f"share of bigrams {named}"
        return feature_name(col, self.name)


# --- splitting ---------------------------------------------------------------------------------


def split_by_process(keys: Sequence[ProcessKey], holdout_fraction: float
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """Indices (in time order) of the windows that train, calibrate and verify: whole processes
    drawn at random (fixed seed), so consecutive windows of one process never straddle the
    split, and the held-out part holds every kind of workload of the recording, not only the
    latest one. None when a part would be empty (too few processes)."""
    order: dict[ProcessKey, int] = {}
    for k in keys:
        order.setdefault(k, len(order))
    draw = np.random.default_rng(SEED).random(len(order))
    where = np.array([draw[order[k]] for k in keys])
    train = np.flatnonzero(where < 1.0 - holdout_fraction)
    calib = np.flatnonzero((where >= 1.0 - holdout_fraction)
                           & (where < 1.0 - holdout_fraction / 2))
    verify = np.flatnonzero(where >= 1.0 - holdout_fraction / 2)
    if min(len(train), len(calib), len(verify)) < 2:
        return None
    return train, calib, verify


def split_by_time(n: int, holdout_fraction: float) -> tuple[slice, slice, slice]:
    hold = max(int(n * holdout_fraction), 2)
    train_end = n - hold
    calib_end = train_end + hold // 2
    return slice(0, train_end), slice(train_end, calib_end), slice(calib_end, n)


def per_process_max(values: np.ndarray, keys: Sequence[ProcessKey]) -> np.ndarray:
    """Rows of `values` (one per window) reduced to one per process: its column-wise maximum."""
    index: dict[ProcessKey, int] = {}
    rows = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.intp)
    out = np.full((len(index), values.shape[1]), -np.inf)
    np.maximum.at(out, rows, values)
    return out
