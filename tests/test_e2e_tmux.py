"""The real `fluxtui` in tmux: real figures on screen, `q` quits with exit code 0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil

from fluxtui.tui.format import human_bytes
from tests.kernel import require

REPO = Path(__file__).resolve().parents[1]


SOCKET = f"fluxtui-test-{uuid.uuid4().hex[:8]}"  # a private server: sizes are ours to set


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, "-f", "/dev/null", *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def wait_for_screen(session: str, pattern: str, tries: int = 200) -> str:
    screen = ""
    for _ in range(tries):  # bounded: 200 x 0.1 s
        screen = tmux("capture-pane", "-p", "-t", session)
        if re.search(pattern, screen):
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared; screen was:\n{screen}")


def test_real_dashboard_in_tmux_shows_measured_figures_and_quits_cleanly(
        tmp_path: Path, safe_config: Path) -> None:
    require(shutil.which("tmux") is not None, "tmux not installed (make setup installs it)")
    session = f"fluxtui-e2e-{uuid.uuid4().hex[:8]}"
    exit_file = tmp_path / "exit-code"
    config = safe_config  # the guard protects an empty temp home: never this machine's users
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {sys.executable} -m fluxtui "
               f"--config {config}; "
               f"echo $? > {exit_file}")
    tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "48", command)
    try:
        screen = wait_for_screen(session, r"CPU\s+\d+\.\d%")
        total = human_bytes(psutil.virtual_memory().total)
        assert re.search(rf"Mem\s+\S+ / {re.escape(total)}", screen), screen
        assert re.search(r"│\s+0 [█░]+\s+\d+\.\d%", screen), screen  # per-core bar
        assert "fluxtui" in screen and "PID" in screen
        tmux("send-keys", "-t", session, "q")
        for _ in range(100):
            if exit_file.exists() and exit_file.read_text().strip():
                break
            time.sleep(0.1)
        assert exit_file.read_text().strip() == "0"
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True, timeout=30)
