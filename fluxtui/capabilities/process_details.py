"""The process details component (name "details"): the activity of the processes the UI
watches, put in `Snapshot.views["details"]` as a `DetailsView` each tick.

A detail screen asks for its process with `Commands.watch_process`; from the next tick on, the
snapshot carries that process's syscall totals since fluxtui first saw it, its last tick's
counts and its recent high-signal events, copied on the engine thread (the UI never reads the
capture's state under its lock). Only watched processes are copied: a table of 2,000 processes
costs nothing here. Nothing here imports textual.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from fluxtui.bus import EventBus
from fluxtui.capabilities.syscall_risk import SyscallCapture
from fluxtui.component import Component, TickContext
from fluxtui.events import ComponentState, ComponentStatus, ProcessKey
from fluxtui.views import DETAILS, DetailsView, KernelEventLine, ProcessActivity

MAX_WATCHED = 16  # detail screens open at once, at most (each is one process)


class ProcessDetails:
    name = DETAILS
    quick_start = True

    def __init__(self, components: Iterable[Component]) -> None:
        self._capture = next((c for c in components if isinstance(c, SyscallCapture)), None)
        self._watched: dict[ProcessKey, None] = {}  # insertion-ordered: oldest dropped first
        self._lock = threading.Lock()  # watch() runs on the UI thread
        self._state = ComponentState.STOPPED

    def start(self, bus: EventBus) -> None:
        self._state = ComponentState.RUNNING

    def stop(self) -> None:
        self._state = ComponentState.STOPPED

    def status(self) -> ComponentStatus:
        return ComponentStatus(self.name, self._state, "", f"{len(self._watched)} watched")

    def watch(self, key: ProcessKey) -> None:
        with self._lock:
            self._watched[key] = None
            while len(self._watched) > MAX_WATCHED:
                del self._watched[next(iter(self._watched))]

    def unwatch(self, key: ProcessKey) -> None:
        with self._lock:
            self._watched.pop(key, None)

    def on_tick(self, tick: TickContext) -> None:
        with self._lock:
            watched = list(self._watched)
        capture = self._capture
        if capture is None:
            tick.set_view(self.name, DetailsView(unavailable="no syscall capture configured"))
            return
        status = capture.status()
        if not status.running:
            tick.set_view(self.name, DetailsView(
                unavailable=f"{capture.name}: {status.state.value}: {status.reason}"))
            return
        own = capture.collector.self_pid
        tick.set_view(self.name, DetailsView({key: ProcessActivity(
            key, capture.top_syscalls(key), capture.last_tick_syscalls(key),
            tuple(KernelEventLine(e.timestamp, e.describe())
                  for e in capture.recent_events(key)),
            f"fluxtui's own process (pid {own}) is not traced: its reads of the kernel's "
            "counts would feed back into them" if key.pid == own else "")
            for key in watched}))
