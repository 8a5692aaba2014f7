"""Which processes hold a socket: exact match of its inode against /proc/PID/fd links
(`socket:[INODE]`), as `ss -p` does, but incremental.

A refresh first re-reads each process's /proc/PID/schedstat through a held fd (one pread): a
process whose main thread has not run since the last refresh cannot have opened, closed or
exec'd, and is skipped. The others have /proc/PID/stat read (identity: pid + start time) and
their /proc/PID/fd directory stat'ed, whose size is the number of open fds (Linux >= 6.2). Only
processes that are new, whose fd count changed, or whose turn in a slow rotation has come have
their fd links read again. Another thread of a process can open a socket while the main thread
sleeps: such a socket is unknown to the index, which triggers the full pass below. A socket
inode that is still unknown after that triggers one full pass, after which it is remembered as
unresolvable (held by the kernel, by another pid namespace, or in flight in a unix-socket
message) so it does not trigger the full pass again. On kernels before 6.2 the size
is always 0 and every process is re-read on every refresh: correct, just slower.

Without root, /proc/PID/fd of another user's process cannot be read: its sockets' owners are
unknown (`owners()` returns None), never guessed.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from fluxtui.collectors.processes import held_fd_budget
from fluxtui.collectors.procstat import HeldReads, list_pids, read_stat
from fluxtui.events import ProcessKey

ROTATION = 64  # every process is re-read at least once per this many refreshes (16 s at 4 Hz;
# a socket unknown to the index triggers a full pass at once, this only renews names and drops)


class Owner(NamedTuple):
    pid: int
    start_ticks: int
    name: str  # comm, as /proc/PID/stat has it

    @property
    def key(self) -> ProcessKey:
        return ProcessKey(self.pid, self.start_ticks)


@dataclass(slots=True)
class _Process:
    owner: Owner
    fd_count: int
    inodes: frozenset[int] | None  # None: /proc/PID/fd not readable
    schedstat: bytes = b""  # at the last refresh: unchanged, the main thread has not run


def read_socket_inodes(fd_dir: str) -> frozenset[int] | None:
    """Inodes of the sockets among a process's fds; None when not permitted. Raises
    FileNotFoundError when the process is gone."""
    try:
        dir_fd = os.open(fd_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except PermissionError:
        return None
    try:
        try:
            names = os.listdir(dir_fd)
        except PermissionError:
            return None
        inodes = []
        for name in names:
            try:
                link = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes.append(int(link[8:-1]))
        return frozenset(inodes)
    finally:
        os.close(dir_fd)


class SocketOwners:
    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._procs: dict[int, _Process] = {}
        self._index: dict[int, list[Owner]] = {}  # socket inode -> processes holding it
        self._unresolvable: set[int] = set()
        self._round = 0
        self._sched = HeldReads("schedstat", proc, 128)

    def close(self) -> None:
        self._sched.close()

    # --- queries -----------------------------------------------------------------------------

    def owners(self, inode: int) -> tuple[Owner, ...] | None:
        """Processes holding the socket; () when none does (inode 0: TIME-WAIT or orphaned; or
        held by no process we can see); None when unknown because some fds were not readable."""
        found = self._index.get(inode)
        if found:
            return tuple(found)
        if inode == 0 or not self.denied:
            return ()
        return None

    @property
    def denied(self) -> int:
        """Processes whose fds we may not read (not root)."""
        return sum(1 for p in self._procs.values() if p.inodes is None)

    def readable(self) -> dict[ProcessKey, Owner]:
        """Every process whose fds were read, by key."""
        return {p.owner.key: p.owner for p in self._procs.values() if p.inodes is not None}

    # --- refresh -----------------------------------------------------------------------------

    def refresh(self, wanted: Iterable[int]) -> None:
        """Bring the index up to date for the socket inodes the kernel just listed."""
        self._round += 1
        wanted_set = set(wanted)
        wanted_set.discard(0)
        pids = list_pids(self._proc)
        for gone in self._procs.keys() - set(pids):
            self._drop(gone)
        pending: list[tuple[int, Owner, int]] = []  # not re-read this time
        limit = held_fd_budget() // 2  # the process collector holds as many
        for pid in pids:
            cached = self._procs.get(pid)
            sched = self._sched.read(pid, limit)
            if sched is None and cached is not None:
                self._drop(pid)  # the held file's process exited: the pid may be another's
                cached = None
                sched = self._sched.read(pid, limit)
            if sched is None:
                continue
            if (cached is not None and sched == cached.schedstat
                    and (pid + self._round) % ROTATION):
                pending.append((pid, cached.owner, cached.fd_count))  # it has not run
                continue
            stat = read_stat(pid, self._proc, memory=False)  # identity and name only
            if stat is None:
                self._drop(pid)
                continue
            owner = Owner(pid, stat.start_ticks, stat.comm)
            if cached is not None and cached.owner.start_ticks != owner.start_ticks:
                self._drop(pid)  # pid reused: never inherit the old process's sockets
                cached = None
            try:
                fd_count = os.stat(f"{self._proc}/{pid}/fd").st_size
            except OSError:
                self._drop(pid)
                continue
            if (cached is None or cached.fd_count != fd_count or fd_count == 0
                    or (pid + self._round) % ROTATION == 0):
                self._rescan(pid, owner, fd_count, sched)
            else:
                if cached.owner.name != owner.name:  # exec: same fds, new name
                    self._rescan(pid, owner, fd_count, sched)
                else:
                    cached.schedstat = sched
                    pending.append((pid, owner, fd_count))
        unresolved = wanted_set - self._index.keys() - self._unresolvable
        if unresolved:
            for pid, owner, fd_count in pending:
                self._rescan(pid, owner, fd_count, self._procs[pid].schedstat)
            self._unresolvable |= wanted_set - self._index.keys()
        self._unresolvable &= wanted_set

    def _rescan(self, pid: int, owner: Owner, fd_count: int, schedstat: bytes) -> None:
        try:
            inodes = read_socket_inodes(f"{self._proc}/{pid}/fd")
        except FileNotFoundError:
            self._drop(pid)
            return
        old = self._procs.get(pid)
        self._unindex(old)
        self._procs[pid] = _Process(owner, fd_count, inodes, schedstat)
        for inode in inodes or ():
            self._index.setdefault(inode, []).append(owner)

    def _drop(self, pid: int) -> None:
        self._unindex(self._procs.pop(pid, None))
        self._sched.forget(pid)

    def _unindex(self, process: _Process | None) -> None:
        if process is None or not process.inodes:
            return
        for inode in process.inodes:
            holders = self._index.get(inode)
            if holders is None:
                continue
            holders[:] = [o for o in holders if o.pid != process.owner.pid]
            if not holders:
                del self._index[inode]
