"""Serves `/metrics` on ADDR:PORT with prometheus_client, from the engine's bus.

The exporter subscribes to `engine.bus`; the subscriber keeps the latest snapshot and counts
alerts, guard decisions and syscalls (see `counters`). A scrape builds the families from those
on prometheus_client's server thread, so the engine and the collectors never wait for it.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

from fluxtui.bus import EventBus
from fluxtui.prometheus.counters import BusCounters
from fluxtui.prometheus.families import TOP_PROCESSES, snapshot_families

log = logging.getLogger(__name__)

DEFAULT_ADDRESS = "127.0.0.1"


class ListenAddressError(ValueError):
    """A --prometheus value that is not ADDR:PORT, or an address that cannot be listened on."""


def parse_listen_address(text: str) -> tuple[str, int]:
    """ADDR:PORT, [IPv6]:PORT, :PORT or PORT (then the address is 127.0.0.1)."""
    text = text.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ListenAddressError(f"{text!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    host = host or DEFAULT_ADDRESS
    try:
        port = int(port_text)
    except ValueError:
        raise ListenAddressError(f"{text!r}: expected ADDR:PORT, e.g. 127.0.0.1:9464") from None
    if not 0 < port < 65536:
        raise ListenAddressError(f"{text!r}: the port must be between 1 and 65535")
    if host != "localhost":
        try:
            ipaddress.ip_address(host)
        except ValueError:
            raise ListenAddressError(f"{text!r}: {host!r} is not an IP address") from None
    return host, port


def _version() -> str:
    try:
        return version("fluxtui")
    except PackageNotFoundError:
        return "unknown"


class _SnapshotCollector(Collector):
    def __init__(self, counters: BusCounters, top_n: int) -> None:
        self.counters = counters
        self.top_n = top_n
        self.drops: dict[str, Callable[[], int]] = {}

    def collect(self) -> Iterator[Metric]:
        info = InfoMetricFamily("fluxtui_build", "The fluxtui version serving these metrics")
        info.add_metric([], {"version": _version()})
        yield info
        yield from self.counters.families()
        if self.drops:
            dropped = CounterMetricFamily(
                "fluxtui_output_dropped", "Documents an output could not take and dropped "
                "(stream: the headless queue for a slow reader; journal: entries refused or "
                "queued past the limit)", labels=["output"])
            for output, read in sorted(self.drops.items()):
                dropped.add_metric([output], read())
            yield dropped
        snapshot = self.counters.latest
        yield GaugeMetricFamily("fluxtui_snapshot_available",
                                "1 once the engine has taken its first snapshot",
                                value=0 if snapshot is None else 1)
        if snapshot is not None:
            yield from snapshot_families(snapshot, self.top_n)


class PrometheusExporter:
    """Start with `start()` (raises ListenAddressError when the address cannot be bound); stop
    with `stop()`. `port` is the bound port (useful with port 0)."""

    def __init__(self, bus: EventBus, address: str, port: int,
                 top_n: int = TOP_PROCESSES) -> None:
        self.bus = bus
        self.address = address
        self.requested_port = port
        self.counters = BusCounters()
        self.registry = CollectorRegistry(auto_describe=False)
        self._collector = _SnapshotCollector(self.counters, top_n)
        self.registry.register(self._collector)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def count_drops(self, output: str, read: Callable[[], int]) -> None:
        """Export `read()` (a running count, read at scrape time) as
        fluxtui_output_dropped_total{output=...}."""
        self._collector.drops[output] = read

    @property
    def port(self) -> int:
        if self._server is None:
            return self.requested_port
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        try:
            self._server, self._thread = start_http_server(
                self.requested_port, self.address, registry=self.registry)
        except OSError as exc:
            raise ListenAddressError(
                f"cannot listen on {self.address}:{self.requested_port}: "
                f"{exc.strerror or exc}") from None
        self._unsubscribe = self.bus.subscribe(self.counters.on_event)
        log.info("prometheus metrics on %s", self.url)

    def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
