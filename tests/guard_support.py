"""Shared set-up for the credential guard tests: a temporary home with real keys, a config that
protects only that home (never /root, /home or /etc), and a guard that is always stopped (its
fanotify fd closed) even when the test fails."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fluxtui.bus import EventBus
from fluxtui.capabilities.guard import GuardComponent
from fluxtui.config import GuardConfig
from fluxtui.events import ComponentState
from tests.kernel import require, require_root

SSH_KEYGEN = "/usr/bin/ssh-keygen"


def require_guard_kernel() -> None:
    require_root()
    require(os.path.exists("/proc/sys/fs/fanotify/max_user_marks"),
            "kernel without fanotify")
    require(shutil.which("ssh-keygen") is not None,
            "ssh-keygen missing (apt-get install openssh-client)")


@dataclass
class Home:
    root: Path
    key: Path  # a real private key (ed25519)
    pub: Path
    aws: Path

    @property
    def ssh(self) -> Path:
        return self.root / ".ssh"


def make_home(base: Path) -> Home:
    root = base / "home"
    (root / ".ssh").mkdir(parents=True, mode=0o700)
    key = root / ".ssh" / "id_ed25519"
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-C", "test", "-f", str(key)],
                   check=True, timeout=30, capture_output=True)
    (root / ".ssh" / "known_hosts").write_text("example.org ssh-ed25519 AAAA\n")
    (root / ".aws").mkdir(mode=0o700)
    aws = root / ".aws" / "credentials"
    aws.write_text("[default]\naws_secret_access_key = not-a-real-secret\n")
    (root / ".bashrc").write_text("# not a credential\n")
    return Home(root, key, key.with_name("id_ed25519.pub"), aws)


def guard_config(home: Home, state: Path, **overrides: Any) -> GuardConfig:
    state.mkdir(exist_ok=True)
    config = GuardConfig(homes=[str(home.root)], system_files=[],
                         rules_file=str(state / "rules.yml"), audit_db=str(state / "audit.db"),
                         state_file=str(state / "protected-inodes.json"),
                         decision_timeout=20.0, journal=False)
    return replace(config, **overrides)


def fanotify_fds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[fanotify]":
                count += 1
        except OSError:
            continue
    return count


@contextmanager
def running_guard(config: GuardConfig, interactive: bool = False
                  ) -> Iterator[tuple[GuardComponent, list[object]]]:
    bus = EventBus()
    events: list[object] = []
    bus.subscribe(events.append)
    guard = GuardComponent(config, interactive=interactive)
    try:
        guard.start(bus)
        assert guard.status().state is ComponentState.RUNNING, guard.status().reason
        yield guard, events
    finally:
        guard.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0, step: float = 0.02) -> Any:
    """Poll `condition` until it is truthy (returns its value) or `timeout` passes (raises)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(step)


def run(argv: list[str], timeout: float = 30.0, **kwargs: Any
        ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False, **kwargs)


@contextmanager
def started(argv: list[str], **kwargs: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A background process (in its own process group) that is killed with its children and
    reaped whatever happens."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            with suppress(subprocess.TimeoutExpired, ValueError):
                proc.communicate(timeout=10)


def kernel_marked_inodes(fan_fd: int) -> set[int]:
    """The inode numbers the kernel holds marks for in this fanotify group (its fdinfo)."""
    inodes = set()
    with open(f"/proc/self/fdinfo/{fan_fd}") as f:
        for line in f:
            if line.startswith("fanotify ino:"):
                inodes.add(int(line.split()[1].split(":")[1], 16))
    return inodes


NOBODY = 65534


@contextmanager
def user_home(uid: int = NOBODY) -> Iterator[Home]:
    """A temporary home owned by an unprivileged user (the owner of the key is the attacker),
    under a directory that user can reach; removed afterwards."""
    base = Path(tempfile.mkdtemp(prefix="fluxtui-guard-"))
    try:
        base.chmod(0o755)
        home = make_home(base)
        for path in [home.root, *home.root.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)
        yield home
    finally:
        shutil.rmtree(base, ignore_errors=True)


def as_user(argv: list[str], uid: int = NOBODY, timeout: float = 30.0, **kwargs: Any
            ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(argv, capture_output=True, timeout=timeout, check=False, user=uid,
                          group=uid, extra_groups=[], cwd="/", **kwargs)


def kernel_marks(fan_fd: int) -> dict[int, tuple[int, int]]:
    """inode number -> (mask, ignored mask) of the inode marks this group holds (its fdinfo)."""
    marks: dict[int, tuple[int, int]] = {}
    with open(f"/proc/self/fdinfo/{fan_fd}") as f:
        for line in f:
            if not line.startswith("fanotify ino:"):
                continue
            fields = dict(part.split(":", 1) for part in line.split()[1:])
            marks[int(fields["ino"], 16)] = (int(fields["mask"], 16),
                                             int(fields.get("ignored_mask", "0"), 16))
    return marks


# A reader for the window measurements: it renames (or links) a file onto a credential name,
# then opens the new name in a loop until the kernel refuses it (or 5 s pass), and prints what
# it saw as JSON: the opens that went through, the microseconds from the rename to the end of
# the last one that went through (the window actually used), and to the refusal (which also
# holds the time the guard took to answer that open).
WINDOW_READER = r"""
import json, os, sys, time
how, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter_ns()
if how == "mkdir":  # a new credential directory, filled by rename at once
    os.mkdir(os.path.dirname(dst))
(os.link if how == "link" else os.rename)(src, dst)
opens = 0
refused = False
last = t0
while time.perf_counter_ns() - t0 < 5e9:
    try:
        fd = os.open(dst, os.O_RDONLY)
    except PermissionError:
        refused = True
        break
    os.close(fd)
    last = time.perf_counter_ns()
    opens += 1
print(json.dumps({"opens": opens, "refused": refused,
                  "open_until_us": (last - t0) / 1000,
                  "window_us": (time.perf_counter_ns() - t0) / 1000}))
"""


def measure_window(how: str, src: Path, dst: Path) -> dict[str, Any]:
    import json
    import sys
    result = run([sys.executable, "-c", WINDOW_READER, how, str(src), str(dst)], timeout=30)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))
