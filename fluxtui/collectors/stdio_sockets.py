"""Which of a process's standard streams (fd 0, 1, 2) are TCP connections, and to where.

/proc/PID/fd/N names a socket as "socket:[INODE]"; the process's own network namespace view
(/proc/PID/net/tcp and tcp6) gives that inode's addresses and state. A connection is inbound
when its local port is one the same namespace listens on. Nothing here imports textual.
"""

from __future__ import annotations

import os
import socket
import struct
from dataclasses import dataclass

LISTEN = "0A"
ESTABLISHED = "01"


@dataclass(frozen=True)
class StdioSocket:
    fds: tuple[int, ...]
    remote: str  # "ip:port"
    inbound: bool


def _addr(hex_addr: str) -> tuple[str, int]:
    ip_hex, port_hex = hex_addr.split(":")
    raw = bytes.fromhex(ip_hex)
    if len(raw) == 4:
        ip = socket.inet_ntop(socket.AF_INET, struct.pack("<I", int(ip_hex, 16)))
    else:  # four little-endian 32-bit words
        words = struct.unpack("<4I", raw)
        ip = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
        if ip.startswith("::ffff:") and "." in ip:
            ip = ip.removeprefix("::ffff:")
    return ip, int(port_hex, 16)


def _tcp_table(pid: int, proc: str) -> tuple[dict[int, tuple[str, str, str]], set[int]]:
    """inode -> (local, remote, state) of connected sockets, and the listening ports."""
    sockets: dict[int, tuple[str, str, str]] = {}
    listening: set[int] = set()
    for name in ("tcp", "tcp6"):
        try:
            with open(f"{proc}/{pid}/net/{name}", encoding="ascii") as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10:
                continue
            local, remote, state, inode = fields[1], fields[2], fields[3], int(fields[9])
            if state == LISTEN:
                listening.add(_addr(local)[1])
            elif inode:
                sockets[inode] = (local, remote, state)
    return sockets, listening


def stdio_sockets(pid: int, proc: str = "/proc") -> list[StdioSocket]:
    inodes: dict[int, list[int]] = {}
    for fd in (0, 1, 2):
        try:
            target = os.readlink(f"{proc}/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.setdefault(int(target[8:-1]), []).append(fd)
    if not inodes:
        return []
    table, listening = _tcp_table(pid, proc)
    out = []
    for inode, fds in inodes.items():
        entry = table.get(inode)
        if entry is None or entry[2] != ESTABLISHED:
            continue
        _, local_port = _addr(entry[0])
        remote_ip, remote_port = _addr(entry[1])
        shown = f"[{remote_ip}]:{remote_port}" if ":" in remote_ip else f"{remote_ip}:{remote_port}"
        out.append(StdioSocket(tuple(fds), shown, local_port in listening))
    return out
