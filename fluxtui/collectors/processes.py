"""The process table: one /proc/PID/stat read per process per tick for the changing columns, and
psutil for identity (user, executable, command line), cached per process and refreshed when the
process execs and on a rotation so that a uid change shows up within a few ticks."""

from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from fluxtui.collectors.procstat import ProcStat, list_pids, read_stat
from fluxtui.events import ComponentState, ComponentStatus, ProcessKey, ProcessRow

STATE_NAMES = {
    "R": "running", "S": "sleeping", "D": "disk-sleep", "T": "stopped", "t": "tracing-stop",
    "Z": "zombie", "X": "dead", "I": "idle", "P": "parked", "W": "waking", "K": "wakekill",
}
# Identity (user, exe, cmdline) is re-read on exec (comm changes), when a component reports a
# credential change (`forget_identity`), and otherwise once every this many ticks per process,
# spread over ticks. Reading it costs three files through psutil: every tick would double the
# cost of a tick.
IDENTITY_REFRESH_TICKS = 30


@dataclass(frozen=True, slots=True)
class Identity:
    comm: str
    user: str
    exe: str
    cmdline: tuple[str, ...]


def read_identity(pid: int, comm: str) -> Identity | None:
    """User, executable and command line through psutil. Fields /proc hides from us (another
    user's exe without root) are empty strings, never guesses. None when the process is gone."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            try:
                user = proc.username()
            except (KeyError, psutil.AccessDenied):
                user = str(proc.uids().real)
            try:
                exe = proc.exe()
            except psutil.AccessDenied:
                exe = ""
            try:
                cmdline = tuple(proc.cmdline())
            except psutil.AccessDenied:
                cmdline = ()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    return Identity(comm, user, exe, cmdline)


def display_name(stat: ProcStat, identity: Identity) -> str:
    """comm is cut to 15 bytes by the kernel; the executable's base name is the full name when
    comm is a prefix of it."""
    base = identity.exe.rsplit("/", 1)[-1].removesuffix(" (deleted)")
    if len(stat.comm) >= 15 and base.startswith(stat.comm):
        return base
    return stat.comm


class ProcessCollector:
    name = "processes"

    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._prev_cpu: dict[ProcessKey, float] = {}
        self._prev_time: float | None = None
        self._identities: dict[ProcessKey, Identity] = {}
        self._tick = 0

    def status(self) -> ComponentStatus:
        return ComponentStatus(self.name, ComponentState.RUNNING)

    def forget_identity(self, key: ProcessKey) -> None:
        """Re-read user, executable and command line at the next sample (e.g. after setuid)."""
        self._identities.pop(key, None)

    def sample(self) -> dict[ProcessKey, ProcessRow]:
        now = time.monotonic()
        elapsed = None if self._prev_time is None else now - self._prev_time
        self._tick += 1
        rows: dict[ProcessKey, ProcessRow] = {}
        cpu_now: dict[ProcessKey, float] = {}
        identities: dict[ProcessKey, Identity] = {}
        for pid in list_pids(self._proc):
            stat = read_stat(pid, self._proc)
            if stat is None:
                continue
            key = ProcessKey(pid, stat.start_ticks)
            identity = self._identities.get(key)
            if (identity is None or identity.comm != stat.comm
                    or (pid + self._tick) % IDENTITY_REFRESH_TICKS == 0):
                identity = read_identity(pid, stat.comm) or identity
                if identity is None:
                    continue
            identities[key] = identity
            cpu_now[key] = stat.cpu_seconds
            before = self._prev_cpu.get(key)
            cpu_percent = None
            if elapsed and before is not None:
                cpu_percent = max(0.0, 100.0 * (stat.cpu_seconds - before) / elapsed)
            rows[key] = ProcessRow(
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
        # Replacing the caches drops every process that exited: memory stays bounded.
        self._prev_cpu, self._identities, self._prev_time = cpu_now, identities, now
        return rows
