"""`fluxtui demo --record FILE`: the engine's stream, written while the dashboard runs.

One function, `start_recording`, so that the writer can be swapped for the stream's own
recorder: today it is the headless mode's JSON writer (`HeadlessRunner`: snapshots, alerts,
guard decisions, connection events and the demo's narration, one ECS document a line) fed from
the running engine's bus on a thread of its own.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable

from fluxtui.engine import Engine
from fluxtui.headless import HeadlessRunner


class RecordingError(Exception):
    """The recording file cannot be written; phrased for the user."""


def start_recording(engine: Engine, path: str) -> Callable[[], None]:
    """Start writing; returns the function that stops, writes what is left and closes."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
    except OSError as exc:
        raise RecordingError(f"--record: cannot write {path}: {exc.strerror or exc}") from None
    out = os.fdopen(fd, "w", encoding="utf-8")
    runner = HeadlessRunner(engine, "json", out)
    stop = threading.Event()

    def write() -> None:
        while not stop.is_set():
            runner._wake.wait(0.25)
            runner._wake.clear()
            try:
                runner._drain()
            except OSError:  # disk full: the dashboard goes on, the recording ends here
                return

    unsubscribe = engine.bus.subscribe(runner._enqueue)
    thread = threading.Thread(target=write, name="fluxtui-record", daemon=True)
    thread.start()

    def finish() -> None:
        unsubscribe()
        stop.set()
        runner._wake.set()
        thread.join(timeout=10)
        with contextlib.suppress(OSError):
            runner._drain()
        out.close()

    return finish
