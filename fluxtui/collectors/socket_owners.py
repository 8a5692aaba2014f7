"""Which processes hold a socket: exact match of its inode against /proc/PID/fd links
(`socket:[INODE]`), as `ss -p` does, but incremental: /proc is read when the kernel's listing
says something is new, not on every listing.

`refresh(inodes)` runs at every poll of the connections thread (4 times a second, after a
sock_diag listing or with the last one's inodes when the kernel's counters say nothing changed).
What it reads:
- Nothing, when every inode listed is already in the index (or known unresolvable) and the last
  sweep is less than `sweep_s` old: the common case on a quiet host.
- A sweep, at most every `sweep_s` (1 s): /proc is listed (or the engine's table is taken);
  new processes have their fds read unless their parent held no socket when last read and they
  started after that (a child inherits its parent's sockets; one its parent opened since, or it
  opens, is unknown to the index, which starts a hunt), gone ones are dropped; of the rest only
  processes that hold a socket are looked at (one pread of a held /proc/PID/schedstat fd: a
  process whose main thread has not run since its fds were last read cannot have closed or
  passed a socket);
  one that ran has the fd recorded for each of its sockets checked (one readlink each) and
  its fds read again when one changed, so a socket it closed or handed over stops naming it
  within a sweep. Processes that hold no socket are skipped, apart
  from the slow rotation (each has its turn once per ROTATION sweeps: renews co-holders that
  received a still-held socket by fd passing, the one case nothing else reveals, and a pid
  reused by a process that inherited a socket). A turn is one pread for a process that had a
  single thread when its fds were read and whose schedstat has not moved since: receiving a
  socket takes a recvmsg, and a thread that could take it a clone, both by the main thread.
  A sweep handed the same pid list object as the last one (the engine's, when no process came
  or went) does not compare it with its table again.
- A hunt, at once, when a listed inode is unknown. The hinted processes first (the connect
  tracer's connecting pids, the holders of the listener a new connection came in to): when they
  hold every unknown inode, that is all. Else every process's schedstat is read; those that
  are new or ran since their fds were last read and whose fd count changed have their fds read
  (the socket's creator is among them unless it opened one fd and closed another); if the inode
  is still unknown, those that ran with the same count, then all the others (a socket opened by
  a thread other than the main one); fewest fds first, those with more than BIG_FDS last,
  stopping once every inode is found. An inode still unknown after
  that is remembered as unresolvable (held by the kernel, by another pid namespace, or in flight
  in a unix-socket message) and does not trigger another hunt.

So a socket is attributed in the listing it first appears in (a hunt reads what is needed
then), and an owner that exits, closes it or passes it on is corrected within a sweep; a second
holder of an already attributed socket appears within a sweep when it is a new process, else
within ROTATION sweeps (5 min). The fd count is the size of /proc/PID/fd (Linux >= 6.2); on
older kernels it is always 0 and every process that ran is re-read: correct, just slower.
fluxtui's own fds (it holds thousands of /proc files) are checked with fstat(2), not readlink.

Without root, /proc/PID/fd of another user's process cannot be read: its sockets' owners are
unknown (`owners()` returns None), never guessed.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from fluxtui.collectors.processes import held_fd_budget
from fluxtui.collectors.procstat import CLOCK_TICKS, HeldReads, list_pids, read_stat
from fluxtui.events import ProcessKey

BIG_FDS = 256  # a hunt reads processes with more fds than this last
SWEEP_S = 1.0  # without an unknown socket, processes are looked at at most this often
ROTATION = 300  # sweeps: every process's fds are re-read at least once per this many (5 min)


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
    inodes: dict[int, int] | None  # socket inode -> an fd holding it; None: fds not readable
    schedstat: bytes = b""  # when its fds were read: unchanged, the main thread has not run
    threads: int = 0  # when its fds were read (0: not known)
    known_at: int = 0  # clock ticks since boot when its fds were read (or it started, inferred)
    key: ProcessKey = field(init=False)  # owner.key, built once

    def __post_init__(self) -> None:
        self.key = self.owner.key


# (fd count, pid, owner, schedstat now, threads) of a process a hunt may read
_Candidate = tuple[int, int, Owner, bytes, int]


def _boot_ticks() -> int:
    """Now, in the unit and clock of a process's start time in /proc/PID/stat."""
    return int(time.clock_gettime(time.CLOCK_BOOTTIME) * CLOCK_TICKS)


def read_socket_inodes(fd_dir: str) -> frozenset[int] | None:
    """Inodes of the sockets among a process's fds; None when not permitted. Raises
    FileNotFoundError when the process is gone."""
    found = socket_fds(fd_dir)
    return None if found is None else frozenset(found)


def socket_fds(fd_dir: str) -> dict[int, int] | None:
    """Socket inode -> an fd of the process holding it; None when not permitted. Raises
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
        inodes = {}
        for name in names:
            try:
                link = os.readlink(name, dir_fd=dir_fd)
            except OSError:
                continue  # closed meanwhile
            if link.startswith("socket:["):
                inodes[int(link[8:-1])] = int(name)
        return inodes
    finally:
        os.close(dir_fd)


def own_socket_fds() -> dict[int, int]:
    """This process's socket inodes and fds, by fstat of each fd: no path walk in /proc per fd,
    which matters for a process holding thousands of /proc files."""
    inodes = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            info = os.fstat(int(name))
        except (OSError, ValueError):
            continue  # closed meanwhile (or the directory's own fd)
        if stat.S_ISSOCK(info.st_mode):
            inodes[info.st_ino] = int(name)
    return inodes


def still_held(fd_dir: str, inodes: dict[int, int], own: bool) -> bool:
    """Whether each fd recorded for a socket still refers to it: one readlink (or fstat) per
    socket instead of one per fd."""
    for inode, fd in inodes.items():
        try:
            if own:
                info = os.fstat(fd)
                if not stat.S_ISSOCK(info.st_mode) or info.st_ino != inode:
                    return False
            elif os.readlink(f"{fd_dir}/{fd}") != f"socket:[{inode}]":
                return False
        except OSError:
            return False
    return True


class SocketOwners:
    def __init__(self, proc: str = "/proc", clock: Callable[[], float] = time.monotonic,
                 sweep_s: float = SWEEP_S) -> None:
        self._proc = proc
        self._clock = clock
        self.sweep_s = sweep_s
        self._procs: dict[int, _Process] = {}
        # Kept with _procs (_put, _remove) so that neither a query nor a sweep walks every
        # process in Python: the keys of those whose fds were read, the count of those whose fds
        # may not be read, the pids holding a socket, and the known pids by rotation turn.
        self._readable: set[ProcessKey] = set()
        self._readable_frozen: frozenset[ProcessKey] | None = frozenset()
        self._denied = 0
        self._holders: set[int] = set()
        self._turns: dict[int, set[int]] = {}
        # socket inode -> processes holding it; a tuple replaced on change, so owners() hands on
        # the same object while the holders stay the same
        self._index: dict[int, tuple[Owner, ...]] = {}
        self._unresolvable: set[int] = set()
        self._round = 0
        self._last_sweep: float | None = None
        self._swept_pids: Collection[int] | None = None  # the caller's pids at the last sweep
        self._unrecorded: set[int] = set()  # of those it looked at, the ones it could not record
        self._sched = HeldReads("schedstat", proc, 128)
        self._self = os.getpid() if proc == "/proc" else -1
        self.fd_reads = 0  # /proc/PID/fd directories read since start (for the benchmark)
        self.hunts = 0  # refreshes that looked for an unknown inode in every process
        self.hinted = 0  # unknown inodes all found in the hinted processes
        self.inferred = 0  # new processes taken to hold no socket: their parent holds none
        # Moves when what a query hands on can have changed: a process's sockets or name, a
        # process added or dropped (readable, denied). Not when a re-read found the same.
        self.generation = 0

    def close(self) -> None:
        self._sched.close()

    # --- queries -----------------------------------------------------------------------------

    def owners(self, inode: int) -> tuple[Owner, ...] | None:
        """Processes holding the socket; () when none does (inode 0: TIME-WAIT or orphaned; or
        held by no process we can see); None when unknown because some fds were not readable."""
        found = self._index.get(inode)
        if found:
            return found
        if inode == 0 or not self.denied:
            return ()
        return None

    def unknown(self, inodes: Iterable[int]) -> set[int]:
        """The inodes a refresh would hunt for: in no process's fds as last read, and not known
        to be unresolvable."""
        found = set(inodes) - self._index.keys() - self._unresolvable
        found.discard(0)
        return found

    @property
    def denied(self) -> int:
        """Processes whose fds we may not read (not root)."""
        return self._denied

    def readable(self) -> frozenset[ProcessKey]:
        """Every process whose fds were read: the same object until one is added or dropped."""
        frozen = self._readable_frozen
        if frozen is None:
            frozen = self._readable_frozen = frozenset(self._readable)
        return frozen

    # --- refresh -----------------------------------------------------------------------------

    def refresh(self, wanted: Iterable[int], pids: Collection[int] | None = None,
                 hints: Iterable[int] = ()) -> None:
        """Bring the index up to date for the socket inodes the kernel just listed. `pids`: the
        processes as someone else listed them lately (the engine's table, at most a tick old),
        which spares a sweep its own listing of /proc; a hunt always lists /proc afresh.
        `hints`: processes likely to hold a new socket (those the connect tracer saw connect,
        the holders of a listener a new connection came in to): read first, and when they
        hold every unknown inode, the hunt ends there."""
        wanted_set = set(wanted)
        wanted_set.discard(0)
        self._unresolvable &= wanted_set
        unknown = wanted_set - self._index.keys() - self._unresolvable
        now = self._clock()
        swept = self._last_sweep is not None and 0 <= now - self._last_sweep < self.sweep_s
        if unknown and hints:
            self._read_hinted(hints)
            unknown -= self._index.keys()
            if not unknown:
                self.hinted += 1
                if swept:
                    return
        if not unknown and swept:
            return
        self._last_sweep = now
        self._round += 1
        if unknown:
            self.hunts += 1
        if unknown or pids is None:
            pids = list_pids(self._proc)
        new: set[int] | frozenset[int]
        if pids is self._swept_pids and not unknown:
            # The caller's list as at the last sweep (nobody came or went, as it saw them):
            # new are those it listed that the last sweep could not record.
            new = self._unrecorded
        else:
            self._swept_pids = pids
            present = pids if isinstance(pids, (set, frozenset)) else set(pids)
            for gone in self._procs.keys() - present:
                self._drop(gone)
            new = present - self._procs.keys()
        rotation = self._round % ROTATION
        if not unknown:  # only new processes, holders, and those whose turn it is
            pids = new | self._holders | self._turns.get(rotation, frozenset())
        # (fd count, pid, owner, schedstat now, threads) of processes not re-read yet:
        changed: list[_Candidate] = []  # ran, their fd count changed
        ran: list[_Candidate] = []  # ran, same fd count
        idle: list[_Candidate] = []  # not run since their fds were read
        limit = held_fd_budget() // 2  # the process collector holds as many
        for pid in pids:
            cached = self._procs.get(pid)
            due = pid % ROTATION == rotation
            if cached is not None and not unknown and not cached.inodes and not due:
                continue  # holds no socket: only a hunt or its turn brings it back
            fresh = None
            if cached is None and not unknown and not due:
                fresh = read_stat(pid, self._proc, memory=False)
                if fresh is None:
                    continue
                parent = self._procs.get(fresh.ppid)
                if (parent is not None and parent.inodes == {}
                        and fresh.start_ticks > parent.known_at):
                    # Forked from a process that held no socket after it was last read: it
                    # inherited none (one its parent opened in between, or it opens, is unknown
                    # to the index, and a hunt reads it: it counts as "ran").
                    self._put(pid, _Process(Owner(pid, fresh.start_ticks, fresh.comm), -1,
                                            {}, known_at=fresh.start_ticks))
                    self.inferred += 1
                    continue
            sched = self._sched.read(pid, limit)
            if sched is None and cached is not None:
                self._drop(pid)  # the held file's process exited: the pid may be another's
                cached = None
                sched = self._sched.read(pid, limit)
            if sched is None:
                continue
            if cached is not None and sched == cached.schedstat and (
                    not due or cached.threads == 1):
                # Not run since its fds were read. Its turn comes to nothing when it has a
                # single thread: it cannot have received a socket (recvmsg runs) nor made a
                # thread that did (clone runs); a pid reused fails the held read above.
                idle.append((cached.fd_count, pid, cached.owner, sched, cached.threads))
                continue
            stat_ = fresh or read_stat(pid, self._proc, memory=False)  # identity and name
            if stat_ is None:
                self._drop(pid)
                continue
            owner = Owner(pid, stat_.start_ticks, stat_.comm)
            if cached is not None and cached.owner.start_ticks != owner.start_ticks:
                self._drop(pid)  # pid reused: never inherit the old process's sockets
                cached = None
            try:
                fd_count = os.stat(f"{self._proc}/{pid}/fd").st_size
            except OSError:
                self._drop(pid)
                continue
            if cached is None and unknown and not due:
                changed.append((fd_count, pid, owner, sched, stat_.threads))  # new: below
            elif (cached is None or due or fd_count == 0 or cached.owner.name != owner.name
                    or (cached.inodes and not still_held(
                        f"{self._proc}/{pid}/fd", cached.inodes, pid == self._self))):
                # New, its turn, exec'd, or a holder that closed or moved one of its sockets.
                self._rescan(pid, owner, fd_count, sched, stat_.threads)
            elif cached.fd_count != fd_count:
                changed.append((fd_count, pid, owner, sched, stat_.threads))
            else:
                ran.append((fd_count, pid, owner, sched, stat_.threads))
        if not unknown:
            self._unrecorded = {pid for pid in pids if pid not in self._procs}
            return
        # The creator is among the new processes and those that ran with a new fd count unless a
        # thread other than the main one opened it, or it closed one fd for another: in that
        # order, fewest fds first,
        # processes with many fds (BIG_FDS) after all others, since reading them costs most.
        # Stops as soon as every inode is found.
        order = sorted(((fd_count > BIG_FDS, rank, fd_count, pid, owner, sched, threads)
                        for rank, group in enumerate((changed, ran, idle))
                        for fd_count, pid, owner, sched, threads in group),
                       key=lambda p: p[:4])
        for _big, _rank, fd_count, pid, owner, sched, threads in order:
            if not unknown - self._index.keys():
                return
            self._rescan(pid, owner, fd_count, sched, threads)
        self._unresolvable |= unknown - self._index.keys()

    def _read_hinted(self, hints: Iterable[int]) -> None:
        limit = held_fd_budget() // 2
        for pid in set(hints):
            cached = self._procs.get(pid)
            sched = self._sched.read(pid, limit)
            if sched is None:
                self._drop(pid)
                continue
            stat_ = read_stat(pid, self._proc, memory=False)
            if stat_ is None:
                self._drop(pid)
                continue
            if cached is not None and cached.owner.start_ticks != stat_.start_ticks:
                self._drop(pid)
            try:
                fd_count = os.stat(f"{self._proc}/{pid}/fd").st_size
            except OSError:
                self._drop(pid)
                continue
            self._rescan(pid, Owner(pid, stat_.start_ticks, stat_.comm), fd_count, sched,
                         stat_.threads)

    def _rescan(self, pid: int, owner: Owner, fd_count: int, schedstat: bytes,
                threads: int) -> None:
        self.fd_reads += 1
        try:
            if pid == self._self:
                inodes: dict[int, int] | None = own_socket_fds()
            else:
                inodes = socket_fds(f"{self._proc}/{pid}/fd")
        except FileNotFoundError:
            self._drop(pid)
            return
        self._put(pid, _Process(owner, fd_count, inodes, schedstat, threads, _boot_ticks() - 1))
        for inode in inodes or ():
            self._index[inode] = (*self._index.get(inode, ()), owner)

    def _put(self, pid: int, process: _Process) -> None:
        """Record (or replace) a process, with everything kept alongside _procs."""
        old = self._procs.get(pid)
        frozen = self._readable_frozen
        generation = self.generation
        self._remove(pid)
        # A re-read that found the same: nothing a query hands on moved.
        same = old is not None and old.owner == process.owner and old.inodes == process.inodes
        self.generation = generation if same else generation + 1
        self._procs[pid] = process
        if process.inodes is None:
            self._denied += 1
        else:
            self._readable.add(process.key)
            self._readable_frozen = None
            if process.inodes:
                self._holders.add(pid)
            if old is not None and old.inodes is not None and old.key == process.key:
                self._readable_frozen = frozen  # re-read, still readable: the set is the same
        self._turns.setdefault(pid % ROTATION, set()).add(pid)

    def _remove(self, pid: int) -> None:
        process = self._procs.pop(pid, None)
        if process is None:
            return
        self.generation += 1
        self._unindex(process)
        if process.inodes is None:
            self._denied -= 1
        else:
            self._readable.discard(process.key)
            self._readable_frozen = None
        self._holders.discard(pid)
        self._turns[pid % ROTATION].discard(pid)

    def _drop(self, pid: int) -> None:
        self._remove(pid)
        self._sched.forget(pid)

    def _unindex(self, process: _Process | None) -> None:
        if process is None or not process.inodes:
            return
        for inode in process.inodes:
            holders = self._index.get(inode)
            if holders is None:
                continue
            pid = process.owner.pid
            rest = tuple(o for o in holders if o.pid != pid)
            if rest:
                self._index[inode] = rest
            else:
                del self._index[inode]
