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
from typing import Any, TextIO

from fluxtui.ecs import host_fields, metrics_document, processes_document, with_envelope
from fluxtui.engine import Engine
from fluxtui.events import Snapshot, StreamEvent


def documents_for(event: object) -> list[dict[str, Any]]:
    if isinstance(event, Snapshot):
        return [metrics_document(event.metrics), processes_document(event)]
    if isinstance(event, StreamEvent):
        return [event.to_ecs()]
    return []


def text_line(doc: dict[str, Any]) -> str:
    """A compact human-readable form of one document."""
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
        top = ", ".join(f"{p['name']!r}({p['pid']}) {p['cpu']['pct']:.1f}%" for p in busiest)
        return f"{stamp} processes {len(procs)} top cpu: {top}"
    kind = event.get("kind", "event")
    message = doc.get("message") or event.get("action") or dataset
    technique = doc.get("threat", {}).get("technique", {}).get("id")
    tag = f" [{technique}]" if technique else ""
    return f"{stamp} {kind}{tag} {message}"


class HeadlessRunner:
    def __init__(self, engine: Engine, output: str, out: TextIO = sys.stdout) -> None:
        self.engine = engine
        self.output = output
        self.out = out
        self.host = host_fields()
        self._queue: queue.Queue[object] = queue.Queue()
        self._stop = threading.Event()

    def request_stop(self, *_: object) -> None:
        self._stop.set()

    def _write(self, event: object) -> None:
        for doc in documents_for(event):
            doc = with_envelope(doc, self.host, time.time())
            line = json.dumps(doc, default=str) if self.output == "json" else text_line(doc)
            self.out.write(line + "\n")
        self.out.flush()

    def _drain(self) -> None:
        while True:
            try:
                self._write(self._queue.get_nowait())
            except queue.Empty:
                return

    def run(self, timeout: float | None) -> int:
        unsubscribe = self.engine.bus.subscribe(self._queue.put)
        previous = {sig: signal.signal(sig, self.request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            self.engine.start()
            while not self._stop.is_set():
                if deadline is not None and time.monotonic() >= deadline:
                    break
                try:
                    event = self._queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                self._write(event)
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
