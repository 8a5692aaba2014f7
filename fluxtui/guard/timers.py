"""Named deadlines on the responder's clock: what is due now, and how long the loop may sleep.

The common pass of the loop (nothing due) costs one comparison: `_next` is never later than the
earliest deadline (cancelling one leaves it early, which costs one spurious wake-up at most).
"""

from __future__ import annotations

import math


class Timers:
    def __init__(self) -> None:
        self._at: dict[str, float] = {}
        self._next = math.inf

    def set(self, name: str, when: float) -> None:
        self._at[name] = when
        if when < self._next:
            self._next = when

    def set_once(self, name: str, when: float) -> None:
        """Set `name` unless it is already set (a batch waits for its first deadline)."""
        if name not in self._at:
            self.set(name, when)

    def cancel(self, name: str) -> None:
        self._at.pop(name, None)

    def at(self, name: str) -> float | None:
        return self._at.get(name)

    def due(self, now: float) -> list[str]:
        """The names whose time came (each removed: set it again to repeat)."""
        if now < self._next:
            return []
        names = [name for name, when in self._at.items() if when <= now]
        for name in names:
            del self._at[name]
        self._next = min(self._at.values(), default=math.inf)
        return names

    def timeout(self, now: float) -> float:
        """Seconds until the next deadline (at least 0; capped at 60 s so the loop wakes)."""
        return max(0.0, min(self._next - now, 60.0))
