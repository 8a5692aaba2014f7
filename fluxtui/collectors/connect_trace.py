"""TCP connect attempts with the process that made them, and their outcomes, from eBPF (bcc).

Why: a connect to a closed port on loopback is refused within microseconds, and the kernel then
clears the socket's destination (tcp_disconnect), so neither a sock_diag query nor the close
notification can show where a port scan went. The tracepoint sock:inet_sock_set_state fires in
the connecting process's context when a socket goes CLOSE -> SYN_SENT, with the destination
already set: that is the observation, filtered in the kernel to this one transition.

The process is identified in the kernel at that moment (bpf_programs/connect_trace.bpf.c): pid,
start time and parent read from the task with offsets from the running kernel's BTF, and its
executable walked once per process. Nothing is read from /proc afterwards, so a scanner that has
exited by the time the ring buffer is drained is still named. Outcomes (SYN_SENT -> ESTABLISHED
or -> CLOSE) are paired with their attempt by the socket's address; an attempt whose outcome has
not arrived yet when the buffer is drained is reported with `outcome` "pending" and its outcome
follows as a `ConnectOutcome`.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import socket
import struct
import time
from collections import OrderedDict
from typing import NamedTuple

from fluxtui.collectors.bpf_loader import LoadError, load_program
from fluxtui.collectors.bpf_structs import (
    FX_CONN_ATTEMPT,
    FX_CONN_ESTABLISHED,
    FX_CONN_FAILED,
    FX_CONN_PROCESS,
    Config,
    ConnectEventC,
    ConnectProcessC,
)
from fluxtui.collectors.btf import Btf, kernel_offsets
from fluxtui.collectors.event_decoder import path_from_parts
from fluxtui.collectors.kernel_event import text

MAX_EXES = 8192  # executables of processes remembered (the kernel describes each once)


class ConnectAttempt(NamedTuple):
    timestamp: float  # epoch seconds
    pid: int
    start_ticks: int | None  # None: the kernel offsets were unavailable
    ppid: int | None  # parent pid, None with start_ticks
    uid: int
    comm: str
    family: int  # 4 or 6
    remote_addr: str  # an AF_INET6 socket's IPv4-mapped destination stays ::ffff:a.b.c.d
    remote_port: int
    exe: str = ""  # the executable, read in the kernel ("" when not known)
    parent_start_ticks: int | None = None
    sock: int = 0  # the kernel socket's address, pairs the attempt with its ConnectOutcome


class ConnectOutcome(NamedTuple):
    timestamp: float
    sock: int
    established: bool  # False: refused, timed out or abandoned before the handshake


class TracerUnavailable(Exception):
    """Why connect tracing cannot run here, phrased for the user."""


class ConnectTracer:
    def __init__(self, ring_pages: int = 128, proc: str = "/proc") -> None:
        if os.geteuid() != 0:
            raise TracerUnavailable("connect tracing needs root")
        if importlib.util.find_spec("bcc") is None:  # the helper process imports it
            raise TracerUnavailable("bcc is not importable (install python3-bpfcc)")
        try:
            offsets = kernel_offsets(Btf.load())
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise TracerUnavailable(f"kernel BTF unusable: {exc}") from None
        try:
            self._program = load_program("connect_trace.bpf.c",
                                         [f"-DRING_PAGES={ring_pages}", "-w"])
        except (LoadError, OSError) as exc:
            raise TracerUnavailable(f"eBPF program failed to load: {exc}") from None
        cfg = Config()
        for name, offset in offsets.items():
            setattr(cfg, name, offset)
        cfg.ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        try:
            self._program["config"].update(0, bytes(cfg))
            self._ring = self._program.ring_buffer("events")
        except (OSError, ValueError, KeyError) as exc:
            self._program.close()
            raise TracerUnavailable(f"eBPF maps could not be set up: {exc}") from None
        self._proc = proc
        self._pending: list[ConnectAttempt | ConnectOutcome] = []
        self._exes: OrderedDict[tuple[int, int], str] = OrderedDict()
        # Event times are CLOCK_BOOTTIME (bpf_ktime_get_boot_ns).
        self._epoch_offset = time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)

    def _on_event(self, raw: bytes) -> None:
        size = len(raw)
        kind = int.from_bytes(raw[:4], "little")
        if kind == FX_CONN_PROCESS and size >= ctypes.sizeof(ConnectProcessC):
            proc = ConnectProcessC.from_buffer_copy(raw)
            self._exes[(proc.tgid, proc.start_ticks)] = path_from_parts(
                proc.exe, proc.exe_parts, proc.cut_parts, proc.exe_flags)
            while len(self._exes) > MAX_EXES:
                self._exes.popitem(last=False)
            return
        if size < ctypes.sizeof(ConnectEventC):
            return
        event = ConnectEventC.from_buffer_copy(raw)
        stamp = self._epoch_offset + event.ts_ns / 1e9
        if kind in (FX_CONN_ESTABLISHED, FX_CONN_FAILED):
            self._pending.append(ConnectOutcome(stamp, event.sk, kind == FX_CONN_ESTABLISHED))
            return
        if kind != FX_CONN_ATTEMPT:
            return
        family = 4 if event.family == socket.AF_INET else 6
        raw_addr = bytes(event.daddr)
        if family == 4:
            addr = socket.inet_ntop(socket.AF_INET, raw_addr[:4])
        else:
            addr = socket.inet_ntop(socket.AF_INET6, raw_addr)
        known = event.start_ticks != 0
        self._pending.append(ConnectAttempt(
            timestamp=stamp,
            pid=event.tgid,
            start_ticks=event.start_ticks if known else None,
            ppid=event.ppid if known else None,
            uid=event.uid,
            comm=text(event.comm),
            family=family,
            remote_addr=addr,
            remote_port=event.dport,
            exe="",  # filled in drain(): the process record may follow the attempt
            parent_start_ticks=event.parent_start_ticks if known else None,
            sock=event.sk,
        ))

    def fileno(self) -> int:
        """Readable (poll) while records wait in the ring buffer."""
        return self._ring.fd

    def drain(self) -> list[ConnectAttempt | ConnectOutcome]:
        """Every attempt and outcome recorded since the last call, oldest first."""
        self._ring.consume(self._on_event)
        out, self._pending = self._pending, []
        return [a._replace(exe=self._exes.get((a.pid, a.start_ticks or 0), ""))
                if isinstance(a, ConnectAttempt) else a for a in out]

    @property
    def dropped(self) -> int:
        """Attempts lost because the ring buffer was full."""
        raw = self._program["dropped"].lookup(0)
        return int.from_bytes(raw[:8], "little") if raw else 0

    def close(self) -> None:
        self._program.close()
