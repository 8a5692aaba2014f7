"""The contract between the engine and the capabilities plugged into it.

A `Component` (syscalls and risk, credential guard, connections, ...) is started with the
`EventBus`, and on every engine tick receives a `TickContext` to add what it knows to the
snapshot. Nothing here imports textual.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from fluxtui.bus import EventBus
from fluxtui.events import (
    Alert,
    AnomalyInput,
    ComponentStatus,
    ProcessKey,
    ProcessRow,
    RiskInput,
    SystemMetrics,
)

log = logging.getLogger(__name__)

class TickContext:
    """What a component sees during one tick, and how it contributes to the snapshot."""

    def __init__(self, now: float, interval: float | None, metrics: SystemMetrics,
                 processes: dict[ProcessKey, ProcessRow], bus: EventBus) -> None:
        self.now = now
        self.interval = interval  # seconds since previous tick, None on the first
        self.metrics = metrics
        self.processes = processes  # read-only for components: use annotate()
        self.bus = bus
        self.annotations: dict[ProcessKey, dict[str, Any]] = {}
        self.alerts: list[Alert] = []
        self.views: dict[str, Any] = {}
        self.risk_inputs: list[RiskInput] = []
        self.anomalies: dict[ProcessKey, AnomalyInput] = {}
        self.anomaly_model: str = ""  # why there is no anomaly verdict ("" when a model ran)
        self.stale_identities: list[ProcessKey] = []

    def annotate(self, key: ProcessKey, **columns: Any) -> None:
        """Fill ProcessRow columns (risk, syscalls_per_s, connections, ...) for one process."""
        self.annotations.setdefault(key, {}).update(columns)

    def add_risk(self, key: ProcessKey, points: float, reason: str,
                 technique: tuple[str, str] = ("", ""), group: str = "") -> None:
        """Report risk seen by a non-syscall source (e.g. a port scan); the risk scorer, which
        runs after the producers, folds it into the process's score with the same decay.
        Inputs of one `group` (e.g. a rule id) count once, at their largest."""
        self.risk_inputs.append(RiskInput(key, points, reason, technique, group))

    def keep_exited(self, row: ProcessRow) -> None:
        """Show a process that has exited (`row.exited_at` set) in this tick's snapshot; the
        risk scorer keeps them for `risk.exited_retention_s`."""
        self.processes.setdefault(row.key, row)

    def set_anomaly(self, verdict: AnomalyInput) -> None:
        """The anomaly model's verdict for one process this tick; the risk scorer, which runs
        after it, enters it into the score with `risk.anomaly_weight`."""
        self.anomalies[verdict.key] = verdict

    def identity_changed(self, key: ProcessKey) -> None:
        """The process's credentials or executable changed (setuid, exec): its user, executable
        and command line are re-read at the next tick instead of on the slow rotation."""
        self.stale_identities.append(key)

    def raise_alert(self, alert: Alert) -> None:
        self.alerts.append(alert)
        self.bus.publish(alert)

    def set_view(self, name: str, view: Any) -> None:
        self.views[name] = view


class Component(Protocol):
    """A capability plugged into the engine (syscalls, risk, guard, connections, ...).

    `start` may spawn threads; it must not raise for a missing kernel feature but report it in
    `status()`. `on_tick` runs on the engine's tick thread, in registration order, and must be
    quick (drain maps, merge caches), never blocking on I/O that may hang."""

    name: str

    def start(self, bus: EventBus) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> ComponentStatus: ...

    def on_tick(self, tick: TickContext) -> None: ...
