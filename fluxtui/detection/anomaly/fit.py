"""Fitting the anomaly model: IsolationForest, One-Class SVM and DBSCAN (scikit-learn),
calibrated on benign windows held out from training, plus the per-executable profile. Runs in
`fluxtui train`'s child process (fitjob.py), in background retraining's child and in `fluxtui
evaluate`; never in the dashboard, which loads the arrays the fit leaves (models.py, modelfile.py).

Calibration maps a raw score to 0-100 per model: the median of the calibration windows is 0, the
higher of the (1 - false_alarm_rate) quantiles of the calibration windows and of the calibration
processes' highest scores is 50 (an alarm is about a process), twice as far is 100.

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

import numpy as np
from sklearn.cluster import DBSCAN
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import NearestNeighbors
from sklearn.svm import OneClassSVM

from fluxtui.detection.anomaly.features import FEATURE_SCHEMA, FeatureWindow, feature_matrix
from fluxtui.detection.anomaly.models import (
    ALARM,
    MODEL_NAMES,
    SEED,
    Z_CLIP,
    AnomalyModel,
    per_process_max,
    split_by_process,
    split_by_time,
)
from fluxtui.detection.anomaly.profile import Profiles
from fluxtui.detection.anomaly.scorers import CoreDistanceScorer, ForestScorer, SvmScorer

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


class TrainingError(Exception):
    """Too little or unusable data, phrased for the user."""


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

    return {"python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-learn": sklearn.__version__}


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
        active=active, mean=mean, scale=scale, components=pca.components_, center=pca.mean_,
        forest=ForestScorer.from_estimator(forest), svm=SvmScorer.from_estimator(svm),
        dbscan=CoreDistanceScorer(cores, eps), medians=np.zeros(3), thresholds=np.ones(3),
        profiles=train_profiles, names=names or {}, metadata={},
        estimators={"pca": pca, "forest": forest, "svm": svm})
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
