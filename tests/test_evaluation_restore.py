"""Scenarios that touch a file outside their sandbox restore it byte for byte: on exit, on
SIGTERM (the script's trap), and after SIGKILL (the marker, undone by fluxtui)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from fluxtui.evaluation.restore import restore_stale
from fluxtui.evaluation.sandbox import DECOY_MARKER

DEMO = Path(__file__).resolve().parents[1] / "demo"
ORIGINAL = b"# system file\n\x00binary\xff tail\n"


def _script(tmp: Path, body: str) -> Path:
    script = tmp / "scenario.sh"
    script.write_text(f'#!/bin/bash\n. "{DEMO}/lib.sh"\n{body}\n')
    script.chmod(0o755)
    return script


def _env(tmp: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    (home / DECOY_MARKER).write_text("decoy\n")
    work = tmp / "work"
    work.mkdir(exist_ok=True)
    return {"HOME": str(home), "PATH": os.environ["PATH"], "FLUX_WORK": str(work),
            "FLUX_SHM": str(work), "FLUX_VARTMP": str(work), "FLUX_PORT": "1",
            "FLUX_RESTORE_ROOT": str(tmp / "restore")}


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "system-file"
    path.write_bytes(ORIGINAL)
    path.chmod(0o640)
    return path


def test_restored_at_exit_and_a_created_file_removed(tmp_path: Path, target: Path) -> None:
    made = tmp_path / "new-file"
    script = _script(tmp_path, f'protect_file "{target}"\nprotect_file "{made}"\n'
                               f'echo changed > "{target}"\nchmod 600 "{target}"\n'
                               f': > "{made}"\n')
    subprocess.run([str(script)], env=_env(tmp_path), check=True, timeout=30)
    assert target.read_bytes() == ORIGINAL and target.stat().st_mode & 0o777 == 0o640
    assert not made.exists() and not list((tmp_path / "restore").iterdir())


def test_restored_on_sigterm(tmp_path: Path, target: Path) -> None:
    ready = tmp_path / "ready"
    script = _script(tmp_path, f'protect_file "{target}"\necho changed > "{target}"\n'
                               f': > "{ready}"\nsleep 30 & wait')
    proc = subprocess.Popen([str(script)], env=_env(tmp_path), start_new_session=True)
    try:
        for _ in range(400):
            if ready.exists():
                break
            time.sleep(0.025)
        assert target.read_bytes() == b"changed\n"
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert target.read_bytes() == ORIGINAL


def test_after_sigkill_the_marker_lets_the_next_run_restore(tmp_path: Path, target: Path
                                                            ) -> None:
    script = _script(tmp_path, f'protect_file "{target}"\necho changed > "{target}"\n'
                               'kill -KILL $$')
    done = subprocess.run([str(script)], env=_env(tmp_path), timeout=30, check=False)
    assert done.returncode == -signal.SIGKILL
    assert target.read_bytes() == b"changed\n"  # the trap never ran
    assert restore_stale(tmp_path / "restore") == [f"restored {target}"]
    assert target.read_bytes() == ORIGINAL and target.stat().st_mode & 0o777 == 0o640
