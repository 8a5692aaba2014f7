"""The process table's rows in sort order, kept from one snapshot to the next: a row is placed
(bisection) when it arrives or changes and taken out when it leaves, so a tick over thousands
of sleeping processes costs what changed, not a sort of every row. In the same order as
`process_order.sort_rows`."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from typing import Any

from fluxtui.events import ProcessKey, ProcessRow
from fluxtui.tui.process_order import SORT_VALUES, SortKey, SortSpec, missing_key, sort_key

MissingKey = tuple[bool, int, int]


class SortedRows:
    """Rows with a value ascending by their sort key (read backwards when the sort is reversed:
    the keys are built so that reading them backwards gives `sort_rows`' reversed order), then
    the rows without one. Index 0 is the first row shown."""

    def __init__(self) -> None:
        self.spec = SortSpec("cpu", True)
        self._value = SORT_VALUES[self.spec.column]
        self._present: list[tuple[SortKey, ProcessRow]] = []  # ascending
        self._missing: list[tuple[MissingKey, ProcessRow]] = []  # ascending
        # process -> (has a value, its sort key): where to find it again
        self._placed: dict[ProcessKey, tuple[bool, Any]] = {}

    def rebuild(self, rows: Iterable[ProcessRow], spec: SortSpec) -> None:
        """Every row placed afresh (a new view, or too many changes for placing one by one)."""
        value = self._value = SORT_VALUES[spec.column]
        self.spec = spec
        reverse = spec.reverse
        present: list[tuple[SortKey, ProcessRow]] = []
        missing: list[tuple[MissingKey, ProcessRow]] = []
        placed: dict[ProcessKey, tuple[bool, Any]] = {}
        for row in rows:
            v = value(row)
            if v is None:
                key_m = missing_key(row)
                missing.append((key_m, row))
                placed[row.key] = (False, key_m)
            else:
                key = sort_key(row, v, reverse)
                present.append((key, row))
                placed[row.key] = (True, key)
        present.sort(key=_first)
        missing.sort(key=_first_m)
        self._present, self._missing, self._placed = present, missing, placed

    def place(self, row: ProcessRow) -> None:
        """A new or changed row: where its value now puts it (a changed value moves it)."""
        self.discard(row.key)
        v = self._value(row)
        if v is None:
            key_m = missing_key(row)
            bisect.insort(self._missing, (key_m, row), key=_first_m)
            self._placed[row.key] = (False, key_m)
        else:
            key = sort_key(row, v, self.spec.reverse)
            bisect.insort(self._present, (key, row), key=_first)
            self._placed[row.key] = (True, key)

    def discard(self, key: ProcessKey) -> None:
        where = self._placed.pop(key, None)
        if where is None:
            return
        has_value, at = where
        if has_value:
            del self._present[bisect.bisect_left(self._present, at, key=_first)]
        else:
            del self._missing[bisect.bisect_left(self._missing, at, key=_first_m)]

    def __len__(self) -> int:
        return len(self._present) + len(self._missing)

    def __contains__(self, key: object) -> bool:
        return key in self._placed

    def row_at(self, index: int) -> ProcessRow:
        present = self._present
        count = len(present)
        if index < count:
            return present[count - 1 - index][1] if self.spec.reverse else present[index][1]
        return self._missing[index - count][1]

    def index_of(self, key: ProcessKey) -> int | None:
        where = self._placed.get(key)
        if where is None:
            return None
        has_value, at = where
        if has_value:
            index = bisect.bisect_left(self._present, at, key=_first)
            return len(self._present) - 1 - index if self.spec.reverse else index
        return len(self._present) + bisect.bisect_left(self._missing, at, key=_first_m)

    def __iter__(self) -> Iterator[ProcessRow]:
        present = reversed(self._present) if self.spec.reverse else iter(self._present)
        yield from (row for _, row in present)
        yield from (row for _, row in self._missing)


# The key of a (key, row) pair: C code, called for every row by sort and at every step of a
# bisection (a Python function here was a tenth of the UI thread on a busy machine).
_first: Callable[[tuple[SortKey, ProcessRow]], SortKey] = itemgetter(0)
_first_m: Callable[[tuple[MissingKey, ProcessRow]], MissingKey] = itemgetter(0)
