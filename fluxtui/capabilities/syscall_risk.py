"""Syscall capture and risk scoring, plugged into the engine as two components.

`SyscallCapture` ("syscalls") drains the BPF collector each tick: it fills the syscalls/s and
syscall-count columns, runs the detection rules on high-signal events, raises their alerts,
publishes the events on the bus and keeps a short history per process for the detail view. It
puts a `SyscallView` in `Snapshot.views["syscalls"]`.

`RiskScorer` ("risk") runs last: it folds the syscall mix, the rules' findings and every other
component's `tick.risk_inputs` into one score per process, fills the risk, reasons and container
columns, raises an alert when a process crosses `risk_threshold`, and puts a `RiskView` in
`Snapshot.views["risk"]`. It works from risk inputs alone when BPF is unavailable.
Nothing here imports textual.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.collectors.syscalls import CollectorUnavailable, DropCounts, SyscallCollector
from fluxtui.config import Config
from fluxtui.detection.containers import CgroupIdIndex, ContainerCache, ContainerInfo
from fluxtui.detection.risk import RiskModel, RiskScore
from fluxtui.detection.rules import CONTAINER_ESCAPE_SYSCALLS, EventContext, Finding, evaluate
from fluxtui.events import Alert, CollectorState, CollectorStatus, ProcessKey, Severity
from fluxtui.pipeline import EventBus, TickContext

log = logging.getLogger(__name__)

RECENT_EVENTS = 50  # per process, for the detail view
REARM_FRACTION = 0.8  # a process re-alerts after its score fell below threshold * this


@dataclass(frozen=True)
class SyscallView:
    """Snapshot.views["syscalls"]: what the kernel reported during the last tick."""

    window_s: float  # seconds the counts cover
    counts: dict[ProcessKey, dict[str, int]]  # syscall name -> calls in the window
    bigrams: dict[ProcessKey, dict[tuple[str, str], int]]  # (previous, syscall) -> calls
    findings: tuple[Finding, ...]
    exited: tuple[ProcessKey, ...]
    events: int  # high-signal events received in the window
    total_syscalls: int
    dropped: DropCounts  # in the window
    dropped_total: DropCounts  # since start


@dataclass(frozen=True)
class RiskView:
    """Snapshot.views["risk"]: the score and container of every process in the table (the
    table's container column holds the short label; this has the full id and runtime)."""

    threshold: float
    scores: dict[ProcessKey, RiskScore] = field(default_factory=dict)
    containers: dict[ProcessKey, ContainerInfo] = field(default_factory=dict)


def _sorted_counts(named: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(named.items(), key=lambda kv: (-kv[1], kv[0])))


class SyscallCapture:
    name = "syscalls"

    def __init__(self, config: Config, collector: SyscallCollector | None = None,
                 proc: str = "/proc") -> None:
        self.config = config
        sc = config.syscalls
        self.collector = collector or SyscallCollector(
            ring_buffer_pages=sc.ring_buffer_pages, count_map_entries=sc.count_map_entries,
            event_queue_limit=sc.event_queue_limit)
        self._state = CollectorState.STOPPED
        self._reason = ""
        self._warning = ""
        self._bus: EventBus | None = None
        self._lock = threading.Lock()  # guards what the UI thread reads
        self._recent: dict[ProcessKey, deque[KernelEvent]] = {}
        self._totals: dict[ProcessKey, dict[str, int]] = {}
        self._last: dict[ProcessKey, tuple[tuple[str, int], ...]] = {}
        self._alerted: set[tuple[ProcessKey, str]] = set()
        self._containers = ContainerCache(proc, CgroupIdIndex())
        self._proc = proc
        self._exe: dict[int, tuple[ProcessKey, str]] = {}  # pid -> key, exe of its last exec
        self._rate = 0.0
        self._dropped = DropCounts()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        self._bus = bus
        pages = self.config.syscalls.ring_buffer_pages
        if not self.config.syscalls.enabled:
            self._unavailable("disabled in the configuration (syscalls.enabled: false)")
            return
        if pages & (pages - 1):
            self._unavailable(f"syscalls.ring_buffer_pages must be a power of two, not {pages}")
            return
        try:
            self.collector.start()
        except CollectorUnavailable as exc:
            self._unavailable(str(exc))
            return
        self._state = CollectorState.RUNNING
        table = self.collector.table
        if table is not None:
            unknown = sorted(n for n in self.config.risk.base_risk_scores if n not in table.numbers)
            if unknown:
                self._warning = ("risk.base_risk_scores names no syscall of this machine: "
                                 + ", ".join(unknown))
                log.warning("%s", self._warning)

    def _unavailable(self, reason: str) -> None:
        self._state = CollectorState.UNAVAILABLE
        self._reason = reason
        log.info("syscall capture unavailable: %s", reason)

    def stop(self) -> None:
        self.collector.close()
        if self._state is CollectorState.RUNNING:
            self._state = CollectorState.STOPPED

    def status(self) -> CollectorStatus:
        if self._state is not CollectorState.RUNNING:
            return CollectorStatus(self.name, self._state, self._reason)
        d = self._dropped
        detail = (f"{self._rate:,.0f} syscalls/s · dropped {d.syscalls_lost} calls, "
                  f"{d.events_lost} events · own pid {self.collector.self_pid} untraced")
        if self._warning:
            detail += f" · {self._warning}"
        return CollectorStatus(self.name, self._state, "", detail)

    # --- for the detail view (UI thread) -----------------------------------------------------

    def recent_events(self, key: ProcessKey) -> tuple[KernelEvent, ...]:
        """The process's last high-signal events, oldest first."""
        with self._lock:
            return tuple(self._recent.get(key, ()))

    def top_syscalls(self, key: ProcessKey) -> tuple[tuple[str, int], ...]:
        """Calls by syscall since fluxtui first saw the process, most frequent first."""
        with self._lock:
            return _sorted_counts(self._totals.get(key, {}))

    def last_tick_syscalls(self, key: ProcessKey) -> tuple[tuple[str, int], ...]:
        with self._lock:
            return self._last.get(key, ())

    # --- the tick ----------------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        if self._state is not CollectorState.RUNNING:
            return
        drain = self.collector.drain()
        table = self.collector.table
        assert table is not None
        window = drain.window_s if drain.window_s > 0 else (tick.interval or 1.0)

        counts: dict[ProcessKey, dict[str, int]] = {}
        for key, by_nr in drain.counts.items():
            named: dict[str, int] = {}
            for nr, n in by_nr.items():
                name = table.name(nr)
                named[name] = named.get(name, 0) + n
            counts[key] = named
        bigrams = {key: {(table.name(a), table.name(b)): n for (a, b), n in pairs.items()}
                   for key, pairs in drain.bigrams.items()}
        total = sum(sum(named.values()) for named in counts.values())
        self._rate = total / window
        self._dropped = drain.dropped_total

        last: dict[ProcessKey, tuple[tuple[str, int], ...]] = {}
        for key in tick.processes:
            named = counts.get(key, {})
            last[key] = _sorted_counts(named)
            tick.annotate(key, syscalls_per_s=sum(named.values()) / window,
                          syscall_counts=last[key])

        findings, exited = self._handle_events(drain.events, tick)
        # Without group_dead a main thread's exit looks like the process's: a key still in the
        # table keeps its state (it goes when it leaves the table).
        gone = {k for k in exited if k not in tick.processes}

        with self._lock:
            self._last = last
            for key, named in counts.items():
                if key in tick.processes:
                    totals = self._totals.setdefault(key, {})
                    for name, n in named.items():
                        totals[name] = totals.get(name, 0) + n
            # State goes with the exit event; processes whose exit was not seen (a full ring
            # buffer) go when they leave the process table.
            alive = set(tick.processes)
            seen = alive | {e.key for e in drain.events}
            for key in [k for k in self._totals if k not in alive or k in gone]:
                del self._totals[key]
            for key in [k for k in self._recent if k not in seen or k in gone]:
                del self._recent[key]
        self._alerted = {(k, r) for k, r in self._alerted if k in seen and k not in gone}
        self._containers.retain(alive - gone)
        self._exe = {pid: (k, exe) for pid, (k, exe) in self._exe.items()
                     if k in seen and k not in gone}

        tick.set_view(self.name, SyscallView(
            window_s=window, counts=counts, bigrams=bigrams, findings=tuple(findings),
            exited=tuple(exited), events=len(drain.events), total_syscalls=total,
            dropped=drain.dropped, dropped_total=drain.dropped_total))

    def _handle_events(self, events: list[KernelEvent], tick: TickContext
                       ) -> tuple[list[Finding], list[ProcessKey]]:
        findings: list[Finding] = []
        exited: list[ProcessKey] = []
        for event in events:
            if event.kind == "exit":
                exited.append(event.key)
                continue
            parent_exe = ""
            if event.kind in ("exec", "cred"):
                tick.identity_changed(event.key)  # the User column follows setuid at once
            if event.kind == "exec":
                self._containers.refresh(event.key)
                parent_exe = self._parent_exe(event.ppid)
                self._exe[event.key.pid] = (event.key, event.exe)
            container: ContainerInfo | None = None
            if event.kind == "syscall" and event.syscall in CONTAINER_ESCAPE_SYSCALLS:
                container = self._containers.get(event.key, event.cgroup_id)
            with self._lock:
                self._recent.setdefault(event.key, deque(maxlen=RECENT_EVENTS)).append(event)
            if self._bus is not None:
                self._bus.publish(event)
            for finding in evaluate(event, EventContext(container, parent_exe)):
                findings.append(finding)
                once = (finding.key, finding.rule_id)
                if finding.raises_alert and once not in self._alerted:
                    self._alerted.add(once)
                    tick.raise_alert(self._alert(finding, event, tick))
        return findings, exited

    def _parent_exe(self, ppid: int) -> str:
        """The executable of the parent: from its own last exec event when that is still the
        process with this pid, else /proc/PPID/exe (a forked child that did not exec runs its
        parent's program); "" when neither is known. Never the comm, which anyone can set."""
        known = self._exe.get(ppid)
        if known is not None and known[1] and read_start_ticks(ppid, self._proc) in (
                None, known[0].start_ticks):
            return known[1]
        try:
            return os.readlink(f"{self._proc}/{ppid}/exe").removesuffix(" (deleted)")
        except OSError:
            return ""

    @staticmethod
    def _alert(finding: Finding, event: KernelEvent, tick: TickContext) -> Alert:
        row = tick.processes.get(finding.key)
        assert finding.severity is not None
        return Alert(
            timestamp=event.timestamp,
            rule_id=finding.rule_id,
            title=finding.title,
            severity=finding.severity,
            technique_id=finding.technique[0],
            technique_name=finding.technique[1],
            key=finding.key,
            process_name=row.name if row is not None else event.name,
            reasons=(finding.reason,),
            extra={**finding.extra, "points": finding.points,
                   "start_ticks": finding.key.start_ticks},
        )


class RiskScorer:
    name = "risk"

    def __init__(self, config: Config, proc: str = "/proc",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.model = RiskModel(config.risk)
        self._clock = clock  # decay runs on this; tick.now (wall clock) stamps alerts
        self._containers = ContainerCache(proc, CgroupIdIndex())
        self._above: set[ProcessKey] = set()
        self._scores: dict[ProcessKey, RiskScore] = {}
        self._container_of: dict[ProcessKey, ContainerInfo | None] = {}
        self._state = CollectorState.STOPPED

    def start(self, bus: EventBus) -> None:
        self._state = CollectorState.RUNNING

    def stop(self) -> None:
        self._state = CollectorState.STOPPED

    def status(self) -> CollectorStatus:
        detail = f"threshold {self.config.risk.risk_threshold:g} · anomaly model: none trained"
        return CollectorStatus(self.name, self._state, "", detail)

    # --- for the detail view (UI thread) -----------------------------------------------------

    def explain(self, key: ProcessKey) -> RiskScore | None:
        """The process's score as of the last tick, None when it is not in the table."""
        return self._scores.get(key)

    def container(self, key: ProcessKey) -> ContainerInfo | None:
        return self._container_of.get(key)

    # --- the tick ----------------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        now = self._clock()
        threshold = self.config.risk.risk_threshold
        seen: set[ProcessKey] = set(tick.processes)
        view = tick.views.get(SyscallCapture.name)
        exited: set[ProcessKey] = set()
        if isinstance(view, SyscallView):
            for key, named in view.counts.items():
                self.model.observe_syscalls(key, named, now)
                seen.add(key)
            for f in view.findings:
                self.model.add(f.key, f.points, f.reason, now, *f.technique, group=f.rule_id)
                seen.add(f.key)
            # Without group_dead a main thread's exit looks like the process's: a key still in
            # the table is kept (retain drops it once it has really gone).
            exited = {k for k in view.exited if k not in tick.processes}
        for item in tick.risk_inputs:
            self.model.add(item.key, item.points, item.reason, now)
            seen.add(item.key)

        scores: dict[ProcessKey, RiskScore] = {}
        containers: dict[ProcessKey, ContainerInfo | None] = {}
        for key, row in tick.processes.items():
            score = self.model.score(key, now)
            container = self._containers.get(key)
            scores[key] = score
            containers[key] = container
            tick.annotate(key, risk=score.score, risk_reasons=score.reasons,
                          container=container.label if container else None)
            if score.score >= threshold and score.score > 0 and key not in self._above:
                self._above.add(key)
                tick.raise_alert(self._alert(key, row.name, score, threshold, tick.now))
            elif score.score < threshold * REARM_FRACTION:
                self._above.discard(key)

        for key in exited:
            self.model.forget(key)
        self.model.retain(seen - exited)
        self._above &= set(tick.processes)
        self._containers.retain(set(tick.processes))
        self._scores, self._container_of = scores, containers
        tick.set_view(self.name, RiskView(threshold, scores, {
            key: info for key, info in containers.items() if info is not None}))

    @staticmethod
    def _alert(key: ProcessKey, name: str, score: RiskScore, threshold: float, now: float
               ) -> Alert:
        return Alert(
            timestamp=now,
            rule_id="risk.threshold",
            title=f"Risk score {score.score:.0f} reached the threshold ({threshold:g})",
            severity=Severity.HIGH if score.score >= 80 else Severity.MEDIUM,
            technique_id=score.technique_id,
            technique_name=score.technique_name,
            key=key,
            process_name=name,
            reasons=score.reasons,
            extra={"score": score.score, "syscall_points": round(score.syscall_points, 1),
                   "event_points": round(score.event_points, 1),
                   "anomaly": score.anomaly, "anomaly_reason": score.anomaly_reason,
                   "start_ticks": key.start_ticks},
        )
