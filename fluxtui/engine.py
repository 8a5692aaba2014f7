"""The engine: owns collectors, state and detectors; serves the TUI and headless mode alike.

A tick thread samples system metrics and processes, lets each component add what it knows
(`Component.on_tick`), and publishes an immutable `Snapshot`. The UI reads `engine.snapshot` on a
timer; urgent items (a permission request, an alert) reach subscribers through the `EventBus`
from whatever thread produced them. Nothing here imports textual.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from fluxtui.collectors.metrics import MetricsCollector
from fluxtui.collectors.processes import ProcessCollector
from fluxtui.config import Config
from fluxtui.events import (
    Alert,
    CollectorState,
    CollectorStatus,
    ProcessKey,
    ProcessRow,
    RiskInput,
    Snapshot,
    SystemMetrics,
)

log = logging.getLogger(__name__)

Subscriber = Callable[[object], None]


class EventBus:
    """Fan-out of events to subscribers. `publish` is thread-safe and never blocks on the UI:
    subscribers must only enqueue (the TUI's subscriber calls `App.post_message`)."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self._lock = threading.Lock()

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        with self._lock:
            self._subscribers = [*self._subscribers, subscriber]

        def unsubscribe() -> None:
            with self._lock:
                self._subscribers = [s for s in self._subscribers if s is not subscriber]

        return unsubscribe

    def publish(self, event: object) -> None:
        for subscriber in self._subscribers:  # copy-on-write list: no lock needed to iterate
            try:
                subscriber(event)
            except Exception:  # a broken subscriber must not break a collector thread
                log.exception("event subscriber failed")


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

    def annotate(self, key: ProcessKey, **columns: Any) -> None:
        """Fill ProcessRow columns (risk, syscalls_per_s, connections, ...) for one process."""
        self.annotations.setdefault(key, {}).update(columns)

    def add_risk(self, key: ProcessKey, points: float, reason: str) -> None:
        """Report risk seen by a non-syscall source (e.g. a port scan); the risk scorer, which
        runs after the producers, folds it into the process's score with the same decay."""
        self.risk_inputs.append(RiskInput(key, points, reason))

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

    def status(self) -> CollectorStatus: ...

    def on_tick(self, tick: TickContext) -> None: ...


class Engine:
    def __init__(self, config: Config, components: Iterable[Component] = (),
                 metrics: MetricsCollector | None = None,
                 processes: ProcessCollector | None = None) -> None:
        self.config = config
        self.bus = EventBus()
        self.metrics = metrics or MetricsCollector()
        self.processes = processes or ProcessCollector()
        self.components: list[Component] = list(components)
        self._alerts: deque[Alert] = deque(maxlen=config.general.max_alerts)
        self._sequence = 0
        self._last_tick: float | None = None
        self._snapshot: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self._failed: dict[str, str] = {}  # component name -> why it no longer runs

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, run_thread: bool = True) -> None:
        for component in self.components:
            try:
                component.start(self.bus)
            except Exception as exc:  # report, keep the rest working
                log.exception("component %s failed to start", component.name)
                self._failed[component.name] = f"failed to start: {exc}"
        self.tick()
        if run_thread:
            self._thread = threading.Thread(target=self._run, name="fluxtui-engine", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                component.stop()

    def _run(self) -> None:
        interval = self.config.general.refresh_interval
        deadline = time.monotonic() + interval
        while not self._stop.wait(max(0.0, deadline - time.monotonic())):
            try:
                self.tick()
            except Exception:
                log.exception("engine tick failed")
            # Re-arm from the previous deadline so ticks never overlap and never drift; skip
            # missed beats instead of bursting to catch up.
            deadline += interval
            now = time.monotonic()
            if deadline < now:
                deadline = now + interval

    # --- the tick ----------------------------------------------------------------------------

    def tick(self) -> Snapshot:
        with self._tick_lock:
            now = time.time()
            interval = None if self._last_tick is None else now - self._last_tick
            self._last_tick = now
            metrics = self.metrics.sample()
            processes = self.processes.sample()
            ctx = TickContext(now, interval, metrics, processes, self.bus)
            for component in self.components:
                if component.name in self._failed:
                    continue
                try:
                    component.on_tick(ctx)
                except Exception as exc:
                    log.exception("component %s tick failed", component.name)
                    self._failed[component.name] = f"stopped after an error: {exc}"
            for key, columns in ctx.annotations.items():
                row = processes.get(key)
                if row is not None:
                    processes[key] = dataclasses.replace(row, **columns)
            self._alerts.extend(ctx.alerts)
            self._sequence += 1
            snapshot = Snapshot(
                sequence=self._sequence,
                metrics=metrics,
                processes=processes,
                statuses=self.statuses(),
                alerts=tuple(self._alerts),
                views=ctx.views,
            )
            self._snapshot = snapshot
        self.bus.publish(snapshot)
        return snapshot

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def statuses(self) -> tuple[CollectorStatus, ...]:
        out = [self.metrics.status(), self.processes.status()]
        for component in self.components:
            reason = self._failed.get(component.name)
            if reason is not None:
                out.append(CollectorStatus(component.name, CollectorState.UNAVAILABLE, reason))
            else:
                out.append(component.status())
        return tuple(out)

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)
