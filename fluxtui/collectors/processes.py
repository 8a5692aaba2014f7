"""The process table, re-reading only the processes whose /proc data can have changed.

How that is known, per process and tick:
- It ran: /proc/PID/schedstat (the main thread's run time in ns, wait time, time slices),
  held open and re-read with pread, changes whenever the thread ran. CPU time, state, comm,
  thread count and (but for the cases below) memory only change when the process runs. A
  process that did not run keeps its row, with a CPU share of exactly 0; one that ran has its
  stat and statm read again.
- A process with more than one thread, or whose main thread has exited (state Z) while
  another thread runs on: schedstat shows the main thread only, so its stat is read every tick
  (a single-threaded process must run to start a thread or to exit its main thread).
- Memory a sleeping process cannot change itself (the kernel reclaiming or swapping its pages,
  another process writing into it with process_vm_writev or ptrace): every process's statm is
  read again at least every `STAT_REFRESH_TICKS` ticks, spread over ticks.
- The parent a sleeping process cannot change itself: when its parent exits, it is given to a
  reaper. A tick that sees a process exit (gone, or a zombie) reads the stat of its children at
  the next tick.
- New and exited processes: as root, the kernel's process events connector reports each new
  process (a fork event whose child is a thread group leader) and a held schedstat fd reads
  ESRCH once its process has exited, so the tick walks the known pids plus the new ones. /proc
  is listed (one getdents pass) at the first sample, after the connector overflowed, every
  `LISTING_REFRESH_TICKS` ticks, and on every tick without the connector or when fluxtui's
  /proc is not the initial pid namespace's (the connector's pids are that namespace's).
- Identity (user, executable, command line): read once per process life; again on exec and on
  a uid change, which the kernel's process events connector reports (root; collectors/
  proc_events.py), on a comm change, when a component asks (`forget_identity`), for a
  process that ran since, on its turn of a rotation of `IDENTITY_REFRESH_TICKS` ticks, be it
  running or asleep by then (a rewritten argv area), and once more at the next tick when it was
  read with an empty command line (in the middle of an exec). Without the connector, exec shows
  as a comm change, a uid change within the rotation.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from dataclasses import dataclass, replace

from fluxtui.collectors.proc_events import (
    PROC_EVENT_EXEC,
    PROC_EVENT_FORK,
    PROC_EVENT_UID,
    ProcEvents,
    ProcEventsLost,
)
from fluxtui.collectors.proc_identity import Identity, read_identity
from fluxtui.collectors.procstat import (
    HeldReads,
    ProcStat,
    list_pids,
    read_resident,
    read_stat,
)
from fluxtui.events import ComponentState, ComponentStatus, ProcessKey, ProcessRow

STATE_NAMES = {
    "R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
    "Z": "zombie", "X": "dead", "I": "idle", "P": "parked", "W": "waking", "K": "wakekill",
}
STAT_REFRESH_TICKS = 30
IDENTITY_REFRESH_TICKS = 30
LISTING_REFRESH_TICKS = 30
# The initial pid namespace's inode number (include/linux/proc_ns.h: PROC_PID_INIT_INO)
INIT_PID_NS_INODE = 0xEFFFFFFC
# fds left for everything else when holding schedstat files open: the guard's waiting opens
# (1,000 x 4, guard/limits.py), sockets, the audit database, /proc reads.
FD_RESERVE = 8192

__all__ = ["Identity", "ProcessCollector", "display_name", "read_identity"]


def display_name(stat: ProcStat, identity: Identity) -> str:
    """comm is cut to 15 bytes by the kernel; the executable's base name is the full name when
    comm is a prefix of it."""
    base = identity.exe.rsplit("/", 1)[-1].removesuffix(" (deleted)")
    if len(stat.comm) >= 15 and base.startswith(stat.comm):
        return base
    return stat.comm


def in_initial_pid_namespace(proc: str = "/proc") -> bool:
    """Whether the pids under `proc` are the initial namespace's (those the process events
    connector reports)."""
    try:
        return os.stat(f"{proc}/self/ns/pid").st_ino == INIT_PID_NS_INODE
    except OSError:
        return False


def held_fd_budget() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 1 << 20
    return max(0, soft - FD_RESERVE)


def raise_fd_limit() -> None:
    """Soft open-file limit up to the hard one (the guard does the same): a shell's usual 1,024
    would leave no room to hold schedstat files. Failing that, reads open and close."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        with contextlib.suppress(OSError, ValueError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(slots=True)
class _Tracked:
    key: ProcessKey
    schedstat: bytes
    cpu_seconds: float
    threads: int
    state: str
    identity: Identity
    row: ProcessRow
    ran_since_identity: bool = False
    # schedstat shows the main thread only: a process with more threads, or whose main
    # thread has exited (Z), is read every tick (see the module's docstring)
    quiet: bool = False

    def __post_init__(self) -> None:
        self.quiet = self.threads == 1 and self.state != "Z"


@dataclass
class TickCounts:
    """What the last sample did: the evidence that unchanged processes were not read."""

    listed: int = 0
    stat_reads: int = 0
    memory_reads: int = 0  # statm alone: the rotation of processes that did not run
    identity_reads: int = 0
    listing: bool = False  # /proc was listed (else: known pids and the connector's new ones)


class ProcessCollector:
    name = "processes"

    def __init__(self, proc: str = "/proc", process_events: bool = True,
                 stat_refresh_ticks: int = STAT_REFRESH_TICKS,
                 identity_refresh_ticks: int = IDENTITY_REFRESH_TICKS) -> None:
        self._proc = proc
        self._stat_refresh = stat_refresh_ticks
        self._identity_refresh = identity_refresh_ticks
        self._tracked: dict[int, _Tracked] = {}
        self._sched = HeldReads("schedstat", proc, 128)
        self._prev_time: float | None = None
        self._tick = 0
        self._stale: set[int] = set()  # pids whose identity is read again at the next sample
        self._orphans: set[int] = set()  # pids whose parent exited: stat read at the next sample
        self._events: ProcEvents | None = None
        self._events_note = "process events off"
        self._events_lost = 0
        self._new_pids: set[int] = set()  # forked since the last sample (connector)
        self._fork_events = False  # new processes come from the connector, not a listing
        self._listing_due = True
        self.last = TickCounts()
        # The processes whose row is another object than the last sample's (new ones included)
        self.changed: set[ProcessKey] = set()
        raise_fd_limit()
        if process_events and proc == "/proc":
            try:
                # Room for a few thousand execs between two ticks; an overflow costs one
                # re-read of every identity and is counted in the status's drops.
                self._fork_events = in_initial_pid_namespace(proc)
                wanted = PROC_EVENT_EXEC | PROC_EVENT_UID
                self._events = ProcEvents(
                    rcvbuf=8 << 20,
                    wanted=wanted | PROC_EVENT_FORK if self._fork_events else wanted)
                self._events_note = ""
            except OSError as exc:
                self._events_note = f"process events unavailable ({exc.strerror or exc})"

    def status(self) -> ComponentStatus:
        detail = (f"re-read {self.last.stat_reads} of {self.last.listed}"
                  + (f" · {self._events_note}" if self._events_note else ""))
        drops = {"process_events": self._events_lost} if self._events is not None else {}
        return ComponentStatus(self.name, ComponentState.RUNNING, detail=detail, drops=drops)

    def held_fds(self) -> int:
        """How many /proc/PID/schedstat files are held open."""
        return len(self._sched)

    def close(self) -> None:
        self._sched.close()
        if self._events is not None:
            self._events.close()
            self._events = None

    def events_note(self) -> str:
        """Why exec and uid changes are not pushed by the kernel ("" when they are)."""
        return self._events_note

    def forget_identity(self, key: ProcessKey) -> None:
        """Re-read user, executable and command line at the next sample (e.g. after setuid)."""
        tracked = self._tracked.get(key.pid)
        if tracked is not None and tracked.key == key:
            self._stale.add(key.pid)

    def _drain_events(self) -> None:
        if self._events is None:
            return
        try:
            for event in self._events.drain():
                if event.what == PROC_EVENT_FORK:
                    if event.arg1 == event.arg2:  # child pid == child tgid: a new process
                        self._new_pids.add(event.arg2)
                else:
                    self._stale.add(event.tgid)
        except ProcEventsLost:
            # Which processes exec'd or started is lost: every identity is read again once,
            # and /proc is listed.
            self._events_lost += 1
            self._stale.update(self._tracked)
            self._listing_due = True
        except OSError as exc:
            self._events_note = f"process events stopped ({exc.strerror or exc})"
            self._events.close()
            self._events = None
            self._listing_due = True

    def _pids(self) -> tuple[list[int] | dict[int, _Tracked], bool]:
        """The pids to read this tick, and whether /proc was listed for them."""
        new, self._new_pids = self._new_pids, set()
        if (self._listing_due or self._events is None or not self._fork_events
                or self._tick % LISTING_REFRESH_TICKS == 0):
            self._listing_due = False
            return list_pids(self._proc), True
        if not new:
            return self._tracked, False
        # A new pid may also be a tracked one's number, reused: its held fd reads ESRCH and
        # the path is opened afresh.
        return [*self._tracked, *(pid for pid in new if pid not in self._tracked)], False

    def sample(self) -> dict[ProcessKey, ProcessRow]:
        now = time.monotonic()
        elapsed = None if self._prev_time is None else now - self._prev_time
        self._prev_time = now
        self._tick += 1
        self._drain_events()
        stale, self._stale = self._stale, set()
        reread = stale | self._orphans if self._orphans else stale
        limit = held_fd_budget()
        counts = TickCounts()
        rows: dict[ProcessKey, ProcessRow] = {}
        tracked_now: dict[int, _Tracked] = {}
        changed: set[ProcessKey] = set()
        exited: set[int] = set()  # turned zombie, or their pid reused
        sched_read = self._sched.read
        # The loop below runs for every process each tick: what it does for one that did not
        # run (a held fd's pread, one comparison) is kept inline, without method calls.
        held, pread, size = self._sched.held, os.pread, self._sched.size
        tracked_of, tick, refresh = self._tracked.get, self._tick, self._stat_refresh
        identity_refresh = self._identity_refresh
        pids, counts.listing = self._pids()
        for pid in pids:
            tracked = tracked_of(pid)
            sched = None
            if tracked is not None and (fd := held.get(pid)) is not None:
                try:
                    sched = pread(fd, size, 0)
                except OSError:
                    self._sched.forget(pid)
                    exited.add(pid)
                    tracked = None  # the one we held exited: the pid may be a new process's
                else:
                    if (sched == tracked.schedstat and tracked.quiet and pid not in reread
                            and not (tracked.ran_since_identity
                                     and (pid + tick) % identity_refresh == 0)):
                        row = tracked.row
                        if (pid + tick) % refresh == 0:
                            rss = read_resident(pid, self._proc)
                            if rss is None:
                                continue  # exited since the pread
                            counts.memory_reads += 1
                            if rss != row.memory_rss:
                                row = tracked.row = replace(row, memory_rss=rss)
                                changed.add(tracked.key)
                        if row.cpu_percent != 0.0 and elapsed:
                            row = tracked.row = replace(row, cpu_percent=0.0)
                            changed.add(tracked.key)
                        rows[tracked.key] = row
                        tracked_now[pid] = tracked
                        continue
            if sched is None:
                sched = sched_read(pid, limit)
                if sched is None:
                    continue  # gone between the listing and the read
            counts.stat_reads += 1
            fresh = self._read(pid, sched, tracked, stale, elapsed, counts)
            if fresh is not None:
                rows[fresh.key] = fresh.row
                tracked_now[pid] = fresh
                if tracked is None or fresh.row is not tracked.row:
                    changed.add(fresh.key)
                if fresh.state == "Z" and tracked is not None and tracked.state != "Z":
                    exited.add(pid)
        counts.listed = len(tracked_now)
        self._sched.retain(tracked_now.keys())
        self._orphans = self._children_of_exited(tracked_now, exited)
        self._tracked = tracked_now
        self.changed = changed
        self.last = counts
        return rows

    def _children_of_exited(self, tracked_now: dict[int, _Tracked], exited: set[int]) -> set[int]:
        """The processes whose parent left the table, or `exited` (became a zombie, its pid
        taken by another), since the last sample: the kernel has given them to a reaper, a new
        ppid they did not run to make."""
        exited |= self._tracked.keys() - tracked_now.keys()
        if not exited:
            return set()
        return {pid for pid, t in tracked_now.items() if t.row.ppid in exited}

    def _read(self, pid: int, sched: bytes, tracked: _Tracked | None, stale: set[int],
              elapsed: float | None, counts: TickCounts) -> _Tracked | None:
        stat = read_stat(pid, self._proc)
        if stat is None:
            return None
        key = ProcessKey(pid, stat.start_ticks)
        if tracked is not None and tracked.key != key:
            tracked = None  # the pid was reused between two ticks
        identity = tracked.identity if tracked is not None else None
        ran = tracked is not None and (sched != tracked.schedstat or tracked.threads > 1
                                       or tracked.state == "Z")
        ran_since = ran or (tracked is not None and tracked.ran_since_identity)
        if (identity is None or identity.comm != stat.comm or pid in stale
                or (ran_since and (pid + self._tick) % self._identity_refresh == 0)):
            counts.identity_reads += 1
            before = identity
            identity = read_identity(pid, stat.comm, self._proc) or identity
            if identity is None:
                return None
            ran_since = False
            if identity.exe and not identity.cmdline and (before is None or before.cmdline):
                # Read in the middle of an exec (the new comm and executable are set before
                # the new argv): once more at the next tick. A process that emptied its argv
                # itself is not read again for it.
                self._stale.add(pid)
        cpu_percent = None
        if elapsed and tracked is not None:
            cpu_percent = max(0.0, 100.0 * (stat.cpu_seconds - tracked.cpu_seconds) / elapsed)
        row = ProcessRow(
            key=key,
            ppid=stat.ppid,
            user=identity.user,
            name=display_name(stat, identity),
            exe=identity.exe,
            cmdline=identity.cmdline,
            cpu_percent=cpu_percent,
            memory_rss=stat.rss_bytes,
            threads=stat.threads,
            state=STATE_NAMES.get(stat.state, stat.state),
        )
        if tracked is not None and tracked.row == row:
            row = tracked.row  # the same object: consumers skip it by identity
        return _Tracked(key, sched, stat.cpu_seconds, stat.threads, stat.state, identity, row,
                        ran_since)
