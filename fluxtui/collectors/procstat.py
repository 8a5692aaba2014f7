"""Two small reads per process per tick: /proc/PID/stat and /proc/PID/statm.

psutil reads three files per process (stat, status, statm) through several layers for the
table's columns; on 1,000 processes that alone costs more than the tick budget. stat has every
per-tick column but resident memory, which it reports from the kernel's approximate per-CPU
counters since Linux 6.2; statm has the exact figure (the one top and psutil show).
tests/test_procstat.py checks each field against psutil.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

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


def read_stat(pid: int, proc: str = "/proc") -> ProcStat | None:
    """None when the process is gone (or never was)."""
    try:
        raw = _read(f"{proc}/{pid}/stat")
        statm = _read(f"{proc}/{pid}/statm")
    except OSError:
        return None
    if not raw:
        return None
    return parse_stat(pid, raw, statm)


def read_start_ticks(pid: int, proc: str = "/proc") -> int | None:
    """The start time that, with the pid, identifies a process across PID reuse."""
    stat = read_stat(pid, proc)
    return None if stat is None else stat.start_ticks


def list_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]
