"""What the demo says on screen: one `DemoNarration` per change, published on the engine's bus
(the UI shows it, a recording keeps it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The player's states, as the narration line names them.
STARTING, PLAYING, DONE, WAITING, PAUSED, FINISHED = (
    "starting", "playing", "done", "waiting", "paused", "finished")


@dataclass(frozen=True)
class DemoNarration:
    number: int  # the step, 1-based (0 before the first)
    total: int
    title: str  # what happens (a scenario's title: text of this repository, not of a process)
    view: str  # the tab that shows it: processes, connections, guard
    state: str
    hint: str = ""  # what to look at or press
    outcome: str = ""  # after the step: what fluxtui caught, or why it was skipped
    auto: bool = False

    def line(self) -> str:
        """ "Step 3/8 · A script reads ~/.aws/credentials · press d to deny" """
        parts = [f"Step {self.number}/{self.total}" if self.number else "Demo", self.title]
        if self.outcome:
            parts.append(self.outcome)
        if self.hint:
            parts.append(self.hint)
        return " · ".join(p for p in parts if p)

    def to_ecs(self) -> dict[str, Any]:
        return {
            "event": {"kind": "event", "category": ["session"], "type": ["info"],
                      "dataset": "fluxtui.demo", "action": self.state},
            "message": self.line(),
            "fluxtui": {"demo": {"step": self.number, "steps": self.total, "view": self.view,
                                 "state": self.state, "outcome": self.outcome}},
        }
