"""Two small reads per process per tick: /proc/PID/stat and /proc/PID/statm.

psutil reads three files per process (stat, status, statm) through several layers for the
table's columns; on 1,000 processes that alone costs more than the tick budget. stat has every
per-tick column but resident memory, which it reports from the kernel's approximate per-CPU
counters since Linux 6.2; statm has the exact figure (the one top and psutil show).
tests/test_procstat.py checks each field against psutil.
"""

from __future__ import annotations

import os
from collections.abc import Container
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcStat:
    pid: int
    comm: str
    state: str
    ppid: int
    cpu_seconds: float  # utime + stime of all threads
    threads: int
    start_ticks: int
    rss_bytes: int


def parse_stat(pid: int, raw: bytes, statm: bytes = b"") -> ProcStat:
    # comm may hold spaces and parentheses: it ends at the last ')'.
    open_paren = raw.index(b"(")
    close_paren = raw.rindex(b")")
    comm = raw[open_paren + 1 : close_paren].decode("utf-8", "replace")
    fields = raw[close_paren + 2 :].split()
    # fields[0] is field 3 (state) of proc_pid_stat(5); statm's second field is resident pages.
    resident_pages = int(statm.split()[1]) if statm else int(fields[21])
    return ProcStat(
        pid=pid,
        comm=comm,
        state=fields[0].decode(),
        ppid=int(fields[1]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        threads=int(fields[17]),
        start_ticks=int(fields[19]),
        rss_bytes=resident_pages * PAGE_SIZE,
    )


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 4096)
    finally:
        os.close(fd)


def read_stat(pid: int, proc: str = "/proc", memory: bool = True) -> ProcStat | None:
    """None when the process is gone (or never was). `memory=False`: stat alone, one read
    instead of two, for a caller that needs no exact resident size (rss_bytes is then stat's
    approximate figure): identity and name only."""
    try:
        raw = _read(f"{proc}/{pid}/stat")
        statm = _read(f"{proc}/{pid}/statm") if memory else b""
    except OSError:
        return None
    if not raw:
        return None
    return parse_stat(pid, raw, statm)


def read_resident(pid: int, proc: str = "/proc") -> int | None:
    """Resident bytes (statm, the exact figure), None when the process is gone."""
    try:
        statm = _read(f"{proc}/{pid}/statm")
    except OSError:
        return None
    fields = statm.split()
    return int(fields[1]) * PAGE_SIZE if len(fields) > 1 else None


def read_start_ticks(pid: int, proc: str = "/proc") -> int | None:
    """The start time that, with the pid, identifies a process across PID reuse."""
    stat = read_stat(pid, proc, memory=False)
    return None if stat is None else stat.start_ticks


def list_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]


class HeldReads:
    """/proc/PID/<name> of many processes, each opened once and re-read with pread(2).

    An open /proc file is bound to the process (its struct pid), not to the number: after the
    process exits a read fails (ESRCH) even when a new process has taken the pid, so a held fd
    can never report another process. A re-read skips the path walk and the permission check of
    an open, which are most of the cost of a small /proc read (bench/bench_cpu.py). Each held fd
    costs the kernel a file and a one-page buffer; `limit` bounds them, beyond it a read opens
    and closes as usual."""

    def __init__(self, name: str, proc: str = "/proc", size: int = 256) -> None:
        self._name = name
        self._proc = proc
        self._size = size
        self._fds: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._fds)

    @property
    def held(self) -> dict[int, int]:
        """pid -> the held fd (read-only for callers: a hot loop preads these itself)."""
        return self._fds

    @property
    def size(self) -> int:
        return self._size

    def __contains__(self, pid: object) -> bool:
        return pid in self._fds

    def read(self, pid: int, limit: int) -> bytes | None:
        """The file's content now; None when the process is gone (or the file is missing). A
        held fd whose process exited reads None once, then the next read opens the path afresh
        (the pid may be a new process's by then)."""
        fd = self._fds.get(pid)
        if fd is not None:
            try:
                return os.pread(fd, self._size, 0)
            except OSError:
                self.forget(pid)
                return None
        path = f"{self._proc}/{pid}/{self._name}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            data = os.pread(fd, self._size, 0)
        except OSError:
            os.close(fd)
            return None
        if len(self._fds) < limit:
            self._fds[pid] = fd
        else:
            os.close(fd)
        return data

    def forget(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            os.close(fd)

    def retain(self, pids: Container[int]) -> None:
        for pid in [p for p in self._fds if p not in pids]:
            self.forget(pid)

    def close(self) -> None:
        for pid in list(self._fds):
            self.forget(pid)


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Mount point of the cgroup v2 (unified) hierarchy, None when there is none."""
    try:
        lines = Path(mountinfo).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        # "... mount_point options - fstype source super_options"
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "cgroup2":
            return left.split(" ")[4].replace("\\040", " ")
    return None
