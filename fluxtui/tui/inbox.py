"""The UI's bus inbox: bounded, and only for the event types the widgets read.

The bus carries every kernel-side event (a `ProcessExit` on every exit, each alert, each
connection event) from collector threads. The UI keeps only the types a widget declares in
`EVENT_TYPES` (and what wakes the credential prompt); of those, at most `limit` wait, the
oldest dropped first and counted, so a build machine's thousands of exits a second cost the UI
one isinstance check each and never memory.

The two Protocols say which widgets the app feeds: a `SnapshotReader` gets each new snapshot,
a `BusReader` the bus events of its types. The app finds them with isinstance, once.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import ClassVar, Protocol, runtime_checkable

from fluxtui.events import Snapshot

# Events waiting for the UI thread at most: fewer than the connection events log keeps (500
# lines), so that the notice of a drop stays on screen above the newest events.
INBOX_LIMIT = 400


@dataclass(frozen=True)
class EventsDropped:
    """Delivered to the widgets before a batch whose oldest events the bounded inbox dropped."""

    count: int


@runtime_checkable
class SnapshotReader(Protocol):
    """A widget that shows snapshots: `refresh_from` is called on the UI thread with each new
    one (widgets inside a tab only while their tab is shown)."""

    def refresh_from(self, snapshot: Snapshot) -> None: ...


@runtime_checkable
class BusReader(Protocol):
    """A widget that takes bus events: `handle_event` is called on the UI thread with each event
    that is an instance of one of its `EVENT_TYPES` (and with `EventsDropped` if it lists it)."""

    EVENT_TYPES: ClassVar[tuple[type, ...]]

    def handle_event(self, event: object) -> None: ...


class Inbox:
    """Thread-safe: `offer` runs on collector threads, `drain` on the UI thread. `offer` returns
    True when the UI thread needs a wake-up (the first event of a batch)."""

    def __init__(self, wanted: Iterable[type], limit: int = INBOX_LIMIT) -> None:
        self.wanted = tuple(wanted)
        self._events: deque[object] = deque(maxlen=limit)
        self._lock = threading.Lock()
        self._posted = False
        self.dropped = 0  # since the last drain
        self.dropped_total = 0

    def offer(self, event: object) -> bool:
        if not isinstance(event, self.wanted):
            return False
        with self._lock:
            if len(self._events) == self._events.maxlen:
                self.dropped += 1
                self.dropped_total += 1
            self._events.append(event)
            if self._posted:
                return False
            self._posted = True
            return True

    def drain(self) -> tuple[list[object], int]:
        """The waiting events, oldest first, and how many were dropped before them."""
        with self._lock:
            events = list(self._events)
            self._events.clear()
            dropped, self.dropped = self.dropped, 0
            self._posted = False
        return events, dropped

    def __len__(self) -> int:
        return len(self._events)


def dispatch(events: list[object], dropped: int, readers: list[BusReader],
             on_each: Callable[[object], None] | None = None) -> None:
    """Hand each event to the readers that asked for its type."""
    if dropped:
        notice = EventsDropped(dropped)
        for reader in readers:
            if EventsDropped in reader.EVENT_TYPES:
                reader.handle_event(notice)
    for event in events:
        if on_each is not None:
            on_each(event)
        for reader in readers:
            if isinstance(event, reader.EVENT_TYPES):
                reader.handle_event(event)
