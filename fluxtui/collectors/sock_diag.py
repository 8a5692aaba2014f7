"""TCP and UDP sockets, IPv4 and IPv6, in every state, from the kernel over NETLINK_SOCK_DIAG.

A dump returns an `inet_diag_msg` per socket, with `tcp_info` for TCP (bytes acked/received,
RTT). UDP is listed with one SOCK_DIAG_BY_FAMILY dump per family; TCP with one legacy
TCPDIAG_GETSOCK dump (`struct inet_diag_req`), which the kernel answers for both families in one
walk of its TCP hash tables (it sets the family filter to AF_UNSPEC), where two SOCK_DIAG_BY_FAMILY
dumps walk them twice: most of a listing's cost on a quiet host is that walk of every bucket of
the established hash. A kernel that refuses the legacy request gets the two dumps.
`DestroyWatch` joins the sock_diag multicast groups through which the kernel reports every socket
it frees (Linux >= 4.10), so closes between two dumps are seen too.

Why not pyroute2: its DiagSocket (0.9.7) is marked work in progress ("the signature will be
changed"), decodes tcp_info's wscale bit fields wrongly, and turns each message into a dict-like
object: on 10,000 sockets its dump takes about 15x as long as this decoder's
(bench/bench_connections.py prints both). The wire format is small and stable
(linux/inet_diag.h), so it is decoded here and tested with fixed bytes in
tests/test_connections_decode.py.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from typing import Any, NamedTuple

NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
TCPDIAG_GETSOCK = 18  # legacy inet_diag request: TCP of both families in one dump
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_DUMP = 0x300
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
INET_DIAG_INFO = 2
INET_DIAG_PROTOCOL = 10
# sock_diag multicast groups (linux/sock_diag.h): the kernel sends one message per freed socket.
DESTROY_GROUPS = {
    (socket.AF_INET, socket.IPPROTO_TCP): 1,
    (socket.AF_INET, socket.IPPROTO_UDP): 2,
    (socket.AF_INET6, socket.IPPROTO_TCP): 3,
    (socket.AF_INET6, socket.IPPROTO_UDP): 4,
}
QUERIES = tuple(DESTROY_GROUPS)  # every family x protocol pair we list

NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid
NLATTR = struct.Struct("=HH")  # len, type
# inet_diag_req_v2: family, protocol, ext, pad, states, then a 48-byte inet_diag_sockid (zeros:
# no filter).
REQUEST = struct.Struct("=BBBxI48x")
# inet_diag_req (legacy): family (AF_UNSPEC), src_len, dst_len, ext, a 48-byte inet_diag_sockid
# (zeros), states, dbs.
LEGACY_REQUEST = struct.Struct("=BBBB48xII")
SEQ_OFFSET = 8  # of nlmsg_seq in the netlink header
# inet_diag_msg (72 bytes): family, state, timer, retrans | sport, dport (big endian) | src[16] |
# dst[16] | if | cookie[2] | expires | rqueue | wqueue | uid | inode. Ports are decoded with PORTS.
MESSAGE = struct.Struct("=BB2x4s16s16s4xII4xIIII")
PORTS = struct.Struct(">HH")
# struct tcp_info (linux/tcp.h): offsets are append-only ABI.
TCPI_RTT = struct.Struct("=I")  # tcpi_rtt, microseconds, at offset 68
TCPI_RTT_OFFSET = 68
TCPI_BYTES = struct.Struct("=QQ")  # tcpi_bytes_acked, tcpi_bytes_received at offset 120
TCPI_BYTES_OFFSET = 120
ALL_STATES = 0xFFFFFFFF

# Kernel TCP states (include/net/tcp_states.h) with the names `ss` prints.
TCP_STATES = {
    1: "ESTAB", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 6: "TIME-WAIT",
    7: "UNCONN", 8: "CLOSE-WAIT", 9: "LAST-ACK", 10: "LISTEN", 11: "CLOSING", 12: "SYN-RECV",
}
TCP_ESTABLISHED = 1
UDP_UNCONNECTED = "UNCONN"
PROTO_NAMES = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp"}
CONNECTED_STATES = frozenset({"ESTAB", "SYN-SENT", "SYN-RECV", "FIN-WAIT-1", "FIN-WAIT-2",
                              "CLOSE-WAIT", "LAST-ACK", "CLOSING"})


class DiagError(Exception):
    """The kernel refused a sock_diag request (e.g. udp_diag missing)."""


class SocketEntry(NamedTuple):
    """One socket as the kernel reports it. A NamedTuple rather than a frozen dataclass: a refresh
    builds one per socket, and 10,000 frozen-dataclass inits cost more than the query itself."""

    proto: str  # "tcp" or "udp"
    family: int  # 4 or 6
    state: str  # ss's name: ESTAB, LISTEN, UNCONN, TIME-WAIT, ...
    local_addr: str  # as the kernel has it: an AF_INET6 socket shows ::ffff:a.b.c.d
    local_port: int
    remote_addr: str
    remote_port: int
    uid: int | None  # None in close notifications, which carry no uid
    inode: int  # 0 when no file holds the socket (TIME-WAIT, orphaned)
    cookie: int  # the kernel's socket cookie: unique while the kernel runs
    recv_q: int
    send_q: int
    rtt_us: int | None  # TCP only (tcp_info), None otherwise
    bytes_sent: int | None  # TCP: tcpi_bytes_acked; UDP has no per-socket byte counters
    bytes_received: int | None  # TCP: tcpi_bytes_received

    @property
    def listening(self) -> bool:
        """A TCP listener, or a UDP socket with no peer (what `ss -l` lists)."""
        return self.state == "LISTEN" or (self.proto == "udp" and self.state == UDP_UNCONNECTED)

    @property
    def has_peer(self) -> bool:
        return self.remote_port != 0


def ipv4_mapped(addr: str) -> str | None:
    """The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), else None."""
    if ":" not in addr:
        return None
    mapped = ipaddress.IPv6Address(addr).ipv4_mapped
    return None if mapped is None else str(mapped)


def canonical_ip(addr: str) -> str:
    """One name per host: ::ffff:127.0.0.1 and 127.0.0.1 are the same peer."""
    return ipv4_mapped(addr) or addr


_ADDRESS_CACHE: dict[tuple[int, bytes], str] = {}


def format_address(family: int, raw: bytes) -> str:
    """Text form of an address from inet_diag_sockid: both families in network byte order, IPv4
    in the first 4 bytes."""
    key = (family, raw)
    text = _ADDRESS_CACHE.get(key)
    if text is None:
        if family == socket.AF_INET:
            text = socket.inet_ntop(socket.AF_INET, raw[:4])
        else:
            text = socket.inet_ntop(socket.AF_INET6, raw)
        if len(_ADDRESS_CACHE) > 65536:
            _ADDRESS_CACHE.clear()
        _ADDRESS_CACHE[key] = text
    return text


def build_request(family: int, protocol: int, seq: int) -> bytes:
    ext = 1 << (INET_DIAG_INFO - 1) if protocol == socket.IPPROTO_TCP else 0
    body = REQUEST.pack(family, protocol, ext, ALL_STATES)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), SOCK_DIAG_BY_FAMILY,
                         NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def build_tcp_request(seq: int) -> bytes:
    """The legacy TCPDIAG_GETSOCK dump request: every TCP socket, both families, with tcp_info."""
    body = LEGACY_REQUEST.pack(socket.AF_UNSPEC, 0, 0, 1 << (INET_DIAG_INFO - 1), ALL_STATES, 0)
    return NLMSGHDR.pack(NLMSGHDR.size + len(body), TCPDIAG_GETSOCK,
                         NLM_F_REQUEST | NLM_F_DUMP, seq, 0) + body


def decode_message(body: memoryview | bytes, protocol: int | None) -> SocketEntry:
    """One inet_diag_msg with its attributes. `protocol` None: take it from INET_DIAG_PROTOCOL
    (close notifications carry it; dumps do not, the request says it)."""
    return _decode(body, protocol, MESSAGE.unpack_from(body))[0]


def _decode(body: memoryview | bytes, protocol: int | None, head: tuple[Any, ...]
            ) -> tuple[SocketEntry, int]:
    """The entry, and the offset of its INET_DIAG_INFO attribute (-1: none)."""
    (family, state, ports, src, dst, cookie_lo, cookie_hi, recv_q, send_q, uid, inode) = head
    sport, dport = PORTS.unpack(ports)
    rtt = sent = received = None
    info = -1
    offset = MESSAGE.size
    end = len(body)
    while offset + NLATTR.size <= end:
        attr_len, attr_type = NLATTR.unpack_from(body, offset)
        if attr_len < NLATTR.size:
            break
        payload = offset + NLATTR.size
        size = attr_len - NLATTR.size
        attr_type &= 0x3FFF  # strip NLA_F_NESTED / NLA_F_NET_BYTEORDER
        if attr_type == INET_DIAG_INFO:
            info = offset
            rtt, sent, received = _tcp_values(body, payload, size)
        elif attr_type == INET_DIAG_PROTOCOL and protocol is None and size >= 1:
            protocol = body[payload]
        offset += (attr_len + 3) & ~3
    proto = PROTO_NAMES.get(protocol or 0, str(protocol))
    state_name = TCP_STATES.get(state, str(state))
    if proto == "udp":
        state_name = "ESTAB" if state == TCP_ESTABLISHED else UDP_UNCONNECTED
    return SocketEntry(
        proto=proto,
        family=4 if family == socket.AF_INET else 6,
        state=state_name,
        local_addr=format_address(family, bytes(src)),
        local_port=sport,
        remote_addr=format_address(family, bytes(dst)),
        remote_port=dport,
        uid=uid,
        inode=inode,
        cookie=cookie_lo | cookie_hi << 32,
        recv_q=recv_q,
        send_q=send_q,
        rtt_us=rtt,
        bytes_sent=sent,
        bytes_received=received,
    ), info


def _tcp_values(body: memoryview | bytes, payload: int, size: int
                ) -> tuple[int | None, int | None, int | None]:
    """rtt, bytes acked, bytes received from a tcp_info of `size` bytes (None: too short)."""
    rtt = sent = received = None
    if size >= TCPI_RTT_OFFSET + TCPI_RTT.size:
        (rtt,) = TCPI_RTT.unpack_from(body, payload + TCPI_RTT_OFFSET)
    if size >= TCPI_BYTES_OFFSET + TCPI_BYTES.size:
        sent, received = TCPI_BYTES.unpack_from(body, payload + TCPI_BYTES_OFFSET)
    return rtt, sent, received


# What an entry is made of, read without decoding (bytes compared, not parsed): of the
# inet_diag_msg, family and state | the socket id (ports, addresses, interface, cookie) | the
# queues, uid and inode (timer, retransmits and expiry, which tick on an idle socket, left out);
# of the INET_DIAG_INFO attribute, its header, tcpi_rtt and the two byte counters.
SAME_MESSAGE = struct.Struct("=2s2x48s4x16s")
SAME_TCP_INFO = struct.Struct(f"=HH{TCPI_RTT_OFFSET}x4s"
                              f"{TCPI_BYTES_OFFSET - TCPI_RTT_OFFSET - 4}x16s")


class _Known(NamedTuple):
    """A socket as the last listing decoded it: what its entry was made of, and the entry."""

    info: int  # offset of the INET_DIAG_INFO attribute in the message, -1 without one
    same_info: tuple[Any, ...] | None  # SAME_TCP_INFO there (None: too short to compare)
    head: tuple[bytes, ...]  # SAME_MESSAGE
    entry: SocketEntry


def iter_messages(data: memoryview | bytes):
    """(type, flags, seq, body) of each netlink message in one datagram."""
    offset = 0
    end = len(data)
    while offset + NLMSGHDR.size <= end:
        length, msg_type, flags, seq, _pid = NLMSGHDR.unpack_from(data, offset)
        if length < NLMSGHDR.size or offset + length > end:
            raise DiagError(f"truncated netlink message ({length} bytes at {offset} of {end})")
        yield msg_type, flags, seq, data[offset + NLMSGHDR.size : offset + length]
        offset += (length + 3) & ~3


def _error_code(body: memoryview | bytes) -> int:
    return -struct.unpack_from("=i", body)[0]


class SockDiag:
    """A NETLINK_SOCK_DIAG socket for dumps. Listing sockets needs no privilege: the kernel shows
    every user the same table as /proc/net/tcp."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_SOCK_DIAG)
        try:
            self._sock.bind((0, 0))
        except OSError:
            self._sock.close()
            raise
        self._seq = 0
        # A dump datagram holds at most 32 KiB (SKB_WITH_OVERHEAD(32768) in netlink_dump).
        self._buffer = bytearray(1 << 16)
        self._view = memoryview(self._buffer)
        # Requests built once; each dump writes its sequence number into its own.
        self._requests: dict[tuple[int, int], bytearray] = {
            query: bytearray(build_request(*query, 0)) for query in QUERIES}
        self._tcp_request = bytearray(build_tcp_request(0))
        self.legacy_tcp: str | None = None  # why the kernel refused the one-walk TCP dump
        # socket id (SAME_MESSAGE) -> the socket as the last dump_all decoded it: a socket whose
        # fields are the same is handed on as the same SocketEntry object, undecoded (`is` tells
        # a caller that nothing changed).
        self._known: dict[bytes, _Known] = {}
        self._seen: dict[bytes, _Known] = {}

    def close(self) -> None:
        self._sock.close()

    def dump(self, family: int, protocol: int) -> list[SocketEntry]:
        """The sockets of one family and protocol (a SOCK_DIAG_BY_FAMILY dump)."""
        request = self._requests.get((family, protocol))
        if request is None:
            request = bytearray(build_request(family, protocol, 0))
        return self._dump(request, SOCK_DIAG_BY_FAMILY, protocol,
                          _query_name(family, protocol), cached=False)

    def dump_tcp(self) -> list[SocketEntry]:
        """Every TCP socket of both families in one dump (the legacy TCPDIAG_GETSOCK request:
        one walk of the kernel's TCP tables instead of one per family)."""
        return self._dump(self._tcp_request, TCPDIAG_GETSOCK, socket.IPPROTO_TCP, "tcp",
                          cached=False)

    def _dump(self, request: bytearray, reply_type: int, protocol: int, name: str,
              cached: bool = True) -> list[SocketEntry]:
        """Send one dump request and read its replies. `cached`: a socket whose fields are the
        last listing's (see SAME_MESSAGE) is handed on as the same SocketEntry, undecoded."""
        self._seq = seq = (self._seq + 1) & 0xFFFFFFFF
        struct.pack_into("=I", request, SEQ_OFFSET, seq)
        self._sock.send(request)
        entries: list[SocketEntry] = []
        append = entries.append
        buffer, view = self._buffer, self._view
        header = NLMSGHDR.unpack_from
        same_message, same_info = SAME_MESSAGE.unpack_from, SAME_TCP_INFO.unpack_from
        known, seen = self._known, self._seen
        recv_into = self._sock.recv_into
        while True:
            end = recv_into(buffer)
            offset = 0
            while offset + NLMSGHDR.size <= end:
                length, msg_type, _flags, msg_seq, _pid = header(buffer, offset)
                if length < NLMSGHDR.size or offset + length > end:
                    raise DiagError(f"truncated netlink message ({length} bytes at {offset} "
                                    f"of {end})")
                body = offset + NLMSGHDR.size
                next_offset = offset + ((length + 3) & ~3)
                if msg_seq != seq:
                    pass  # a reply to an earlier, abandoned request
                elif msg_type == reply_type:
                    if length < NLMSGHDR.size + MESSAGE.size:
                        raise DiagError(f"{name}: short inet_diag_msg ({length} bytes)")
                    if not cached:
                        append(decode_message(view[body:offset + length], protocol))
                    else:
                        head = same_message(buffer, body)
                        old = known.get(head[1])
                        if old is not None and old.head == head and (
                                old.info < 0 or (old.same_info is not None
                                                 and old.info + SAME_TCP_INFO.size
                                                 <= length - NLMSGHDR.size
                                                 and same_info(buffer, body + old.info)
                                                 == old.same_info)):
                            seen[head[1]] = old
                            append(old.entry)
                        else:
                            append(self._decode_new(view[body:offset + length], protocol,
                                                    head))
                elif msg_type == NLMSG_DONE:
                    return entries
                elif msg_type == NLMSG_ERROR:
                    code = _error_code(view[body:offset + length])
                    if code != 0:
                        raise DiagError(f"{name}: {os.strerror(code)}")
                offset = next_offset

    def _decode_new(self, body: memoryview, protocol: int, head: tuple[bytes, ...]
                    ) -> SocketEntry:
        entry, info = _decode(body, protocol, MESSAGE.unpack_from(body))
        same_info = None
        if info >= 0 and info + SAME_TCP_INFO.size <= len(body):
            same_info = SAME_TCP_INFO.unpack_from(body, info)
        self._seen[head[1]] = _Known(info, same_info, head, entry)
        return entry

    def dump_all(self) -> tuple[list[SocketEntry], dict[str, str]]:
        """Every TCP and UDP socket of both families; errors per query (a kernel without
        udp_diag still lists TCP)."""
        entries: list[SocketEntry] = []
        errors: dict[str, str] = {}
        self._known, self._seen = self._seen, {}  # only the last listing's sockets are kept
        for family, protocol in QUERIES:
            if protocol == socket.IPPROTO_TCP and self.legacy_tcp is None:
                if family != socket.AF_INET:
                    continue  # listed with AF_INET's, in one dump
                try:
                    entries.extend(self._dump(self._tcp_request, TCPDIAG_GETSOCK,
                                              socket.IPPROTO_TCP, "tcp"))
                    continue
                except DiagError as exc:  # refused: one dump per family from now on
                    self.legacy_tcp = str(exc)
                except OSError:  # this time, one dump per family
                    self._drain()
            try:
                entries.extend(self._dump(self._requests[family, protocol], SOCK_DIAG_BY_FAMILY,
                                          protocol, _query_name(family, protocol)))
            except (DiagError, OSError) as exc:
                errors[_query_name(family, protocol)] = str(exc)
        return entries, errors

    def _drain(self) -> None:
        """Drop what is left of an abandoned dump (its replies would be skipped by their
        sequence number anyway; this keeps them from filling the socket buffer)."""
        while True:
            try:
                self._sock.recv_into(self._buffer, 0, socket.MSG_DONTWAIT)
            except OSError:
                return


def _query_name(family: int, protocol: int) -> str:
    return f"{PROTO_NAMES[protocol]}{4 if family == socket.AF_INET else 6}"


class DestroyWatch:
    """The kernel's close notifications: one message per freed TCP/UDP socket, with its
    addresses, cookie, final state and (TCP) final tcp_info; no uid and no inode, because the file
    is gone by then. Messages the socket buffer could not hold are counted in `lost`."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                                   NETLINK_SOCK_DIAG)
        try:
            self._sock.bind((0, 0))
            for group in DESTROY_GROUPS.values():
                self._sock.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
            self._sock.setblocking(False)
            self._enlarge_buffer(8 << 20)
        except OSError:
            self._sock.close()
            raise
        self._buffer = bytearray(1 << 16)
        self.lost = 0  # notifications dropped by the kernel (ENOBUFS)

    def _enlarge_buffer(self, size: int) -> None:
        try:  # SO_RCVBUFFORCE ignores rmem_max but needs CAP_NET_ADMIN
            self._sock.setsockopt(socket.SOL_SOCKET, 33, size)  # SO_RCVBUFFORCE
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def read(self, limit: int = 100000) -> list[SocketEntry]:
        """Everything queued now, without blocking."""
        out: list[SocketEntry] = []
        view = memoryview(self._buffer)
        while len(out) < limit:
            try:
                size = self._sock.recv_into(self._buffer)
            except BlockingIOError:
                break
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.lost += 1  # at least one; the kernel does not say how many
                    continue
                raise
            for msg_type, _flags, _seq, body in iter_messages(view[:size]):
                if msg_type == SOCK_DIAG_BY_FAMILY:
                    entry = decode_message(body, None)
                    out.append(entry._replace(uid=None))
        return out
