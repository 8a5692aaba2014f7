"""The kernel's process events connector (NETLINK_CONNECTOR, CN_IDX_PROC): exec, exit, uid
change and ptrace attach of every process, pushed as they happen. Needs root.

The guard uses it to keep a per-process cache exact without re-reading /proc on every open:
the kernel queues the event on this socket before the process can act on the change (run the
new program, act as the new uid, be driven by its tracer), so draining the socket after reading
a batch of fanotify events and before answering them sees every change that could have caused
those opens.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

NETLINK_CONNECTOR = 11
CN_IDX_PROC = 1
CN_VAL_PROC = 1
PROC_CN_MCAST_LISTEN = 1
NLMSG_DONE = 3

PROC_EVENT_NONE = 0x00000000
PROC_EVENT_FORK = 0x00000001
PROC_EVENT_EXEC = 0x00000002
PROC_EVENT_UID = 0x00000004
PROC_EVENT_GID = 0x00000040
PROC_EVENT_PTRACE = 0x00000100
PROC_EVENT_EXIT = 0x80000000

WANTED = PROC_EVENT_EXEC | PROC_EVENT_UID | PROC_EVENT_PTRACE | PROC_EVENT_EXIT

_NLMSGHDR = struct.Struct("=IHHII")
_CN_MSG = struct.Struct("=IIIIHH")
_EVENT_HEADER = struct.Struct("=IIQ")  # what, cpu, timestamp_ns
_IDS = struct.Struct("=iiii")  # pid, tgid, then two event-specific ints
_DATA = _NLMSGHDR.size + _CN_MSG.size + _EVENT_HEADER.size


def _kernel_at_least(major: int, minor: int) -> bool:
    try:
        parts = os.uname().release.split(".")
        return (int(parts[0]), int(parts[1].split("-")[0])) >= (major, minor)
    except (ValueError, IndexError):
        return False


class ProcEventsLost(Exception):
    """The receive buffer overflowed: events were dropped (callers must forget cached state)."""


@dataclass(frozen=True, slots=True)
class ProcEvent:
    what: int
    pid: int  # thread id
    tgid: int  # process id
    arg1: int  # PTRACE: tracer pid (0 on detach); UID: real uid
    arg2: int  # PTRACE: tracer tgid; UID: effective uid


class ProcEvents:
    def __init__(self, rcvbuf: int = 4 << 20, wanted: int = WANTED) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                  NETLINK_CONNECTOR)
        try:
            try:
                self.sock.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE (root)
            except OSError:
                self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            self.sock.bind((0, CN_IDX_PROC))
            # Since 6.6 the listen request may carry a filter: only the events asked for.
            if _kernel_at_least(6, 6):
                op = struct.pack("=II", PROC_CN_MCAST_LISTEN, wanted)
            else:
                op = struct.pack("=I", PROC_CN_MCAST_LISTEN)
            cn = _CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(op), 0) + op
            self.sock.send(_NLMSGHDR.pack(_NLMSGHDR.size + len(cn), NLMSG_DONE, 0, 0,
                                          os.getpid()) + cn)
            self.sock.setblocking(False)
        except OSError:
            self.sock.close()
            raise
        self._buf = bytearray(1024)
        self._wanted = wanted

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self, limit: int = 100_000) -> list[ProcEvent]:
        """Every event queued now (up to `limit`). Raises ProcEventsLost after an overflow."""
        events: list[ProcEvent] = []
        view = memoryview(self._buf)
        recv = self.sock.recv_into
        while len(events) < limit:
            try:
                n = recv(view)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == 105:  # ENOBUFS
                    raise ProcEventsLost("process events were dropped") from None
                raise
            if n < _DATA + _IDS.size:
                continue
            what = _EVENT_HEADER.unpack_from(self._buf, _NLMSGHDR.size + _CN_MSG.size)[0]
            if not what & self._wanted:  # before 6.6 the kernel sends every kind
                continue
            pid, tgid, a1, a2 = _IDS.unpack_from(self._buf, _DATA)
            events.append(ProcEvent(what, pid, tgid, a1, a2))
        return events

    def close(self) -> None:
        self.sock.close()
