"""Fitting and scoring the anomaly model: IsolationForest, One-Class SVM and DBSCAN, calibrated on
benign windows held out from training, plus the per-executable profile.

Pipeline: feature rows (features.py) -> the columns that varied in training, centred and scaled
-> PCA to at most PCA_COMPONENTS dimensions -> three detectors, each giving a raw score that grows
with abnormality. Calibration maps a raw score to 0-100 per model: the median of the calibration
windows is 0, the higher of the (1 - false_alarm_rate) quantiles of the calibration windows and of
the calibration processes' highest scores is 50 (an alarm is about a process), twice as far is
100. The ensemble score is the median of the three (>= 50 when at least two of them are past
their threshold). The window's score is the larger of the ensemble's and the profile's
(profile.py).

Windows are split by process, never window by window (consecutive windows of a process are
alike): whole processes drawn with a fixed seed train, the held-out rest (holdout_fraction) is cut
in two, the first half sets the thresholds, the second measures the false-alarm rate the user is
shown. Split by time instead, the held-out part held only the latest workloads of the recording,
and rarer ones recorded earlier alarmed past thresholds set without them. The profile shipped is
built from every window; the one measured on the verification half from the training part only.

Cost: One-Class SVM and DBSCAN are fitted on bounded subsamples (SVM_SAMPLES, DBSCAN_SAMPLES), and
DBSCAN's core set is capped at MAX_CORES, so scoring cost does not grow with the store.
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM

from fluxtui.detection.anomaly.features import (
    BIGRAM_BASE,
    BIGRAM_BUCKETS,
    FEATURE_SCHEMA,
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
MIN_WINDOWS = 200  # fewer and the held-out halves are too small to set a threshold
PCA_COMPONENTS = 24
FOREST_TREES = 100
SVM_SAMPLES = 2000
SVM_NU = 0.05
DBSCAN_SAMPLES = 3000
DBSCAN_MIN_SAMPLES = 5
DBSCAN_EPS_QUANTILE = 0.9
MAX_CORES = 500
SCALE_FLOOR = 0.01  # a feature that hardly varied in training: deviations of 1% count as 1 unit
Z_CLIP = 100.0
ALARM = 50.0  # a score at or above this is an alarm (the calibrated threshold)
EXPLAIN_FROM = 25.0  # rows scoring below this get no feature-level reasons (saves time)
MAX_REASONS = 5
SEED = 0  # subsamples are drawn from the recorded windows with a fixed seed: same store, same model


class TrainingError(Exception):
    """Too little or unusable data, phrased for the user."""


@dataclass(frozen=True)
class AnomalyVerdict:
    key: ProcessKey
    score: float  # 0-100
    reasons: tuple[str, ...]
    model_scores: tuple[float, ...] = (0.0, 0.0, 0.0)  # in MODEL_NAMES order
    profile_score: float = 0.0


@dataclass
class FitReport:
    windows: int
    train: int
    calibrate: int
    verify: int
    executables: int
    false_alarm_target: float
    false_alarms: dict[str, float] = field(default_factory=dict)  # on the verification half
    fit_seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"windows: {self.windows:,} ({self.train:,} train, {self.calibrate:,} threshold "
               f"calibration, {self.verify:,} verification); executables profiled: "
               f"{self.executables:,}; fit in {self.fit_seconds:.1f} s",
               f"false-alarm rate on {self.verify:,} held-out benign windows "
               f"(target {self.false_alarm_target:.1%} per model):"]
        out += [f"  {name}: {rate:.2%}" for name, rate in self.false_alarms.items()]
        return out


def _versions() -> dict[str, str]:
    import scipy
    import sklearn
    import skops

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
            "skops": skops.__version__}


class AnomalyModel:
    """A fitted model. `score` is cheap (see scorers.py); everything else is data."""

    def __init__(self, *, active: np.ndarray, mean: np.ndarray, scale: np.ndarray, pca: PCA,
                 forest: IsolationForest, svm: OneClassSVM, cores: np.ndarray, eps: float,
                 medians: np.ndarray, thresholds: np.ndarray, profiles: Profiles,
                 names: Mapping[int, str], metadata: dict[str, Any]) -> None:
        self.active = np.asarray(active, dtype=np.int64)
        self.mean = np.asarray(mean, dtype=np.float64)
        self.scale = np.asarray(scale, dtype=np.float64)
        self.pca, self.forest, self.svm = pca, forest, svm
        self.cores, self.eps = np.asarray(cores, dtype=np.float64), float(eps)
        self.medians = np.asarray(medians, dtype=np.float64)
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.profiles = profiles
        self.names = dict(names)
        self.metadata = metadata
        self._forest = ForestScorer(forest)
        self._svm = SvmScorer(svm)
        self._dbscan = CoreDistanceScorer(self.cores, self.eps)
        self._components = np.asarray(pca.components_, dtype=np.float64)
        self._pca_mean = np.asarray(pca.mean_, dtype=np.float64)
        self._inactive = np.setdiff1d(np.arange(N_FEATURES), self.active)

    def name(self, nr: int) -> str:
        return self.names.get(nr) or f"syscall {nr}"

    # --- scoring -----------------------------------------------------------------------------

    def project(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature rows -> (scaled active columns, PCA coordinates)."""
        z = np.clip((x[:, self.active] - self.mean) / self.scale, -Z_CLIP, Z_CLIP)
        return z, (z - self._pca_mean) @ self._components.T

    def raw_scores(self, x: np.ndarray) -> np.ndarray:
        """Raw scores, one column per model (MODEL_NAMES order)."""
        _, p = self.project(x)
        return np.column_stack([self._forest.raw(p), self._svm.raw(p), self._dbscan.raw(p)])

    def calibrated(self, raw: np.ndarray) -> np.ndarray:
        spread = np.maximum(self.thresholds - self.medians, 1e-9)
        return np.clip(ALARM * (raw - self.medians) / spread, 0.0, 100.0)

    def score(self, windows: Sequence[FeatureWindow]) -> list[AnomalyVerdict]:
        if not windows:
            return []
        x = feature_matrix(windows)
        z, p = self.project(x)
        raw = np.column_stack([self._forest.raw(p), self._svm.raw(p), self._dbscan.raw(p)])
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


# --- fitting ---------------------------------------------------------------------------------


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


def fit_models(windows: Sequence[FeatureWindow], *, names: Mapping[int, str] | None = None,
               false_alarm_rate: float = 0.01, holdout_fraction: float = 0.3,
               min_profile_windows: int = 5, host: str | None = None,
               report: list[FitReport] | None = None) -> AnomalyModel:
    """Fit the three detectors and the profile on recorded windows (in-process; `fluxtui train`
    runs this in a child process). `report`, when given, receives the FitReport."""
    started = time.monotonic()
    if len(windows) < MIN_WINDOWS:
        raise TrainingError(f"{len(windows)} windows recorded; at least {MIN_WINDOWS} are "
                            "needed (record for longer: fluxtui train --duration S)")
    ordered = sorted(windows, key=lambda w: w.recorded_at)
    x_all = feature_matrix(ordered)
    parts = split_by_process([w.key for w in ordered], holdout_fraction)
    if parts is None:
        by_time = split_by_time(len(ordered), holdout_fraction)
        parts = tuple(np.arange(len(ordered))[s] for s in by_time)  # type: ignore[assignment]
    assert parts is not None
    train, calib, verify = parts
    train_w = [ordered[i] for i in train]
    calib_w = [ordered[i] for i in calib]
    verify_w = [ordered[i] for i in verify]
    x = x_all[train]
    std = x.std(axis=0)
    active = np.flatnonzero((std > 0) | (x.max(axis=0) != 0))
    if len(active) < 2:
        raise TrainingError("the recorded windows do not vary: nothing to learn from")
    mean = x[:, active].mean(axis=0)
    scale = np.maximum(std[active], SCALE_FLOOR)
    z = np.clip((x[:, active] - mean) / scale, -Z_CLIP, Z_CLIP)
    pca = PCA(n_components=min(PCA_COMPONENTS, len(active), len(z) - 1), random_state=SEED)
    p = pca.fit_transform(z)

    rng = np.random.default_rng(SEED)
    forest = IsolationForest(n_estimators=FOREST_TREES, max_samples=min(256, len(p)),
                             random_state=SEED).fit(p)
    svm = OneClassSVM(nu=SVM_NU, gamma="scale").fit(_subsample(p, SVM_SAMPLES, rng))
    cores, eps = _dbscan_cores(_subsample(p, DBSCAN_SAMPLES, rng), rng)

    train_profiles = Profiles.build(train_w, min_profile_windows, false_alarm_rate)
    model = AnomalyModel(
        active=active, mean=mean, scale=scale, pca=pca, forest=forest, svm=svm, cores=cores,
        eps=eps, medians=np.zeros(3), thresholds=np.ones(3), profiles=train_profiles,
        names=names or {}, metadata={})
    raw_calib = model.raw_scores(x_all[calib])
    model.medians = np.median(raw_calib, axis=0)
    # At most `false_alarm_rate` of the held-out windows AND of the held-out processes (an
    # alarm is about a process, raised on its worst window) reach the threshold: the higher of
    # the two quantiles. Per window alone, a short benign process with one odd window alarms
    # as often as the rate allows per window; per process alone, a few long-lived processes
    # with many odd windows would pull the threshold down.
    keys = [w.key for w in calib_w]
    model.thresholds = np.maximum(
        np.quantile(raw_calib, 1.0 - false_alarm_rate, axis=0),
        np.quantile(per_process_max(raw_calib, keys), 1.0 - false_alarm_rate, axis=0))
    # The rate check's factor, like the detectors' thresholds, from the calibration half.
    rate_factor = train_profiles.calibrate_rate(calib_w, x_all[calib], false_alarm_rate)

    fit_report = FitReport(len(ordered), len(train), len(calib), len(verify), 0,
                           false_alarm_rate)
    verdicts = model.score(verify_w)
    per_model = np.array([v.model_scores for v in verdicts]).reshape(-1, 3)
    ensemble = np.median(per_model, axis=1)
    profile = np.array([v.profile_score for v in verdicts])
    for i, name in enumerate(MODEL_NAMES):
        fit_report.false_alarms[name] = float(np.mean(per_model[:, i] >= ALARM))
    fit_report.false_alarms["ensemble (2 of 3)"] = float(np.mean(ensemble >= ALARM))
    fit_report.false_alarms["executable profile (new syscall, rate)"] = float(
        np.mean(profile >= ALARM))
    fit_report.false_alarms["combined (what the dashboard uses)"] = float(
        np.mean([v.score >= ALARM for v in verdicts]))

    model.profiles = Profiles.build(ordered, min_profile_windows, false_alarm_rate)
    model.profiles.rate_factor = rate_factor
    fit_report.executables = len(model.profiles.executables)
    fit_report.fit_seconds = time.monotonic() - started
    model.metadata = {
        "schema": FEATURE_SCHEMA,
        "versions": _versions(),
        "host": host or os.uname().nodename,
        "trained_at": time.time(),
        "period": [ordered[0].recorded_at, ordered[-1].recorded_at],
        "windows": len(ordered),
        "train_windows": fit_report.train,
        "executables": fit_report.executables,
        "false_alarm_target": false_alarm_rate,
        "false_alarms": fit_report.false_alarms,
        "rate_factor": rate_factor,
    }
    if report is not None:
        report.append(fit_report)
    return model


def per_process_max(values: np.ndarray, keys: Sequence[ProcessKey]) -> np.ndarray:
    """Rows of `values` (one per window) reduced to one per process: its column-wise maximum."""
    index: dict[ProcessKey, int] = {}
    rows = np.array([index.setdefault(k, len(index)) for k in keys], dtype=np.intp)
    out = np.full((len(index), values.shape[1]), -np.inf)
    np.maximum.at(out, rows, values)
    return out


def _subsample(p: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if len(p) <= limit:
        return p
    return p[np.sort(rng.choice(len(p), limit, replace=False))]


def _dbscan_cores(p: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """DBSCAN on a bounded sample; eps from the distances to each sample's k-th neighbour."""
    k = min(DBSCAN_MIN_SAMPLES, len(p) - 1)
    distances, _ = NearestNeighbors(n_neighbors=k + 1).fit(p).kneighbors(p)
    eps = float(np.quantile(distances[:, k], DBSCAN_EPS_QUANTILE))
    if not math.isfinite(eps) or eps <= 0:
        eps = 1e-6  # identical windows: a cluster of one point
    db = DBSCAN(eps=eps, min_samples=k + 1).fit(p)
    cores = p[db.core_sample_indices_]
    if len(cores) > MAX_CORES:
        cores = cores[np.sort(rng.choice(len(cores), MAX_CORES, replace=False))]
    return cores, eps
