"""`ReplaySource`: a recording played into the dashboard as if it were the engine.

It offers what the dashboard reads from an engine (the latest `Snapshot`, events on its
`EventBus`, `config`, `start`/`stop`) and nothing it could act on: there are no components, so
the guard is "not running" and a recorded prompt is history, never answerable. Ticks are
played at the pace they were recorded (the snapshots' own times) times `speed`; events are
published in the order they were written. Needs no root and no kernel feature.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fluxtui.commands import Commands, ReadOnlyCommands
from fluxtui.config import Config
from fluxtui.connection_views import ConnectionsView, SocketRow
from fluxtui.ecs.common import parse_time
from fluxtui.engine import Engine
from fluxtui.events import Alert, ComponentStatus, ProcessKey, ProcessRow, Snapshot
from fluxtui.replay.reader import Damage, ReadState, documents, open_recording
from fluxtui.replay.rebuild import (
    RebuildError,
    alert_of,
    connection_of,
    decision_of,
    history_item,
    listing_of,
    metrics_of,
    row_of,
    statuses_of,
)

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
TICK_DATASETS = frozenset({"fluxtui.metrics", "fluxtui.processes", "fluxtui.process",
                           "fluxtui.connection_listing"})
HISTORY_LIMIT = 1000
# A pause longer than this between two recorded ticks (the recorder was stopped, the machine
# slept) is shortened to it: the time shown stays the recorded one.
MAX_GAP_S = 10.0


@dataclasses.dataclass
class _Tick:
    number: int
    metrics: dict[str, Any] | None = None
    rows: dict[ProcessKey, ProcessRow] = dataclasses.field(default_factory=dict)
    listing: ConnectionsView | None = None
    carried: bool = False  # rows start from the previous tick's (a "changes" listing)
    listed: bool = False  # the tick had process documents (none: nothing changed)


def recording_origin(path: str) -> tuple[str, float | None, bool]:
    """(host, time, as root) of the recording's first document: who recorded it, when, and
    whether its kernel collectors could run."""
    state = ReadState()
    with open_recording(path) as stream:
        for doc in documents(stream, state):
            host = doc.get("host", {})
            recording = doc["fluxtui"].get("recording", {})
            return (str(host.get("name") or host.get("hostname") or "?"),
                    parse_time(doc["@timestamp"]), bool(recording.get("privileged", False)))
    return "?", None, False


class ReplaySource(Engine):
    def __init__(self, path: str, config: Config | None = None, speed: float = 1.0,
                 wait: Callable[[threading.Event, float], object] | None = None) -> None:
        super().__init__(config or Config())
        if speed <= 0:
            raise ValueError("the speed must be positive")
        self.path = path
        self.speed = speed
        # RecordingError: unreadable
        self.host, self.recorded_at, self.privileged = recording_origin(path)
        self.read = ReadState()
        self.position: float | None = None  # recorded time of the tick on screen
        self.finished = False
        self.damage: Damage | None = None
        self._wait = wait or (lambda event, seconds: event.wait(seconds))
        self._resume = threading.Event()
        self._resume.set()
        self._halt = threading.Event()
        self._player: threading.Thread | None = None
        self._statuses: tuple[ComponentStatus, ...] = ()
        self._replay_alerts: deque[Alert] = deque(maxlen=self.config.general.max_alerts)
        self._sockets: dict[int, SocketRow] = {}
        self._rows: dict[ProcessKey, ProcessRow] = {}  # the last published tick's
        self._history: deque[dict[str, Any]] = deque(maxlen=HISTORY_LIMIT)
        self._last_tick_time: float | None = None
        self._played = 0
        self.ticks = 0

    # --- what the dashboard calls ------------------------------------------------------------

    def start(self) -> None:
        self._player = threading.Thread(target=self._play, name="fluxtui-replay", daemon=True)
        self._player.start()

    def start_sync(self) -> Snapshot:
        raise NotImplementedError("a replay plays on its own thread: start()")

    def stop(self) -> None:
        self._halt.set()
        self._resume.set()
        if self._player is not None:
            self._player.join(timeout=10)

    def tick(self) -> Snapshot:
        raise NotImplementedError("a replay's ticks come from the recording")

    def statuses(self) -> tuple[ComponentStatus, ...]:
        return self._statuses

    @property
    def paused(self) -> bool:
        return not self._resume.is_set()

    def toggle_pause(self) -> None:
        if self._resume.is_set():
            self._resume.clear()
        else:
            self._resume.set()

    def faster(self) -> None:
        self.speed = next((s for s in SPEEDS if s > self.speed), self.speed)

    def slower(self) -> None:
        self.speed = next((s for s in reversed(SPEEDS) if s < self.speed), self.speed)

    @property
    def commands(self) -> Commands:
        """A recording cannot be acted on: every command is refused, saying so."""
        return ReadOnlyCommands("replay: read-only")

    def guard_history(self, limit: int) -> list[dict[str, Any]]:
        """Recorded guard decisions and prompts, newest first."""
        return list(self._history)[-limit:][::-1]

    def summary(self) -> str:
        """Where the replay is, for the header and for the command line at the end."""
        parts = [f"{self.ticks} ticks, {self.read.documents} documents"]
        if self.read.foreign:
            parts.append(f"{self.read.foreign} non-fluxtui lines skipped")
        if self.damage is not None:
            parts.append(str(self.damage))
        elif self.finished:
            parts.append("end of recording")
        return "; ".join(parts)

    # --- the player thread -------------------------------------------------------------------

    def _play(self) -> None:
        pending: _Tick | None = None
        try:
            with open_recording(self.path) as stream:
                for doc in documents(stream, self.read):
                    if self._halt.is_set():
                        return
                    try:
                        pending = self._take(doc, pending)
                    except (RebuildError, KeyError, TypeError, ValueError, IndexError,
                            AttributeError) as exc:
                        self.read.damage = Damage(self.read.lines,
                                                  f"a document fluxtui cannot read ({exc!r})")
                        break
        except OSError as exc:
            self.read.damage = Damage(self.read.lines + 1, f"read error: {exc}")
        if pending is not None and not self._halt.is_set():
            self._publish(pending)
        self.damage = self.read.damage
        self.finished = True

    def _take(self, doc: dict[str, Any], pending: _Tick | None) -> _Tick | None:
        event = doc["event"]
        dataset = event.get("dataset", "")
        tick = doc["fluxtui"].get("tick")
        if dataset in TICK_DATASETS and isinstance(tick, int):
            if pending is not None and pending.number != tick:
                self._publish(pending)
                pending = None
            pending = pending or _Tick(tick)
            if dataset == "fluxtui.metrics":
                pending.metrics = doc
            elif dataset in ("fluxtui.processes", "fluxtui.process"):
                self._take_processes(doc["fluxtui"], pending)
            else:
                pending.listing = listing_of(doc)
            return pending
        if pending is not None:
            self._publish(pending)
            pending = None
        if event.get("kind") == "alert":
            alert = alert_of(doc)
            self._replay_alerts.append(alert)
            self.bus.publish(alert)
        elif dataset == "fluxtui.connections":
            conn = connection_of(doc)
            if conn.action == "closed":
                self._sockets.pop(conn.entry.cookie, None)
            else:
                self._sockets[conn.entry.cookie] = SocketRow(conn.entry, conn.owners)
            self.bus.publish(conn)
        elif dataset == "fluxtui.guard":
            if event.get("action") == "credential-access":
                self.bus.publish(decision_of(doc))
            self._played += 1
            self._history.append(history_item(doc, self._played))
        return None

    def _take_processes(self, own: dict[str, Any], pending: _Tick) -> None:
        """A tick's process documents: the whole table, or (`listing.kind: changes`, see
        ecs/process_changes.py) the rows changed since the previous tick and those gone."""
        pending.listed = True
        if own.get("listing", {}).get("kind") == "changes" and not pending.carried:
            pending.carried = True
            pending.rows = {**self._rows, **pending.rows}
        removed = [own["process_removed"]] if "process_removed" in own else own.get("removed", [])
        for gone in removed:
            pending.rows.pop(ProcessKey(int(gone["pid"]), int(gone["start_ticks"])), None)
        listed = own["processes"] if "processes" in own else [own["process"]] if "process" in own \
            else []
        for p in listed:
            row = row_of(p)
            pending.rows[row.key] = row

    def _publish(self, tick: _Tick) -> None:
        if tick.metrics is None:
            raise RebuildError(f"tick {tick.number} has no metrics document")
        metrics = metrics_of(tick.metrics)
        self._pace(metrics.timestamp)
        if self._halt.is_set():
            return
        self._statuses = statuses_of(tick.metrics)
        views: dict[str, Any] = {}
        if tick.listing is not None:
            self._sockets = {row.entry.cookie: row for row in tick.listing.rows}
            views["connections"] = tick.listing
        elif self._sockets:
            views["connections"] = ConnectionsView(metrics.timestamp,
                                                   tuple(self._sockets.values()), 0.0, 0.0,
                                                   ("replay: sockets as of the last listing "
                                                    "and the events since",), 0)
        if not tick.listed:  # state documents of changes only, and nothing changed
            tick.rows = dict(self._rows)
        self._rows = tick.rows
        self._sequence += 1
        self.ticks += 1
        self.position = metrics.timestamp
        snapshot = Snapshot(sequence=self._sequence, metrics=metrics, processes=tick.rows,
                            statuses=self._statuses, alerts=tuple(self._replay_alerts),
                            views=views)
        self._snapshot = snapshot
        self.bus.publish(snapshot)

    def _pace(self, recorded: float) -> None:
        """Wait as long as the recording did between two ticks, divided by the speed; paused,
        wait until resumed."""
        previous, self._last_tick_time = self._last_tick_time, recorded
        if previous is not None:
            left = min(MAX_GAP_S, max(0.0, recorded - previous))
            step = 0.05
            while left > 0 and not self._halt.is_set():
                if not self._resume.is_set():
                    self._resume.wait(0.1)
                    continue
                started = time.monotonic()
                self._wait(self._halt, min(step, left / self.speed))
                left -= (time.monotonic() - started) * self.speed
        while not self._resume.is_set() and not self._halt.is_set():
            self._resume.wait(0.1)
