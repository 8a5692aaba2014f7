"""What the demo says on screen: one `DemoNarration` (fluxtui/events.py) per change, published
on the engine's bus (the UI shows it, a recording keeps it)."""

from __future__ import annotations

from fluxtui.events import DemoNarration

__all__ = ["DONE", "FINISHED", "PAUSED", "PLAYING", "STARTING", "WAITING", "DemoNarration"]

# The player's states, as the narration line names them.
STARTING, PLAYING, DONE, WAITING, PAUSED, FINISHED = (
    "starting", "playing", "done", "waiting", "paused", "finished")
