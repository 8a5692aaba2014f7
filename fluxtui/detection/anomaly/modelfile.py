"""The model file: plain data only (JSON and numpy arrays), root-owned 0600, with its metadata.

Layout: a magic line naming the format, one JSON header line (feature schema, metadata, length
and SHA-256 of each part), a JSON part (profile, syscall names) and an arrays part (numpy `.npz`,
read with allow_pickle=False: the PCA, the isolation forest's nodes, the SVM's support vectors,
DBSCAN's core samples, the calibration). Nothing in the file is code or names a type: loading
constructs arrays, strings and numbers only, so a crafted file cannot run anything, and the
dashboard loads a model without importing scikit-learn or scipy.

Format 1 held scikit-learn objects (skops); it is refused with "retrain". Why not keep that part
next to the arrays: nothing reads it (the dashboard, background retraining and the evaluation all
score from the arrays), and refitting the same store gives the same model (the fit is seeded).

Loading refuses, with one line saying why:
- a file another user could have written or that root does not own (files.read_policy_file,
  when running as root), or readable by others (it describes every program on the machine);
- another format or feature schema (retrain);
- content that does not match the digests in its header (tampered with or truncated). The digest
  is not a signature: someone able to rewrite a root-owned file could rewrite the header too;
- arrays that do not fit together (shapes, types, index ranges: see scorers.py).

numpy and the modules built on it are imported on first use: a dashboard that finds no model
(or refuses one) never loads numpy (about 16 MB resident; bench/bench_memory.py).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fluxtui.detection.anomaly.features import FEATURE_SCHEMA, N_FEATURES
from fluxtui.policy_files import UnsafeFileError, atomic_write, read_policy_file

if TYPE_CHECKING:
    import numpy as np

    from fluxtui.detection.anomaly.models import AnomalyModel
    from fluxtui.detection.anomaly.profile import Profiles

FORMAT = 2
MAGIC_PREFIX = b"FLUXTUI-ANOMALY-MODEL "
MAGIC = MAGIC_PREFIX + f"{FORMAT}\n".encode()
PARTS = ("data", "arrays")
SCORER_NAMES = ("forest", "svm", "dbscan")
MODEL_ARRAYS = ("active", "mean", "scale", "components", "center", "medians", "thresholds")
RETRAIN = "retrain: fluxtui train"


class ModelRefused(Exception):
    """A model file that is not used, with the one-line reason."""


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def scorers() -> tuple[tuple[str, Any], ...]:
    """(prefix, scorer class) of the three detectors, in the file's order."""
    from fluxtui.detection.anomaly.scorers import CoreDistanceScorer, ForestScorer, SvmScorer

    return tuple(zip(SCORER_NAMES, (ForestScorer, SvmScorer, CoreDistanceScorer), strict=True))


def model_arrays(model: AnomalyModel) -> dict[str, np.ndarray]:
    """Every array the model scores with, by name (scorers' arrays prefixed with their name)."""
    import numpy as np

    out = {name: np.asarray(getattr(model, name)) for name in MODEL_ARRAYS}
    for prefix in SCORER_NAMES:
        for name, array in getattr(model, prefix).arrays().items():
            out[f"{prefix}.{name}"] = array
    return out


def save_model(model: AnomalyModel, path: Path) -> int:
    """Write the model atomically, mode 0600 (owned by the writer: root for fluxtui train).
    Returns the file's size in bytes."""
    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **model_arrays(model))
    parts = {
        "data": json.dumps({"profiles": model.profiles.to_data(),
                            "names": {str(nr): name for nr, name in sorted(model.names.items())}},
                           separators=(",", ":")).encode(),
        "arrays": buffer.getvalue(),
    }
    header: dict[str, Any] = {"schema": model.metadata.get("schema", FEATURE_SCHEMA),
                              "metadata": model.metadata}
    header.update({name: {"length": len(part), "sha256": _digest(part)}
                   for name, part in parts.items()})
    blob = MAGIC + json.dumps(header).encode() + b"\n" + b"".join(parts[n] for n in PARTS)
    atomic_write(Path(path), blob, mode=0o600)
    return len(blob)


def read_header(blob: bytes, path: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """The header and the parts by name, their digests checked."""
    if not blob.startswith(MAGIC):
        if blob.startswith(MAGIC_PREFIX):
            found = blob[len(MAGIC_PREFIX):blob.find(b"\n")][:20].decode("ascii", "replace")
            raise ModelRefused(f"model {path} refused: model format {found!r}, this fluxtui "
                               f"reads format {FORMAT} ({RETRAIN})")
        raise ModelRefused(f"model {path} refused: not a fluxtui anomaly model ({RETRAIN})")
    end = blob.find(b"\n", len(MAGIC))
    try:
        header = json.loads(blob[len(MAGIC):end])
        lengths = [int(header[name]["length"]) for name in PARTS]
        digests = [str(header[name]["sha256"]) for name in PARTS]
    except (ValueError, KeyError, TypeError):
        raise ModelRefused(f"model {path} refused: its header is damaged (tampered with or "
                           f"truncated; {RETRAIN})") from None
    if header.get("schema") != FEATURE_SCHEMA:
        raise ModelRefused(f"model {path} refused: feature schema {header.get('schema')!r}, "
                           f"this fluxtui uses {FEATURE_SCHEMA!r} ({RETRAIN})")
    body = memoryview(blob)[end + 1:]
    parts: dict[str, bytes] = {}
    offset = 0
    for name, length, digest in zip(PARTS, lengths, digests, strict=True):
        part = bytes(body[offset:offset + length])
        offset += length
        if len(part) != length or _digest(part) != digest:
            break
        parts[name] = part
    if len(parts) != len(PARTS) or offset != len(body):
        raise ModelRefused(f"model {path} refused: content does not match the digests in its "
                           f"header (tampered with or truncated; {RETRAIN})")
    return header, parts


def _read_arrays(part: bytes) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(io.BytesIO(part), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _take(arrays: Mapping[str, np.ndarray], name: str, dtype: type, shape: tuple[int, ...]
          ) -> np.ndarray:
    import numpy as np

    a = arrays[name]
    if a.dtype != np.dtype(dtype) or a.shape != shape or not np.isfinite(a).all():
        raise ValueError(f"array {name!r} is {a.dtype}{list(a.shape)}, expected "
                         f"{np.dtype(dtype)}{list(shape)} of finite values")
    return a


def model_from_arrays(arrays: Mapping[str, np.ndarray], profiles: Profiles,
                      names: Mapping[int, str], metadata: dict[str, Any]) -> AnomalyModel:
    """The model the arrays describe; ValueError when they do not fit together."""
    import numpy as np

    from fluxtui.detection.anomaly.models import AnomalyModel

    expected = set(MODEL_ARRAYS) | {f"{prefix}.{name}" for prefix, cls in scorers()
                                    for name in cls.ARRAYS}
    missing, extra = sorted(expected - set(arrays)), sorted(set(arrays) - expected)
    if missing or extra:
        raise ValueError(f"arrays missing: {', '.join(missing) or 'none'}; unexpected: "
                         f"{', '.join(extra) or 'none'}")
    active = arrays["active"]
    if active.dtype != np.int64 or active.ndim != 1 or len(active) < 2:
        raise ValueError("array 'active' is not a list of feature columns")
    if ((active < 0) | (active >= N_FEATURES)).any() or len(np.unique(active)) != len(active):
        raise ValueError("array 'active' names columns outside the feature layout")
    n = len(active)
    components = arrays["components"]
    if components.ndim != 2 or components.shape[1] != n or components.shape[0] == 0:
        raise ValueError(f"PCA components {components.shape} do not fit {n} columns")
    width = components.shape[0]
    fitted: dict[str, Any] = {}
    for prefix, cls in scorers():
        fitted[prefix] = cls.from_arrays({name: arrays[f"{prefix}.{name}"]
                                          for name in cls.ARRAYS}, width)
    scale = _take(arrays, "scale", np.float64, (n,))
    if (scale <= 0).any():
        raise ValueError("array 'scale' holds a value <= 0")
    return AnomalyModel(
        active=active, mean=_take(arrays, "mean", np.float64, (n,)), scale=scale,
        components=_take(arrays, "components", np.float64, (width, n)),
        center=_take(arrays, "center", np.float64, (n,)), forest=fitted["forest"],
        svm=fitted["svm"], dbscan=fitted["dbscan"],
        medians=_take(arrays, "medians", np.float64, (3,)),
        thresholds=_take(arrays, "thresholds", np.float64, (3,)),
        profiles=profiles, names=names, metadata=metadata)


def load_model(path: Path) -> AnomalyModel:
    """The model at `path`, or ModelRefused with one line saying why."""
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
    header, parts = read_header(blob, path)
    try:
        data = json.loads(parts["data"])
        from fluxtui.detection.anomaly.profile import Profiles

        return model_from_arrays(
            _read_arrays(parts["arrays"]), Profiles.from_data(data["profiles"]),
            {int(nr): str(name) for nr, name in data["names"].items()}, header["metadata"])
    except Exception as exc:  # a file that passed the digests but does not hold a model
        raise ModelRefused(f"model {path} refused: does not hold a usable model ({exc}; "
                           f"{RETRAIN})") from None
