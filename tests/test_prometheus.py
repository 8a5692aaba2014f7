"""The /metrics endpoint: served over real HTTP on loopback from a real engine's bus, parsed with
prometheus_client's own parser; the top-N series bounded and replaced as the top changes."""

from __future__ import annotations

import dataclasses
import socket
import urllib.request
from collections.abc import Iterator

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fluxtui.capabilities.syscall_risk import SyscallView
from fluxtui.collectors.syscalls import DropCounts
from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import Alert, ProcessKey, ProcessRow, Severity
from fluxtui.guard.events import GuardDecision, Requester
from fluxtui.prometheus import ListenAddressError, PrometheusExporter, parse_listen_address
from fluxtui.prometheus.families import MAX_LABEL_CHARS, TOP_PROCESSES
from tests import fakes

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(exporter: PrometheusExporter) -> Samples:
    with urllib.request.urlopen(exporter.url, timeout=30) as response:
        assert response.status == 200
        text = response.read().decode()
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def series(samples: Samples, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {labels: v for (n, labels), v in samples.items() if n == name}


@pytest.fixture
def engine() -> Iterator[Engine]:
    engine = Engine(Config())  # real metrics and process collectors, no kernel capability
    yield engine
    engine.stop()


@pytest.fixture
def exporter(engine: Engine) -> Iterator[PrometheusExporter]:
    exporter = PrometheusExporter(engine.bus, "127.0.0.1", 0)
    exporter.start()
    yield exporter
    exporter.stop()


def alert(rule: str = "syscalls.ptrace_attach", technique: str = "T1055.008",
          severity: Severity = Severity.HIGH) -> Alert:
    return Alert(timestamp=0.0, rule_id=rule, title="test alert", severity=severity,
                 technique_id=technique, technique_name="", key=ProcessKey(42, 7),
                 process_name="x")


def test_real_engine_host_metrics_and_an_alert_published_on_its_bus(
        engine: Engine, exporter: PrometheusExporter) -> None:
    before = scrape(exporter)
    assert before[("fluxtui_snapshot_available", ())] == 0
    assert series(before, "fluxtui_alerts_total") == {}
    engine.tick()
    engine.tick()  # rates need two samples
    engine.bus.publish(alert())
    engine.bus.publish(alert())
    engine.bus.publish(alert("network.port_scan", "T1046", Severity.MEDIUM))
    after = scrape(exporter)
    assert series(after, "fluxtui_alerts_total") == {
        (("rule", "network.port_scan"), ("severity", "medium"), ("technique", "T1046")): 1,
        (("rule", "syscalls.ptrace_attach"), ("severity", "high"),
         ("technique", "T1055.008")): 2,
    }
    assert after[("fluxtui_memory_bytes", (("kind", "total"),))] == psutil.virtual_memory().total
    assert after[("fluxtui_engine_ticks_total", ())] == 2
    assert 0.0 <= after[("fluxtui_cpu_usage_ratio", (("mode", "total"),))] <= 1.0
    assert len(series(after, "fluxtui_cpu_core_usage_ratio")) == psutil.cpu_count()
    assert series(after, "fluxtui_collector_up") == {
        (("collector", "metrics"),): 1, (("collector", "processes"),): 1}
    # No risk scorer ran: no risk figures at all rather than zeros.
    assert series(after, "fluxtui_process_risk_top") == {}
    assert not any(name.startswith("fluxtui_process_risk") for name, _ in after)


def test_output_drop_counts_are_read_at_scrape_time(exporter: PrometheusExporter) -> None:
    dropped = [0]
    exporter.count_drops("stream", lambda: dropped[0])
    assert series(scrape(exporter), "fluxtui_output_dropped_total") == {
        (("output", "stream"),): 0}
    dropped[0] = 12
    assert series(scrape(exporter), "fluxtui_output_dropped_total") == {
        (("output", "stream"),): 12}


def test_stopped_exporter_no_longer_counts(engine: Engine) -> None:
    exporter = PrometheusExporter(engine.bus, "127.0.0.1", 0)
    exporter.start()
    exporter.stop()
    engine.bus.publish(alert())
    alerts = next(f for f in exporter.counters.families() if f.name == "fluxtui_alerts")
    assert alerts.samples == []


def risky(n: int, base: float) -> list[ProcessRow]:
    return [fakes.row(1000 + i, f"p{i}", risk=base + i) for i in range(n)]


def test_top_processes_are_bounded_and_leave_when_they_drop_out(
        engine: Engine, exporter: PrometheusExporter) -> None:
    rows = [*risky(30, 10.0), fakes.row(5, "calm", risk=0.0)]
    engine.bus.publish(fakes.snapshot(rows))
    first = series(scrape(exporter), "fluxtui_process_risk_top")
    assert len(first) == TOP_PROCESSES
    pids = {dict(labels)["pid"] for labels in first}
    assert pids == {str(1000 + i) for i in range(30 - TOP_PROCESSES, 30)}
    assert first[(("exe", "/usr/bin/p29"), ("name", "p29"), ("pid", "1029"))] == 39.0

    # The old top calms down, new processes take its place: the old series are gone.
    calmer = [dataclasses.replace(r, risk=1.0) for r in rows[:30]]
    newcomers = [fakes.row(2000 + i, f"n{i}", risk=80.0 + i) for i in range(3)]
    engine.bus.publish(fakes.snapshot(calmer + newcomers, sequence=2))
    second = series(scrape(exporter), "fluxtui_process_risk_top")
    assert len(second) == TOP_PROCESSES
    second_pids = {dict(labels)["pid"] for labels in second}
    # Newcomers first, then equal scores by pid; none of the first top remains.
    assert second_pids == {"2000", "2001", "2002"} | {str(1000 + i) for i in range(7)}
    assert not second_pids & pids


def test_risk_histogram_counts_every_scored_process(
        engine: Engine, exporter: PrometheusExporter) -> None:
    rows = [fakes.row(1, "a", risk=0.0), fakes.row(2, "b", risk=0.0),
            fakes.row(3, "c", risk=15.0), fakes.row(4, "d", risk=95.0),
            fakes.row(5, "e", risk=None)]
    engine.bus.publish(fakes.snapshot(rows))
    samples = scrape(exporter)
    buckets = {dict(k)["le"]: v for k, v in series(samples, "fluxtui_process_risk_bucket").items()}
    assert buckets["0.0"] == 2 and buckets["10.0"] == 2 and buckets["20.0"] == 3
    assert buckets["90.0"] == 3 and buckets["100.0"] == 4 and buckets["+Inf"] == 4
    assert samples[("fluxtui_process_risk_gcount", ())] == 4
    assert samples[("fluxtui_process_risk_gsum", ())] == 110.0


def test_untrusted_names_are_escaped_and_cut(engine: Engine,
                                             exporter: PrometheusExporter) -> None:
    strange = 'evil"\n\\name{le="x"}'
    long_exe = "/tmp/" + "a" * 1000
    row = dataclasses.replace(fakes.row(7, "x", risk=50.0), name=strange, exe=long_exe)
    engine.bus.publish(fakes.snapshot([row]))
    (labels,) = series(scrape(exporter), "fluxtui_process_risk_top")
    parsed = dict(labels)
    assert parsed["name"] == strange
    assert len(parsed["exe"]) == MAX_LABEL_CHARS and parsed["exe"].startswith("/tmp/aaa")


def requester() -> Requester:
    return Requester(key=ProcessKey(9, 9), exe="/usr/bin/cat", cmdline=("cat",), uid=0, euid=0,
                     user="root", ppid=1, parent_exe="", sha256=None, package=None,
                     verified=False, verification="", flags=())


def decision(allowed: bool, decided_by: str, count: int = 1) -> GuardDecision:
    return GuardDecision(timestamp=0.0, file="/tmp/x", group="ssh-keys", technique="T1552.004",
                         allowed=allowed, decided_by=decided_by, reason="test",
                         requester=requester(), latency_us=1.0, mode="enforce", count=count)


def test_guard_decisions_by_outcome_and_decider_count_folded_opens(
        engine: Engine, exporter: PrometheusExporter) -> None:
    engine.bus.publish(decision(False, "headless", count=3))
    engine.bus.publish(decision(True, "catalogue"))
    engine.bus.publish(decision(False, "headless"))
    assert series(scrape(exporter), "fluxtui_guard_decisions_total") == {
        (("decided_by", "catalogue"), ("outcome", "allowed")): 1,
        (("decided_by", "headless"), ("outcome", "denied")): 4,
    }


def test_syscall_rate_total_and_drops_from_the_syscall_view(
        engine: Engine, exporter: PrometheusExporter) -> None:
    def view(total: int, events_lost: int) -> SyscallView:
        return SyscallView(window_s=0.5, counts={}, bigrams={}, findings=(), exited=(),
                           events=0, total_syscalls=total, dropped=DropCounts(),
                           dropped_total=DropCounts(events=events_lost, argv=1))

    for sequence, (total, lost) in enumerate([(1000, 0), (3000, 5)], start=1):
        snap = fakes.snapshot(sequence=sequence)
        engine.bus.publish(dataclasses.replace(snap, views={"syscalls": view(total, lost)}))
    samples = scrape(exporter)
    assert samples[("fluxtui_syscalls_per_second", ())] == 6000.0
    assert samples[("fluxtui_syscalls_total", ())] == 4000
    drops = series(samples, "fluxtui_syscall_dropped_total")
    assert drops[(("cause", "events"),)] == 5 and drops[(("cause", "argv"),)] == 1
    assert drops[(("cause", "counts"),)] == 0


@pytest.mark.parametrize(("text", "expected"), [
    ("9464", ("127.0.0.1", 9464)),
    (":9464", ("127.0.0.1", 9464)),
    ("0.0.0.0:9100", ("0.0.0.0", 9100)),
    ("[::1]:9464", ("::1", 9464)),
    ("localhost:9464", ("localhost", 9464)),
])
def test_listen_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_listen_address(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "127.0.0.1:", "127.0.0.1:0", "1.2.3:80",
                                  "::1:9464", "127.0.0.1:70000", "example.com:80"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ListenAddressError):
        parse_listen_address(text)


def test_address_in_use_is_one_clear_error(engine: Engine) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        exporter = PrometheusExporter(engine.bus, "127.0.0.1", taken.getsockname()[1])
        with pytest.raises(ListenAddressError, match=r"cannot listen on .*in use"):
            exporter.start()
