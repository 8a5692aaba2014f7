"""Alerts to the systemd journal while the dashboard runs (the headless mode sends them from its
writer thread instead, see `stream_outputs.open_outputs`).

The bus subscriber only enqueues (bounded; past the limit an alert is counted in `dropped`, so a
stalled journal never holds up a collector); a thread of its own sends the entries.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from fluxtui.bus import EventBus
from fluxtui.ecs import envelope, event_documents, host_fields
from fluxtui.events import Alert
from fluxtui.journal import JOURNAL_SOCKET, JournalUnavailable, JournalWriter
from fluxtui.stream_outputs import JournalDocuments

log = logging.getLogger(__name__)

QUEUE_LIMIT = 1000


class AlertJournal:
    def __init__(self, bus: EventBus, sink: JournalDocuments) -> None:
        self.bus = bus
        self.sink = sink
        self.dropped = 0
        self._queue: queue.Queue[Alert | None] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._host = host_fields()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    @classmethod
    def if_running(cls, bus: EventBus, socket_path: str = JOURNAL_SOCKET) -> AlertJournal | None:
        """Started when a journal runs; None (and a line in the log) when none does."""
        try:
            writer = JournalWriter(socket_path)
        except JournalUnavailable as exc:
            log.info("alerts are not sent to the journal: %s", exc)
            return None
        journal = cls(bus, JournalDocuments(writer, alerts_only=True))
        journal.start()
        return journal

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fluxtui-journal", daemon=True)
        self._thread.start()
        self._unsubscribe = self.bus.subscribe(self._on_event)

    def _on_event(self, event: object) -> None:
        if isinstance(event, Alert):
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1

    def _run(self) -> None:
        while (alert := self._queue.get()) is not None:
            for doc in event_documents(alert):
                self.sink(envelope(doc, self._host, time.time()))

    def stop(self) -> None:
        """Sends what is queued, then stops."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._thread is not None:
            self._queue.put(None)  # after every queued alert
            self._thread.join(timeout=10)
            self._thread = None
        self.sink.close()
