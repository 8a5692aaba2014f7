"""TCP connect attempts with the pid that made them, from eBPF (bcc).

Why: a connect to a closed port on loopback is refused within microseconds, and the kernel then
clears the socket's destination (tcp_disconnect), so neither a sock_diag query nor the close
notification can show where a port scan went. The tracepoint sock:inet_sock_set_state fires in
the connecting process's context when a socket goes CLOSE -> SYN_SENT, with the destination
already set: that is the observation, filtered in the kernel to this one transition.

Only tracepoint fields are read (their layout comes from tracefs at load time), never kernel
structs: the installed kernel headers may not match the running kernel. The process's start time
is therefore read from /proc when the ring buffer is drained (up to ~100 ms later). By then the
pid may belong to another process: the /proc entry is taken only if its comm is the event's and
it started no later than the event (`identify`). Otherwise, or when the process has exited, the
attempt has no `ProcessKey` (pid, comm and uid are still reported).
"""

from __future__ import annotations

import ctypes
import os
import socket
import time
from typing import NamedTuple

from fluxtui.collectors.bpf_loader import compile_program
from fluxtui.collectors.procstat import CLOCK_TICKS, ProcStat, read_stat


class _Event(ctypes.Structure):
    _fields_ = [
        ("ts_ns", ctypes.c_uint64),
        ("tgid", ctypes.c_uint32),
        ("family", ctypes.c_uint16),
        ("dport", ctypes.c_uint16),
        ("daddr", ctypes.c_uint8 * 16),
        ("comm", ctypes.c_char * 16),
        ("uid", ctypes.c_uint32),
        ("tid", ctypes.c_uint32),
    ]


class ConnectAttempt(NamedTuple):
    timestamp: float  # epoch seconds
    pid: int
    start_ticks: int | None  # None: the process could not be identified (see `identify`)
    ppid: int | None  # parent pid, None with start_ticks
    uid: int
    comm: str
    family: int  # 4 or 6
    remote_addr: str  # an AF_INET6 socket's IPv4-mapped destination stays ::ffff:a.b.c.d
    remote_port: int


def identify(pid: int, tid: int, comm: str, event_boot_ns: int, proc: str = "/proc"
             ) -> ProcStat | None:
    """The /proc stat of the process that made an event, or None when the pid now belongs to
    another process (other comm, or started after the event) or to none. The event's comm is
    the thread's: a named thread matches through its /proc/PID/task/TID/comm."""
    stat = read_stat(pid, proc)
    if stat is None:
        return None
    if stat.comm != comm and _thread_comm(pid, tid, proc) != comm:
        return None
    # start_ticks is rounded down to a clock tick, so "<=" holds for the event's own process.
    if stat.start_ticks * 1_000_000_000 // CLOCK_TICKS > event_boot_ns:
        return None
    return stat


def _thread_comm(pid: int, tid: int, proc: str) -> str | None:
    try:
        with open(f"{proc}/{pid}/task/{tid}/comm", "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "replace")
    except OSError:
        return None


class TracerUnavailable(Exception):
    """Why connect tracing cannot run here, phrased for the user."""


class ConnectTracer:
    def __init__(self, ring_pages: int = 64, proc: str = "/proc") -> None:
        if os.geteuid() != 0:
            raise TracerUnavailable("connect tracing needs root")
        try:
            import bcc  # noqa: F401  (optional; compile_program imports it)
        except ImportError as exc:
            raise TracerUnavailable(f"bcc is not importable ({exc})") from None
        try:
            self._bpf = compile_program("connect_trace.bpf.c",
                                        [f"-DRING_PAGES={ring_pages}", "-w"])
        except Exception as exc:  # bcc raises bare Exception for compile/attach errors
            raise TracerUnavailable(f"eBPF program failed to load: {exc}") from None
        self._proc = proc
        self._pending: list[ConnectAttempt] = []
        # Event times are CLOCK_BOOTTIME (bpf_ktime_get_boot_ns).
        self._epoch_offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)
        self._bpf[b"events"].open_ring_buffer(self._on_event)

    def _on_event(self, _ctx: object, data: int, _size: int) -> None:
        # Copied out inside the callback: the ring buffer slot is reused afterwards.
        event = ctypes.cast(data, ctypes.POINTER(_Event)).contents
        family = 4 if event.family == socket.AF_INET else 6
        raw = bytes(event.daddr)
        if family == 4:
            addr = socket.inet_ntop(socket.AF_INET, raw[:4])
        else:
            addr = socket.inet_ntop(socket.AF_INET6, raw)
        pid = event.tgid
        comm = event.comm.decode("utf-8", "replace")
        stat = identify(pid, event.tid, comm, event.ts_ns, self._proc)
        self._pending.append(ConnectAttempt(
            timestamp=self._epoch_offset + event.ts_ns / 1e9,
            pid=pid,
            start_ticks=None if stat is None else stat.start_ticks,
            ppid=None if stat is None else stat.ppid,
            uid=event.uid,
            comm=comm,
            family=family,
            remote_addr=addr,
            remote_port=event.dport,
        ))

    def drain(self) -> list[ConnectAttempt]:
        """Every attempt recorded since the last call, oldest first."""
        self._bpf.ring_buffer_consume()
        out, self._pending = self._pending, []
        return out

    @property
    def dropped(self) -> int:
        """Attempts lost because the ring buffer was full."""
        return int(self._bpf[b"dropped"][ctypes.c_int(0)].value)

    def close(self) -> None:
        self._bpf.cleanup()
