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
from collections.abc import Set as AbstractSet
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

_UNSET = object()
# A column of a component that stopped goes back to its default: "not measured" (None).
ROW_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ProcessRow)
                if f.default is not dataclasses.MISSING}


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
        # See _merge: the collector's rows of the last tick, the columns the components set
        # (they persist), the rows shown (collector row + columns), which columns each
        # component set, and the components that have ticked.
        self._sampled: dict[ProcessKey, ProcessRow] = {}
        self._columns: dict[ProcessKey, dict[str, Any]] = {}
        self._rows: dict[ProcessKey, ProcessRow] = {}
        self._columns_of: dict[str, set[str]] = {}
        self._ticked: set[str] = set()

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
            sampled = self.processes.sample()
            metrics = self.metrics.sample(len(sampled))
            first = not self._sampled
            appeared = None if first else sampled.keys() - self._sampled.keys()
            ctx = TickContext(now, interval, metrics, dict(sampled), self.bus, appeared)
            for component in self.components:
                if component.name in self._failed or component.name not in self._started:
                    continue
                ctx.component = component.name
                ctx.first_tick = component.name not in self._ticked
                self._ticked.add(component.name)
                try:
                    component.on_tick(ctx)
                except Exception as exc:
                    log.exception("component %s tick failed", component.name)
                    self._failed[component.name] = f"stopped after an error: {exc}"
                    newly_failed.append(component)
            for key in ctx.stale_identities:
                self.processes.forget_identity(key)
            for name, columns in ctx.annotated_by.items():
                self._columns_of.setdefault(name, set()).update(columns)
            cleared = {column: ROW_DEFAULTS[column] for c in newly_failed
                       for column in self._columns_of.pop(c.name, ())}
            changed, removed = self._merge(sampled, ctx.processes, ctx.annotations, cleared)
            self._sampled = sampled
            self._alerts.extend(ctx.alerts)
            self._sequence += 1
            snapshot = Snapshot(
                sequence=self._sequence,
                metrics=metrics,
                processes=dict(self._rows),
                statuses=self.statuses(),
                alerts=tuple(self._alerts),
                views=ctx.views,
                changed=None if first else changed,
                removed=removed,
            )
            self._snapshot = snapshot
        for component in newly_failed:  # its threads must not run on unobserved
            with contextlib.suppress(Exception):
                component.stop()
        self.bus.publish(snapshot)
        return snapshot

    def _merge(self, sampled: dict[ProcessKey, ProcessRow], rows: dict[ProcessKey, ProcessRow],
               annotations: dict[ProcessKey, dict[str, Any]], cleared: dict[str, Any],
               ) -> tuple[frozenset[ProcessKey], frozenset[ProcessKey]]:
        """Fold the components' columns into the rows; returns (changed, removed) keys.

        Columns persist per process (see TickContext.annotate), so only the processes whose
        collector row is another object than last tick's, or whose columns changed, are
        copied: the rest keep last tick's merged row, the same object, and nothing is done
        for the thousands of processes that sleep. `sampled`: the collector's rows; `rows`:
        those and the exited processes a component kept, shown as they are."""
        merged, columns, before = self._rows, self._columns, self._sampled
        removed = frozenset(merged.keys() - rows.keys())
        for key in removed:
            del merged[key]
            columns.pop(key, None)
        for key in before.keys() - sampled.keys():
            columns.pop(key, None)  # exited (a kept row is shown as the component made it)
        changed = self._changed_rows(sampled, before)
        changed.update(rows.keys() - merged.keys())
        changed.update(key for key in rows.keys() - sampled.keys()  # kept exited ones
                       if merged.get(key) is not rows[key])
        for key, delta in annotations.items():
            if key not in sampled:
                continue
            mine = columns.get(key)
            if mine is None:
                columns[key] = dict(delta)
                changed.add(key)
            elif any(mine.get(name, _UNSET) != value for name, value in delta.items()):
                mine.update(delta)
                changed.add(key)
        if cleared:  # a component stopped: its columns go back to "not measured"
            for mine in columns.values():
                mine.update(cleared)
            changed.update(columns)
        for key in changed:
            row = rows[key]
            mine = columns.get(key) if key in sampled else None
            merged[key] = dataclasses.replace(row, **mine) if mine else row
        return frozenset(changed), removed

    def _changed_rows(self, sampled: dict[ProcessKey, ProcessRow],
                      before: dict[ProcessKey, ProcessRow]) -> set[ProcessKey]:
        """The processes whose collector row is not last tick's object (new ones included):
        the collector says which (it re-read them), or each row is compared."""
        told = getattr(self.processes, "changed", None)
        if isinstance(told, AbstractSet):
            return set(told)
        return {key for key, row in sampled.items() if before.get(key) is not row}

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
