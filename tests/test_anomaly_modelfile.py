"""The model file: plain JSON and numpy arrays, root-owned 0600; a file that is tampered with,
of another format or feature schema, world-writable, not owned by root, readable by others,
holding arrays that do not fit together or a pickled object, or not a model at all is refused
with one clear line, and the component keeps working and says why. Loading it imports neither
scikit-learn nor scipy. The feature store is root-owned 0600 and refuses another schema."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.anomaly import AnomalyComponent
from fluxtui.config import AnomalyConfig, Config
from fluxtui.detection.anomaly.features import FEATURE_SCHEMA
from fluxtui.detection.anomaly.modelfile import (
    MAGIC,
    PARTS,
    ModelRefused,
    load_model,
    model_arrays,
    save_model,
)
from fluxtui.detection.anomaly.store import FeatureStore, StoreError
from fluxtui.events import ComponentState
from tests.anomaly_support import recorded_model, recorded_windows, table
from tests.kernel import require_root

REPO = Path(__file__).resolve().parents[1]
Arrays = dict[str, np.ndarray]


@pytest.fixture
def model_path(tmp_path: Path) -> Path:
    path = tmp_path / "models" / "anomaly.model"
    save_model(recorded_model(), path)
    return path


def _refusal(path: Path) -> str:
    with pytest.raises(ModelRefused) as info:
        load_model(path)
    message = str(info.value)
    assert "\n" not in message, message
    return message


def _split(path: Path) -> tuple[dict, dict[str, bytes]]:
    blob = path.read_bytes()
    end = blob.find(b"\n", len(MAGIC))
    header = json.loads(blob[len(MAGIC):end])
    parts, offset = {}, end + 1
    for name in PARTS:
        parts[name] = blob[offset:offset + header[name]["length"]]
        offset += header[name]["length"]
    return header, parts


def _arrays(part: bytes) -> Arrays:
    with np.load(io.BytesIO(part), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


def _npz(arrays: Arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # allow_pickle as an attacker would have it: on
    return buffer.getvalue()


def _rewrite(path: Path, header_edit: Callable[[dict], None] | None = None,
             arrays_edit: Callable[[Arrays], None] | None = None) -> None:
    """Rewrite the file with an edited header or arrays part, digests recomputed (someone who
    can write the file can do that)."""
    header, parts = _split(path)
    if header_edit:
        header_edit(header)
    if arrays_edit:
        arrays = _arrays(parts["arrays"])
        arrays_edit(arrays)
        parts["arrays"] = _npz(arrays)
        header["arrays"] = {"length": len(parts["arrays"]),
                            "sha256": hashlib.sha256(parts["arrays"]).hexdigest()}
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n"
                     + b"".join(parts[n] for n in PARTS))


def test_saved_model_is_root_owned_0600_and_scores_as_before(model_path: Path) -> None:
    st = model_path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    loaded = load_model(model_path)
    assert loaded.estimators is None  # arrays only: no scikit-learn object in the file
    windows = recorded_windows()
    assert loaded.score(windows) == recorded_model().score(windows)  # every field, exactly
    assert loaded.metadata["schema"] == FEATURE_SCHEMA
    assert loaded.profiles.executables.keys() == recorded_model().profiles.executables.keys()
    saved, again = model_arrays(recorded_model()), model_arrays(loaded)
    assert saved.keys() == again.keys()
    for name, array in saved.items():
        assert array.dtype == again[name].dtype and np.array_equal(array, again[name]), name


@pytest.mark.parametrize("part", PARTS)
def test_tampered_model_is_refused(model_path: Path, part: str) -> None:
    _, parts = _split(model_path)
    blob = bytearray(model_path.read_bytes())
    offset = blob.find(b"\n", len(MAGIC)) + 1 + sum(len(parts[n])
                                                    for n in PARTS[:PARTS.index(part)])
    blob[offset + len(parts[part]) // 2] ^= 0x01  # one bit in the middle of the part
    model_path.write_bytes(bytes(blob))
    assert _refusal(model_path) == (
        f"model {model_path} refused: content does not match the digests in its header "
        "(tampered with or truncated; retrain: fluxtui train)")


def test_truncated_or_extended_model_is_refused(model_path: Path) -> None:
    blob = model_path.read_bytes()
    model_path.write_bytes(blob[:-10])
    assert "does not match the digests" in _refusal(model_path)
    model_path.write_bytes(blob + b"\0")
    assert "does not match the digests" in _refusal(model_path)


def test_model_of_another_schema_is_refused(model_path: Path) -> None:
    _rewrite(model_path, header_edit=lambda h: h.update(schema="fluxtui-anomaly/0 x86_64"))
    assert _refusal(model_path) == (
        f"model {model_path} refused: feature schema 'fluxtui-anomaly/0 x86_64', this fluxtui "
        f"uses {FEATURE_SCHEMA!r} (retrain: fluxtui train)")


def test_a_model_of_the_old_format_says_retrain(tmp_path: Path) -> None:
    """Format 1 held scikit-learn objects (skops): refused in one line, and the component keeps
    running and says so."""
    old = tmp_path / "anomaly.model"
    header = {"schema": FEATURE_SCHEMA, "metadata": {}, "data": {"length": 2, "sha256": ""},
              "skops": {"length": 4, "sha256": ""}}
    old.write_bytes(b"FLUXTUI-ANOMALY-MODEL 1\n" + json.dumps(header).encode() + b"\n{}PK\x03\x04")
    old.chmod(0o600)
    message = (f"model {old} refused: model format '1', this fluxtui reads format 2 (retrain: "
               "fluxtui train)")
    assert _refusal(old) == message
    component = AnomalyComponent(Config(anomaly=AnomalyConfig(model_path=str(old))),
                                 table=table())
    component.start(EventBus())
    try:
        status = component.status()
        assert status.state is ComponentState.UNAVAILABLE and status.reason == message
    finally:
        component.stop()


def _usable_refusal(path: Path) -> str:
    message = _refusal(path)
    assert message.startswith(f"model {path} refused: does not hold a usable model (")
    assert message.endswith("; retrain: fluxtui train)")
    return message


def test_arrays_that_do_not_fit_together_are_refused(model_path: Path) -> None:
    """Digests recomputed: what refuses these is the check of shapes, types and ranges, before
    the first tick (an out-of-range node index would otherwise fail at every tick)."""
    clean = model_path.read_bytes()

    def edit(change: Callable[[Arrays], None]) -> str:
        model_path.write_bytes(clean)
        _rewrite(model_path, arrays_edit=change)
        return _usable_refusal(model_path)

    def bad_child(a: Arrays) -> None:
        a["forest.children"][3] = len(a["forest.value"]) + 5

    assert "forest node index out of range" in edit(bad_child)
    assert "forest feature index out of range" in edit(
        lambda a: a["forest.feature"].__setitem__(0, 10_000))
    assert "forest depth" in edit(lambda a: a.update({"forest.steps": np.asarray(10**9)}))
    assert "support vectors" in edit(lambda a: a.update({"svm.coef": a["svm.coef"][:-1]}))
    assert "array 'scale' holds a value <= 0" in edit(
        lambda a: a["scale"].__setitem__(0, 0.0))
    assert "array 'mean' is float32" in edit(
        lambda a: a.update({"mean": a["mean"].astype(np.float32)}))
    assert "support vectors or coefficients not finite" in edit(
        lambda a: a["svm.coef"].__setitem__(0, np.nan))  # would silence the SVM: NaN scores
    assert "not finite" in edit(lambda a: a["dbscan.cores"].__setitem__((0, 0), np.inf))
    assert "array 'thresholds' is float64[3]" in edit(
        lambda a: a["thresholds"].__setitem__(1, np.nan))
    assert "arrays missing: svm.gamma; unexpected: none" in edit(lambda a: a.pop("svm.gamma"))
    assert "arrays missing: none; unexpected: extra" in edit(
        lambda a: a.update({"extra": np.zeros(1)}))


def test_a_pickled_object_in_the_arrays_is_never_unpickled(model_path: Path,
                                                           tmp_path: Path) -> None:
    """What an attacker would plant: an object array whose unpickling creates a file. Loading
    refuses it (allow_pickle=False) and the file is never created."""
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    payload = np.empty(1, dtype=object)
    payload[0] = Payload()
    _rewrite(model_path, arrays_edit=lambda a: a.update({"mean": payload}))
    assert "Object arrays cannot be loaded when allow_pickle=False" in _usable_refusal(
        model_path)
    assert not marker.exists()
    pickle_check = _arrays  # the test's own reader refuses it too
    with pytest.raises(ValueError):
        pickle_check(_split(model_path)[1]["arrays"])
    assert not marker.exists()


_NO_SKLEARN_PROBE = """
import json, sys
from pathlib import Path
import fluxtui.headless
from fluxtui.bus import EventBus
from fluxtui.capabilities.assembly import build_components
from fluxtui.capabilities.anomaly import AnomalyComponent
from fluxtui.config import AnomalyConfig, Config
from tests.anomaly_support import recorded_windows, table
config = Config(anomaly=AnomalyConfig(model_path=sys.argv[1]))
component = AnomalyComponent(config, table=table())
component.start(EventBus())
model = component.model
verdicts = model.score(recorded_windows()[:200]) if model is not None else []
component.stop()
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"sklearn", "scipy", "skops", "bcc"})
maps = Path("/proc/self/maps").read_text()
print(json.dumps({"loaded": model is not None, "reason": component.status().reason,
                  "scored": len(verdicts), "modules": heavy,
                  "mapped": [n for n in ("sklearn", "scipy") if "/" + n + "/" in maps]}))
"""


def test_loading_and_scoring_a_model_never_imports_scikit_learn(model_path: Path) -> None:
    """In a fresh interpreter, the headless/dashboard modules plus a loaded model that scores:
    no scikit-learn, scipy, skops or bcc module, and none of their libraries mapped (about
    120 MB resident when they were). The probe fails on the code before this change."""
    out = subprocess.run([sys.executable, "-c", _NO_SKLEARN_PROBE, str(model_path)],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["loaded"] and got["scored"] == 200, got
    assert got["modules"] == [] and got["mapped"] == [], got


def test_a_file_that_is_not_a_model_and_a_missing_one(tmp_path: Path) -> None:
    other = tmp_path / "other.model"
    other.write_bytes(b"\x80\x04K\x01.")  # a pickle
    other.chmod(0o600)
    assert _refusal(other) == (f"model {other} refused: not a fluxtui anomaly model (retrain: "
                               "fluxtui train)")
    missing = tmp_path / "missing.model"
    assert _refusal(missing) == (f"no model trained ({missing} does not exist; run fluxtui "
                                 "train)")


def test_world_writable_model_is_refused(model_path: Path) -> None:
    require_root()
    model_path.chmod(0o602)
    message = _refusal(model_path)
    assert message.startswith(f"model {model_path}: refused, writable by users other than its "
                              "owner (mode -rw-----w-)")


def test_model_not_owned_by_root_is_refused(model_path: Path) -> None:
    require_root()
    os.chown(model_path, 65534, 65534)
    assert _refusal(model_path).startswith(
        f"model {model_path}: refused, owned by uid 65534 but read by root")


def test_model_readable_by_others_is_refused(model_path: Path) -> None:
    model_path.chmod(0o644)
    assert _refusal(model_path) == (f"model {model_path} refused: readable by other users "
                                    f"(mode -rw-r--r--); fix with: chmod 600 {model_path}")


def test_the_component_says_why_and_keeps_working(model_path: Path) -> None:
    model_path.chmod(0o644)
    config = Config(anomaly=AnomalyConfig(model_path=str(model_path)))
    component = AnomalyComponent(config, table=table())
    component.start(EventBus())
    status = component.status()
    assert status.state is ComponentState.UNAVAILABLE
    assert status.reason == f"model {model_path} refused: readable by other users (mode " \
                            f"-rw-r--r--); fix with: chmod 600 {model_path}"
    component.stop()


# --- the feature store -----------------------------------------------------------------------


def test_store_is_root_owned_0600_and_keeps_windows(tmp_path: Path) -> None:
    path = tmp_path / "lib" / "windows.db"
    windows = recorded_windows()[:300]
    with FeatureStore(path, max_windows=1000) as store:
        assert store.append(windows) == 300
    st = path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with FeatureStore(path, create=False, max_windows=1000) as store:
        back = list(store.windows())
    assert back == sorted(windows, key=lambda w: w.recorded_at)


def test_store_is_bounded_and_replace_starts_afresh(tmp_path: Path) -> None:
    path = tmp_path / "windows.db"
    windows = recorded_windows()
    with FeatureStore(path, max_windows=1000) as store:
        store.append(windows[:800])
        store.append(windows[800:1400])
        assert len(store) == 1000
        kept = list(store.windows())
    assert kept[0].recorded_at == windows[400].recorded_at  # the oldest went first
    with FeatureStore(path, replace=True) as store:
        assert len(store) == 0


def test_store_of_another_schema_or_readable_by_others_is_refused(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "windows.db"
    FeatureStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = 'fluxtui-anomaly/0' WHERE key = 'schema'")
    with pytest.raises(StoreError, match="recorded with feature schema 'fluxtui-anomaly/0'"):
        FeatureStore(path)
    path.chmod(0o640)
    with pytest.raises(StoreError, match=r"readable or writable by other users \(mode "
                                         r"-rw-r-----; fix with: chmod 600"):
        FeatureStore(path)
    with pytest.raises(StoreError, match="no feature store"):
        FeatureStore(tmp_path / "none.db", create=False)
