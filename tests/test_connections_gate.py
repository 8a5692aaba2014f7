"""The listing gate (collectors/socket_counters.py, ConnectionsComponent._quiet): a poll lists
sockets only when the kernel's TCP/UDP counters moved, a socket closed (or a close notification
was lost), an unconnected UDP socket is still being counted towards "listening", or the last
listing is idle_listing_interval old; a quiet poll still sweeps ownership and closes the byte
period. Against the real kernel: every change a listing shows moves the counters, and a socket
opened while quiet is listed at the next poll with its owner. Clocks are injected."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.connection_tracker import (
    UDP_LISTEN_LISTINGS,
    ConnectionsComponent,
)
from fluxtui.collectors.sock_diag import DestroyWatch, SockDiag, SocketEntry
from fluxtui.collectors.socket_counters import SocketCounters
from fluxtui.collectors.socket_owners import Owner
from fluxtui.component import TickContext
from fluxtui.config import NetworkConfig
from fluxtui.events import ProcessKey
from tests.fakes import metrics, row
from tests.kernel import require, require_root
from tests.test_connections_decode import FakeDiag, FakeOwners, Recorder, sock

SERVER = Owner(100, 1100, "server")  # the key row(100, ...) has
CLIENT = Owner(200, 1200, "client")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeCounters:
    def __init__(self) -> None:
        self.value = b"TCP: inuse 1"

    def read(self) -> bytes:
        return self.value

    def close(self) -> None:
        pass


class FakeDestroy:
    lost = 0

    def close(self) -> None:
        pass


class CountingDiag(FakeDiag):
    def __init__(self) -> None:
        super().__init__()
        self.listings = 0

    def dump_all(self) -> tuple[list[SocketEntry], dict[str, str]]:
        self.listings += 1
        return super().dump_all()


def gated() -> tuple[ConnectionsComponent, CountingDiag, FakeOwners, FakeCounters, FakeDestroy,
                     Clock]:
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    comp._bus = Recorder()  # type: ignore[assignment]
    diag, owners, counters, destroy, clock = (CountingDiag(), FakeOwners(), FakeCounters(),
                                              FakeDestroy(), Clock())
    comp._diag = diag  # type: ignore[assignment]
    comp._owners = owners  # type: ignore[assignment]
    comp._net_counters = counters  # type: ignore[assignment]
    comp._destroy = destroy  # type: ignore[assignment]
    comp._clock = clock
    return comp, diag, owners, counters, destroy, clock


def test_a_poll_lists_only_when_something_may_have_changed() -> None:
    """Four polls a second listed the sockets four times a second, whatever happened: now an
    unchanged set of counters with no close since spares the listing, and each reason to list
    still lists."""
    comp, diag, owners, counters, destroy, clock = gated()
    poll = comp.config.poll_interval
    listener = sock(1, "tcp", "LISTEN", 8080)
    owners.by_inode = {listener.inode: (SERVER,)}
    diag.entries = [listener]
    comp._query()
    assert diag.listings == 1
    first = comp._shared
    clock.now += poll
    comp._query()
    assert diag.listings == 1 and comp.quiet_polls == 1
    assert comp._shared is first  # nothing handed on anew: the engine's tick has no work
    counters.value = b"TCP: inuse 2"  # a socket hashed
    conn = sock(2, "tcp", "ESTAB", 8080, 40001, sent=0, received=0)
    owners.by_inode[conn.inode] = (SERVER,)
    diag.entries = [listener, conn]
    clock.now += poll
    comp._query()
    assert diag.listings == 2 and len(comp._table) == 2
    clock.now += poll
    comp._query()
    assert diag.listings == 2
    # A socket closed (the counters back where they were): the notification calls for a listing.
    comp._on_destroyed([conn._replace(state="UNCONN", uid=None)])
    diag.entries = [listener]
    clock.now += poll
    comp._query()
    assert diag.listings == 3 and len(comp._table) == 1
    # Close notifications the kernel could not queue: unknown closes, so a listing.
    destroy.lost += 1
    clock.now += poll
    comp._query()
    assert diag.listings == 4
    clock.now += poll
    comp._query()
    assert diag.listings == 4
    # What no counter shows is listed after idle_listing_interval.
    clock.now += comp.config.idle_listing_interval
    comp._query()
    assert diag.listings == 5


def test_an_unconnected_udp_socket_is_listed_at_every_poll_until_it_counts_as_listening(
        ) -> None:
    comp, diag, owners, counters, _destroy, clock = gated()
    comp._query()
    udp = sock(3, "udp", "UNCONN", 5353)
    owners.by_inode[udp.inode] = (SERVER,)
    diag.entries = [udp]
    counters.value = b"UDP: inuse 1"
    for _ in range(UDP_LISTEN_LISTINGS):
        clock.now += comp.config.poll_interval
        comp._query()
    assert diag.listings == 1 + UDP_LISTEN_LISTINGS
    assert [(e.action, e.entry.cookie) for e in comp._bus.events] == [  # type: ignore[union-attr]
        ("listening", 3)]
    clock.now += comp.config.poll_interval
    comp._query()
    assert diag.listings == 1 + UDP_LISTEN_LISTINGS  # counted: quiet again


def test_without_close_notifications_or_counters_every_poll_lists() -> None:
    comp, diag, _owners, _counters, _destroy, clock = gated()
    comp._destroy = None
    comp._query()
    clock.now += comp.config.poll_interval
    comp._query()
    assert diag.listings == 2
    comp, diag, _owners, _counters, _destroy, clock = gated()
    comp._net_counters = None
    comp._query()
    clock.now += comp.config.poll_interval
    comp._query()
    assert diag.listings == 2


def test_a_quiet_poll_still_sweeps_owners_and_ends_the_byte_period() -> None:
    """No listing, but a new holder (fd passing, found by the sweep) is in the rows, and the
    process's net rate falls to zero at the next tick instead of keeping the last one."""
    comp, diag, owners, counters, _destroy, clock = gated()
    conn = sock(2, "tcp", "ESTAB", 8080, 40001, sent=0, received=0)
    owners.by_inode = {conn.inode: (SERVER,)}
    owners.keys = frozenset({SERVER.key, CLIENT.key})
    diag.entries = [conn]
    processes = {r.key: r for r in (row(100, "server"), row(200, "client"))}

    def tick() -> dict[ProcessKey, dict[str, object]]:
        ctx = TickContext(0.0, 1.0, metrics(), processes, EventBus())
        comp.on_tick(ctx)
        return ctx.annotations

    comp._query()
    tick()
    clock.now += comp.config.poll_interval
    diag.entries = [conn._replace(bytes_sent=1000, bytes_received=10)]
    counters.value = b"Tcp: InSegs 5"  # segments came and went: a listing
    comp._query()
    assert tick()[SERVER.key]["net_tx_per_s"] == pytest.approx(1000 / comp.config.poll_interval)
    listings = diag.listings
    clock.now += comp.config.poll_interval
    comp._query()
    assert diag.listings == listings
    assert tick()[SERVER.key]["net_tx_per_s"] == 0.0
    # The sweep finds a second holder: the rows change without a listing.
    owners.by_inode[conn.inode] = (SERVER, CLIENT)
    owners.generation += 1
    clock.now += comp.config.poll_interval
    comp._query()
    assert diag.listings == listings
    shared = comp._shared
    assert shared is not None and shared.counts == {SERVER.key: 1, CLIENT.key: 1}
    assert tick()[CLIENT.key]["connections"] == 1


# --- SocketCounters ---------------------------------------------------------------------------

SOCKSTAT = ("sockets: used {used}\nTCP: inuse {tcp} orphan 0 tw 0 alloc 1 mem 1\n"
            "UDP: inuse 0 mem 0\nUDPLITE: inuse 0\nRAW: inuse 0\nFRAG: inuse 0 memory 0\n")
SNMP = ("Ip: Forwarding\nIp: 1\nTcp: InSegs OutSegs\nTcp: {segs} 5\nUdp: InDatagrams\n"
        "Udp: 0\nUdpLite: InDatagrams\nUdpLite: 0\n")


def _write(d: Path, used: int = 10, tcp: int = 1, segs: int = 4) -> None:
    (d / "sockstat").write_text(SOCKSTAT.format(used=used, tcp=tcp))
    (d / "snmp").write_text(SNMP.format(segs=segs))


def test_counters_compare_the_tcp_and_udp_lines_only(tmp_path) -> None:
    """A Unix socket moves `sockets: used`: no listing for that; TCP lines do. No IPv6 files:
    read without them. No snmp: unavailable (every poll lists)."""
    _write(tmp_path)
    counters = SocketCounters(str(tmp_path))
    try:
        assert counters.available
        first = counters.read()
        assert first is not None and b"TCP: inuse 1" in first and b"sockets" not in first
        _write(tmp_path, used=11)
        assert counters.read() == first
        _write(tmp_path, used=11, segs=5)
        assert counters.read() != first
        _write(tmp_path, used=11, tcp=2, segs=4)
        assert counters.read() != first
    finally:
        counters.close()
    (tmp_path / "snmp").write_text("Tcp and Udp elsewhere\n")  # unknown layout: the whole file
    counters = SocketCounters(str(tmp_path))
    try:
        assert counters.read() is not None and b"elsewhere" in (counters.read() or b"")
    finally:
        counters.close()
    (tmp_path / "snmp").unlink()
    counters = SocketCounters(str(tmp_path))
    assert not counters.available and counters.read() is None


# --- the real kernel --------------------------------------------------------------------------

@pytest.fixture
def opened() -> Iterator[list[socket.socket]]:
    sockets: list[socket.socket] = []
    try:
        yield sockets
    finally:
        for s in sockets:
            s.close()


def _moved(counters: SocketCounters, action) -> bool:  # type: ignore[no-untyped-def]
    before = counters.read()
    action()
    return counters.read() != before


@pytest.mark.kernel
def test_every_change_a_listing_shows_moves_the_counters(opened) -> None:
    """Listen, connect and accept, bytes each way, a close, a UDP bind and a datagram, on IPv4
    and IPv6 loopback: each moves the counters the gate compares (a segment or datagram count,
    or inuse)."""
    counters = SocketCounters()
    try:
        require(counters.available, "/proc/net/sockstat and snmp readable")
        for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            listener = socket.socket(family, socket.SOCK_STREAM)
            opened.append(listener)
            listener.bind((addr, 0))
            assert _moved(counters, lambda s=listener: s.listen(4))
            client = socket.socket(family, socket.SOCK_STREAM)
            opened.append(client)
            client.settimeout(10)
            assert _moved(counters, lambda c=client, s=listener: c.connect(s.getsockname()[:2]))
            server, _ = listener.accept()
            opened.append(server)
            assert _moved(counters, lambda c=client: c.sendall(b"x" * 1000))
            assert server.recv(4096)
            assert _moved(counters, lambda s=server: s.sendall(b"y"))
            assert _moved(counters, client.close)
            udp = socket.socket(family, socket.SOCK_DGRAM)
            opened.append(udp)
            assert _moved(counters, lambda u=udp, a=addr: u.bind((a, 0)))
            assert _moved(counters, lambda u=udp: u.sendto(b"d", u.getsockname()[:2]))
    finally:
        counters.close()


HOLDER = """
import socket, sys
sys.stdin.readline()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.readline()
"""


@pytest.fixture
def real() -> Iterator[tuple[ConnectionsComponent, Clock]]:
    require_root()  # the close notifications' multicast groups
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    comp._bus = Recorder()  # type: ignore[assignment]
    clock = Clock()
    comp._clock = comp._owners._clock = clock
    comp._diag = SockDiag()
    comp._destroy = DestroyWatch()
    comp._net_counters = SocketCounters()
    try:
        yield comp, clock
    finally:
        for resource in (comp._diag, comp._destroy, comp._net_counters):
            resource.close()
        comp._owners.close()


def _poll(comp: ConnectionsComponent, clock: Clock) -> None:
    """One poll as the thread makes it: close notifications first."""
    clock.now += comp.config.poll_interval
    assert comp._destroy is not None
    comp._on_destroyed(comp._destroy.read())
    comp._query()


@pytest.mark.kernel
def test_a_socket_opened_between_two_polls_is_listed_at_the_next_with_its_owner(real) -> None:
    comp, clock = real
    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        assert child.stdin is not None and child.stdout is not None
        comp._query()
        listings = comp.listings
        child.stdin.write(b"go\n")
        child.stdin.flush()
        port = int(child.stdout.readline())
        _poll(comp, clock)
        assert comp.listings == listings + 1
        (found,) = [r for r in comp._table.values()
                    if r.entry.local_port == port and r.entry.state == "LISTEN"]
        assert [o.pid for o in found.owners or ()] == [child.pid]
        assert [(e.action, e.entry.local_port) for e in comp._bus.events  # type: ignore[union-attr]
                if e.entry.local_port == port] == [("listening", port)]
    finally:
        child.kill()
        child.wait()


@pytest.mark.kernel
def test_what_no_counter_shows_is_listed_within_the_idle_interval(real, opened) -> None:
    """A bound UDP socket that connects moves no counter: the listing after
    idle_listing_interval shows it connected."""
    comp, clock = real
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    opened.append(udp)
    udp.bind(("127.0.0.1", 0))
    port = udp.getsockname()[1]
    target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    opened.append(target)
    target.bind(("127.0.0.1", 0))
    comp._query()
    udp.connect(target.getsockname())
    deadline = time.monotonic() + 30  # bounded: polls until the idle interval has passed
    while time.monotonic() < deadline:
        _poll(comp, clock)
        states = {r.entry.state for r in comp._table.values() if r.entry.local_port == port}
        if states == {"ESTAB"}:
            break
    assert states == {"ESTAB"}
    assert clock.now - 1000.0 <= comp.config.idle_listing_interval + comp.config.poll_interval
    assert os.getpid() in {o.pid for r in comp._table.values() if r.entry.local_port == port
                           for o in r.owners or ()}


def test_the_engines_pids_are_handed_on_anew_only_when_processes_came_or_went() -> None:
    """on_tick built a list of every pid at each tick, and the owner sweep compared it with its
    own table each second: the same list object now says nobody came or went."""
    comp = ConnectionsComponent(NetworkConfig(connect_trace=False))
    rows = {r.key: r for r in (row(100, "server"), row(200, "client"))}

    def tick(processes: dict, appeared: set) -> list[int] | None:  # type: ignore[type-arg]
        ctx = TickContext(0.0, 1.0, metrics(), processes, EventBus(), appeared)
        ctx.first_tick = False
        comp.on_tick(ctx)
        return comp._tick_pids

    first = tick(dict(rows), set(rows))
    assert first is not None and sorted(first) == [100, 200]
    assert tick(dict(rows), set()) is first
    newcomer = row(300, "new")
    grown = tick({**rows, newcomer.key: newcomer}, {newcomer.key})
    assert grown is not first and sorted(grown or []) == [100, 200, 300]
    shrunk = tick(dict(rows), set())
    assert shrunk is not grown and sorted(shrunk or []) == [100, 200]
