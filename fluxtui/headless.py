"""Headless mode: the same engine, no UI; one JSON object per line (or a compact text line).

`StreamWriter` subscribes to an engine's bus. Every object a component publishes (alerts, kernel
events, process exits, connection events, guard prompts and decisions) waits in a bounded queue
and is written as it came, with the time it happened as `@timestamp`; snapshots never queue,
only the latest waits (a slow reader skips ticks, never events). Each written snapshot gives the
tick's documents, in this order and all with `fluxtui.tick`: host metrics with every
component's status and drop counters, the processes (one list document or one state document
per process, `stream.process_documents`; every process at start and every
`stream.process_listing_interval`, only those that changed or are gone in between:
ecs/process_changes.py), the full socket listing when it is due
(`stream.connection_listing_interval`); then one event per drop counter that went up. The
first line is a `recording-started` document. Collector threads only enqueue; the thread that
drains writes, so lines never interleave.

`HeadlessRunner` drains on the main thread; `record_stream(engine, path)` drains on a thread of
its own, for any running engine (the dashboard, the demo).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO, cast

from fluxtui.bus import EventBus
from fluxtui.config import Config
from fluxtui.connection_views import ConnectionsView
from fluxtui.ecs import (
    DropLedger,
    envelope,
    event_documents,
    host_fields,
    listing_document,
    metrics_document,
    process_state_documents,
    processes_document,
)
from fluxtui.ecs.common import iso_time
from fluxtui.ecs.host import all_drops, drop_documents
from fluxtui.ecs.process_changes import ProcessListing
from fluxtui.engine import Engine
from fluxtui.events import Snapshot
from fluxtui.untrusted_text import visible

# Events waiting for a slow reader of stdout. Past this many, further events are dropped and
# counted (every metrics document says how many, under fluxtui.collectors.stream); snapshots
# never queue: only the latest waits.
QUEUE_LIMIT = 10000
RECORDING_DATASET = "fluxtui.recording"
_ENCODER = json.JSONEncoder(default=str)  # json.dumps(doc, default=str) builds one per call


def text_line(doc: dict[str, Any]) -> str | None:
    """A compact human-readable form of one document (None: not shown in text form). Every
    string from the documents may come from another user (names, command lines, paths):
    control characters are made visible so that nothing reaches the operator's terminal as an
    escape sequence."""
    event = doc.get("event", {})
    stamp = doc.get("@timestamp", "")[11:19]
    dataset = event.get("dataset", "")
    own = doc.get("fluxtui", {})
    if dataset == "fluxtui.metrics":
        m = own["metrics"]
        cpu = "—" if m["cpu"] is None else f"{m['cpu']['total_pct']:.1f}%"
        load = m["load"]["1m"]
        lost = own.get("drops", {}).get("total", 0)
        return (f"{stamp} metrics cpu {cpu} mem {m['memory']['used_pct']:.1f}% "
                f"load {load:.2f} procs {m['process_count']} lost {lost}")
    if dataset == "fluxtui.processes":
        procs = own["processes"]
        # Between full listings only changed rows are here; a process using CPU has changed.
        busiest = sorted((p for p in procs if p["cpu_pct"] is not None),
                         key=lambda p: p["cpu_pct"], reverse=True)[:3]
        top = ", ".join(f"{visible(p['name'])}({p['pid']}) {p['cpu_pct']:.1f}%"
                        for p in busiest)
        listing = own.get("listing", {})
        count = listing.get("count", len(procs))
        changed = (f" ({listing.get('changed', 0)} changed, {listing.get('removed', 0)} gone)"
                   if listing.get("kind") == "changes" else "")
        return f"{stamp} processes {count}{changed} top cpu: {top}"
    if dataset == "fluxtui.process":
        return None  # one per process per tick: the list document says it in one line
    if dataset == "fluxtui.connection_listing":
        return f"{stamp} connections {own['connections']['count']} sockets"
    kind = event.get("kind", "event")
    message = doc.get("message") or event.get("action") or dataset
    technique = doc.get("threat", {}).get("technique", {}).get("id")
    if isinstance(technique, list):
        technique = technique[0] if technique else None
    tag = f" [{visible(str(technique))}]" if technique else ""
    return f"{stamp} {visible(str(kind))}{tag} {visible(str(message))}"


def recording_started(config: Config, now: float) -> dict[str, Any]:
    return {
        "@timestamp": iso_time(now),
        "event": {"kind": "event", "dataset": RECORDING_DATASET, "category": ["host"],
                  "type": ["start"], "action": "recording-started"},
        "message": f"fluxtui stream started on {host_fields()['name']}",
        "fluxtui": {"recording": {
            "refresh_interval_s": config.general.refresh_interval,
            "process_documents": config.stream.process_documents,
            "connection_listing_interval_s": config.stream.connection_listing_interval,
            "process_listing_interval_s": config.stream.process_listing_interval,
            "privileged": os.geteuid() == 0,
        }},
    }


def write_whole(out: TextIO, lines: list[str]) -> None:
    """Every line, whole. A write to a pipe that a signal interrupts (SIGTERM while the reader
    is behind) returns what went through, and io.BufferedWriter reports that count and drops
    the rest: a document cut mid-object. So the bytes go through the binary buffer in a loop
    until all are written."""
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a file of our own (rotating stream), or a StringIO in tests
        out.writelines(lines)
        return
    out.flush()
    data = memoryview("".join(lines).encode(out.encoding or "utf-8", "backslashreplace"))
    while data:
        data = data[buffer.write(data):]


class StreamWriter:
    """Turns what an engine publishes into stream lines. `offer` runs on any thread and never
    blocks; `drain` writes what waits, on the caller's thread (one drainer at a time)."""

    def __init__(self, config: Config, output: str, out: TextIO,
                 sinks: Sequence[Callable[[dict[str, Any]], None]] = (),
                 clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.output = output  # json, text or journal (sinks only)
        self.out = out
        self.sinks = tuple(sinks)  # every document also goes to these
        self.clock = clock
        self.host = host_fields()
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_LIMIT)
        self._latest: Snapshot | None = None
        self._latest_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self.wake = threading.Event()
        self.dropped = 0
        self._ledger = DropLedger()
        self._last_listing: float | None = None
        self._processes = ProcessListing(config.stream.process_listing_interval)
        self._started = False

    def attach(self, bus: EventBus) -> Callable[[], None]:
        return bus.subscribe(self.offer)

    def offer(self, event: object) -> None:
        if isinstance(event, Snapshot):
            with self._latest_lock:
                self._latest = event
        else:
            try:
                self._queue.put_nowait(event)
            except queue.Full:
                self.dropped += 1
        self.wake.set()

    def _extra_drops(self) -> dict[str, dict[str, int]]:
        out = {"stream": {"event_queue": self.dropped}}
        for sink in self.sinks:
            count = getattr(sink, "dropped_count", None)
            if callable(count):
                out["journal"] = {"entries": int(count())}
        return out

    def tick_documents(self, snapshot: Snapshot) -> list[dict[str, Any]]:
        drops = self._ledger.update(all_drops(snapshot.statuses, self._extra_drops()))
        docs = [metrics_document(snapshot, drops)]
        mode = self.config.stream.process_documents
        changes = self._processes.take(snapshot)
        if mode in ("list", "both"):
            docs.append(processes_document(snapshot, changes))
        if mode in ("state", "both"):
            docs.extend(process_state_documents(snapshot, changes))
        view = snapshot.views.get("connections")
        now = snapshot.metrics.timestamp
        if isinstance(view, ConnectionsView) and (
                self._last_listing is None
                or now - self._last_listing >= self.config.stream.connection_listing_interval):
            self._last_listing = now
            docs.append(listing_document(view, snapshot.sequence))
        docs.extend(drop_documents(now, drops))
        return docs

    def _write(self, docs: list[dict[str, Any]]) -> None:
        """The documents as lines, handed to the output in one call (one write(2) for a
        rotating file: a burst of exits is thousands of documents)."""
        written = self.clock()
        created = iso_time(written)
        lines = []
        for raw in docs:
            doc = envelope(raw, self.host, written, created)
            for sink in self.sinks:
                sink(doc)
            if self.output == "journal":
                continue
            if self.output == "json":
                lines.append(_ENCODER.encode(doc) + "\n")
            else:
                line = text_line(doc)
                if line is not None:
                    lines.append(line + "\n")
        if lines:
            write_whole(self.out, lines)

    def drain(self) -> None:
        with self._write_lock:
            if not self._started:
                self._started = True
                self._write([recording_started(self.config, self.clock())])
            events: list[dict[str, Any]] = []
            while True:
                try:
                    event = self._queue.get_nowait()
                except queue.Empty:
                    break
                events.extend(event_documents(event))
            if events:
                self._write(events)
            with self._latest_lock:
                snapshot, self._latest = self._latest, None
            if snapshot is not None:
                self._write(self.tick_documents(snapshot))
            self.out.flush()


class HeadlessRunner:
    def __init__(self, engine: Engine, output: str, out: TextIO = sys.stdout,
                 sinks: Sequence[Callable[[dict[str, Any]], None]] = ()) -> None:
        self.engine = engine
        self.writer = StreamWriter(engine.config, output, out, sinks)
        self._stop = threading.Event()

    @property
    def dropped(self) -> int:
        return self.writer.dropped

    def request_stop(self, *_: object) -> None:
        self._stop.set()
        self.writer.wake.set()

    def run(self, timeout: float | None) -> int:
        unsubscribe = self.writer.attach(self.engine.bus)
        previous = {sig: signal.signal(sig, self.request_stop)
                    for sig in (signal.SIGINT, signal.SIGTERM)}
        deadline = None if timeout is None else time.monotonic() + timeout
        wake = self.writer.wake
        try:
            self.engine.start()
            while not self._stop.is_set():
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                # Every event and snapshot sets `wake` (offer), and so does a stop: the timeout
                # is a safety net (each wake-up costs ~0.1 ms of CPU on a virtual machine).
                wake.wait(1.0 if left is None else min(1.0, left))
                wake.clear()
                self.writer.drain()
        except BrokenPipeError:
            return 0  # the reader went away (e.g. piped into head): not an error
        finally:
            self.engine.stop()
            unsubscribe()  # after the stop: a tick that was under way is written too
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        with contextlib.suppress(BrokenPipeError):
            self.writer.drain()
        return 0


class Recording:
    """A stream written to a file from a running engine, on a thread of its own."""

    def __init__(self, engine: Engine, path: str) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
        fd = os.open(path, flags, 0o600)  # documents carry command lines
        raw = os.fdopen(fd, "wb")
        self._raw = raw
        self._file: TextIO
        if path.endswith(".gz"):
            self._file = cast(TextIO, gzip.open(raw, "wt", encoding="utf-8"))  # noqa: SIM115
        else:
            self._file = open(raw.fileno(), "w", encoding="utf-8",  # noqa: SIM115
                              closefd=False)
        self.writer = StreamWriter(engine.config, "json", self._file)
        self._stop = threading.Event()
        self._unsubscribe = self.writer.attach(engine.bus)
        self._thread = threading.Thread(target=self._run, name="fluxtui-record", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.writer.wake.wait(1.0)  # set by every event and by close
            self.writer.wake.clear()
            self.writer.drain()

    def close(self) -> None:
        """Writes what waits, then closes the file (a complete gzip member)."""
        self._unsubscribe()
        self._stop.set()
        self.writer.wake.set()
        self._thread.join(timeout=10)
        self.writer.drain()
        self._file.close()
        self._raw.close()


def record_stream(engine: Engine, path: str) -> Recording:
    """Record the engine's stream to PATH (gzip when it ends in .gz) until `close()`: the same
    documents as `--headless --output json`, readable by `fluxtui replay`. Subscribe before
    `engine.start()` to have the first tick."""
    return Recording(engine, path)
