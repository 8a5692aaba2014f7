"""The sock_diag decoder on fixed bytes, laid out as linux/inet_diag.h and linux/tcp.h define them,
the ECS form of connection events, the tracer's records (attempts, outcomes, processes), and
ConnectionsComponent's diffing, close handling and byte accounting on made-up socket tables. No
kernel needed."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest

from fluxtui.capabilities.connection_tracker import (
    MAX_PENDING_DETECTIONS,
    UDP_LISTEN_LISTINGS,
    ConnectionEvent,
    ConnectionsComponent,
    SocketRow,
)
from fluxtui.collectors.sock_diag import (
    NLMSG_DONE,
    NLMSGHDR,
    SOCK_DIAG_BY_FAMILY,
    TCPDIAG_GETSOCK,
    DiagError,
    SockDiag,
    SocketEntry,
    build_request,
    build_tcp_request,
    canonical_ip,
    decode_message,
    ipv4_mapped,
    iter_messages,
)
from fluxtui.collectors.socket_owners import Owner
from fluxtui.config import NetworkConfig
from fluxtui.detection.network_rules import NetRules
from fluxtui.events import Alert, ComponentState, ProcessKey


def diag_msg(family: int, state: int, sport: int, dport: int, src: bytes, dst: bytes,
             cookie: int, uid: int, inode: int, attrs: bytes = b"") -> bytes:
    """An inet_diag_msg, field by field as in linux/inet_diag.h."""
    body = struct.pack("=BBBB", family, state, 0, 0)
    body += struct.pack(">HH", sport, dport)  # network byte order
    body += src.ljust(16, b"\0") + dst.ljust(16, b"\0")
    body += struct.pack("=I", 0)  # idiag_if
    body += struct.pack("=II", cookie & 0xFFFFFFFF, cookie >> 32)
    body += struct.pack("=IIIII", 0, 3, 4, uid, inode)  # expires, rqueue, wqueue, uid, inode
    assert len(body) == 72
    return body + attrs


def attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def tcp_info(rtt_us: int, acked: int, received: int, size: int = 232) -> bytes:
    info = bytearray(size)
    struct.pack_into("=I", info, 68, rtt_us)
    if size >= 136:
        struct.pack_into("=QQ", info, 120, acked, received)
    return bytes(info)


def test_ipv4_tcp_with_tcp_info() -> None:
    raw = diag_msg(socket.AF_INET, 1, 40000, 443, bytes([10, 0, 0, 7]), bytes([192, 0, 2, 1]),
                   cookie=(7 << 32) | 9, uid=1000, inode=123456,
                   attrs=attr(2, tcp_info(1500, 1_000_001, 42)))
    entry = decode_message(raw, socket.IPPROTO_TCP)
    assert entry == SocketEntry(
        proto="tcp", family=4, state="ESTAB", local_addr="10.0.0.7", local_port=40000,
        remote_addr="192.0.2.1", remote_port=443, uid=1000, inode=123456, cookie=(7 << 32) | 9,
        recv_q=3, send_q=4, rtt_us=1500, bytes_sent=1_000_001, bytes_received=42)
    assert not entry.listening and entry.has_peer


def test_ipv6_and_ipv4_mapped_addresses() -> None:
    loopback6 = bytes(15) + b"\x01"
    mapped = bytes(10) + b"\xff\xff" + bytes([127, 0, 0, 1])
    entry = decode_message(diag_msg(socket.AF_INET6, 2, 51000, 8080, loopback6, mapped, 5, 0, 9),
                           socket.IPPROTO_TCP)
    assert entry.family == 6 and entry.state == "SYN-SENT"
    assert entry.local_addr == "::1"
    assert entry.remote_addr == "::ffff:127.0.0.1"  # shown as the kernel has it
    assert ipv4_mapped(entry.remote_addr) == "127.0.0.1"
    assert canonical_ip(entry.remote_addr) == "127.0.0.1"
    assert ipv4_mapped("::1") is None and ipv4_mapped("127.0.0.1") is None
    assert entry.rtt_us is None and entry.bytes_sent is None  # no tcp_info attribute


def test_ipv6_address_byte_order() -> None:
    # 2001:db8::1:2 in network order: the decoder must not swap 32-bit words.
    addr = bytes.fromhex("20010db8000000000000000000010002")
    entry = decode_message(diag_msg(socket.AF_INET6, 10, 22, 0, addr, bytes(16), 1, 0, 77),
                           socket.IPPROTO_TCP)
    assert entry.local_addr == "2001:db8::1:2"
    assert entry.remote_addr == "::" and entry.remote_port == 0
    assert entry.state == "LISTEN" and entry.listening


def test_udp_states_and_no_byte_counters() -> None:
    unconnected = decode_message(diag_msg(socket.AF_INET, 7, 53, 0, bytes([127, 0, 0, 53]),
                                          bytes(4), 2, 0, 88), socket.IPPROTO_UDP)
    assert unconnected.proto == "udp" and unconnected.state == "UNCONN"
    assert unconnected.listening and unconnected.bytes_sent is None
    connected = decode_message(diag_msg(socket.AF_INET, 1, 5000, 53, bytes([127, 0, 0, 1]),
                                        bytes([127, 0, 0, 53]), 3, 0, 89), socket.IPPROTO_UDP)
    assert connected.state == "ESTAB" and not connected.listening


def test_short_tcp_info_from_an_older_kernel() -> None:
    raw = diag_msg(socket.AF_INET, 1, 1, 2, bytes(4), bytes(4), 1, 0, 1,
                   attrs=attr(2, tcp_info(800, 0, 0, size=104)))
    entry = decode_message(raw, socket.IPPROTO_TCP)
    assert entry.rtt_us == 800
    assert entry.bytes_sent is None and entry.bytes_received is None  # absent, not zero


def test_protocol_from_attribute_in_close_notifications() -> None:
    raw = diag_msg(socket.AF_INET, 7, 33866, 53563, bytes([127, 0, 0, 1]),
                   bytes([127, 0, 0, 1]), 11, 0, 0, attrs=attr(10, b"\x11"))
    assert decode_message(raw, None).proto == "udp"


def test_request_layout() -> None:
    raw = build_request(socket.AF_INET6, socket.IPPROTO_TCP, seq=7)
    length, kind, flags, seq, pid = NLMSGHDR.unpack_from(raw)
    assert (length, kind, flags, seq, pid) == (72, SOCK_DIAG_BY_FAMILY, 0x301, 7, 0)
    family, proto, ext, pad, states = struct.unpack_from("=BBBBI", raw, 16)
    assert (family, proto, ext, pad, states) == (10, 6, 1 << 1, 0, 0xFFFFFFFF)
    assert raw[24:] == bytes(48)  # no socket-id filter
    udp = build_request(socket.AF_INET, socket.IPPROTO_UDP, seq=1)
    assert udp[18] == 0  # no tcp_info requested for UDP


def test_tcp_request_layout() -> None:
    """The one-walk TCP listing: a legacy inet_diag_req, family AF_UNSPEC (both), tcp_info."""
    raw = build_tcp_request(seq=9)
    length, kind, flags, seq, pid = NLMSGHDR.unpack_from(raw)
    assert (length, kind, flags, seq, pid) == (76, TCPDIAG_GETSOCK, 0x301, 9, 0)
    family, src_len, dst_len, ext = struct.unpack_from("=BBBB", raw, 16)
    assert (family, src_len, dst_len, ext) == (socket.AF_UNSPEC, 0, 0, 1 << 1)
    assert raw[20:68] == bytes(48)  # no socket-id filter
    assert struct.unpack_from("=II", raw, 68) == (0xFFFFFFFF, 0)  # every state


class FakeNetlink:
    """Answers each dump request with `replies[request type]` (inet_diag_msg bodies) then
    NLMSG_DONE, under the request's sequence number, as the kernel does."""

    def __init__(self) -> None:
        self.replies: dict[int, list[bytes]] = {}
        self._pending = b""

    def send(self, request: bytes | bytearray) -> int:
        _, kind, _, seq, _ = NLMSGHDR.unpack_from(request)
        out = b""
        for body in [*self.replies.get(kind, []), None]:
            msg_type, payload = (NLMSG_DONE, bytes(4)) if body is None else (kind, body)
            out += NLMSGHDR.pack(16 + len(payload), msg_type, 2, seq, 0) + payload
            out += bytes(-len(out) % 4)
        self._pending = out
        return len(request)

    def recv_into(self, buffer: bytearray, *args: object) -> int:
        if not self._pending:
            raise BlockingIOError
        data, self._pending = self._pending, b""
        buffer[:len(data)] = data
        return len(data)

    def close(self) -> None:
        pass


def test_an_unchanged_socket_is_handed_on_undecoded_as_the_same_entry() -> None:
    """A listing decodes only the sockets whose fields changed since the last one: the same
    SocketEntry object comes back for one whose reported fields are all the same (its timer
    and expiry, which tick on an idle socket, are not among them), a new one for any change of
    state, queue, rtt or bytes; only the last listing's sockets are remembered."""
    diag = SockDiag()
    diag._sock.close()
    fake = FakeNetlink()
    diag._sock = fake  # type: ignore[assignment]
    src, dst = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 2])

    def tcp(rtt: int = 100, acked: int = 5, state: int = 1, expires: int = 0,
            recv_q: int = 0) -> bytes:
        raw = bytearray(diag_msg(socket.AF_INET, state, 40000, 443, src, dst, cookie=77,
                                 uid=0, inode=9,
                                 attrs=attr(8, b"\0") + attr(2, tcp_info(rtt, acked, 1))))
        raw[2] = 2  # idiag_timer: keepalive
        struct.pack_into("=II", raw, 52, expires, recv_q)
        return bytes(raw)

    def listed(*tcp_bodies: bytes) -> list[SocketEntry]:
        fake.replies = {TCPDIAG_GETSOCK: list(tcp_bodies), SOCK_DIAG_BY_FAMILY: [udp]}
        entries, errors = diag.dump_all()
        assert errors == {}
        return entries

    udp = diag_msg(socket.AF_INET, 7, 5353, 0, src, bytes(4), 78, 0, 10)
    first, _, udp_entry = listed(tcp())  # UDP: the same reply to each family's request
    assert first == decode_message(tcp(), socket.IPPROTO_TCP)
    again, _, udp_again = listed(tcp(expires=5000))
    assert again is first and udp_again is udp_entry
    for changed in (tcp(rtt=101), tcp(acked=6), tcp(state=8), tcp(recv_q=1)):
        entry = listed(changed)[0]
        assert entry is not first
        assert entry == decode_message(changed, socket.IPPROTO_TCP)
        assert listed(tcp())[0] is not first  # forgotten: the listing before did not have it
    fake.replies = {}
    diag.dump_all()
    assert diag._known and not diag._seen  # the last listing had nothing
    diag.dump_all()
    assert not diag._known
    diag.close()


def test_truncated_message_is_an_error() -> None:
    header = NLMSGHDR.pack(200, SOCK_DIAG_BY_FAMILY, 0, 1, 0)
    with pytest.raises(DiagError, match="truncated"):
        list(iter_messages(header + bytes(40)))


def fake_process(proc, pid: int, comm: str, ppid: int, start_ticks: int,
                 threads: dict[int, str] | None = None) -> None:
    """A /proc/PID directory as proc_pid_stat(5) lays out stat: field 4 ppid, field 22 start."""
    d = proc / str(pid)
    (d / "task").mkdir(parents=True)
    fields = ["S", str(ppid)] + ["0"] * 17 + [str(start_ticks), "0", "0"]
    (d / "stat").write_text(f"{pid} ({comm}) {' '.join(fields)}\n")
    (d / "statm").write_text("100 10 0 0 0 0 0\n")
    for tid, name in (threads or {}).items():
        (d / "task" / str(tid)).mkdir()
        (d / "task" / str(tid) / "comm").write_text(name + "\n")


A = Owner(100, 11, "server")
B = Owner(200, 22, "client")
C = Owner(300, 33, "udpd")


def sock(cookie: int, proto: str, state: str, lport: int, rport: int = 0,
         sent: int | None = None, received: int | None = None, inode: int = 0) -> SocketEntry:
    return SocketEntry(proto, 4, state, "0.0.0.0" if not rport else "10.0.0.1", lport,
                       "10.0.0.5" if rport else "0.0.0.0", rport, 1000, inode or cookie + 5000,
                       cookie, 0, 0, None, sent, received)


class Recorder:
    def __init__(self) -> None:
        self.events: list[ConnectionEvent] = []

    def publish(self, event: object) -> None:
        assert isinstance(event, ConnectionEvent)
        self.events.append(event)

    def take(self) -> list[tuple[str, int, str, bool]]:
        out = [(e.action, e.entry.cookie, e.observed_by, e.short_lived) for e in self.events]
        self.events.clear()
        return out


def listing(comp: ConnectionsComponent, now: float, rows: list[tuple[SocketEntry, tuple]]
            ) -> dict[ProcessKey, list[int]]:
    """What one query does with its table, without the kernel."""
    table = {e.cookie: SocketRow(e, owners) for e, owners in rows}
    comp._diff(now, table)
    comp._table = table
    moved = comp._account_bytes(table, first=not comp._first_query_done)
    comp._first_query_done = True
    return moved


def alerts(comp: ConnectionsComponent) -> list[tuple[str, int]]:
    out = [(d.alert.rule_id, d.alert.extra["source"]["port"]) for d in comp._detections]
    comp._detections.clear()
    return out


def test_component_diff_close_and_bytes_on_made_up_tables() -> None:
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    bus = Recorder()
    comp._bus = bus  # type: ignore[assignment]
    listen_a = sock(1, "tcp", "LISTEN", 8080)
    # 1. Start-up is the baseline: no events, byte counters only remembered.
    moved = listing(comp, 100.0, [
        (listen_a, (A,)),
        (sock(2, "tcp", "ESTAB", 8080, 40001, sent=100, received=200), (A,)),
    ])
    assert bus.take() == [] and moved == {}
    # 2. A new TCP listener and an outgoing connection are news; unconnected UDP sockets are
    # not yet (a DNS client's and a service's look the same at first).
    moved = listing(comp, 101.0, [
        (listen_a, (A,)),
        (sock(2, "tcp", "ESTAB", 8080, 40001, sent=150, received=260), (A,)),
        (sock(3, "tcp", "LISTEN", 9090), (B,)),
        (sock(4, "tcp", "ESTAB", 50000, 443, sent=10, received=20), (B,)),
        (sock(5, "udp", "UNCONN", 40000), (B,)),
        (sock(6, "udp", "UNCONN", 5353), (C,)),
        (sock(8, "udp", "UNCONN", 45000), (C,)),
    ])
    assert bus.take() == [("listening", 3, "query", False), ("opened", 4, "query", False)]
    assert moved == {A.key: [50, 60], B.key: [10, 20]}
    assert alerts(comp) == [("network.new_listener", 9090)]
    # 3. The DNS client socket goes before it counts as listening: no event at all. The
    # connection of A closes: one "closed".
    moved = listing(comp, 102.0, [
        (listen_a, (A,)),
        (sock(3, "tcp", "LISTEN", 9090), (B,)),
        (sock(4, "tcp", "ESTAB", 50000, 443, sent=10, received=20), (B,)),
        (sock(6, "udp", "UNCONN", 5353), (C,)),
        (sock(8, "udp", "UNCONN", 45000), (C,)),
    ])
    assert bus.take() == [("closed", 2, "query", False)]
    assert moved == {}
    # 4. The UDP socket on port 5353 is still there, unconnected: a listener, alerted; the one
    # on an ephemeral port (bound to port 0 by a client) never is.
    listing(comp, 103.0, [
        (listen_a, (A,)),
        (sock(3, "tcp", "LISTEN", 9090), (B,)),
        (sock(4, "tcp", "ESTAB", 50000, 443, sent=10, received=20), (B,)),
        (sock(6, "udp", "UNCONN", 5353), (C,)),
        (sock(8, "udp", "UNCONN", 45000), (C,)),
    ])
    assert bus.take() == [("listening", 6, "query", False)]
    assert alerts(comp) == [("network.new_listener", 5353)]
    # 5. The kernel reports connection 4 closed with its final counters: one "closed", the
    # bytes since the last listing go to its owner. Reported again, or missing from the next
    # listing: nothing more.
    final = sock(4, "tcp", "UNCONN", 50000, 443, sent=40, received=70)._replace(uid=None)
    comp._on_destroyed([final])
    comp._on_destroyed([final])
    assert bus.take() == [("closed", 4, "close-notification", False)]
    assert comp._bytes == {B.key: [30, 50]}
    # A socket opened and closed between two listings: seen only at its close, owner unknown.
    comp._on_destroyed([sock(7, "tcp", "UNCONN", 50001, 22, sent=1, received=1)])
    listing(comp, 104.0, [
        (listen_a, (A,)),
        (sock(3, "tcp", "LISTEN", 9090), (B,)),
        (sock(6, "udp", "UNCONN", 5353), (C,)),
        (sock(8, "udp", "UNCONN", 45000), (C,)),
    ])
    events = list(bus.events)
    assert bus.take() == [("closed", 7, "close-notification", True)]
    assert events[0].owners is None
    # 6. The listeners go: each reported closed once.
    listing(comp, 105.0, [])
    assert sorted(bus.take()) == [("closed", 1, "query", False), ("closed", 3, "query", False),
                                  ("closed", 6, "query", False)]
    listing(comp, 106.0, [])
    assert bus.take() == []


def test_stop_leaves_resources_of_a_thread_that_did_not_end() -> None:
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    comp.stop_timeout = 0.05
    release = threading.Event()
    comp._thread = threading.Thread(target=release.wait, args=(30,), daemon=True)
    comp._thread.start()
    comp._wake_r, comp._wake_w = os.pipe()
    fds = (comp._wake_r, comp._wake_w)
    try:
        comp.stop()
        for fd in fds:
            os.fstat(fd)  # still open: the thread may still select() on it
    finally:
        release.set()
        comp._thread.join(timeout=30)
        for fd in fds:
            os.close(fd)


def test_pending_detections_are_bounded_and_drops_counted() -> None:
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    found = NetRules(NetworkConfig()).listener(1.0, A.key, A.pid, A.name, "tcp", "0.0.0.0", 1)
    assert isinstance(found[0].alert, Alert)
    comp._add_detections(found * (MAX_PENDING_DETECTIONS + 5))
    assert len(comp._detections) == MAX_PENDING_DETECTIONS
    status = comp.status()
    assert status.state is ComponentState.RUNNING
    assert "detections dropped 5" in status.detail


def test_tracer_records_decode_to_attempts_outcomes_and_executables() -> None:
    """Attempt and process records as connect_trace.bpf.c writes them: the executable follows
    the attempt and is joined at drain time; an outcome pairs by the socket's address."""
    import ctypes

    from fluxtui.collectors import bpf_structs as bs
    from fluxtui.collectors.connect_trace import ConnectAttempt, ConnectOutcome, ConnectTracer

    tracer = object.__new__(ConnectTracer)
    tracer._pending = []
    tracer._exes = __import__("collections").OrderedDict()
    tracer._epoch_offset = 1_000.0

    class _Ring:  # records arrive through feed() below
        def consume(self, callback: object) -> int:
            return 0

    tracer._ring = _Ring()

    def feed(record: ctypes.Structure) -> None:
        tracer._on_event(bytes(record))

    attempt = bs.ConnectEventC(kind=bs.FX_CONN_ATTEMPT, tgid=4242, ts_ns=2_000_000_000,
                               sk=0xFFFF8880DEAD0000, start_ticks=777, parent_start_ticks=70,
                               tid=4243, ppid=4000, uid=1000, family=socket.AF_INET,
                               dport=4444, comm=b"python3")
    attempt.daddr[:4] = list(socket.inet_aton("127.0.0.1"))
    proc = bs.ConnectProcessC(kind=bs.FX_CONN_PROCESS, tgid=4242, start_ticks=777, exe_parts=3)
    for i, part in enumerate((b"python3.11", b"bin", b"usr")):
        proc.exe[i].value = part
    outcome = bs.ConnectEventC(kind=bs.FX_CONN_FAILED, ts_ns=2_100_000_000,
                               sk=0xFFFF8880DEAD0000)
    for record in (attempt, proc, outcome):
        feed(record)
    got = tracer.drain()
    assert got == [
        ConnectAttempt(timestamp=1002.0, pid=4242, start_ticks=777, ppid=4000, uid=1000,
                       comm="python3", family=4, remote_addr="127.0.0.1", remote_port=4444,
                       exe="/usr/bin/python3.11", parent_start_ticks=70,
                       sock=0xFFFF8880DEAD0000),
        ConnectOutcome(timestamp=1002.1, sock=0xFFFF8880DEAD0000, established=False)]


def _fake_stdio(proc, pid: int, fds: dict[int, str], tcp: list[str], tcp6: list[str] = ()
                ) -> None:
    d = proc / str(pid)
    (d / "fd").mkdir(parents=True)
    (d / "net").mkdir()
    for fd, target in fds.items():
        os.symlink(target, d / "fd" / str(fd))
    header = ("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid"
              "  timeout inode\n")
    (d / "net" / "tcp").write_text(header + "".join(line + "\n" for line in tcp))
    (d / "net" / "tcp6").write_text(header + "".join(line + "\n" for line in tcp6))


def _tcp_line(local: str, remote: str, state: str, inode: int) -> str:
    return (f"   0: {local} {remote} {state} 00000000:00000000 00:00000000 00000000     0"
            f"        0 {inode}")


def test_stdio_sockets_tell_outbound_from_inbound(tmp_path) -> None:
    from fluxtui.collectors.stdio_sockets import StdioSocket, stdio_sockets

    listen = _tcp_line("0100007F:115C", "00000000:0000", "0A", 10)  # 127.0.0.1:4444 LISTEN
    out = _tcp_line("0100007F:D431", "0100007F:1F90", "01", 11)  # :54321 -> 127.0.0.1:8080
    inbound = _tcp_line("0100007F:115C", "0100007F:C350", "01", 12)  # :4444 <- :50000
    _fake_stdio(tmp_path, 1, {0: "socket:[11]", 1: "socket:[11]", 2: "/dev/pts/0"},
                [listen, out, inbound])
    _fake_stdio(tmp_path, 2, {0: "socket:[12]", 1: "socket:[12]"}, [listen, out, inbound])
    _fake_stdio(tmp_path, 3, {0: "pipe:[5]", 1: "/dev/null"}, [listen, out])
    v6 = _tcp_line("0000000000000000FFFF00000100007F:D431",
                   "0000000000000000FFFF00000200A8C0:01BB", "01", 13)
    _fake_stdio(tmp_path, 4, {1: "socket:[13]"}, [], [v6])
    proc = str(tmp_path)
    assert stdio_sockets(1, proc) == [StdioSocket((0, 1), "127.0.0.1:8080", False)]
    assert stdio_sockets(2, proc) == [StdioSocket((0, 1), "127.0.0.1:50000", True)]
    assert stdio_sockets(3, proc) == []
    assert stdio_sockets(4, proc) == [StdioSocket((1,), "192.168.0.2:443", False)]
    assert stdio_sockets(5, proc) == []  # gone


class FakeDiag:
    """dump_all() hands on `entries` as they are: the same objects while unchanged, as
    SockDiag does."""

    def __init__(self) -> None:
        self.entries: list[SocketEntry] = []

    def dump_all(self) -> tuple[list[SocketEntry], dict[str, str]]:
        return list(self.entries), {}


class FakeOwners:
    def __init__(self) -> None:
        self.by_inode: dict[int, tuple[Owner, ...]] = {}
        self.denied = 0
        self.generation = 0
        self.keys = frozenset({A.key, B.key, C.key})

    def unknown(self, inodes: object) -> set[int]:
        return set()

    def refresh(self, *args: object) -> None:
        pass

    def owners(self, inode: int) -> tuple[Owner, ...]:
        return self.by_inode.get(inode, ())

    def readable(self) -> frozenset[ProcessKey]:
        return self.keys


def test_an_unchanged_listing_is_handed_on_as_it_was_and_changes_still_count() -> None:
    """A query whose listing is the last one's (same entries, same owners) hands on the last
    rows and counts as they were, with no event and no byte; a socket taken out by a close
    notification, a changed byte count, a new owner or an unconnected UDP socket still counting
    its listings are all still seen as before."""
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    bus = Recorder()
    comp._bus = bus  # type: ignore[assignment]
    diag, owners = FakeDiag(), FakeOwners()
    comp._diag = diag  # type: ignore[assignment]
    comp._owners = owners  # type: ignore[assignment]
    listener = sock(1, "tcp", "LISTEN", 8080)
    conn = sock(2, "tcp", "ESTAB", 8080, 40001, sent=100, received=200)
    owners.by_inode = {listener.inode: (A,), conn.inode: (A,)}
    diag.entries = [listener, conn]
    comp._query()  # start-up: the baseline
    first = comp._shared
    assert first is not None and first.counts == {A.key: 2} and first.tcp_keys == {A.key}
    comp._query()
    second = comp._shared
    assert second is not None and second.view.rows is first.view.rows
    assert second.counts is first.counts and second.readable is owners.keys
    assert bus.take() == [] and comp._bytes == {}
    # The kernel reports the connection closed; the next listing no longer has it.
    comp._on_destroyed([conn._replace(state="UNCONN", bytes_sent=150, uid=None)])
    assert bus.take() == [("closed", 2, "close-notification", False)]
    diag.entries = [listener]
    comp._query()
    third = comp._shared
    assert third is not None and [r.entry for r in third.view.rows] == [listener]
    assert third.counts == {A.key: 1}
    # Bytes move on a new connection; then its holder changes (same entry).
    conn2 = sock(3, "tcp", "ESTAB", 8080, 40002, sent=0, received=0)
    owners.by_inode[conn2.inode] = (A,)
    diag.entries = [listener, conn2]
    comp._query()
    assert bus.take() == [("opened", 3, "query", False)]
    comp._bytes.clear()
    diag.entries = [listener, conn2._replace(bytes_sent=500, bytes_received=7)]
    comp._query()
    assert comp._bytes == {A.key: [500, 7]}
    owners.by_inode[conn2.inode] = (B,)
    comp._query()
    fourth = comp._shared
    assert fourth is not None and fourth.counts == {A.key: 1, B.key: 1}
    # An unconnected UDP socket, the same entry listing after listing, becomes a listener.
    udp = sock(4, "udp", "UNCONN", 5353)
    owners.by_inode[udp.inode] = (C,)
    diag.entries = [*diag.entries, udp]
    for _ in range(UDP_LISTEN_LISTINGS):
        comp._query()
    assert bus.take() == [("listening", 4, "query", False)]
