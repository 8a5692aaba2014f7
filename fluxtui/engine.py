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
from typing import Any

from fluxtui.bus import EventBus
from fluxtui.capabilities.command_dispatch import EngineCommands
from fluxtui.collectors.metrics import MetricsCollector
from fluxtui.collectors.processes import ProcessCollector
from fluxtui.commands import Commands
from fluxtui.component import Component, TickContext, check_order
from fluxtui.config import Config
from fluxtui.events import (
    Alert,
    ComponentState,
    ComponentStatus,
    ProcessKey,
    ProcessRow,
    Snapshot,
)

log = logging.getLogger(__name__)


class Engine:
    def __init__(self, config: Config, components: Iterable[Component] = (),
                 metrics: MetricsCollector | None = None,
                 processes: ProcessCollector | None = None) -> None:
        self.config = config
        self.bus = EventBus()
        self.metrics = metrics or MetricsCollector()
        self.processes = processes or ProcessCollector()
        self.components: list[Component] = list(components)
        check_order(self.components)  # a consumer after its producers, or a clear error
        self._alerts: deque[Alert] = deque(maxlen=config.general.max_alerts)
        self._sequence = 0
        self._last_tick: float | None = None
        self._snapshot: Snapshot | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._starter: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        self._failed: dict[str, str] = {}  # component name -> why it no longer runs
        self._started: set[str] = set()
        # key -> (collector row, annotations, merged row) of the last tick: see _merge_annotations
        self._merged: dict[ProcessKey, tuple[ProcessRow, dict[str, Any], ProcessRow]] = {}

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start components and ticking on the engine thread; returns at once (a BPF compile
        or a fanotify set-up must not delay the first frame)."""
        self._thread = threading.Thread(target=self._run, name="fluxtui-engine", daemon=True)
        self._thread.start()

    def start_sync(self) -> Snapshot:
        """Start components and take the first tick on the caller's thread (tests, benchmarks)."""
        self._start_components()
        return self.tick()

    def _start_components(self) -> None:
        # The quick ones first (see Component): a final record the capture hands on in its
        # first tick must find the risk scorer ticking. sorted() keeps the order otherwise.
        for component in sorted(self.components,
                                key=lambda c: not getattr(c, "quick_start", False)):
            if self._stop.is_set():
                return
            try:
                component.start(self.bus)
            except Exception as exc:  # report, keep the rest working
                log.exception("component %s failed to start", component.name)
                self._failed[component.name] = f"failed to start: {exc}"
            self._started.add(component.name)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._starter is not None:
            self._starter.join(timeout=30)  # a BPF compile in progress finishes first
        for component in reversed(self.components):
            with contextlib.suppress(Exception):
                component.stop()
        self.processes.close()

    def _run(self) -> None:
        # Components start on their own thread (a BPF compile takes seconds) while metrics and
        # processes keep ticking; each component joins the ticks once it has started.
        self._starter = threading.Thread(target=self._start_components,
                                         name="fluxtui-start", daemon=True)
        self._starter.start()
        interval = self.config.general.refresh_interval
        deadline = time.monotonic()
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
        newly_failed = []
        with self._tick_lock:
            now = time.time()
            clock = time.monotonic()  # intervals: immune to wall-clock steps
            interval = None if self._last_tick is None else clock - self._last_tick
            self._last_tick = clock
            processes = self.processes.sample()
            metrics = self.metrics.sample(len(processes))
            ctx = TickContext(now, interval, metrics, processes, self.bus)
            for component in self.components:
                if component.name in self._failed or component.name not in self._started:
                    continue
                try:
                    component.on_tick(ctx)
                except Exception as exc:
                    log.exception("component %s tick failed", component.name)
                    self._failed[component.name] = f"stopped after an error: {exc}"
                    newly_failed.append(component)
            for key in ctx.stale_identities:
                self.processes.forget_identity(key)
            self._merge_annotations(processes, ctx.annotations)
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
        for component in newly_failed:  # its threads must not run on unobserved
            with contextlib.suppress(Exception):
                component.stop()
        self.bus.publish(snapshot)
        return snapshot

    def _merge_annotations(self, processes: dict[ProcessKey, ProcessRow],
                           annotations: dict[ProcessKey, dict[str, Any]]) -> None:
        """Fold the components' columns into the rows. A row whose collector row is the same
        object as last tick (the process did not change) and whose columns are equal gets last
        tick's merged row back, the same object: the table redraws only rows that changed, and
        nothing is copied for the thousands of processes that sleep."""
        merged: dict[ProcessKey, tuple[ProcessRow, dict[str, Any], ProcessRow]] = {}
        previous = self._merged
        for key, columns in annotations.items():
            row = processes.get(key)
            if row is None:
                continue
            before = previous.get(key)
            if before is not None and before[0] is row and before[1] == columns:
                out = before[2]
            else:
                out = dataclasses.replace(row, **columns)
            processes[key] = out
            merged[key] = (row, columns, out)
        self._merged = merged

    @property
    def snapshot(self) -> Snapshot | None:
        return self._snapshot

    def statuses(self) -> tuple[ComponentStatus, ...]:
        out = [self.metrics.status(), self.processes.status()]
        for component in self.components:
            reason = self._failed.get(component.name)
            if reason is not None:
                out.append(ComponentStatus(component.name, ComponentState.UNAVAILABLE, reason))
            elif component.name not in self._started:
                out.append(ComponentStatus(component.name, ComponentState.STOPPED, "starting…"))
            else:
                out.append(component.status())
        return tuple(out)

    def component(self, name: str) -> Component | None:
        return next((c for c in self.components if c.name == name), None)

    # --- the dashboard's source (fluxtui.views.DashboardSource) ------------------------------

    def latest_snapshot(self) -> Snapshot | None:
        return self.snapshot

    def subscribe(self, subscriber: Callable[[object], None]) -> Callable[[], None]:
        return self.bus.subscribe(subscriber)

    @property
    def commands(self) -> Commands:
        return EngineCommands(self.components)
