"""Headless mode: the same engine, no UI; one JSON object per line (or a compact text line).

Every tick prints a metrics document and a process document; every object a component publishes
on the bus (alerts, connection events, guard decisions) is printed as it arrives. Collector
threads only enqueue; the main thread writes, so lines never interleave.
"""

from __future__ import annotations

import contextlib
import json
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from fluxtui.ecs import (
    host_fields,
    metrics_document,
    process_exit_document,
    processes_document,
    with_envelope,
)
from fluxtui.engine import Engine
from fluxtui.events import ProcessExit, Snapshot, StreamEvent
from fluxtui.untrusted_text import visible

# Events waiting for a slow reader of stdout. Past this many, further events are dropped and
# counted (every metrics document says how many); snapshots never queue: only the latest waits.
QUEUE_LIMIT = 10000


def documents_for(event: object) -> list[dict[str, Any]]:
    if isinstance(event, Snapshot):
        return [metrics_document(event.metrics), processes_document(event)]
    if isinstance(event, ProcessExit):
        return [process_exit_document(event)]
    if isinstance(event, StreamEvent):
        return [event.to_ecs()]
    return []


def text_line(doc: dict[str, Any]) -> str:
    """A compact human-readable form of one document. Every string from the documents may come
    from another user (names, command lines, paths): control characters are made visible so
    that nothing reaches the operator's terminal as an escape sequence."""
    event = doc.get("event", {})
    stamp = doc.get("@timestamp", "")[11:19]
    dataset = event.get("dataset", "")
    if dataset == "fluxtui.metrics":
        m = doc["fluxtui"]["metrics"]
        cpu = "—" if m["cpu"] is None else f"{m['cpu']['total_pct']:.1f}%"
        load = m["load"]["1m"]
        return (f"{stamp} metrics cpu {cpu} mem {m['memory']['used_pct']:.1f}% "
                f"load {load:.2f} procs {m['process_count']}")
    if dataset == "fluxtui.processes":
        procs = doc["fluxtui"]["processes"]
        busiest = sorted((p for p in procs if p["cpu"]["pct"] is not None),
                         key=lambda p: p["cpu"]["pct"], reverse=True)[:3]
        top = ", ".join(f"{visible(p['name'])}({p['pid']}) {p['cpu']['pct']:.1f}%"
                        for p in busiest)
        return f"{stamp} processes {len(procs)} top cpu: {top}"
    kind = event.get("kind", "event")
    message = doc.get("message") or event.get("action") or dataset
    technique = doc.get("threat", {}).get("technique", {}).get("id")
    tag = f" [{visible(str(technique))}]" if technique else ""
    return f"{stamp} {visible(str(kind))}{tag} {visible(str(message))}"


class HeadlessRunner:
    def __init__(self, engine: Engine, output: str, out: TextIO = sys.stdout,
                 sinks: Sequence[Callable[[dict[str, Any]], None]] = ()) -> None:
        self.engine = engine
        self.sinks = tuple(sinks)  # every document also goes to these; output "journal": only
        self.output = output
        self.out = out
        self.host = host_fields()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._latest: Snapshot | None = None
        self._latest_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self.dropped = 0

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self._wake.set()

    def _enqueue(self, event: object) -> None:
        """Runs on collector threads: never blocks, whatever stdout does."""
        if isinstance(event, Snapshot):
            with self._latest_lock:
                self._latest = event
        else:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1
        self._wake.set()

    def _write(self, event: object) -> None:
        for doc in documents_for(event):
            doc = with_envelope(doc, self.host, time.time())
            if doc["event"].get("dataset") == "fluxtui.metrics":
                doc["fluxtui"]["stream"] = {"dropped_events": self.dropped}
            for sink in self.sinks:
                sink(doc)
            if self.output == "journal":
                continue
            line = json.dumps(doc, default=str) if self.output == "json" else text_line(doc)
            self.out.write(line + "\n")
        self.out.flush()

    def _drain(self) -> None:
        while True:
            try:
                self._write(self._queue.get_nowait())
            except queue.Empty:
                break
        with self._latest_lock:
            snapshot, self._latest = self._latest, None
        if snapshot is not None:
            self._write(snapshot)

    def run(self, timeout: float | None) -> int:
        unsubscribe = self.engine.bus.subscribe(self._enqueue)
        previous = {sig: signal.signal(sig, self.request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.engine.start()
            while not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._wake.wait(0.1 if left is None else min(0.1, left))
                self._wake.clear()
                self._drain()
        except BrokenPipeError:
            return 0  # the reader went away (e.g. piped into head): not an error
        finally:
            unsubscribe()
            self.engine.stop()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        with contextlib.suppress(BrokenPipeError):
            self._drain()
        return 0
