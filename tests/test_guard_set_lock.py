"""Two guards never answer for the same files: the lock per protected root."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.guard import GuardComponent
from fluxtui.events import ComponentState
from fluxtui.guard import set_lock
from fluxtui.guard.set_lock import SYSTEM_ROOT, GuardSetLock, lock_name, protected_roots
from tests.guard_support import (
    guard_config,
    make_home,
    require_guard_kernel,
    running_guard,
)


def test_roots_are_real_paths_and_system_files_are_one_root(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    roots = protected_roots([str(tmp_path / "link"), str(tmp_path / "real")], True)
    assert roots == (str(tmp_path / "real"), SYSTEM_ROOT)
    assert protected_roots([], False) == ()


def test_a_second_holder_of_one_root_is_refused_and_holds_nothing(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    first = GuardSetLock(["/home/a", "/home/b"], str(locks))
    assert first.acquire() is None and first.held
    second = GuardSetLock(["/home/c", "/home/b"], str(locks))
    why = second.acquire()
    assert why is not None and "/home/b" in why and f"pid {os.getpid()}" in why
    assert not second.held  # /home/c taken on the way was given back
    third = GuardSetLock(["/home/c"], str(locks))
    assert third.acquire() is None  # so a guard of /home/c alone runs
    third.release()
    first.release()
    assert second.acquire() is None  # free once the first guard stopped
    second.release()


def test_a_lock_held_by_another_process_names_it_and_dies_with_it(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    locks.mkdir(mode=0o755)
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys; from fluxtui.guard.set_lock import GuardSetLock\n"
         f"lock = GuardSetLock(['/home/x'], {str(locks)!r}); assert lock.acquire() is None\n"
         "print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        why = GuardSetLock(["/home/x"], str(locks)).acquire()
        assert why is not None and f"pid {holder.pid}" in why
    finally:
        holder.kill()
        holder.wait(timeout=30)
    lock = GuardSetLock(["/home/x"], str(locks))
    assert lock.acquire() is None  # the kernel dropped the dead holder's lock
    lock.release()


def test_a_lock_directory_others_can_write_is_not_trusted(tmp_path: Path) -> None:
    locks = tmp_path / "locks"
    locks.mkdir()
    locks.chmod(0o777)
    (locks / lock_name("/home/a")).write_text("1\n")  # planted by a user to switch guards off
    lock = GuardSetLock(["/home/a"], str(locks))
    assert lock.acquire() is None and not lock.held
    assert "writable by other users" in lock.note


@pytest.mark.kernel
def test_a_second_guard_on_the_same_home_stays_off_and_says_so(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_guard_kernel()
    monkeypatch.setattr(set_lock, "LOCK_DIR", str(tmp_path / "run"))
    home = make_home(tmp_path / "a")
    other = make_home(tmp_path / "b")
    with running_guard(guard_config(home, tmp_path / "state1")) as (first, _):
        second = GuardComponent(guard_config(home, tmp_path / "state2"), interactive=False)
        try:
            second.start(EventBus())
            status = second.status()
            assert status.state is ComponentState.UNAVAILABLE
            assert status.reason.startswith("guard off here") and str(home.root) in status.reason
        finally:
            second.stop()
        # Another home is another set (the demo's decoy home next to a service's real homes).
        with running_guard(guard_config(other, tmp_path / "state3")) as (third, _):
            assert third.status().state is ComponentState.RUNNING
        assert first.status().state is ComponentState.RUNNING
    with running_guard(guard_config(home, tmp_path / "state4")) as (again, _):
        assert again.status().state is ComponentState.RUNNING  # the first one's lock is gone
