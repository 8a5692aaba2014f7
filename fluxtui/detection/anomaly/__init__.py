"""The anomaly model trained on this machine's real behaviour (issue 10, part 2).

- features.py: `FeatureWindow` (one process during one tick) and the fixed numeric layout;
- store.py: the feature store `fluxtui train` records into (SQLite, root-owned 0600);
- profile.py: per executable, the syscalls and bigrams it made in training;
- scorers.py: the fitted detectors as numpy arrays, scoring a whole tick at once;
- models.py: `AnomalyModel` (scoring, numpy only) and the training/held-out split;
- fit.py: `fit_models` (IsolationForest, One-Class SVM, DBSCAN: scikit-learn);
- modelfile.py: saving and loading the model (JSON and numpy arrays), refusing unsafe files;
- fitjob.py: the child process that fits and saves (fluxtui train, background retraining).
Nothing here imports textual. Only fit.py imports scikit-learn (and with it scipy): the
dashboard never imports it; `fit_models`, `FitReport` and `TrainingError` are imported from here
on first use, and so are `AnomalyModel` and `AnomalyVerdict` (numpy: a dashboard without a model
never imports it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fluxtui.detection.anomaly.features import FEATURE_SCHEMA, FeatureWindow

if TYPE_CHECKING:
    from fluxtui.detection.anomaly.fit import FitReport, TrainingError, fit_models
    from fluxtui.detection.anomaly.models import AnomalyModel, AnomalyVerdict

__all__ = ["FEATURE_SCHEMA", "AnomalyModel", "AnomalyVerdict", "FeatureWindow", "FitReport",
           "TrainingError", "fit_models"]
_FIT_NAMES = ("FitReport", "TrainingError", "fit_models")
_MODEL_NAMES = ("AnomalyModel", "AnomalyVerdict")


def __getattr__(name: str) -> Any:
    if name in _FIT_NAMES:
        from fluxtui.detection.anomaly import fit

        return getattr(fit, name)
    if name in _MODEL_NAMES:
        from fluxtui.detection.anomaly import models

        return getattr(models, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
