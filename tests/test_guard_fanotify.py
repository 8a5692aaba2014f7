"""The kernel bindings: fanotify permission events, inotify, process events (real kernel).
Only directories created by the test are marked."""

from __future__ import annotations

import os
import resource
import select
import struct
import subprocess
from pathlib import Path

import pytest

from fluxtui.collectors import inotify
from fluxtui.collectors.fanotify import (
    FAN_EVENT_ON_CHILD,
    FAN_MARK_ONLYDIR,
    FAN_OPEN_PERM,
    FAN_UNLIMITED_QUEUE,
    FanEvent,
    FanotifyError,
    FanotifyGroup,
    parse_events,
)
from fluxtui.collectors.file_handles import FileHandle
from fluxtui.collectors.proc_events import PROC_EVENT_EXEC, PROC_EVENT_EXIT, ProcEvents
from fluxtui.config import GuardConfig
from fluxtui.guard.catalogue import build_catalogue
from fluxtui.guard.inodes import ProtectedFile, Tracked
from fluxtui.guard.marks import MarkPlan, Marks
from tests.guard_support import fanotify_fds, kernel_marked_inodes, started
from tests.kernel import require_root


def _wait_event(group: FanotifyGroup, pid: int, timeout_s: float = 10.0) -> FanEvent:
    """The first permission event of `pid`; other events are allowed."""
    poller = select.poll()
    poller.register(group.fd, select.POLLIN)
    deadline = 0
    while deadline < timeout_s * 10:
        deadline += 1
        if not poller.poll(100):
            continue
        for event in group.read_events():
            if event.pid == pid:
                return event
            group.respond(event.fd, True)
            os.close(event.fd)
    raise AssertionError(f"no permission event from pid {pid}")


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text("top secret\n")
    return path


@pytest.fixture
def perm_group(secret: Path):
    require_root()
    group = FanotifyGroup.for_permissions()
    try:
        group.mark(str(secret.parent), FAN_OPEN_PERM | FAN_EVENT_ON_CHILD, FAN_MARK_ONLYDIR)
        yield group
    finally:
        group.close()


@pytest.mark.kernel
def test_out_of_fds_the_event_is_denied_by_the_kernel_and_counted(perm_group: FanotifyGroup,
                                                                   secret: Path) -> None:
    with started(["sh", "-c", f"read _ && exec cat {secret}"], stdin=subprocess.PIPE) as cat:
        assert cat.stdin is not None
        poller = select.poll()
        poller.register(perm_group.fd, select.POLLIN)
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        lowest_free = os.dup(0)
        os.close(lowest_free)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free, hard))  # no fd is free
            cat.stdin.write(b"go\n")
            cat.stdin.flush()
            assert poller.poll(10_000)
            assert perm_group.read_events() == []
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert perm_group.unreadable == 1
        out, err = cat.communicate(timeout=10)
    assert cat.returncode == 1 and out == b"" and b"Operation not permitted" in err


@pytest.mark.kernel
def test_an_inode_stays_protected_off_the_plan_until_its_last_link_and_reuse_is_told_apart(
        tmp_path: Path) -> None:
    require_root()
    catalogue = build_catalogue(GuardConfig(homes=[str(tmp_path)], system_files=[]))
    old, new = tmp_path / "old-secret", tmp_path / "new-secret"
    old.write_text("gone\n")
    new.write_text("secret\n")
    group = catalogue.groups[0]
    marks = Marks(catalogue)
    st = new.stat()
    # As if the inode number of `new` had belonged to a file protected earlier and since
    # deleted: same (dev, ino), another generation, so another handle.
    stale = Tracked(ProtectedFile(str(old), group), FileHandle(1, b"\0" * 8, 0), "/")
    marks.protected.tracked[(st.st_dev, st.st_ino)] = stale
    marks.protected.inodes[(st.st_dev, st.st_ino)] = stale.protected
    with FanotifyGroup.for_permissions() as fan:
        try:
            marks.apply(MarkPlan(files={str(new): group}), fan, None)
            assert st.st_ino in kernel_marked_inodes(fan.fd)
            assert marks.inodes == {(st.st_dev, st.st_ino): ProtectedFile(str(new), group)}
            moved = tmp_path / "elsewhere.pub"
            new.rename(moved)
            marks.apply(MarkPlan(), fan, None)  # no longer planned: still protected by inode
            assert marks.inodes == {(st.st_dev, st.st_ino): ProtectedFile(str(new), group)}
            link = tmp_path / "link"
            os.link(moved, link)
            moved.unlink()
            marks.apply(MarkPlan(), fan, None)  # one link left
            assert (st.st_dev, st.st_ino) in marks.inodes
            link.unlink()
            marks.apply(MarkPlan(), fan, None)  # the last link is gone
            assert marks.inodes == {}
        finally:
            marks.close()


@pytest.mark.kernel
def test_a_directory_replaced_at_the_same_path_is_marked_and_the_old_one_unmarked(
        tmp_path: Path) -> None:
    require_root()
    catalogue = build_catalogue(GuardConfig(homes=[str(tmp_path)], system_files=[]))
    ssh = tmp_path / ".ssh"
    ssh.mkdir()
    marks = Marks(catalogue)
    with FanotifyGroup.for_permissions() as fan:
        try:
            marks.apply(MarkPlan(marked_dirs={str(ssh)}), fan, None)
            old_ino = ssh.stat().st_ino
            assert old_ino in kernel_marked_inodes(fan.fd)
            ssh.rename(tmp_path / ".ssh.bak")
            ssh.mkdir()
            marks.apply(MarkPlan(marked_dirs={str(ssh)}), fan, None)
            marked = kernel_marked_inodes(fan.fd)
            assert ssh.stat().st_ino in marked and old_ino not in marked
            assert marks.marked_paths() == {str(ssh)} and len(marks.marked_dirs) == 1
        finally:
            marks.close()


@pytest.mark.kernel
def test_the_permission_queue_is_unlimited() -> None:
    require_root()
    with FanotifyGroup.for_permissions() as fan, open(f"/proc/self/fdinfo/{fan.fd}") as f:
        line = next(x for x in f if x.startswith("fanotify flags:"))
    assert int(line.split()[1].split(":")[1], 16) & FAN_UNLIMITED_QUEUE


@pytest.mark.kernel
@pytest.mark.parametrize("allow", [True, False])
def test_open_waits_for_the_answer(perm_group: FanotifyGroup, secret: Path, allow: bool) -> None:
    with started(["cat", str(secret)]) as proc:
        event = _wait_event(perm_group, proc.pid)
        try:
            assert event.is_permission
            assert os.readlink(f"/proc/self/fd/{event.fd}") == str(secret)
            assert proc.poll() is None  # blocked until we answer
            assert perm_group.respond(event.fd, allow)
        finally:
            os.close(event.fd)
        out, err = proc.communicate(timeout=10)
    if allow:
        assert proc.returncode == 0 and out == b"top secret\n"
    else:
        assert proc.returncode == 1 and out == b""
        assert b"Operation not permitted" in err


@pytest.mark.kernel
def test_closing_the_group_releases_waiting_opens(secret: Path) -> None:
    """What the README promises if fluxtui is killed: the kernel lets waiting opens through."""
    require_root()
    group = FanotifyGroup.for_permissions()
    try:
        group.mark(str(secret.parent), FAN_OPEN_PERM | FAN_EVENT_ON_CHILD, FAN_MARK_ONLYDIR)
        with started(["cat", str(secret)]) as proc:
            event = _wait_event(group, proc.pid)
            os.close(event.fd)
            group.close()
            out, _ = proc.communicate(timeout=10)
        assert proc.returncode == 0 and out == b"top secret\n"
    finally:
        group.close()


@pytest.mark.kernel
def test_group_fd_is_closed(secret: Path) -> None:
    require_root()
    before = fanotify_fds()
    with FanotifyGroup.for_permissions() as group:
        assert fanotify_fds() == before + 1
        with pytest.raises(FanotifyError) as info:
            group.mark(str(secret.parent / "missing"), FAN_OPEN_PERM)
        assert "No such file" in str(info.value)
    assert fanotify_fds() == before


def test_parse_events_splits_a_read() -> None:
    one = struct.pack("=IBBHQii", 24, 3, 0, 24, FAN_OPEN_PERM, 7, 1234)
    two = struct.pack("=IBBHQii", 24, 3, 0, 24, FAN_OPEN_PERM, 8, 99)
    assert parse_events(one + two) == [FanEvent(FAN_OPEN_PERM, 7, 1234),
                                       FanEvent(FAN_OPEN_PERM, 8, 99)]
    with pytest.raises(FanotifyError, match="metadata version 2"):
        parse_events(struct.pack("=IBBHQii", 24, 2, 0, 24, 0, 7, 1))


def test_inotify_reports_a_new_directory(tmp_path: Path) -> None:
    with inotify.Inotify() as watcher:
        wd = watcher.add_watch(str(tmp_path), inotify.IN_CREATE | inotify.IN_ONLYDIR)
        (tmp_path / ".aws").mkdir()
        events = watcher.read_events()
    assert any(e.wd == wd and e.name == ".aws" and e.mask & inotify.IN_ISDIR for e in events)


@pytest.mark.kernel
def test_process_events_report_exec_and_exit() -> None:
    require_root()
    events = ProcEvents()
    try:
        proc = subprocess.Popen(["true"])
        assert proc.wait(timeout=10) == 0
        mine: set[int] = set()
        poller = select.poll()
        poller.register(events.fileno(), select.POLLIN)
        for _ in range(50):
            if not poller.poll(100):
                continue
            mine |= {e.what for e in events.drain() if e.tgid == proc.pid}
            if {PROC_EVENT_EXEC, PROC_EVENT_EXIT} <= mine:
                break
        assert {PROC_EVENT_EXEC, PROC_EVENT_EXIT} <= mine
    finally:
        events.close()
