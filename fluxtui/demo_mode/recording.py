"""`fluxtui demo --record FILE`: the engine's stream, written while the dashboard runs, with the
headless mode's own writer (`headless.record_stream`): snapshots, alerts, guard decisions,
connection events and the demo's narration, one ECS document a line, readable by
`fluxtui replay`.
"""

from __future__ import annotations

from collections.abc import Callable

from fluxtui.engine import Engine
from fluxtui.headless import record_stream


class RecordingError(Exception):
    """The recording file cannot be written; phrased for the user."""


def start_recording(engine: Engine, path: str) -> Callable[[], None]:
    """Start writing; returns the function that stops, writes what is left and closes."""
    try:
        recording = record_stream(engine, path)
    except OSError as exc:
        raise RecordingError(f"--record: cannot write {path}: {exc.strerror or exc}") from None
    return recording.close
