"""Exited rows named by their final records (the risk view's `exits`), kept from one snapshot
to the next so that a tick costs the records and rows that changed: the comparison of every
record with last time's runs in C (map over dict methods and `operator`), Python code runs
only for those that differ."""

from __future__ import annotations

import dataclasses
import operator
from itertools import compress
from typing import Any

from fluxtui.events import ProcessExit, ProcessKey, ProcessRow, Snapshot


def final_identity(row: ProcessRow, final: ProcessExit) -> ProcessRow:
    """An exited row named by its final record: the table's last /proc listing of a process
    that lived milliseconds can predate its exec (a forked shell, "bash -bash", for what ran
    as /tmp/x/ptracer); the kernel's exit record names what it was when it exited."""
    life = final.lifetime
    if not life.exe and not life.name:
        return row
    return dataclasses.replace(row, name=life.name or row.name, exe=life.exe or row.exe,
                               cmdline=(life.exe or life.name, *life.args))


class FinalNames:
    def __init__(self) -> None:
        # By process with a final record: the engine's row (None: none) and the record last
        # seen, and the named row shown for it (exited rows only).
        self._rows: dict[ProcessKey, ProcessRow | None] = {}
        self._finals: dict[ProcessKey, Any] = {}
        self.named: dict[ProcessKey, ProcessRow] = {}

    def apply(self, snapshot: Snapshot) -> tuple[Snapshot, set[ProcessKey]]:
        """`snapshot` with its exited rows named by their final records, and the processes
        whose shown row is another than last time for that reason alone (a new, changed or
        dropped record: the engine's row may be the same object). A row named before and
        unchanged since is the very same object as last time."""
        view = snapshot.views.get("risk")
        finals: Any = getattr(view, "exits", None) or {}
        processes = snapshot.processes
        keys = list(finals)
        same_row = map(operator.is_, map(processes.get, keys), map(self._rows.get, keys))
        same_final = map(operator.is_, finals.values(), map(self._finals.get, keys))
        stale = list(compress(keys, map(operator.not_, map(operator.and_, same_row,
                                                           same_final))))
        touched = set(stale)
        for key in self._finals.keys() - finals.keys():
            del self._rows[key], self._finals[key]
            if self.named.pop(key, None) is not None:
                touched.add(key)
        for key in stale:
            row, final = processes.get(key), finals[key]
            self._rows[key], self._finals[key] = row, final
            if row is not None and row.exited_at is not None and isinstance(final, ProcessExit):
                self.named[key] = final_identity(row, final)
            elif self.named.pop(key, None) is None:
                touched.discard(key)  # neither named before nor now: the engine's row as is
        if not self.named:
            return snapshot, touched
        return dataclasses.replace(snapshot, processes={**processes, **self.named}), touched
