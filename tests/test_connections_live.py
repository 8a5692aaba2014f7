"""The connections capability in a real engine: events on the bus with their owner, per-process
columns, and a bounded loopback port scan that must raise the port-scan alert for the scanning
pid (the connect tracer needs root and bcc)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

from fluxtui.capabilities.connection_tracker import (
    ConnectionEvent,
    ConnectionsComponent,
    ConnectionsView,
)
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.config import Config, NetworkConfig
from fluxtui.ecs import document
from fluxtui.engine import Engine
from fluxtui.events import Alert, ProcessKey, Snapshot
from tests.kernel import require, require_bcc

SCAN_PORTS = 300
# Connects to SCAN_PORTS closed loopback ports, one at a time, then waits for stdin to close so
# that the test can look the process up while it is alive.
SCANNER = r"""
import socket, sys
first = int(sys.argv[1])
for port in range(first, first + int(sys.argv[2])):
    s = socket.socket()
    s.settimeout(2)
    s.connect_ex(("127.0.0.1", port))
    s.close()
print("done", flush=True)
sys.stdin.read()
"""


class Harness:
    def __init__(self, network: NetworkConfig) -> None:
        self.component = ConnectionsComponent(network)
        self.engine = Engine(Config(network=network), [self.component])
        self.events: list[object] = []
        self.engine.bus.subscribe(self._collect)

    def _collect(self, event: object) -> None:
        if not isinstance(event, Snapshot):
            self.events.append(event)

    def wait_for(self, found: Callable[[], object], ticks: int = 100) -> object:
        """Tick until `found()` is truthy; bounded in count (and so in time)."""
        for _ in range(ticks):
            self.engine.tick()
            value = found()
            if value:
                return value
            time.sleep(0.1)
        return found()


@pytest.fixture
def harness(request: pytest.FixtureRequest) -> Iterator[Harness]:
    network = getattr(request, "param", NetworkConfig(poll_interval=0.1))
    h = Harness(network)
    h.engine.start_sync()
    try:
        assert h.component.ready.wait(60), "the connections thread never finished a listing"
        h.engine.tick()
        yield h
    finally:
        h.engine.stop()


def free_port_range(count: int) -> int:
    """A run of loopback ports nothing listens on (checked against the kernel's listing)."""
    from fluxtui.collectors.sock_diag import SockDiag

    diag = SockDiag()
    try:
        used = {e.local_port for e in diag.dump_all()[0]}
    finally:
        diag.close()
    for first in range(20000, 30000, count):
        if not used & set(range(first, first + count)):
            return first
    raise AssertionError("no free port range")


def test_events_columns_and_view(harness: Harness) -> None:
    opened: list[socket.socket] = []
    try:
        listener = socket.socket()
        opened.append(listener)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        opened.append(client)
        server, _ = listener.accept()
        opened.append(server)

        def events_for(action: str) -> list[ConnectionEvent]:
            return [e for e in harness.events if isinstance(e, ConnectionEvent)
                    and e.action == action and port in (e.entry.local_port, e.entry.remote_port)]

        assert harness.wait_for(lambda: events_for("listening") and len(events_for("opened")) == 2)
        me = os.getpid()
        for event in events_for("listening") + events_for("opened"):
            assert [o.pid for o in event.owners or ()] == [me]
            doc = document(event)
            assert doc["process"]["pid"] == me and doc["event"]["category"] == ["network"]
        assert any(isinstance(e, Alert) and e.rule_id == "network.new_listener"
                   and e.key is not None and e.key.pid == me for e in harness.events)

        payload = 2 * 1024 * 1024
        client.sendall(b"x" * payload)
        got = 0
        server.settimeout(10)
        while got < payload:
            got += len(server.recv(1 << 16))

        key = ProcessKey(me, read_start_ticks(me) or 0)

        def my_row():
            snap = harness.engine.snapshot
            row = snap.processes.get(key) if snap else None
            return row if row and row.net_rx_per_s and row.net_tx_per_s else None

        row = harness.wait_for(my_row)
        assert row is not None, "no TCP byte rate for this process"
        assert row.connections is not None and row.connections >= 3

        view = harness.engine.snapshot.views["connections"]
        assert isinstance(view, ConnectionsView)
        mine = [r for r in view.rows if r.entry.local_port == port and r.entry.state == "ESTAB"]
        assert len(mine) == 1 and mine[0].entry.bytes_received >= payload

        client.close()
        server.close()
        closed = harness.wait_for(lambda: len(events_for("closed")) >= 2)
        assert closed
        for event in events_for("closed"):
            assert [o.pid for o in event.owners or ()] == [me]
    finally:
        for s in opened:
            s.close()


def test_loopback_port_scan_alerts_for_the_scanning_pid(harness: Harness) -> None:
    require_bcc()
    require(harness.component.tracing, "connect tracer did not start: "
            + "; ".join(harness.engine.snapshot.views["connections"].notes))
    first = free_port_range(SCAN_PORTS)
    scanner = subprocess.Popen([sys.executable, "-c", SCANNER, str(first), str(SCAN_PORTS)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert scanner.stdout is not None and scanner.stdout.readline().strip() == "done"

        def scan_alert() -> Alert | None:
            return next((e for e in harness.events if isinstance(e, Alert)
                         and e.rule_id == "network.port_scan"
                         and e.extra.get("pid") == scanner.pid
                         and "aggregated_by" not in e.extra), None)

        alert = harness.wait_for(scan_alert)
        assert alert is not None, [getattr(e, "rule_id", e) for e in harness.events][-20:]
        assert alert.key == ProcessKey(scanner.pid, read_start_ticks(scanner.pid))
        assert alert.technique_id == "T1046"
        assert set(alert.extra["ports"]) <= set(range(first, first + SCAN_PORTS))
        assert alert.extra["distinct_ports"] >= harness.component.config.portscan_ports
        snap = harness.engine.snapshot
        assert any(a is alert for a in snap.alerts) or alert in snap.alerts
    finally:
        scanner.communicate(timeout=30)


def test_scan_from_one_process_per_port_alerts_for_the_user(harness: Harness) -> None:
    """`for p in ...; do (connect to $p); done`: every connect comes from its own short-lived
    subshell, so no single process reaches the threshold; the user's window does."""
    require_bcc()
    require(harness.component.tracing, "connect tracer did not start: "
            + "; ".join(harness.engine.snapshot.views["connections"].notes))
    count = 2 * harness.component.config.portscan_ports
    first = free_port_range(count)
    script = (f"for p in $(seq {first} {first + count - 1}); do "
              "(exec 3<>/dev/tcp/127.0.0.1/$p) 2>/dev/null; done")
    subprocess.run(["bash", "-c", script], check=False, timeout=60)

    def scan_alert() -> Alert | None:
        return next((e for e in harness.events if isinstance(e, Alert)
                     and e.rule_id == "network.port_scan" and e.process_name == "bash"
                     and e.extra.get("aggregated_by") in ("user", "parent")), None)

    alert = harness.wait_for(scan_alert)
    assert alert is not None, [getattr(e, "rule_id", e) for e in harness.events][-20:]
    assert alert.extra["processes"] >= 2
    assert set(alert.extra["ports"]) & set(range(first, first + count))
    if alert.extra["aggregated_by"] == "user":
        assert alert.extra["uid"] == os.getuid()


QUICK_SCANNER = r"""
import socket, sys
first = int(sys.argv[1])
for port in range(first, first + int(sys.argv[2])):
    s = socket.socket()
    s.connect_ex(("127.0.0.1", port))
    s.close()
"""


def test_a_scanner_that_exited_is_named_from_kernel_data_and_scored_on_its_life() -> None:
    """The scanner is gone before any tick: the alert still has its process (pid, start time
    and executable read in the kernel at connect time), and its final record carries the scan
    with its technique."""
    require_bcc()
    from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture
    from fluxtui.events import ProcessExit

    network = NetworkConfig(poll_interval=0.1)
    config = Config(network=network)
    component = ConnectionsComponent(network)
    engine = Engine(config, [SyscallCapture(config), component, RiskScorer(config)])
    published: list[object] = []
    engine.bus.subscribe(published.append)
    engine.start_sync()
    try:
        assert component.ready.wait(60)
        require(component.tracing, "connect tracer did not start")
        first = free_port_range(SCAN_PORTS)
        scanner = subprocess.run([sys.executable, "-c", QUICK_SCANNER, str(first),
                                  str(SCAN_PORTS)], timeout=60)
        assert scanner.returncode == 0
        pid = scanner.args and None  # the pid comes from the alert: the process is gone

        def done() -> tuple[Alert, ProcessExit] | None:
            alert = next((e for e in published if isinstance(e, Alert)
                          and e.rule_id == "network.port_scan"
                          and e.extra.get("executable") == os.path.realpath(sys.executable)),
                         None)
            if alert is None or alert.key is None:
                return None
            exit_ = next((e for e in published if isinstance(e, ProcessExit)
                          and e.lifetime.key == alert.key), None)
            return (alert, exit_) if exit_ is not None else None

        found = None
        for _ in range(100):
            engine.tick()
            found = done()
            if found:
                break
            time.sleep(0.1)
        assert found is not None, [getattr(e, "rule_id", type(e).__name__)
                                   for e in published][-20:]
        alert, exit_ = found
        assert pid is None and alert.extra["pid"] == alert.key.pid
        assert alert.technique_id == "T1046"
        assert any("ports of 127.0.0.1" in r for r in exit_.reasons)
        assert exit_.technique_id == "T1046" and exit_.risk >= network.portscan_risk
    finally:
        engine.stop()


def test_many_successful_connections_to_one_local_service_are_not_a_burst(
        harness: Harness) -> None:
    require_bcc()
    require(harness.component.tracing, "connect tracer did not start")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(512)
    port = server.getsockname()[1]
    client = (f"import socket\nfor _ in range(300):\n"
              f"    s = socket.create_connection(('127.0.0.1', {port}))\n    s.close()\n")
    try:
        proc = subprocess.Popen([sys.executable, "-c", client])
        accepted = 0
        server.settimeout(30)
        while accepted < 300:
            conn, _ = server.accept()
            conn.close()
            accepted += 1
        assert proc.wait(timeout=30) == 0
        for _ in range(10):
            harness.engine.tick()
            time.sleep(0.1)
        assert not [e for e in harness.events if isinstance(e, Alert)
                    and e.rule_id == "network.connection_burst"]
    finally:
        server.close()
