"""Two guards never answer for the same files: one lock per protected root.

A guard protects homes (each with the catalogue's groups) and, optionally, system files. Each of
those is a root of its protected set; before it marks anything, a guard takes an exclusive
`flock` on `/run/fluxtui/guard-<sha256 of the root>.lock` for each of them, held for its whole
life (the kernel drops it when the process dies, even on SIGKILL). When another running fluxtui
holds one, this guard does not start and says which process protects what: two permission groups
on one file would both be asked, and the stricter or slower one would decide.

A demo's decoy home is a root of its own, so a service protecting the real homes does not stop
the demo's guard, and the other way round.

The lock directory must be root's and writable by nobody else; otherwise a user could create the
lock files first and switch every guard off. Such a directory is not used: the guard runs, and
its status says that it could not check.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import stat
from collections.abc import Iterable

LOCK_DIR = "/run/fluxtui"
SYSTEM_ROOT = "system files"  # the root standing for guard.system_files, whatever they list


def lock_name(root: str) -> str:
    return "guard-" + hashlib.sha256(root.encode("utf-8", "surrogateescape")).hexdigest()[:24] \
        + ".lock"


def protected_roots(homes: Iterable[str], has_system_files: bool) -> tuple[str, ...]:
    """The roots of a protected set: each home by its real path, plus the system files."""
    roots = sorted({os.path.realpath(h) for h in homes})
    if has_system_files:
        roots.append(SYSTEM_ROOT)
    return tuple(roots)


class GuardSetLock:
    """`acquire()` returns None when every root is this process's, else the reason the guard
    must stay off (and holds nothing). `note` tells when the locks could not be used at all."""

    def __init__(self, roots: Iterable[str], directory: str | None = None) -> None:
        self.roots = tuple(roots)
        self.directory = directory or LOCK_DIR
        self.note = ""
        self._fds: list[int] = []

    def acquire(self) -> str | None:
        if not self.roots:
            return None
        problem = self._prepare_directory()
        if problem:
            self.note = problem
            return None
        for root in self.roots:
            path = os.path.join(self.directory, lock_name(root))
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                self.release()
                self.note = f"guard lock {path} not usable ({exc.strerror or exc})"
                return None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _holder(fd)
                os.close(fd)
                self.release()
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    self.note = f"guard lock {path} not usable ({exc.strerror or exc})"
                    return None
                who = f"pid {holder}" if holder else "another process"
                return (f"guard off here: another fluxtui ({who}) already guards {root} "
                        "(two guards never answer for the same files)")
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n{root}\n".encode("utf-8", "surrogateescape"), 0)
            self._fds.append(fd)
        return None

    def release(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)  # closing the only descriptor drops the flock
        self._fds = []

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def _prepare_directory(self) -> str:
        try:
            os.makedirs(self.directory, mode=0o755, exist_ok=True)
            info = os.lstat(self.directory)
        except OSError as exc:
            return f"no guard lock directory {self.directory} ({exc.strerror or exc})"
        if not stat.S_ISDIR(info.st_mode):
            return f"{self.directory} is not a directory: guard locks not used"
        if info.st_uid != os.geteuid() or info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            return (f"{self.directory} is writable by other users: guard locks not used "
                    "(another guard protecting the same files is not detected)")
        return ""


def _holder(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        return int(os.pread(fd, 64, 0).split(b"\n", 1)[0])
    return None
