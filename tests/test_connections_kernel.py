"""The sock_diag collector and socket ownership against the real kernel: known loopback sockets,
byte counters, close notifications, `ss -tuanpe` on the same machine, and passive (non-root)
mode."""

from __future__ import annotations

import json
import os
import re
import select
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator

import pytest

from fluxtui.collectors.sock_diag import DestroyWatch, SockDiag, SocketEntry
from fluxtui.collectors.socket_owners import SocketOwners
from tests.kernel import require, require_root

PAYLOAD = 256 * 1024


@pytest.fixture
def diag() -> Iterator[SockDiag]:
    d = SockDiag()
    try:
        yield d
    finally:
        d.close()


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Every socket a test opens goes here and is closed at the end."""
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for s in opened:
            s.close()


def tcp_pair(opened: list[socket.socket], family: int, listen_addr: str, connect_addr: str
             ) -> tuple[socket.socket, socket.socket, socket.socket]:
    listener = socket.socket(family, socket.SOCK_STREAM)
    opened.append(listener)
    if family == socket.AF_INET6:
        listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind((listen_addr, 0))
    listener.listen(8)
    client = socket.socket(family, socket.SOCK_STREAM)
    opened.append(client)
    client.settimeout(10)
    client.connect((connect_addr, listener.getsockname()[1]))
    server, _ = listener.accept()
    opened.append(server)
    return listener, client, server


def by_inode(entries: list[SocketEntry]) -> dict[int, SocketEntry]:
    return {e.inode: e for e in entries if e.inode}


def inode(s: socket.socket) -> int:
    return os.fstat(s.fileno()).st_ino


def test_known_loopback_sockets(diag: SockDiag, sockets: list[socket.socket]) -> None:
    listener4, client4, server4 = tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
    listener6, client6, server6 = tcp_pair(sockets, socket.AF_INET6, "::1", "::1")
    # An AF_INET6 socket talking to an IPv4 peer: the kernel lists it as ::ffff:127.0.0.1.
    _, mapped_client, _ = tcp_pair(sockets, socket.AF_INET6, "::", "::ffff:127.0.0.1")
    udp4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sockets += [udp4, udp6]
    udp4.bind(("127.0.0.1", 0))
    udp6.bind(("::1", 0))
    udp6.connect(("::1", udp6.getsockname()[1]))

    entries, errors = diag.dump_all()
    assert errors == {}
    table = by_inode(entries)
    owners = SocketOwners()
    owners.refresh(table)
    me = os.getpid()

    def check(s: socket.socket, proto: str, family: int, state: str) -> SocketEntry:
        entry = table[inode(s)]
        local = s.getsockname()
        assert (entry.proto, entry.family, entry.state) == (proto, family, state)
        assert (entry.local_addr, entry.local_port) == (local[0], local[1])
        if state not in ("LISTEN", "UNCONN"):
            peer = s.getpeername()
            assert (entry.remote_addr, entry.remote_port) == (peer[0], peer[1])
        else:
            assert entry.remote_port == 0
        assert entry.uid == os.geteuid()
        assert [o.pid for o in owners.owners(entry.inode)] == [me]
        return entry

    check(listener4, "tcp", 4, "LISTEN")
    check(client4, "tcp", 4, "ESTAB")
    check(server4, "tcp", 4, "ESTAB")
    check(listener6, "tcp", 6, "LISTEN")
    check(client6, "tcp", 6, "ESTAB")
    check(server6, "tcp", 6, "ESTAB")
    mapped = check(mapped_client, "tcp", 6, "ESTAB")
    assert mapped.remote_addr == "::ffff:127.0.0.1"
    check(udp4, "udp", 4, "UNCONN")
    check(udp6, "udp", 6, "ESTAB")
    assert owners.owners(0) == ()


def test_traffic_shows_in_byte_counters(diag: SockDiag, sockets: list[socket.socket]) -> None:
    _, client, server = tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
    client.sendall(b"x" * PAYLOAD)
    received = 0
    server.settimeout(10)
    while received < PAYLOAD:
        chunk = server.recv(65536)
        assert chunk
        received += len(chunk)
    server.sendall(b"y" * 1000)
    got = 0
    while got < 1000:
        got += len(client.recv(4096))
    table = by_inode(diag.dump(socket.AF_INET, socket.IPPROTO_TCP))
    c, s = table[inode(client)], table[inode(server)]
    # tcp_info counts sequence space: +1 for the SYN, as `ss -i` shows.
    assert PAYLOAD <= c.bytes_sent <= PAYLOAD + 1
    assert PAYLOAD <= s.bytes_received <= PAYLOAD + 1
    assert 1000 <= s.bytes_sent <= 1001 and 1000 <= c.bytes_received <= 1001
    assert c.rtt_us is not None and c.rtt_us > 0


def test_close_notifications_carry_cookie_and_final_counters(
        diag: SockDiag, sockets: list[socket.socket]) -> None:
    watch = DestroyWatch()
    try:
        _, client, server = tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
        client.sendall(b"z" * 5000)
        got = 0
        while got < 5000:
            got += len(server.recv(65536))
        table = by_inode(diag.dump(socket.AF_INET, socket.IPPROTO_TCP))
        cookies = {table[inode(client)].cookie: "client", table[inode(server)].cookie: "server"}
        client.close()
        server.close()
        seen: dict[str, SocketEntry] = {}
        for _ in range(200):  # bounded: the kernel sends them from a work queue


            ready, _, _ = select.select([watch], [], [], 0.05)
            if ready:
                for entry in watch.read():
                    if entry.cookie in cookies:
                        seen[cookies[entry.cookie]] = entry
            if len(seen) == 2:
                break
        assert set(seen) == {"client", "server"}
        assert seen["client"].bytes_sent is not None and seen["client"].bytes_sent >= 5000
        assert seen["client"].uid is None and seen["client"].inode == 0
    finally:
        watch.close()


# --- ss comparison ---------------------------------------------------------------------------


def _endpoint(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.split("%")[0] if not host.startswith("[") else host[1:host.index("]")]
    if host in ("*", "0.0.0.0", "::"):
        host = "*"
    return host, 0 if port == "*" else int(port)


def ss_table() -> dict[int, tuple[tuple[object, ...], frozenset[int]]]:
    """cookie -> ((proto, state, local, remote, inode), pids) from `ss -tuanpe`."""
    out = subprocess.run(["ss", "-tuanpe"], capture_output=True, text=True, timeout=60,
                         check=True).stdout
    table = {}
    for line in out.splitlines()[1:]:
        parts = line.split()
        proto, state, local, peer, rest = parts[0], parts[1], parts[4], parts[5], line
        cookie = re.search(r"\bsk:([0-9a-f]+)", rest)
        ino = re.search(r"\bino:(\d+)", rest)
        assert cookie and ino, line
        pids = frozenset(int(p) for p in re.findall(r"pid=(\d+)", rest))
        table[int(cookie.group(1), 16)] = (
            (proto, state, _endpoint(local), _endpoint(peer), int(ino.group(1))), pids)
    return table


def test_same_sockets_and_owners_as_ss(diag: SockDiag, sockets: list[socket.socket]) -> None:
    require_root()  # ss -p and our scan both need root to see every process's fds
    tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
    tcp_pair(sockets, socket.AF_INET6, "::1", "::1")
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sockets.append(udp)
    udp.bind(("127.0.0.1", 0))

    before = ss_table()
    entries, errors = diag.dump_all()
    owners = SocketOwners()
    owners.refresh(e.inode for e in entries)
    after = ss_table()
    assert errors == {}

    ours = {}
    for e in entries:
        found = owners.owners(e.inode) if e.inode else ()
        assert found is not None  # root: every owner is known
        local = ("*" if e.local_addr in ("0.0.0.0", "::") else e.local_addr, e.local_port)
        remote = ("*" if e.remote_addr in ("0.0.0.0", "::") else e.remote_addr, e.remote_port)
        ours[e.cookie] = ((e.proto, e.state, local, remote, e.inode),
                          frozenset(o.pid for o in found))
    # Sockets that did not change between the two ss reads must be in ours, identical.
    stable = {c: v for c, v in before.items() if after.get(c) == v}
    assert len(stable) >= 7  # at least the sockets this test opened
    mine = {inode(s) for s in sockets}
    assert mine <= {v[0][4] for v in stable.values()}
    missing = {c: v for c, v in stable.items() if c not in ours}
    assert missing == {}
    different = {c: (v, ours[c]) for c, v in stable.items() if ours[c] != v}
    assert different == {}
    # Sockets listed by ss in neither read are ones that came and went in between.
    unexplained = set(ours) - set(before) - set(after)
    assert len(unexplained) <= len(ours) // 2, unexplained


# --- passive mode ----------------------------------------------------------------------------

PASSIVE = r"""
import json, os, socket, sys
from fluxtui.collectors.sock_diag import SockDiag
from fluxtui.collectors.socket_owners import SocketOwners
mine = socket.socket(); mine.bind(("127.0.0.1", 0)); mine.listen()
diag = SockDiag(); entries, errors = diag.dump_all()
owners = SocketOwners(); owners.refresh(e.inode for e in entries)
def show(ino):
    found = owners.owners(ino)
    return None if found is None else [o.pid for o in found]
inodes = [int(a) for a in sys.argv[1:]] + [os.fstat(mine.fileno()).st_ino]
listed = {e.inode for e in entries}
print(json.dumps({"pid": os.getpid(), "uid": os.getuid(), "errors": errors,
                  "listed": [i in listed for i in inodes], "owners": [show(i) for i in inodes],
                  "denied": owners.denied}))
"""


def test_passive_mode_lists_sockets_and_marks_owner_unknown(sockets: list[socket.socket]) -> None:
    require_root()  # to start the child as an unprivileged user
    listener, _, _ = tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
    root_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", PASSIVE, str(inode(listener))], capture_output=True, text=True,
        timeout=60, user=65534, group=65534, extra_groups=[], cwd="/",
        env={"PYTHONPATH": root_dir, "PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
    require(result.returncode == 0 or "Permission denied" not in result.stderr,
            f"unprivileged child cannot run: {result.stderr[-300:]}")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["uid"] == 65534 and out["errors"] == {}
    assert out["listed"] == [True, True]  # root's socket and its own are both listed
    assert out["owners"][0] is None  # root's process: /proc/PID/fd not readable -> unknown
    assert out["owners"][1] == [out["pid"]]  # its own socket: known
    assert out["denied"] > 0


def test_refresh_finds_a_new_socket_of_a_known_process(
        sockets: list[socket.socket]) -> None:
    owners = SocketOwners()
    diag = SockDiag()
    try:
        owners.refresh(e.inode for e in diag.dump_all()[0])
        fresh = socket.socket()
        sockets.append(fresh)
        fresh.bind(("127.0.0.1", 0))
        fresh.listen()
        owners.refresh(e.inode for e in diag.dump_all()[0])
        # Our fd count changed, so our fds are re-read in the incremental pass.
        assert [o.pid for o in owners.owners(inode(fresh))] == [os.getpid()]
    finally:
        diag.close()


class _CountingSocket:
    """A netlink socket that counts the requests sent through it."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.requests = 0

    def send(self, data: bytes | bytearray) -> int:
        self.requests += 1
        return self._sock.send(data)

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        return getattr(self._sock, name)


def _same_sockets(entries: list[SocketEntry]) -> set[tuple[object, ...]]:
    """What identifies a socket and cannot change between two dumps of idle sockets."""
    return {(e.cookie, e.proto, e.family, e.local_addr, e.local_port, e.remote_addr,
             e.remote_port, e.inode, e.uid) for e in entries}


@pytest.mark.kernel
def test_one_dump_lists_tcp_of_both_families(diag: SockDiag,
                                             sockets: list[socket.socket]) -> None:
    """TCP is listed with one request (one walk of the kernel's TCP tables, the bulk of a
    listing's cost) that finds exactly what the two per-family dumps find, tcp_info included;
    UDP keeps one dump per family: three requests a listing, not four."""
    tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
    _, client6, server6 = tcp_pair(sockets, socket.AF_INET6, "::1", "::1")
    client6.sendall(b"x" * 1000)
    assert server6.recv(1000)
    counting = _CountingSocket(diag._sock)
    diag._sock = counting  # type: ignore[assignment]
    entries, errors = diag.dump_all()
    assert errors == {} and diag.legacy_tcp is None
    assert counting.requests == 3
    per_family = (diag.dump(socket.AF_INET, socket.IPPROTO_TCP)
                  + diag.dump(socket.AF_INET6, socket.IPPROTO_TCP))
    tcp = [e for e in entries if e.proto == "tcp"]
    mine = {inode(s) for s in sockets}
    assert {e.inode for e in tcp} >= mine
    assert (_same_sockets([e for e in tcp if e.inode in mine])
            == _same_sockets([e for e in per_family if e.inode in mine]))
    sent = next(e for e in tcp if e.inode == inode(client6))
    assert sent.family == 6 and (sent.bytes_sent or 0) >= 1000 and sent.rtt_us is not None


@pytest.mark.kernel
def test_a_refused_one_walk_request_falls_back_to_one_dump_per_family(
        diag: SockDiag, sockets: list[socket.socket]) -> None:
    """A kernel that refuses the legacy request (here: one too short for it, EINVAL) still has
    its TCP sockets of both families listed, with per-family dumps from then on."""
    _, client4, _ = tcp_pair(sockets, socket.AF_INET, "127.0.0.1", "127.0.0.1")
    _, client6, _ = tcp_pair(sockets, socket.AF_INET6, "::1", "::1")
    short = diag._tcp_request[:24]
    struct.pack_into("=I", short, 0, 24)
    diag._tcp_request = short
    entries, errors = diag.dump_all()
    assert errors == {}
    assert diag.legacy_tcp is not None and "Invalid argument" in diag.legacy_tcp
    listed = {e.inode for e in entries if e.proto == "tcp"}
    assert {inode(client4), inode(client6)} <= listed
    counting = _CountingSocket(diag._sock)
    diag._sock = counting  # type: ignore[assignment]
    entries, errors = diag.dump_all()
    assert errors == {} and counting.requests == 4
    assert {inode(client4), inode(client6)} <= {e.inode for e in entries if e.proto == "tcp"}
