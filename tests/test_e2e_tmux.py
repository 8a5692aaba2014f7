"""The real `fluxtui` in tmux: real figures on screen, `q` quits with exit code 0; a real read
of a decoy key in a temporary home blocked by the guard, its prompt over the open details
window, answered with `d` (the reader gets EPERM)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from fluxtui.tui.format import human_bytes
from tests.guard_support import make_home, started
from tests.kernel import require

REPO = Path(__file__).resolve().parents[1]


SOCKET = f"fluxtui-test-{uuid.uuid4().hex[:8]}"  # a private server: sizes are ours to set


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, "-f", "/dev/null", *args], capture_output=True,
                          text=True, timeout=30, check=True).stdout


def wait_for_screen(session: str, pattern: str, tries: int = 600) -> str:
    screen = ""
    for _ in range(tries):  # bounded: 600 x 0.1 s (a loaded machine compiles BPF slowly)
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
        assert re.search(rf"\S+ / {re.escape(total)}", screen), screen
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


# --- the credential prompt in the real app -------------------------------------------------------

def guarded_config(tmp_path: Path, home: Path) -> Path:
    """A config whose guard protects only the temporary `home` (a decoy key in it)."""
    config = tmp_path / "config.yml"
    config.write_text(f"guard:\n  homes: [{home}]\n  system_files: []\n"
                      f"  rules_file: {tmp_path / 'rules.yml'}\n"
                      f"  audit_db: {tmp_path / 'audit.db'}\n")
    config.chmod(0o600)
    return config


@contextmanager
def dashboard(tmp_path: Path, config: Path, size: tuple[int, int]) -> Iterator[str]:
    session = f"fluxtui-e2e-{uuid.uuid4().hex[:8]}"
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {sys.executable} -m fluxtui "
               f"--config {config} --log {tmp_path / 'fluxtui.log'}; "
               f"echo $? > {tmp_path / 'exit-code'}; sleep 30")
    tmux("new-session", "-d", "-s", session, "-x", str(size[0]), "-y", str(size[1]), command)
    dashboard_processes: list[psutil.Process] = []
    try:
        wait_for_screen(session, r"PID\s+User")
        pane = int(tmux("display-message", "-p", "-t", session, "#{pane_pid}").strip())
        dashboard_processes = psutil.Process(pane).children(recursive=True)
        # The guard is running (components start in the background: a BPF compile first).
        wait_for_screen(session, r"● guard", tries=1200)
        yield session
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-session", "-t", session],
                       capture_output=True, timeout=30)
        # The terminal went away (SIGHUP): the dashboard must end by itself, undoing its set-up.
        _, alive = psutil.wait_procs(dashboard_processes, timeout=60)
        for survivor in alive:
            survivor.kill()
        assert not alive, f"the dashboard outlived its terminal: {alive}"


def screen_without(session: str, text: str, tries: int = 200) -> str:
    screen = ""
    for _ in range(tries):  # bounded: 200 x 0.1 s
        screen = tmux("capture-pane", "-p", "-t", session)
        if text not in screen:
            return screen
        time.sleep(0.1)
    raise AssertionError(f"{text!r} never went away; screen was:\n{screen}")


def require_guard() -> None:
    require(os.geteuid() == 0, "needs root (fanotify permission events)")
    require(shutil.which("tmux") is not None, "tmux not installed (make setup installs it)")
    require(shutil.which("ssh-keygen") is not None, "ssh-keygen missing")


@pytest.mark.kernel
@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_prompt_comes_over_the_open_details_and_d_denies_the_read(
        tmp_path: Path, size: tuple[int, int]) -> None:
    require_guard()
    home = make_home(tmp_path)
    with dashboard(tmp_path, guarded_config(tmp_path, home.root), size) as session:
        tmux("send-keys", "-t", session, "Enter")
        wait_for_screen(session, "Esc closes")  # the details window is open
        with started(["cat", str(home.key)]) as reader:
            screen = wait_for_screen(session, r"CREDENTIAL ACCESS")
            assert "[d] deny" in screen and re.search(r"deny in\s+\d+ s", screen), screen
            assert "/usr/bin/cat" in screen and "ssh-keys" in screen, screen
            screen_without(session, "decision keys act in")  # the first second has passed
            assert reader.poll() is None  # still blocked in open()
            tmux("send-keys", "-t", session, "d")
            _, err = reader.communicate(timeout=15)
        assert reader.returncode == 1 and b"Operation not permitted" in err
        screen = screen_without(session, "CREDENTIAL ACCESS")
        assert "Esc closes" in screen  # the details window is back underneath
        tmux("send-keys", "-t", session, "Escape")
        screen_without(session, "Esc closes")
        tmux("send-keys", "-t", session, "q")
        for _ in range(100):
            if (tmp_path / "exit-code").exists():
                break
            time.sleep(0.1)
        assert (tmp_path / "exit-code").read_text().strip() == "0"


@pytest.mark.kernel
def test_a_flagged_program_keeps_its_key_line_on_an_80x24_screen(tmp_path: Path) -> None:
    require_guard()
    home = make_home(tmp_path)
    libraries = []
    for i in range(14):  # a harmless library, mapped from outside the system directories
        copy = tmp_path / f"libharmless{i}.so"
        shutil.copy("/lib/x86_64-linux-gnu/libz.so.1", copy)
        libraries.append(str(copy))
    env = {**os.environ, "LD_PRELOAD": ":".join(libraries)}
    with dashboard(tmp_path, guarded_config(tmp_path, home.root), (80, 24)) as session:
        with started(["cat", str(home.key)], env=env) as reader:
            screen = wait_for_screen(session, r"\[a\] allow once")
            assert re.search(r"\d+ flags:", screen) and "(x: all)" in screen, screen
            assert re.search(r"deny in\s+\d+ s", screen), screen
            assert "[A]" not in screen and "[S]" not in screen  # no lasting allow offered
            screen_without(session, "decision keys act in")
            tmux("send-keys", "-t", session, "A")
            wait_for_screen(session, "not offered")
            assert reader.poll() is None
            tmux("send-keys", "-t", session, "d")
            _, err = reader.communicate(timeout=15)
        assert reader.returncode == 1 and b"Operation not permitted" in err


# --- an exited actor in the real app ---------------------------------------------------------

WORKLOAD = Path(__file__).parent / "workloads" / "ptrace_attach.c"


@pytest.mark.kernel
@pytest.mark.parametrize("size", [(80, 24), (160, 50)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_a_short_lived_ptracer_stays_as_an_exited_row_with_its_whole_life(
        tmp_path: Path, size: tuple[int, int]) -> None:
    require_guard()
    require(shutil.which("gcc") is not None, "gcc missing (make test's set-up installs it)")
    ptracer = tmp_path / "ptracer"
    subprocess.run(["gcc", "-O1", "-o", str(ptracer), str(WORKLOAD)], check=True, timeout=120)
    home = make_home(tmp_path)
    config = guarded_config(tmp_path, home.root)
    config.write_text(config.read_text() + "risk:\n  exited_retention_s: 600\n")
    with dashboard(tmp_path, config, size) as session:
        wait_for_screen(session, r"● sysc", tries=1200)  # the BPF capture is attached
        wait_for_screen(session, r"● risk", tries=1200)  # and the scorer, which starts last
        # Only this test's actor in the table: other tests on a shared machine exit too.
        tmux("send-keys", "-t", session, "/")
        wait_for_screen(session, "Enter keeps, Esc clears")  # the filter box has the keys
        tmux("send-keys", "-t", session, "-l", "ptracer")
        wait_for_screen(session, "▊  ptracer")
        tmux("send-keys", "-t", session, "Enter")  # keeps the filter, back to the table
        done = subprocess.run([str(ptracer)], stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=60)
        assert done.returncode == 0 and b"attached" in done.stdout
        row = r"\d+ root\s+ptracer\s+\d+\s+—\s+—\s+—\s+exited"  # no live figure, not 0B
        wait_for_screen(session, row, tries=300)
        tmux("send-keys", "-t", session, "Home")
        tmux("send-keys", "-t", session, "k")
        wait_for_screen(session, r"has already\s+(│\s*|▌\s*)?exited")
        tmux("send-keys", "-t", session, "Enter")
        wait_for_screen(session, r"Process \d+ \(exited\)")
        screen = wait_for_screen(session, r"PTRACE_ATTACH of pid \d+")
        assert "Risk over its whole life" in screen and "/100 at exit" in screen, screen
        assert re.search(r"exited at \d\d:\d\d:\d\d after \d+", screen), screen
        assert "anomaly 0" not in screen, screen
        tmux("send-keys", "-t", session, "Escape")
        screen_without(session, "Esc closes")
