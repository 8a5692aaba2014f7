"""The kernel's audit netlink interface (NETLINK_AUDIT), spoken directly: status (AUDIT_GET /
AUDIT_SET), rules (AUDIT_LIST_RULES / AUDIT_ADD_RULE / AUDIT_DEL_RULE) and the sockets records
arrive on (the daemon's unicast socket, or the read-only multicast group AUDIT_NLGRP_READLOG).
Layouts are those of <linux/audit.h> and <linux/netlink.h>. Nothing here imports textual.

No library is used: pyroute2 has no audit family, and libaudit's Python bindings (python3-audit)
are built for the distribution's Python and its own rule syntax, for what is a few structs here.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass

NETLINK_AUDIT = 9
AUDIT_NLGRP_READLOG = 1

NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4

AUDIT_GET = 1000
AUDIT_SET = 1001
AUDIT_LIST_RULES = 1013
AUDIT_ADD_RULE = 1011
AUDIT_DEL_RULE = 1012

RECORD_TYPES_FROM = 1100  # user and kernel records; replies to requests are below

AUDIT_STATUS_ENABLED = 0x0001
AUDIT_STATUS_PID = 0x0004

_NLMSGHDR = struct.Struct("=IHHII")
_STATUS_FIELDS = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost",
                  "backlog")
_STATUS = struct.Struct("=8I")
RECV_BUFFER = 8 << 20  # the daemon socket's receive buffer: bursts wait here, not in the kernel


class AuditError(OSError):
    """A request the kernel refused (errno and what was asked)."""


@dataclass(frozen=True)
class AuditStatus:
    enabled: int  # 0 off, 1 on, 2 on and locked (rules immutable until reboot)
    failure: int
    pid: int  # the registered audit daemon, 0 when none
    rate_limit: int
    backlog_limit: int
    lost: int  # records the kernel dropped since boot
    backlog: int


def _align(n: int) -> int:
    return (n + 3) & ~3


def parse_messages(data: bytes) -> Iterator[tuple[int, int, int, bytes]]:
    """(type, flags, seq, payload) of each netlink message in one datagram; a truncated tail
    is left out. An audit record (type RECORD_TYPES_FROM and up) comes alone in its datagram
    and its nlmsg_len counts only the text (a kernel quirk kept for compatibility): its payload
    is the rest of the datagram."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, kind, flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if kind >= RECORD_TYPES_FROM and offset == 0:
            yield kind, flags, seq, data[_NLMSGHDR.size:].rstrip(b"\0")
            return
        if length < _NLMSGHDR.size or offset + length > len(data):
            return
        yield kind, flags, seq, data[offset + _NLMSGHDR.size: offset + length]
        offset += _align(length)


def parse_status(payload: bytes) -> AuditStatus:
    if len(payload) < _STATUS.size:
        raise AuditError(errno.EPROTO, f"audit status of {len(payload)} bytes")
    values = dict(zip(_STATUS_FIELDS, _STATUS.unpack_from(payload), strict=True))
    del values["mask"]
    return AuditStatus(**values)


def error_code(payload: bytes) -> int:
    """The (positive) errno of an NLMSG_ERROR payload, 0 for an acknowledgement."""
    (code,) = struct.unpack_from("=i", payload)
    return -code


class AuditSocket:
    """One NETLINK_AUDIT socket. `request` sends a message and returns the replies to it;
    messages of other kinds read meanwhile (records, when this socket is the daemon's) are kept
    in `pending` for the reader."""

    def __init__(self, groups: int = 0, recv_buffer: int = 0) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                  NETLINK_AUDIT)
        try:
            if recv_buffer:
                try:
                    self.sock.setsockopt(socket.SOL_SOCKET, 33, recv_buffer)  # SO_RCVBUFFORCE
                except OSError:
                    self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
            self.sock.bind((0, groups))
        except OSError:
            self.sock.close()
            raise
        self._seq = 0
        self.pending: list[tuple[int, bytes]] = []

    def close(self) -> None:
        self.sock.close()

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, kind: int, payload: bytes, flags: int = NLM_F_REQUEST | NLM_F_ACK) -> int:
        self._seq += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(payload), kind, flags, self._seq, 0)
        self.sock.sendto(header + payload, (0, 0))
        return self._seq

    def request(self, kind: int, payload: bytes = b"", *, ack: bool = True,
                multi: bool = False, timeout: float = 5.0) -> list[tuple[int, bytes]]:
        """Send one request; return its replies (kind, payload) without the acknowledgement.
        Raises AuditError when the kernel answers with an error."""
        flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
        seq = self.send(kind, payload, flags)
        replies: list[tuple[int, bytes]] = []
        self.sock.settimeout(timeout)
        try:
            while True:
                data = self.sock.recv(1 << 16)
                done = False
                for rkind, _rflags, rseq, body in parse_messages(data):
                    if rseq != seq or rkind not in (NLMSG_ERROR, NLMSG_DONE, kind):
                        self.pending.append((rkind, body))
                        continue
                    if rkind == NLMSG_ERROR:
                        code = error_code(body)
                        if code:
                            raise AuditError(code, f"audit request {kind}: {os.strerror(code)}")
                        done = True
                    elif rkind == NLMSG_DONE:
                        done = True
                    else:
                        replies.append((rkind, body))
                        if not ack and not multi:
                            done = True
                if done:
                    return replies
        except TimeoutError:
            raise AuditError(errno.ETIMEDOUT, f"no answer to audit request {kind}") from None
        finally:
            self.sock.settimeout(None)

    # --- the requests ------------------------------------------------------------------------

    def status(self) -> AuditStatus:
        replies = self.request(AUDIT_GET, ack=False)
        for kind, body in replies:
            if kind == AUDIT_GET:
                return parse_status(body)
        raise AuditError(errno.EPROTO, "no audit status in the answer")

    def set_status(self, mask: int, *, enabled: int = 0, pid: int = 0) -> None:
        values = [mask, enabled, 0, pid, 0, 0, 0, 0]
        self.request(AUDIT_SET, _STATUS.pack(*values))

    def list_rules(self) -> list[bytes]:
        """The raw struct audit_rule_data of every rule, in the kernel's order."""
        return [body for kind, body in self.request(AUDIT_LIST_RULES, ack=False, multi=True)
                if kind == AUDIT_LIST_RULES]

    def add_rule(self, rule: bytes) -> None:
        self.request(AUDIT_ADD_RULE, rule)

    def delete_rule(self, rule: bytes) -> None:
        self.request(AUDIT_DEL_RULE, rule)
