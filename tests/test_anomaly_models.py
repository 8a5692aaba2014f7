"""The anomaly model on windows recorded on this machine: the vectorised scorers give
scikit-learn's numbers, the fit reports its held-out false-alarm rates and metadata, and a
process making a syscall its executable never made in training scores high, with that reason."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from fluxtui.detection.anomaly import FEATURE_SCHEMA, FitReport, TrainingError, fit_models
from fluxtui.detection.anomaly.features import feature_matrix
from fluxtui.detection.anomaly.models import (
    ALARM,
    MODEL_NAMES,
    per_process_max,
    split_by_process,
)
from fluxtui.detection.anomaly.profile import (
    NEW_SYSCALL_SCORE,
    NEW_SYSCALL_WEAK_SCORE,
    RATE_FACTOR,
    Profiles,
)
from fluxtui.events import ProcessKey
from tests.anomaly_support import names, recorded_model, recorded_windows

KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F = (ProcessKey(pid, 7) for pid in range(1, 7))

PTRACE = 101


def _projected() -> np.ndarray:
    model = recorded_model()
    x = feature_matrix(recorded_windows())
    return model.project(x)[1]


def _estimator(name: str) -> Any:
    estimators = recorded_model().estimators
    assert estimators is not None  # fitted in this process
    return estimators[name]


def test_the_projection_equals_scikit_learns_pca() -> None:
    model = recorded_model()
    z, p = model.project(feature_matrix(recorded_windows()))
    np.testing.assert_allclose(p, _estimator("pca").transform(z), rtol=1e-9, atol=1e-9)


def test_forest_scorer_equals_scikit_learn() -> None:
    model = recorded_model()
    p = _projected()
    far = p * 3.0  # also rows outside the training range
    for rows in (p, far):
        np.testing.assert_allclose(model.forest.raw(rows),
                                   -_estimator("forest").score_samples(rows), rtol=0, atol=1e-12)


def test_svm_scorer_equals_scikit_learn() -> None:
    model = recorded_model()
    p = _projected()
    np.testing.assert_allclose(model.svm.raw(p), -_estimator("svm").decision_function(p),
                               rtol=1e-9, atol=1e-9)


def test_dbscan_score_is_the_distance_to_the_nearest_core_sample() -> None:
    model = recorded_model()
    p = _projected()
    cores = model.dbscan.cores
    expected = NearestNeighbors(n_neighbors=1).fit(cores).kneighbors(p)[0][:, 0]
    np.testing.assert_allclose(model.dbscan.raw(p), expected, rtol=1e-6, atol=1e-6)
    assert 0 < len(cores) <= 500


def test_fit_calibrates_on_held_out_windows_and_records_metadata() -> None:
    windows = recorded_windows()
    report: list[FitReport] = []
    model = fit_models(windows, names=names(), host="test", false_alarm_rate=0.02,
                       report=report)
    r = report[0]
    assert r.train + r.calibrate + r.verify == len(windows) == 1912
    assert set(r.false_alarms) >= set(MODEL_NAMES)
    assert all(0.0 <= rate <= 1.0 for rate in r.false_alarms.values())
    lines = "\n".join(r.lines())
    assert f"false-alarm rate on {r.verify:,} held-out benign windows (target 2.0%" in lines
    meta = model.metadata
    assert meta["schema"] == FEATURE_SCHEMA and meta["host"] == "test"
    assert meta["windows"] == 1912 and meta["train_windows"] == r.train
    assert meta["period"] == [min(w.recorded_at for w in windows),
                              max(w.recorded_at for w in windows)]
    assert set(meta["versions"]) == {"python", "numpy", "scipy", "scikit-learn"}
    # The thresholds are the calibration windows' quantile: scored again, the calibration
    # windows sit at 50 at that quantile.
    ordered = sorted(windows, key=lambda w: w.recorded_at)
    split = split_by_process([w.key for w in ordered], 0.3)
    assert split is not None
    calib = [ordered[i] for i in split[1]]
    assert len(calib) == r.calibrate
    per_model = model.calibrated(model.raw_scores(feature_matrix(calib)))
    assert (per_model >= ALARM).mean(axis=0).max() <= 0.02 + 1 / r.calibrate
    # ... and per process (an alarm is about a process, on its worst window); processes whose
    # worst window ties with the quantile itself sit exactly at 50.
    worst = per_process_max(per_model, [w.key for w in calib])
    assert (worst > ALARM).mean(axis=0).max() <= 0.02 + 1 / len(worst)


def test_thresholds_count_a_process_once_however_many_windows_it_has() -> None:
    """Per process, one benign process with many windows counts once (the threshold takes the
    higher of the per-window and per-process quantiles: see fit_models)."""
    values = np.array([[1.0], [1.0], [1.0], [1.0], [5.0], [2.0]])
    keys = [KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_E]
    worst = per_process_max(values, keys)
    assert sorted(worst[:, 0].tolist()) == [1.0, 1.0, 1.0, 1.0, 5.0]
    many = per_process_max(np.array([[3.0]] * 50 + [[1.0]] * 5), [KEY_A] * 50 + [
        KEY_B, KEY_C, KEY_D, KEY_E, KEY_F])
    assert np.quantile(many, 0.5) == 1.0  # the 50 windows of one process count once


def test_too_few_windows_is_one_clear_error() -> None:
    with pytest.raises(TrainingError, match=r"^15 windows recorded; at least 200 are needed"):
        fit_models(recorded_windows()[:15])


def _window_of(exe: str):
    model = recorded_model()
    for w in recorded_windows():
        if w.exe == exe and PTRACE not in w.counts and model.profiles.new_syscalls(w) == set():
            return w
    raise AssertionError(f"no recorded window of {exe}")


def test_a_syscall_the_executable_never_made_scores_high_with_that_reason() -> None:
    model = recorded_model()
    exe = "/usr/bin/dpkg-query"
    profile = model.profiles.executables[exe]
    assert PTRACE not in profile.syscalls and profile.windows >= model.profiles.min_windows
    assert profile.novelty() == 0  # it never made a new syscall once profiled: a strong finding
    normal = _window_of(exe)
    attacked = dataclasses.replace(normal, counts={**normal.counts, PTRACE: 1},
                                   bigrams={**normal.bigrams, (PTRACE, PTRACE): 1})
    assert (PTRACE, PTRACE) not in profile.bigrams
    before, after = model.score([normal, attacked])
    assert before.profile_score == 0 and before.score < NEW_SYSCALL_SCORE
    assert after.score >= NEW_SYSCALL_SCORE == after.profile_score
    assert after.reasons[0] == (f"{exe} called ptrace, never seen in training "
                                f"({profile.windows} windows)")
    assert f"bigram ptrace->ptrace never seen for {exe}" in after.reasons


def test_a_new_syscall_of_an_executable_that_kept_making_new_ones_is_weaker() -> None:
    """bash made a syscall new to it in 7 of the 263 training windows judged after its first
    five (2.7%, more than the 1% false-alarm rate): a new one is named, but under the alarm."""
    model = recorded_model()
    bash = model.profiles.executables["/usr/bin/bash"]
    assert (bash.judged, bash.novel) == (263, 7)
    normal = _window_of("/usr/bin/bash")
    verdict = model.score([dataclasses.replace(normal, counts={**normal.counts, PTRACE: 1})])[0]
    assert verdict.profile_score == NEW_SYSCALL_WEAK_SCORE < ALARM
    assert verdict.reasons[0] == ("/usr/bin/bash called ptrace, never seen in training (268 "
                                  "windows; it made new ones in 3% of its training windows)")


def test_a_rate_far_above_training_is_named() -> None:
    model = recorded_model()
    normal = _window_of("/usr/bin/cat")
    nr, _ = max(normal.counts.items(), key=lambda kv: kv[1])
    peak = model.profiles.executables["/usr/bin/cat"].peak_rate[nr]
    burst = dataclasses.replace(normal, counts={**normal.counts, nr: int(peak * 50) + 20},
                                window_s=1.0, key=normal.key._replace(pid=1))
    verdict = model.score([burst])[0]
    assert verdict.score >= ALARM
    assert any(r.startswith(f"{names()[nr]} ") and r.endswith("x its training rate")
               for r in verdict.reasons), verdict.reasons


def test_a_window_scores_the_same_alone_or_in_a_batch() -> None:
    model = recorded_model()
    windows = recorded_windows()[::37]
    batch = model.score(windows)
    alone = [model.score([w])[0] for w in windows]
    assert [v.score for v in batch] == [v.score for v in alone]
    assert [v.reasons for v in batch] == [v.reasons for v in alone]


def test_the_vectorised_profile_agrees_with_the_explained_one() -> None:
    """score() judges every window with numpy; judge() explains one in Python: same scores."""
    model = recorded_model()
    windows = recorded_windows()
    verdicts = model.score(windows)
    for w, v in zip(windows, verdicts, strict=True):
        assert v.profile_score == pytest.approx(model.profiles.judge(w, model.name).score)


def test_the_rate_factor_is_calibrated_on_held_out_windows() -> None:
    """Must not alarm: a window whose rate factor the held-out benign windows reached (the
    calibrated factor is above it). Must alarm: a rate far past the calibrated factor."""
    model = recorded_model()
    profiles = model.profiles
    assert profiles.rate_factor >= RATE_FACTOR
    normal = _window_of("/usr/bin/cat")
    nr, _ = max(normal.counts.items(), key=lambda kv: kv[1])
    peak = profiles.executables["/usr/bin/cat"].peak_rate[nr]

    def at(factor: float):
        return dataclasses.replace(normal, counts={**normal.counts, nr: int(peak * factor) + 20},
                                   window_s=1.0, key=normal.key._replace(pid=1))
    held_out = [at(30.0) for _ in range(20)]
    calibrated = copy.deepcopy(profiles)
    calibrated.calibrate_rate(held_out, feature_matrix(held_out), 0.01)
    assert calibrated.rate_factor > 30.0
    assert calibrated.screen([at(30.0)], feature_matrix([at(30.0)]))[1][0] == 0
    assert profiles.screen([at(30.0)], feature_matrix([at(30.0)]))[1][0] >= ALARM  # before
    far = at(calibrated.rate_factor * 20)
    assert calibrated.screen([far], feature_matrix([far]))[1][0] >= ALARM
    again = Profiles.from_data(calibrated.to_data())
    assert again.rate_factor == calibrated.rate_factor


def test_the_held_out_part_is_whole_processes_of_every_period() -> None:
    """No process straddles the split, and the held-out processes come from the whole recording
    (by time, only the latest workloads would be held out)."""
    ordered = sorted(recorded_windows(), key=lambda w: w.recorded_at)
    keys = [w.key for w in ordered]
    split = split_by_process(keys, 0.3)
    assert split is not None
    train, calib, verify = ({keys[i] for i in part} for part in split)
    assert not (train & calib) and not (train & verify) and not (calib & verify)
    assert sum(len(part) for part in split) == len(ordered)
    held = sorted(i for part in split[1:] for i in part)
    assert held[0] < len(ordered) // 3 and held[-1] > 2 * len(ordered) // 3
    assert split_by_process(keys[:3], 0.3) is None  # too few processes: time split instead


def test_scoring_many_windows_keeps_its_matrices_small() -> None:
    """1,912 windows at once: the same verdicts as one pass over all of them, with a peak of
    traced memory (numpy's arrays included) far under one dense matrix of every row (1,912 x
    783 floats: 12 MB; one pass makes several)."""
    import tracemalloc

    from fluxtui.detection.anomaly.features import N_FEATURES
    from fluxtui.detection.anomaly.models import SCORE_ROWS

    model = recorded_model()
    windows = recorded_windows()
    assert len(windows) > 4 * SCORE_ROWS
    whole = model._score(windows)
    tracemalloc.start()
    try:
        chunked = model.score(windows)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert chunked == whole
    one_matrix = len(windows) * N_FEATURES * 8
    assert peak < one_matrix / 2, (peak, one_matrix)
