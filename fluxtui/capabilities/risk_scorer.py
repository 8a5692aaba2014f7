"""The risk scorer, plugged into the engine as the "risk" component; it runs last.

It folds the syscall mix and the rules' findings (the capture's `SYSCALLS` channel), every
other component's risk inputs (`RISK_INPUTS`, with their ATT&CK technique) and the anomaly
model's verdicts (`ANOMALIES`) into one score per process; it declares these three in
`consumes`, so the engine refuses an order that puts a producer of them after it. It fills
the risk, reasons and container columns, raises an alert when a process crosses
`risk_threshold`, and puts a `RiskView` in `Snapshot.views["risk"]`. It works from risk
inputs alone when BPF is unavailable.

Whole lives: when the syscall view reports a process's final record (`SyscallView.final`), the
process is scored on everything it did (its findings and syscalls up to its exit, the last
counts included), a `ProcessExit` goes on the bus (the headless stream writes it as one ECS
event), a threshold alert is raised if it crossed it, and it stays in the snapshot as a row
with `exited_at` set for `risk.exited_retention_s` seconds.

Propagation: a finding on a process also counts toward the processes that started it, up to
`risk.propagation_depth` generations, multiplied by `risk.propagation_factor` per generation,
with the chain in the reason. It stops at init, kernel threads and session leaders that run a
verified executable (log-in shells, sshd sessions, terminal shells, service managers' units):
see fluxtui/capabilities/lineage.py. Nothing here imports textual.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from fluxtui.bus import EventBus
from fluxtui.capabilities.lineage import Lineage
from fluxtui.capabilities.syscall_view import SYSCALLS
from fluxtui.component import ANOMALIES, RISK_INPUTS, Channel, TickContext
from fluxtui.config import Config
from fluxtui.detection.container_index import ContainerResolver
from fluxtui.detection.risk import NO_MODEL, RiskModel, RiskScore
from fluxtui.events import (
    Alert,
    ComponentState,
    ComponentStatus,
    ContainerIdentity,
    ProcessExit,
    ProcessKey,
    ProcessLifetime,
    ProcessRow,
    Severity,
)
from fluxtui.views import RiskView

log = logging.getLogger(__name__)

REARM_FRACTION = 0.8  # a process re-alerts after its score fell below threshold * this

__all__ = ["REARM_FRACTION", "RiskScorer", "RiskView"]  # RiskView: fluxtui/views.py


class RiskScorer:
    name = "risk"
    quick_start = True  # consumes what the others produce from their first tick
    produces: ClassVar[tuple[Channel[Any], ...]] = ()
    consumes: ClassVar[tuple[Channel[Any], ...]] = (SYSCALLS, RISK_INPUTS, ANOMALIES)

    def __init__(self, config: Config, proc: str = "/proc",
                 clock: Callable[[], float] = time.monotonic,
                 containers: ContainerResolver | None = None) -> None:
        self.config = config
        self.model = RiskModel(config.risk)
        self._clock = clock  # decay runs on this; tick.now (wall clock) stamps alerts
        # Shared with the syscall capture (capabilities/assembly.py): one cache of containers.
        self._containers = containers or ContainerResolver(proc)
        self._above: set[ProcessKey] = set()
        self._state = ComponentState.STOPPED
        self._rows: dict[ProcessKey, ProcessRow] = {}  # last tick's rows, to keep exited ones
        self._exited: dict[ProcessKey, tuple[ProcessRow, ProcessExit, float]] = {}
        self._alerts_of: dict[ProcessKey, set[str]] = {}
        self._anomaly_note = NO_MODEL
        # Final records wait one tick before they are scored: a network detection on the same
        # process (its connections thread hands them over at the next tick) still counts.
        self._closing: dict[ProcessKey, ProcessLifetime] = {}
        self._received: dict[ProcessKey, float] = {}  # monotonic time each final arrived
        # Every process's score and container as of the last tick (see _score_changed), the
        # processes in a container, and what _score_changed compares with.
        self._scores: dict[ProcessKey, RiskScore] = {}
        self._container_of: dict[ProcessKey, ContainerIdentity] = {}
        self._in_containers: dict[ProcessKey, ContainerIdentity] = {}
        self._published: dict[ProcessKey, RiskScore] = {}  # the last view's copy (UI thread)
        self._why_none_before: str | None = None
        self._verdicts_before: set[ProcessKey] = set()

    def start(self, bus: EventBus) -> None:
        self._state = ComponentState.RUNNING

    def stop(self) -> None:
        self._state = ComponentState.STOPPED

    def status(self) -> ComponentStatus:
        detail = (f"threshold {self.config.risk.risk_threshold:g} · anomaly model: "
                  f"{self._anomaly_note or 'running'}")
        return ComponentStatus(self.name, self._state, "", detail)

    # --- for the detail view (UI thread) -----------------------------------------------------

    def explain(self, key: ProcessKey) -> RiskScore | None:
        """The process's score as of the last tick, None when it is not in the table."""
        return self._published.get(key)

    def container(self, key: ProcessKey) -> ContainerIdentity | None:
        """The process's container, None when it is not in the table."""
        return self._container_of.get(key)

    # --- the tick ----------------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        now = self._clock()
        risk = self.config.risk
        threshold = risk.risk_threshold
        seen: set[ProcessKey] = set(tick.processes)
        view = tick.read(SYSCALLS)
        inputs = tick.read(RISK_INPUTS) or ()
        anomalies = tick.read(ANOMALIES)
        final: dict[ProcessKey, ProcessLifetime] = {}
        for alert in tick.alerts:
            if alert.key is not None:
                self._alerts_of.setdefault(alert.key, set()).add(alert.rule_id)
        if view is not None:
            for key, named in view.counts.items():
                self.model.observe_syscalls(key, named, now)
                seen.add(key)
            for f in view.findings:
                self.model.add(f.key, f.points, f.reason, now, *f.technique, group=f.rule_id)
                seen.add(f.key)
                seen.update(self._propagate(view.lineage, f.key, f.points, f.reason,
                                            f.technique, f.rule_id, now))
            final = self._closing
            self._closing = {k: v for k, v in view.final.items() if k not in final}
            self._received.update(dict.fromkeys(self._closing, now))
        for item in inputs:
            self.model.add(item.key, item.points, item.reason, now, *item.technique,
                           group=item.group)
            seen.add(item.key)
            if view is not None:
                seen.update(self._propagate(view.lineage, item.key, item.points, item.reason,
                                            item.technique, item.group or item.reason, now))
        # "" means a model ran; with no anomaly component nothing sets it, and no verdict came.
        verdicts = anomalies.verdicts if anomalies is not None else {}
        why_none = (anomalies.why_none if anomalies is not None else "") or (
            "" if verdicts else NO_MODEL)
        self._anomaly_note = why_none
        self.model.set_anomalies(verdicts, why_none, now)

        self._score_changed(tick, now, threshold, final, verdicts, why_none)
        for key, life in final.items():
            self._close(tick, key, life, now, threshold)
        self.model.retain((seen | set(self._closing)) - set(final))
        self._above &= tick.processes.keys() | self._closing.keys()
        kept = {key: self._rows[key] for key in self._closing if key in self._rows}
        self._rows = {**kept, **tick.processes}
        self._alerts_of = {k: v for k, v in self._alerts_of.items() if k in seen}
        self._keep_exited(tick, now)
        self._name_containers(tick, final)
        self._published = dict(self._scores)
        tick.set_view(self.name, RiskView(threshold, self._published, dict(self._in_containers),
                                          {key: exit_ for key, (_, exit_, _)
                                           in self._exited.items()}))

    def _score_changed(self, tick: TickContext, now: float, threshold: float,
                       final: dict[ProcessKey, ProcessLifetime],
                       verdicts: Mapping[ProcessKey, Any], why_none: str) -> None:
        """Score the processes whose score can have changed since the last tick, set their
        columns and check the threshold. Which can: new processes, those with anything in the
        model (decaying syscall recency, findings, an anomaly peak), those with a verdict this
        tick or the last, those whose container an event told; every process when the reason
        for no verdict changed (it is in every zero score). A process with nothing against it
        scores the one shared zero, unchanged tick after tick: the thousands of processes that
        sleep are not looked at."""
        scores, containers, in_containers = self._scores, self._container_of, self._in_containers
        processes = tick.processes
        for key in (scores.keys() - processes.keys()) | (scores.keys() & final.keys()):
            scores.pop(key, None)
            containers.pop(key, None)
            in_containers.pop(key, None)
        self._containers.forget(self._containers.known() - processes.keys())
        if why_none != self._why_none_before:
            dirty: set[ProcessKey] | Any = processes.keys()
        else:
            dirty = {*tick.appeared, *self.model.tracked(), *verdicts, *self._verdicts_before,
                     *self._containers.take_observed()}
        self._why_none_before = why_none
        self._verdicts_before = set(verdicts)
        score_of, container_of = self.model.score, self._containers.of_process
        annotate, above, rearm = tick.annotate_columns, self._above, threshold * REARM_FRACTION
        for key in dirty:
            row = processes.get(key)
            if row is None or key in final:
                continue
            score = score_of(key, now)
            container = container_of(key)
            if scores.get(key) is not score or containers.get(key) is not container:
                annotate(key, {"risk": score.score, "risk_reasons": score.reasons,
                               "container": container.label if container.is_container else None,
                               "container_identity": container})
                scores[key] = score
                containers[key] = container
                if container.is_container:
                    in_containers[key] = container
                else:
                    in_containers.pop(key, None)
            points = score.score
            if (points >= threshold and points > 0 and key not in above) or (
                    points < rearm and key in above):
                self._threshold_alert(tick, key, row.name, score, threshold, container)

    def _name_containers(self, tick: TickContext,
                         final: dict[ProcessKey, ProcessLifetime]) -> None:
        """Every alert of this tick about a process names where the process runs (the syscall
        capture already named its own, from the event's cgroup)."""
        for i, alert in enumerate(tick.alerts):
            if alert.key is not None and alert.container is None:
                life = final.get(alert.key)
                where = (life.container if life is not None else
                         self._container_of.get(alert.key)
                         or self._containers.of_process(alert.key))
                tick.alerts[i] = dataclasses.replace(alert, container=where)

    def _propagate(self, lineage: Lineage | None, key: ProcessKey, points: float, reason: str,
                   technique: tuple[str, str], group: str, now: float) -> list[ProcessKey]:
        risk = self.config.risk
        if lineage is None or points <= 0 or risk.propagation_depth == 0:
            return []
        ancestors = lineage.ancestors(key, risk.propagation_depth)
        chain = [f"{lineage.exe(key).rsplit('/', 1)[-1] or 'pid'} {key.pid}"]
        for depth, ancestor in enumerate(ancestors, start=1):
            factor = risk.propagation_factor ** depth
            via = " ← ".join(reversed(chain))
            self.model.add(ancestor, points * factor, f"started {via}: {reason}", now,
                           *technique, group=f"child:{group}")
            chain.append(f"{lineage.exe(ancestor).rsplit('/', 1)[-1] or 'pid'} {ancestor.pid}")
        return ancestors

    def _threshold_alert(self, tick: TickContext, key: ProcessKey, name: str, score: RiskScore,
                         threshold: float, container: ContainerIdentity) -> None:
        if score.score >= threshold and score.score > 0 and key not in self._above:
            self._above.add(key)
            tick.raise_alert(self._alert(key, name, score, threshold, tick.now, container))
            self._alerts_of.setdefault(key, set()).add("risk.threshold")
        elif score.score < threshold * REARM_FRACTION:
            self._above.discard(key)

    def _close(self, tick: TickContext, key: ProcessKey, life: ProcessLifetime, now: float,
               threshold: float) -> None:
        """Score a process that exited on its whole life and publish its final record (scored
        as of when its final record arrived: the one-tick wait does not decay it)."""
        score = self.model.score(key, self._received.pop(key, now))
        self._threshold_alert(tick, key, life.name, score, threshold, life.container)
        exit_ = ProcessExit(life, score.score, score.reasons,
                            tuple(sorted(self._alerts_of.pop(key, set()))), score.anomaly,
                            score.anomaly_reason, score.technique_id, score.technique_name)
        tick.bus.publish(exit_)
        self.model.forget(key)
        self._above.discard(key)
        retention = self.config.risk.exited_retention_s
        if retention <= 0:
            return
        row = self._rows.get(key) or tick.processes.get(key) or ProcessRow(
            key=key, ppid=life.parent.pid if life.parent else 0,
            user="" if life.uid is None else str(life.uid), name=life.name, exe=life.exe,
            cmdline=(life.exe or life.name, *life.args), cpu_percent=None, memory_rss=0,
            threads=0, state="exited")
        row = dataclasses.replace(row, state="exited", exited_at=life.exited, risk=score.score,
                                  risk_reasons=score.reasons, syscalls_per_s=None,
                                  cpu_percent=None, container_identity=life.container,
                                  container=life.container.label
                                  if life.container.is_container else None)
        self._exited[key] = (row, exit_, now + retention)

    def _keep_exited(self, tick: TickContext, now: float) -> None:
        for key in [k for k, (_, _, until) in self._exited.items() if until <= now]:
            del self._exited[key]
        for key, (row, _, _) in self._exited.items():
            if key in tick.processes:  # listed by /proc a last time: mark the table's row
                tick.annotate(key, state="exited", exited_at=row.exited_at, risk=row.risk,
                              risk_reasons=row.risk_reasons)
            else:
                tick.keep_exited(row)

    @staticmethod
    def _alert(key: ProcessKey, name: str, score: RiskScore, threshold: float, now: float,
               container: ContainerIdentity) -> Alert:
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
            container=container,
        )
