"""Which processes a stream tick writes: every one in a full listing (the first tick, then every
`stream.process_listing_interval` seconds), else only those whose row changed since the tick the
stream last wrote, and the keys of those gone from the table.

A row changes when anything the table shows for it changes: a process that ran has a new CPU
share, so it is written; the thousands that sleep are not. The comparison is against what was
written, not against the previous snapshot: a slow reader that skips ticks still gets every
change. Rows are compared by identity first (the engine hands back the very same object for a
process that did not change), then by value; when the snapshot follows the one last written,
only the rows it says changed (`Snapshot.changed`) are looked at.
"""

from __future__ import annotations

from dataclasses import dataclass

from fluxtui.events import ProcessKey, ProcessRow, Snapshot


@dataclass(frozen=True)
class ProcessChanges:
    full: bool
    changed: tuple[ProcessRow, ...]  # ordered by key; every row when full
    removed: tuple[ProcessKey, ...]  # ordered; () when full


class ProcessListing:
    def __init__(self, interval: float) -> None:
        self.interval = interval  # seconds between full listings; 0: every tick
        self._written: dict[ProcessKey, ProcessRow] = {}
        self._last_full: float | None = None
        self._sequence = -1  # of the snapshot last written

    def take(self, snapshot: Snapshot) -> ProcessChanges:
        """What to write for this snapshot; remembers it as written."""
        now = snapshot.metrics.timestamp
        rows = snapshot.processes
        full = (self.interval <= 0 or self._last_full is None
                or now - self._last_full >= self.interval or now < self._last_full)
        before, self._written = self._written, dict(rows)
        follows = snapshot.sequence == self._sequence + 1 and snapshot.changed is not None
        self._sequence = snapshot.sequence
        if full:
            self._last_full = now
            return ProcessChanges(True, tuple(sorted(rows.values(), key=lambda r: r.key)), ())
        # The snapshot right after the one written says which rows are other objects; else
        # (a tick skipped) every row is compared.
        candidates = snapshot.changed if follows and snapshot.changed is not None else rows
        changed = []
        for key in candidates:
            row, old = rows.get(key), before.get(key)
            if row is not None and old is not row and old != row:
                changed.append(row)
        changed.sort(key=lambda r: r.key)
        removed = sorted(before.keys() - rows.keys())
        return ProcessChanges(False, tuple(changed), tuple(removed))
