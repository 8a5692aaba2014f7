"""The model file: saved with skops (never pickle), root-owned 0600, with its metadata.

Layout: a magic line, one JSON header line (feature schema, metadata, length and SHA-256 of each
part), a JSON part (profile, syscall names: plain data), and the skops part (the fitted
scikit-learn estimators and numpy arrays). Loading refuses, with one line saying why:
- a file another user could have written or that root does not own (files.read_policy_file,
  when running as root), or readable by others (it describes every program on the machine);
- another format or feature schema (retrain);
- content that does not match the digests in its header (tampered with or truncated). The digest
  is not a signature: someone able to rewrite a root-owned file could rewrite the header too;
  what stops a crafted file from running code is skops itself, which loads only the types listed
  in TRUSTED_TYPES and refuses a file that names any other.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np

from fluxtui.detection.anomaly.features import FEATURE_SCHEMA
from fluxtui.detection.anomaly.models import AnomalyModel
from fluxtui.detection.anomaly.profile import Profiles
from fluxtui.policy_files import UnsafeFileError, atomic_write, read_policy_file

MAGIC = b"FLUXTUI-ANOMALY-MODEL 1\n"
# What a fluxtui model holds beyond skops' default-trusted builtins and numpy arrays.
TRUSTED_TYPES = frozenset({
    "sklearn.decomposition._pca.PCA",
    "sklearn.ensemble._iforest.IsolationForest",
    "sklearn.tree._classes.ExtraTreeRegressor",
    "sklearn.tree._tree.Tree",
    "sklearn.svm._classes.OneClassSVM",
    "numpy.random._mt19937.MT19937",
    "numpy.random.mtrand.RandomState",
    "numpy.random._pickle.__randomstate_ctor",
    "numpy.random._pickle.__bit_generator_ctor",
    "builtins.slice",
})


class ModelRefused(Exception):
    """A model file that is not used, with the one-line reason."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def save_model(model: AnomalyModel, path: Path) -> int:
    """Write the model atomically, mode 0600 (owned by the writer: root for fluxtui train).
    Returns the file's size in bytes."""
    import skops.io as sio

    estimators = {
        "pca": model.pca, "forest": model.forest, "svm": model.svm,
        "active": model.active, "mean": model.mean, "scale": model.scale,
        "cores": model.cores, "eps": model.eps, "medians": model.medians,
        "thresholds": model.thresholds,
    }
    skops_part = sio.dumps(estimators)
    data_part = json.dumps({"profiles": model.profiles.to_data(),
                            "names": {str(nr): name for nr, name in sorted(model.names.items())}},
                           separators=(",", ":")).encode()
    header = {"schema": model.metadata.get("schema", FEATURE_SCHEMA), "metadata": model.metadata,
              "data": {"length": len(data_part), "sha256": _digest(data_part)},
              "skops": {"length": len(skops_part), "sha256": _digest(skops_part)}}
    blob = MAGIC + json.dumps(header).encode() + b"\n" + data_part + skops_part
    atomic_write(Path(path), blob, mode=0o600)
    return len(blob)


def read_header(blob: bytes, path: Path) -> tuple[dict[str, Any], bytes, bytes]:
    if not blob.startswith(MAGIC):
        raise ModelRefused(f"model {path} refused: not a fluxtui anomaly model (retrain with "
                           "fluxtui train)")
    end = blob.find(b"\n", len(MAGIC))
    try:
        header = json.loads(blob[len(MAGIC):end])
        data_len, skops_len = int(header["data"]["length"]), int(header["skops"]["length"])
    except (ValueError, KeyError, TypeError):
        raise ModelRefused(f"model {path} refused: its header is damaged (tampered with or "
                           "truncated; retrain with fluxtui train)") from None
    body = blob[end + 1:]
    data_part, skops_part = body[:data_len], body[data_len:]
    if header.get("schema") != FEATURE_SCHEMA:
        raise ModelRefused(f"model {path} refused: feature schema {header.get('schema')!r}, "
                           f"this fluxtui uses {FEATURE_SCHEMA!r} (retrain with fluxtui train)")
    if (len(skops_part) != skops_len or _digest(data_part) != header["data"]["sha256"]
            or _digest(skops_part) != header["skops"]["sha256"]):
        raise ModelRefused(f"model {path} refused: content does not match the digests in its "
                           "header (tampered with or truncated; retrain with fluxtui train)")
    return header, data_part, skops_part


def load_model(path: Path) -> AnomalyModel:
    """The model at `path`, or ModelRefused with one line saying why."""
    import skops.io as sio

    path = Path(path)
    try:
        blob = read_policy_file(path)
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ModelRefused(f"no model trained ({path} does not exist; run fluxtui train)"
                           ) from None
    except UnsafeFileError as exc:
        raise ModelRefused(f"model {exc}") from None
    except OSError as exc:
        raise ModelRefused(f"model {path} refused: cannot read: {exc.strerror}") from None
    if mode & (stat.S_IRGRP | stat.S_IROTH):
        raise ModelRefused(f"model {path} refused: readable by other users (mode "
                           f"{stat.filemode(mode)}); fix with: chmod 600 {path}")
    header, data_part, skops_part = read_header(blob, path)
    try:
        untrusted = set(sio.get_untrusted_types(data=skops_part))
    except Exception as exc:  # skops raises various errors on a damaged archive
        raise ModelRefused(f"model {path} refused: unreadable skops data ({exc})") from None
    unexpected = sorted(untrusted - TRUSTED_TYPES)
    if unexpected:
        raise ModelRefused(f"model {path} refused: it names types a fluxtui model never holds: "
                           + ", ".join(unexpected[:3]))
    try:
        parts = sio.loads(skops_part, trusted=sorted(untrusted))
        data = json.loads(data_part)
        return AnomalyModel(
            active=parts["active"], mean=parts["mean"], scale=parts["scale"], pca=parts["pca"],
            forest=parts["forest"], svm=parts["svm"], cores=parts["cores"],
            eps=float(parts["eps"]), medians=np.asarray(parts["medians"]),
            thresholds=np.asarray(parts["thresholds"]),
            profiles=Profiles.from_data(data["profiles"]),
            names={int(nr): str(name) for nr, name in data["names"].items()},
            metadata=header["metadata"])
    except Exception as exc:  # a file that passed the digests but does not hold a model
        raise ModelRefused(f"model {path} refused: does not hold a usable model ({exc})"
                           ) from None
