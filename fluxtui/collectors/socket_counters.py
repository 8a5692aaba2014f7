"""The kernel's TCP and UDP counters of this network namespace, read in a few microseconds, to
tell whether the socket table can have changed since the last sock_diag listing.

A listing walks every bucket of the kernel's TCP established hash (a quarter of a millisecond
with no socket at all, bench/bench_conn_query.py); four listings a second on a quiet host find
the same table each time. What changes the table moves one of these counters:
- a socket hashed or unhashed (TCP listen, connect, accept; UDP bind or autobind; any close):
  `inuse` in /proc/net/sockstat and sockstat6; a TIME-WAIT socket coming or going: `tw`;
- a TCP state change, byte count or RTT that a segment brought or sent: the `Tcp:` segment,
  reset and open counters of /proc/net/snmp (shared by IPv4 and IPv6);
- a UDP datagram queued or sent: the `Udp:` line of /proc/net/snmp and `Udp6*` of snmp6.
A socket closed and another opened in between leaves `inuse` as it was: the close notification
(sock_diag.DestroyWatch) tells that one, so the caller lists after any notification too.

What no counter shows: a queue an application's read or accept(2) shrank, the inode a queued
connection gets when it is accepted, a bound UDP socket connected or disconnected, a SYN-RECV
request expiring without a retransmission. The caller lists at least every
`network.idle_listing_interval` seconds for those.

Each file is held open and re-read with pread(2) (a seq_file regenerates at offset 0); only the
lines that concern TCP and UDP are compared: `sockets: used` counts every socket (Unix ones
too) and would call for a listing at each of them. A kernel whose files lack the expected lines
compares the whole file (more listings, none missed).
"""

from __future__ import annotations

import contextlib
import os

# (file under /proc/net, first line kept, the line that ends what is kept)
SOURCES = (
    ("sockstat", b"TCP:", b"UDPLITE:"),
    ("sockstat6", b"TCP6:", b"UDPLITE6:"),
    ("snmp", b"Tcp:", b"UdpLite:"),
    ("snmp6", b"Udp6", b"UdpLite6"),
)
READ_SIZE = 16384  # snmp6 is about 3 KiB, netstat-sized files are not read


def _kept(data: bytes, first: bytes, end: bytes) -> bytes:
    """The lines from the first starting with `first` up to the one starting with `end`; the
    whole of `data` when there is no such line."""
    if data.startswith(first):
        start = 0
    else:
        start = data.find(b"\n" + first) + 1
        if start == 0:
            return data
    stop = data.find(b"\n" + end, start)
    return data[start:] if stop < 0 else data[start:stop]


class SocketCounters:
    """`read()`: the counters now, as bytes to compare with the last ones (None: unavailable, so
    every poll lists)."""

    def __init__(self, proc_net: str = "/proc/net") -> None:
        self._fds: list[tuple[int, bytes, bytes]] = []
        for name, first, end in SOURCES:
            try:
                fd = os.open(f"{proc_net}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue  # IPv6 off: no sockstat6/snmp6, and no IPv6 sockets to list either
            self._fds.append((fd, first, end))
        if not any(first == b"Tcp:" for _fd, first, _end in self._fds):
            self.close()  # without the segment counters nothing can be told: always list

    @property
    def available(self) -> bool:
        return bool(self._fds)

    def read(self) -> bytes | None:
        if not self._fds:
            return None
        parts = []
        for fd, first, end in self._fds:
            try:
                data = os.pread(fd, READ_SIZE, 0)
            except OSError:
                return None
            parts.append(_kept(data, first, end))
        return b"\0".join(parts)

    def close(self) -> None:
        for fd, _first, _end in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []
