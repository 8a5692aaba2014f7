"""`fluxtui demo` for real, in tmux: the whole story with --auto, each step's narration and
alert on screen, and nothing left afterwards (processes, cgroups, files, fanotify marks, audit
rules); a demo killed with SIGKILL is cleaned up by its watchdog, and what even that leaves by
the next start."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from fluxtui.demo_mode.story import build_story
from fluxtui.evaluation.manifest import default_demo_dir, load_manifest
from fluxtui.evaluation.sandbox import MARKER, PREFIX, TEMP_ROOTS, RunSandbox, cgroup2_root
from tests.kernel import require, require_bcc, require_root

REPO = Path(__file__).resolve().parents[1]
SOCKET = f"fluxtui-demo-test-{uuid.uuid4().hex[:8]}"

# The narration line wraps (a long alert title) onto the next line or two of the screen.
NARRATION = r"[\s\S]{0,400}?"

pytestmark = [pytest.mark.kernel, pytest.mark.timeout(1800)]


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", "-L", SOCKET, "-f", "/dev/null", *args], capture_output=True,
                          text=True, timeout=60, check=True).stdout


def screen(session: str) -> str:
    try:
        return tmux("capture-pane", "-p", "-J", "-t", session)
    except subprocess.TimeoutExpired:  # a machine this loaded answers later
        return ""


def wait_for_screen(session: str, pattern: str, seconds: float = 240.0) -> str:
    text = ""
    end = time.monotonic() + seconds  # a bound for a broken demo, not a pause
    while time.monotonic() < end:
        text = screen(session)
        if re.search(pattern, text, re.S):
            return text
        time.sleep(0.1)
    raise AssertionError(f"{pattern!r} never appeared; screen was:\n{text}")


def demo_config(tmp_path: Path) -> Path:
    config = tmp_path / "config.yml"
    config.write_text("guard:\n  decision_timeout: 3\n")  # the default (deny) applies soon
    config.chmod(0o600)
    return config


@contextmanager
def tmux_server() -> Iterator[None]:
    require_root()
    require_bcc()
    require(shutil.which("tmux") is not None, "tmux not installed (make test-setup)")
    try:
        yield
    finally:
        subprocess.run(["tmux", "-L", SOCKET, "kill-server"], capture_output=True, timeout=30)


def ours(before: set[Path], config: Path) -> set[Path]:
    """Temporary trees made since `before` by a demo run with `config` (other evaluations
    may run on this machine at the same time)."""
    found = set()
    for path in set(Path("/tmp").glob(PREFIX + "*")) - before:
        with suppress(OSError, ValueError):
            owner = int((path / MARKER).read_text())
            if str(config).encode() in Path(f"/proc/{owner}/cmdline").read_bytes() \
                    and (path / "home" / ".fluxtui-decoy").exists():
                found.add(path)
    return found


def owned_dirs(owners: set[int]) -> list[Path]:
    """Marked temporary directories (the decoy tree, each scenario's) of these owners."""
    left = []
    for root in TEMP_ROOTS:
        for path in Path(root).glob(PREFIX + "*"):
            with suppress(OSError, ValueError):
                if int((path / MARKER).read_text()) in owners:
                    left.append(path)
    return left


def decoy_inodes(trees: set[Path]) -> set[int]:
    return {p.stat().st_ino for t in trees for p in (t / "home").rglob("*")}


def fanotify_marks_on(inodes: set[int]) -> list[str]:
    found = []
    for fdinfo in Path("/proc").glob("[0-9]*/fdinfo/*"):
        with suppress(OSError):
            for line in fdinfo.read_text().splitlines():
                if line.startswith("fanotify ino:") and \
                        int(line.split()[1].split(":")[1], 16) in inodes:
                    found.append(f"{fdinfo}: {line}")
    return found


def processes_mentioning(text: str) -> list[int]:
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with suppress(OSError):
            if text.encode() in cmdline.read_bytes():
                pids.append(int(cmdline.parent.name))
    return pids


def cgroups_of(trees_owner_pids: set[int]) -> list[Path]:
    root = cgroup2_root()
    assert root is not None
    return [p for pid in trees_owner_pids for p in root.rglob(f"{PREFIX}{pid}")]


def audit_rules() -> str:
    if shutil.which("auditctl") is None:
        return "no auditctl"
    return subprocess.run(["auditctl", "-l"], capture_output=True, text=True,
                          timeout=30).stdout


def test_the_whole_story_plays_unattended_and_leaves_nothing(tmp_path: Path) -> None:
    demo = default_demo_dir()
    assert demo is not None
    steps = build_story(load_manifest(demo))
    before, rules_before = set(Path("/tmp").glob(PREFIX + "*")), audit_rules()
    session = f"demo-{uuid.uuid4().hex[:8]}"
    done = tmp_path / "exit"
    config = demo_config(tmp_path)
    command = (f"cd {REPO} && env -u COLUMNS -u LINES {sys.executable} -m fluxtui demo "
               f"--config {config} --auto --step-delay 4 --loops 1 "
               f"--record {tmp_path / 'demo.jsonl'} --log {tmp_path / 'log'}; "
               f"echo $? > {done}; sleep 600")
    with tmux_server():
        tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "50", command)
        trees: set[Path] = set()
        owners: set[int] = set()
        inodes: set[int] = set()
        for step in steps:
            if not step.scenarios:
                wait_for_screen(session, rf"Step {step.number}/{step.total} · {NARRATION}"
                                         r"skipped: scenario \S+ not shipped")
                continue
            text = wait_for_screen(session, rf"Step {step.number}/{step.total} · ", 600)
            if not trees:
                trees = ours(before, config)
                assert len(trees) == 1, trees
                owners = {int((t / MARKER).read_text()) for t in trees}
                inodes = decoy_inodes(trees)
            expected = "no alarm" if step.quiet else rf"caught: {NARRATION}\[T\d{{4}}"
            text = wait_for_screen(session, rf"Step {step.number}/{step.total} · {NARRATION}"
                                            rf"{expected}", 300)
            if step.view == "guard":
                assert "read(s) denied" in text  # the default (deny) at the deadline
        end = time.monotonic() + 120
        while not (done.exists() and done.read_text().strip()) and time.monotonic() < end:
            time.sleep(0.1)
        assert done.read_text().strip() == "0", (tmp_path / "log").read_text()[-3000:]
        summary = screen(session)
    for step in steps:  # printed when the demo ends: every step and what was caught
        expected = ("no alarm" if step.quiet else re.escape(step.missing) if not step.scenarios
                    else r"caught: .*\[T\d{4}")
        assert re.search(rf"step {step.number}/{step.total} .*: {expected}", summary), summary
    # Nothing left: the tree, its cgroups, their processes, the guard's marks, audit rules.
    assert trees and not any(t.exists() for t in trees)
    assert not owned_dirs(owners)  # the scenarios' own directories too
    assert not cgroups_of(owners)
    assert not any(processes_mentioning(str(t)) for t in trees)
    assert not fanotify_marks_on(inodes)
    assert audit_rules() == rules_before
    recorded = (tmp_path / "demo.jsonl").read_text()
    assert '"dataset": "fluxtui.demo"' in recorded and '"kind": "alert"' in recorded


def test_a_demo_killed_with_sigkill_is_cleaned_up(tmp_path: Path) -> None:
    before = set(Path("/tmp").glob(PREFIX + "*"))
    session = f"demo-{uuid.uuid4().hex[:8]}"
    config = demo_config(tmp_path)
    command = (f"cd {REPO} && exec env -u COLUMNS -u LINES {sys.executable} -m fluxtui demo "
               f"--config {config}")  # the UI is on stderr: never redirected
    with tmux_server():
        tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command)
        demo_pid = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").split()[0])
        wait_for_screen(session, r"Step 1/\d+ · Quiet phase", 600)
        trees = ours(before, config)
        assert len(trees) == 1
        tree = next(iter(trees))
        assert processes_mentioning(str(tree))  # the watchdog watches it
        os.kill(demo_pid, signal.SIGKILL)
        end = time.monotonic() + 60
        while (tree.exists() or cgroups_of({demo_pid}) or processes_mentioning(str(tree))) \
                and time.monotonic() < end:  # the watchdog cleans up, then exits
            time.sleep(0.1)
        assert not tree.exists() and not cgroups_of({demo_pid})
        assert not processes_mentioning(str(tree))


def test_what_a_killed_demo_and_watchdog_left_goes_at_the_next_start(tmp_path: Path) -> None:
    require_root()
    leftover = subprocess.Popen(  # a stand-in for a SIGKILLed demo: owner gone, tree left
        [sys.executable, "-c",
         "import os, sys; from fluxtui.evaluation.sandbox import RunSandbox\n"
         "r = RunSandbox(); print(r.temp, r.cgroup, flush=True); os._exit(0)"],
        stdout=subprocess.PIPE, text=True)
    out, _ = leftover.communicate(timeout=120)
    temp, cgroup = (Path(p) for p in out.split())
    assert temp.exists() and cgroup.exists()
    run = RunSandbox()  # what `fluxtui demo` makes first
    try:
        assert str(temp) in run.stale and not temp.exists() and not cgroup.exists()
    finally:
        run.close()
