"""The anomaly model trained on this machine's real behaviour (issue 10, part 2).

- features.py: `FeatureWindow` (one process during one tick) and the fixed numeric layout;
- store.py: the feature store `fluxtui train` records into (SQLite, root-owned 0600);
- profile.py: per executable, the syscalls and bigrams it made in training;
- scorers.py: vectorised scoring of the fitted scikit-learn estimators;
- models.py: `fit_models` and `AnomalyModel` (IsolationForest, One-Class SVM, DBSCAN);
- modelfile.py: saving and loading the model with skops, refusing unsafe or foreign files;
- fitjob.py: the child process that fits and saves (fluxtui train, background retraining).
Nothing here imports textual.
"""

from fluxtui.detection.anomaly.features import FEATURE_SCHEMA, FeatureWindow
from fluxtui.detection.anomaly.models import (
    AnomalyModel,
    AnomalyVerdict,
    FitReport,
    TrainingError,
    fit_models,
)

__all__ = ["FEATURE_SCHEMA", "AnomalyModel", "AnomalyVerdict", "FeatureWindow", "FitReport",
           "TrainingError", "fit_models"]
