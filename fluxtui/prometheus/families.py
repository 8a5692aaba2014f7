"""Metric families built from one engine snapshot at scrape time.

Everything here is a measured value from the snapshot; a figure the snapshot does not have (the
CPU share before the second sample, a capability that is not running) is left out rather than
exported as zero.

Label cardinality stays bounded: host labels are the machine's devices, interfaces and cores;
collector labels are the engine's component names; per-process series exist only for the
`TOP_PROCESSES` riskiest processes of the latest tick (labels pid, name, exe), so a scrape never
holds more than that many, and a process that left the top N is simply absent from the next
scrape (Prometheus marks its series stale). Label values are cut to `MAX_LABEL_CHARS`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeHistogramMetricFamily,
    GaugeMetricFamily,
    Metric,
)

from fluxtui.capabilities.guard import GuardView
from fluxtui.capabilities.syscall_risk import SyscallView
from fluxtui.events import ProcessRow, Snapshot

TOP_PROCESSES = 10
MAX_LABEL_CHARS = 200
# Upper bounds of the risk histogram's buckets (scores run from 0 to 100).
RISK_BUCKETS = (0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0)


def label(value: str) -> str:
    """A label value from an untrusted string (process names, paths): bounded in length.
    prometheus_client escapes quotes, backslashes and newlines in the exposition."""
    return value if len(value) <= MAX_LABEL_CHARS else value[: MAX_LABEL_CHARS - 1] + "…"


def snapshot_families(snapshot: Snapshot, top_n: int = TOP_PROCESSES) -> Iterator[Metric]:
    yield from host_families(snapshot)
    yield from collector_families(snapshot)
    yield from risk_families(snapshot.processes.values(), top_n)
    syscalls = snapshot.views.get("syscalls")
    if isinstance(syscalls, SyscallView):
        yield from syscall_families(syscalls)
    guard = snapshot.views.get("guard")
    if isinstance(guard, GuardView):
        yield from guard_families(guard)


def host_families(snapshot: Snapshot) -> Iterator[Metric]:
    m = snapshot.metrics
    if m.cpu is not None:
        cpu = GaugeMetricFamily("fluxtui_cpu_usage_ratio",
                                "Share of CPU time over the last sampling interval, by mode",
                                labels=["mode"])
        for mode, pct in (("total", m.cpu.total), ("user", m.cpu.user),
                          ("system", m.cpu.system), ("iowait", m.cpu.iowait)):
            cpu.add_metric([mode], pct / 100.0)
        yield cpu
        if m.cpu_per_core:
            cores = GaugeMetricFamily("fluxtui_cpu_core_usage_ratio",
                                      "Share of CPU time per core over the last interval",
                                      labels=["core"])
            for index, pct in enumerate(m.cpu_per_core):
                cores.add_metric([str(index)], pct / 100.0)
            yield cores
    memory = GaugeMetricFamily("fluxtui_memory_bytes", "Memory (used = total - available)",
                               labels=["kind"])
    for kind, value in (("total", m.memory.total), ("used", m.memory.used),
                        ("available", m.memory.available)):
        memory.add_metric([kind], value)
    yield memory
    swap = GaugeMetricFamily("fluxtui_swap_bytes", "Swap space", labels=["kind"])
    swap.add_metric(["total"], m.memory.swap_total)
    swap.add_metric(["used"], m.memory.swap_used)
    yield swap
    load = GaugeMetricFamily("fluxtui_load_average", "Load average", labels=["period"])
    for period, average in zip(("1m", "5m", "15m"), m.load_average, strict=True):
        load.add_metric([period], average)
    yield load
    if m.interval is not None:  # rates need two samples
        disks = GaugeMetricFamily("fluxtui_disk_bytes_per_second",
                                  "Disk throughput over the last interval",
                                  labels=["device", "direction"])
        for io in m.disks:
            disks.add_metric([label(io.name), "read"], io.read_per_s)
            disks.add_metric([label(io.name), "write"], io.write_per_s)
        yield disks
        nets = GaugeMetricFamily("fluxtui_network_bytes_per_second",
                                 "Network throughput over the last interval",
                                 labels=["interface", "direction"])
        for io in m.networks:
            nets.add_metric([label(io.name), "receive"], io.read_per_s)
            nets.add_metric([label(io.name), "transmit"], io.write_per_s)
        yield nets
    yield GaugeMetricFamily("fluxtui_processes", "Processes on the host", value=m.process_count)
    yield CounterMetricFamily("fluxtui_engine_ticks", "Snapshots the engine has taken",
                              value=snapshot.sequence)


def collector_families(snapshot: Snapshot) -> Iterator[Metric]:
    up = GaugeMetricFamily("fluxtui_collector_up",
                           "1 when the collector or capability runs, 0 when it is stopped or "
                           "unavailable (the reason is in the dashboard, doctor and the log)",
                           labels=["collector"])
    for status in snapshot.statuses:
        up.add_metric([label(status.name)], 1 if status.running else 0)
    yield up


def risk_families(rows: Iterable[ProcessRow], top_n: int) -> Iterator[Metric]:
    scored = [row for row in rows if row.risk is not None]
    if not scored:
        return  # no risk scorer ran: nothing measured
    buckets = []
    for bound in RISK_BUCKETS:
        buckets.append((_le(bound), sum(1 for row in scored if row.risk is not None
                                        and row.risk <= bound)))
    buckets.append(("+Inf", len(scored)))
    yield GaugeHistogramMetricFamily(
        "fluxtui_process_risk", "Risk scores (0-100) of the processes at the latest tick",
        buckets=buckets, gsum_value=sum(row.risk or 0.0 for row in scored))
    top = GaugeMetricFamily(
        "fluxtui_process_risk_top",
        f"Risk score of the {top_n} riskiest processes with a score above 0 at the latest tick "
        "(at most that many series; a process that leaves the top disappears)",
        labels=["pid", "name", "exe"])
    riskiest = sorted((row for row in scored if (row.risk or 0.0) > 0),
                      key=lambda row: (-(row.risk or 0.0), row.pid))[:top_n]
    for row in riskiest:
        top.add_metric([str(row.pid), label(row.name), label(row.exe)], row.risk or 0.0)
    yield top


def _le(bound: float) -> str:
    return f"{bound:g}" if bound != int(bound) else f"{int(bound)}.0"


def syscall_families(view: SyscallView) -> Iterator[Metric]:
    rate = view.total_syscalls / view.window_s if view.window_s > 0 else 0.0
    yield GaugeMetricFamily("fluxtui_syscalls_per_second",
                            "System calls per second on the host over the last tick (BPF)",
                            value=rate)
    d = view.dropped_total
    dropped = CounterMetricFamily(
        "fluxtui_syscall_dropped",
        "What the syscall collector could not record since start, by cause: counts (count "
        "map full), thread_state (per-thread state not allocated), events (ring buffer full), "
        "queue (user-space queue full), argv (exec reported without arguments)",
        labels=["cause"])
    for cause, value in (("counts", d.counts), ("thread_state", d.thread_state),
                         ("events", d.events), ("queue", d.queue), ("argv", d.argv)):
        dropped.add_metric([cause], value)
    yield dropped


def guard_families(view: GuardView) -> Iterator[Metric]:
    yield GaugeMetricFamily("fluxtui_guard_pending_prompts",
                            "Credential-access prompts waiting for an answer", value=view.pending)
    yield GaugeMetricFamily("fluxtui_guard_waiting_opens",
                            "Opens of protected files blocked in pending prompts",
                            value=view.waiting_opens)
    yield GaugeMetricFamily("fluxtui_guard_protected_files", "Files the guard protects",
                            value=view.protected_files)
    yield CounterMetricFamily("fluxtui_guard_errors",
                              "Errors in the guard's responder since start (see the log)",
                              value=view.errors)
    yield CounterMetricFamily("fluxtui_guard_late_answers",
                              "Answers written more than 10 ms after their deadline",
                              value=view.late)
