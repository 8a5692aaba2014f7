"""Who changed a file: the process of a fanotify event, read from /proc at once.

With a pidfd (FAN_REPORT_PIDFD) the reading is checked: when the process still exists after
/proc was read, what was read was about it (a pid reused meanwhile would have needed it gone).
Without one, or when it was gone already, the writer has no start time (`key` None) and the
engine's tick fills it in from the kernel's exec and exit records where it can. Ancestors are
walked to find a verified package manager (dpkg running a maintainer script that enables a
unit). Nothing here imports textual.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from fluxtui.collectors.change_watch import pidfd_alive
from fluxtui.detection.persistence_rules import Writer
from fluxtui.events import ProcessKey
from fluxtui.guard.identity import user_name

ANCESTORS = 8
CACHE = 1024
RECENT_PID_S = 5.0  # a writer gone by its next event is taken for the last one seen on its pid


def _read(path: str, limit: int = 65536) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _stat(pid: int, proc: str) -> tuple[str, int, int] | None:
    """(comm, ppid, start ticks) of a process, None when it is gone."""
    try:
        raw = _read(f"{proc}/{pid}/stat")
    except OSError:
        return None
    close = raw.rfind(b")")
    fields = raw[close + 2:].split()
    comm = raw[raw.find(b"(") + 1:close].decode("utf-8", "surrogateescape")
    return comm, int(fields[1]), int(fields[19])


def _exe(pid: int, proc: str) -> str:
    try:
        return os.readlink(f"{proc}/{pid}/exe")
    except OSError:
        return ""


def _uid(pid: int, proc: str) -> int | None:
    try:
        for line in _read(f"{proc}/{pid}/status").splitlines():
            if line.startswith(b"Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


class WriterIdentifier:
    def __init__(self, verified: Callable[[str], bool], package_managers: Iterable[str],
                 proc: str = "/proc") -> None:
        self.verified = verified
        self.package_managers = frozenset(package_managers)
        self.proc = proc
        self._cache: OrderedDict[ProcessKey, Writer] = OrderedDict()
        self._by_pid: dict[int, tuple[float, Writer]] = {}

    def identify(self, pid: int, pidfd: int, now: float | None = None) -> Writer:
        """The writer of an event; one gone already is the last process identified on its pid
        within RECENT_PID_S (its earlier events: crontab's temporary file, then its rename),
        else a writer without a start time."""
        now = time.monotonic() if now is None else now
        stat = _stat(pid, self.proc)
        if stat is None:
            seen = self._by_pid.get(pid)
            if seen is not None and now - seen[0] <= RECENT_PID_S:
                return seen[1]
            return Writer(pid, None)
        writer = self._identify(pid, pidfd, stat)
        if writer.key is not None:
            self._by_pid[pid] = (now, writer)
            if len(self._by_pid) > CACHE:
                cutoff = now - RECENT_PID_S
                self._by_pid = {p: v for p, v in self._by_pid.items() if v[0] >= cutoff}
        return writer

    def _identify(self, pid: int, pidfd: int, stat: tuple[str, int, int]) -> Writer:
        comm, ppid, start = stat
        key = ProcessKey(pid, start)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        exe = _exe(pid, self.proc)
        uid = _uid(pid, self.proc)
        try:
            args = tuple(a.decode("utf-8", "surrogateescape") for a in
                         _read(f"{self.proc}/{pid}/cmdline").split(b"\0")[1:-1])
        except OSError:
            args = ()
        if pidfd >= 0 and not pidfd_alive(pidfd):
            seen = self._by_pid.get(pid)
            if seen is not None and seen[1].key == key:
                return seen[1]
            return Writer(pid, None, exe, comm)  # gone while read: not sure it was this one
        parent_exe = _exe(ppid, self.proc) if ppid > 0 else ""
        verified = bool(exe) and self.verified(exe.removesuffix(" (deleted)"))
        writer = Writer(pid, key, exe, comm, uid, user_name(uid) if uid is not None else "",
                        args, parent_exe, verified, self._package_manager(exe, verified, ppid))
        self._cache[key] = writer
        while len(self._cache) > CACHE:
            self._cache.popitem(last=False)
        return writer

    def _package_manager(self, exe: str, verified: bool, ppid: int) -> str:
        if exe in self.package_managers and verified:
            return exe
        pid = ppid
        for _ in range(ANCESTORS):
            if pid <= 1:
                return ""
            stat = _stat(pid, self.proc)
            if stat is None:
                return ""
            ancestor = _exe(pid, self.proc)
            if ancestor in self.package_managers and self.verified(ancestor):
                return ancestor
            pid = stat[1]
        return ""

    def from_record(self, pid: int, key: ProcessKey, exe: str, uid: int | None) -> Writer:
        """A writer known only from the kernel's records (it exited before /proc was read)."""
        verified = bool(exe) and self.verified(exe)
        return Writer(pid, key, exe, os.path.basename(exe), uid,
                      user_name(uid) if uid is not None else "", (), "", verified,
                      exe if verified and exe in self.package_managers else "")
