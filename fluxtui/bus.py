"""The event bus: components publish events (alerts, guard requests, kernel events) to every
subscriber (the TUI, the headless stream, the journal, the Prometheus exporter).
Nothing here imports textual."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

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
