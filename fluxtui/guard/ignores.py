"""Kernel-side ignore marks for the files of the homes that are not credentials.

A directory mark (FAN_OPEN_PERM | FAN_EVENT_ON_CHILD) makes every open of any of its files
wait for fluxtui, `~/.bashrc` included. Each non-credential child of a home gets an ignored
mask for FAN_OPEN_PERM on its own inode (FAN_MARK_IGNORED_SURV_MODIFY: it survives writes), so
the kernel lets its opens through without an event. Which files qualify: `Marks.ignorable`
(the homes' own children only, not the directories that hold credentials, and no name that
contains a credential name).

An ignore mark never sits on an inode that is or was a credential: a file is ignored only when
its name matches no credential pattern and its inode is not a protected one, and protecting an
inode removes its ignore mark first. A file renamed or linked onto a credential name (the way
tools write credentials: `credentials.tmp` renamed to `credentials`) loses its ignore mark as
soon as inotify reports the rename; until then its opens are not seen (the window measured in
tests/test_guard_ignores.py and stated in the README).

Everything goes through O_PATH fds (no open event for the responder to wait on).
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable

from fluxtui.collectors.fanotify import (
    FAN_MARK_IGNORED_MASK,
    FAN_MARK_IGNORED_SURV_MODIFY,
    FAN_OPEN_PERM,
    FanotifyError,
    FanotifyGroup,
)

MAX_IGNORED = 8192  # inodes with an ignore mark at most (each holds a kernel mark)
MAX_USER_MARKS = "/proc/sys/fs/fanotify/max_user_marks"


def ignore_budget(path: str = MAX_USER_MARKS) -> int:
    """Ignore marks allowed: at most a quarter of the kernel's per-user mark limit, so that a
    home filled with files can never use up the marks that protect credentials."""
    try:
        with open(path) as f:
            limit = int(f.read())
    except (OSError, ValueError):
        return MAX_IGNORED // 4
    return max(0, min(MAX_IGNORED, limit // 4))
IGNORE_FLAGS = FAN_MARK_IGNORED_MASK | FAN_MARK_IGNORED_SURV_MODIFY


class IgnoreMarks:
    def __init__(self, budget: int | None = None) -> None:
        self.budget = ignore_budget() if budget is None else budget
        self.ignored: dict[tuple[int, int], str] = {}  # (dev, ino) -> name when ignored
        self.full = False  # the bound was reached: later files are not ignored (cost only)

    def ignore_fd(self, fd: int, key: tuple[int, int], name: str,
                  fan: FanotifyGroup) -> None:
        """Ignore the inode open on `fd` (the caller checked that it is no credential)."""
        # Marked again even when the table lists it: the table is bookkeeping for the bound,
        # and an inode number can come back for another file.
        if key not in self.ignored and len(self.ignored) >= self.budget:
            self.full = True
            return
        try:
            fan.mark(f"/proc/self/fd/{fd}", FAN_OPEN_PERM, IGNORE_FLAGS)
        except FanotifyError:
            return
        self.ignored[key] = name

    def ignore_path(self, path: str, fan: FanotifyGroup,
                    protected: Callable[[int, tuple[int, int]], bool]) -> None:
        """Ignore the regular file at `path` unless its inode is protected (`protected(fd,
        key)` decides, by handle)."""
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if stat.S_ISREG(st.st_mode) and not protected(fd, key):
                self.ignore_fd(fd, key, path, fan)
        finally:
            os.close(fd)

    def unignore_fd(self, fd: int, key: tuple[int, int], fan: FanotifyGroup) -> None:
        """Remove the ignore mark of the inode open on `fd` (if it has one)."""
        self.ignored.pop(key, None)
        with contextlib.suppress(FanotifyError):
            fan.unmark(f"/proc/self/fd/{fd}", FAN_OPEN_PERM, IGNORE_FLAGS)

    def unignore_path(self, path: str, fan: FanotifyGroup) -> None:
        try:
            fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            key = (st.st_dev, st.st_ino)
            if key in self.ignored:
                self.unignore_fd(fd, key, fan)
        finally:
            os.close(fd)
