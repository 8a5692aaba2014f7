"""One read of /proc/PID/stat per process per tick.

psutil reads three files per process (stat, status, statm) for the table's columns; on 1,000
processes that alone costs more than the tick budget. Every per-tick column is in /proc/PID/stat,
so this reads just that file. tests/test_procstat.py checks each field against psutil.
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


def parse_stat(pid: int, raw: bytes) -> ProcStat:
    # comm may hold spaces and parentheses: it ends at the last ')'.
    open_paren = raw.index(b"(")
    close_paren = raw.rindex(b")")
    comm = raw[open_paren + 1 : close_paren].decode("utf-8", "replace")
    fields = raw[close_paren + 2 :].split()
    # fields[0] is field 3 (state) of proc_pid_stat(5).
    return ProcStat(
        pid=pid,
        comm=comm,
        state=fields[0].decode(),
        ppid=int(fields[1]),
        cpu_seconds=(int(fields[11]) + int(fields[12])) / CLOCK_TICKS,
        threads=int(fields[17]),
        start_ticks=int(fields[19]),
        rss_bytes=int(fields[21]) * PAGE_SIZE,
    )


def read_stat(pid: int, proc: str = "/proc") -> ProcStat | None:
    """None when the process is gone (or never was)."""
    try:
        fd = os.open(f"{proc}/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        raw = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not raw:
        return None
    return parse_stat(pid, raw)


def read_start_ticks(pid: int, proc: str = "/proc") -> int | None:
    """The start time that, with the pid, identifies a process across PID reuse."""
    stat = read_stat(pid, proc)
    return None if stat is None else stat.start_ticks


def list_pids(proc: str = "/proc") -> list[int]:
    return [int(name) for name in os.listdir(proc) if name.isdigit()]
