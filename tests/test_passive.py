"""Without root fluxtui runs passive: kernel collectors report why they are off, the rest works."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.kernel import require, require_root

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534


def test_headless_as_an_unprivileged_user_streams_and_explains_what_is_off() -> None:
    require_root()  # to become another user
    require(shutil.which("setpriv") is not None, "setpriv missing (util-linux)")
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o755)  # readable by the unprivileged user
        config = Path(directory) / "config.yml"
        config.write_text(f"guard:\n  homes: [{directory}]\n  system_files: []\n")
        config.chmod(0o644)
        result = subprocess.run(
            ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
             sys.executable, "-m", "fluxtui", "--config", str(config), "--headless",
             "--timeout", "2.5"],
            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    processes = [d for d in docs if d["event"]["dataset"] == "fluxtui.processes"]
    assert processes and any(d["event"]["dataset"] == "fluxtui.metrics" for d in docs)
    metrics = [d for d in docs if d["event"]["dataset"] == "fluxtui.metrics"]
    collectors = metrics[-1]["fluxtui"]["collectors"]  # statuses: in the metrics document
    assert collectors["metrics"]["state"] == "running"
    assert collectors["processes"]["state"] == "running"
    assert collectors["syscalls"]["state"] == "unavailable"
    assert "root" in collectors["syscalls"]["reason"]
    assert collectors["guard"]["state"] == "unavailable"
    assert "root" in collectors["guard"]["reason"]
    assert collectors["connections"]["state"] == "running"  # sock_diag needs no privilege
