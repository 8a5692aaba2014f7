"""The model file: saved with skops, root-owned 0600; a file that is tampered with, of another
feature schema, world-writable, not owned by root, readable by others, naming foreign types or
not a model at all is refused with one clear line, and the component keeps working and says why.
The feature store is root-owned 0600 and refuses another schema."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.anomaly import AnomalyComponent
from fluxtui.config import AnomalyConfig, Config
from fluxtui.detection.anomaly.features import FEATURE_SCHEMA
from fluxtui.detection.anomaly.modelfile import MAGIC, ModelRefused, load_model, save_model
from fluxtui.detection.anomaly.store import FeatureStore, StoreError
from fluxtui.events import ComponentState
from tests.anomaly_support import recorded_model, recorded_windows, table
from tests.kernel import require_root


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


def _rewrite(path: Path, header_edit=None, skops_edit=None) -> None:
    """Rewrite the file with an edited header or skops part, digests recomputed or not."""
    blob = path.read_bytes()
    end = blob.find(b"\n", len(MAGIC))
    header = json.loads(blob[len(MAGIC):end])
    body = blob[end + 1:]
    data_part, skops_part = body[:header["data"]["length"]], body[header["data"]["length"]:]
    if header_edit:
        header_edit(header)
    if skops_edit:
        skops_part = skops_edit(skops_part)
    path.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + data_part + skops_part)


def test_saved_model_is_root_owned_0600_and_scores_as_before(model_path: Path) -> None:
    st = model_path.stat()
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == os.geteuid()
    loaded = load_model(model_path)
    windows = recorded_windows()[::50]
    assert ([v.score for v in loaded.score(windows)]
            == [v.score for v in recorded_model().score(windows)])
    assert loaded.metadata["schema"] == FEATURE_SCHEMA
    assert loaded.profiles.executables.keys() == recorded_model().profiles.executables.keys()


def test_tampered_model_is_refused(model_path: Path) -> None:
    blob = bytearray(model_path.read_bytes())
    blob[-100] ^= 0x01  # one bit inside the skops part
    model_path.write_bytes(bytes(blob))
    assert _refusal(model_path) == (
        f"model {model_path} refused: content does not match the digests in its header "
        "(tampered with or truncated; retrain with fluxtui train)")


def test_truncated_model_is_refused(model_path: Path) -> None:
    model_path.write_bytes(model_path.read_bytes()[:-10])
    assert "does not match the digests" in _refusal(model_path)


def test_model_of_another_schema_is_refused(model_path: Path) -> None:
    _rewrite(model_path, header_edit=lambda h: h.update(schema="fluxtui-anomaly/0 x86_64"))
    assert _refusal(model_path) == (
        f"model {model_path} refused: feature schema 'fluxtui-anomaly/0 x86_64', this fluxtui "
        f"uses {FEATURE_SCHEMA!r} (retrain with fluxtui train)")


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


def test_model_naming_a_foreign_type_is_refused(model_path: Path) -> None:
    """Digests recomputed (someone who can write the file can do that): skops' type check is
    what refuses it, before anything in it is constructed."""
    import hashlib

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    # What an attacker would plant: an estimator that calls os.system when used.
    foreign = sio.dumps({"pca": FunctionTransformer(func=os.system)})

    def edit(header: dict) -> None:
        header["skops"] = {"length": len(foreign),
                           "sha256": hashlib.sha256(foreign).hexdigest()}

    _rewrite(model_path, header_edit=edit, skops_edit=lambda _: foreign)
    message = _refusal(model_path)
    assert message.startswith(f"model {model_path} refused: it names types a fluxtui model "
                              "never holds: ")
    assert message.endswith("posix.system")


def test_a_file_that_is_not_a_model_and_a_missing_one(tmp_path: Path) -> None:
    other = tmp_path / "other.model"
    other.write_bytes(b"\x80\x04K\x01.")  # a pickle
    other.chmod(0o600)
    assert _refusal(other) == (f"model {other} refused: not a fluxtui anomaly model (retrain "
                               "with fluxtui train)")
    missing = tmp_path / "missing.model"
    assert _refusal(missing) == (f"no model trained ({missing} does not exist; run fluxtui "
                                 "train)")


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
