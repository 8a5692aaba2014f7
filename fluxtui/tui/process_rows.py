"""The rows the process table shows, as its grid reads them (a `grid.RowSource`): in order, by
the grid's string key, with cells rendered only when the grid draws a row and kept while the
row is the same (or an equal) object. A flat view is kept up to date by the rows that changed;
a tree view is laid out afresh."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from fluxtui.events import ProcessKey, ProcessRow
from fluxtui.tui.grid import Cell
from fluxtui.tui.process_order import SortSpec
from fluxtui.tui.sorted_rows import SortedRows

Render = Callable[[ProcessRow, str], tuple[Cell, ...]]


def row_key(key: ProcessKey) -> str:
    return f"{key.pid}:{key.start_ticks}"


class ProcessRows:
    def __init__(self, render: Render) -> None:
        self._render = render
        self.by_key: dict[str, ProcessRow] = {}  # every row shown
        self._sorted = SortedRows()
        # The tree view: its lines' keys in order, where each is, and its drawing prefix.
        self._tree: list[str] | None = None
        self._tree_index: dict[str, int] = {}
        self._prefix: dict[str, str] = {}
        self._cells: dict[str, tuple[ProcessRow, str, tuple[Cell, ...]]] = {}

    @property
    def tree(self) -> bool:
        return self._tree is not None

    def show_flat(self, rows: Iterable[ProcessRow], spec: SortSpec) -> None:
        listed = list(rows)
        self._tree, self._tree_index, self._prefix = None, {}, {}
        self.by_key = {f"{r.key.pid}:{r.key.start_ticks}": r for r in listed}
        self._sorted.rebuild(listed, spec)
        self._forget_gone()

    def show_tree(self, lines: list[tuple[ProcessRow, str]]) -> None:
        keys = [f"{r.key.pid}:{r.key.start_ticks}" for r, _ in lines]
        self._tree = keys
        self._tree_index = {key: i for i, key in enumerate(keys)}
        self._prefix = {key: prefix for key, (_, prefix) in zip(keys, lines, strict=True)}
        self.by_key = {key: r for key, (r, _) in zip(keys, lines, strict=True)}
        self._sorted.rebuild((), self._sorted.spec)
        self._forget_gone()

    def update(self, shown: Iterable[ProcessRow], hidden: Iterable[ProcessKey]) -> None:
        """Flat view only: `shown` rows are placed where their values now put them (new or
        changed), `hidden` ones leave (gone, or no longer matching the filter)."""
        assert self._tree is None, "a tree view is laid out afresh"
        for key in hidden:
            text = row_key(key)
            if self.by_key.pop(text, None) is not None:
                self._sorted.discard(key)
                self._cells.pop(text, None)
        for row in shown:
            self.by_key[row_key(row.key)] = row
            self._sorted.place(row)

    def _forget_gone(self) -> None:
        for gone in self._cells.keys() - self.by_key.keys():
            del self._cells[gone]

    # --- grid.RowSource ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._tree) if self._tree is not None else len(self._sorted)

    def key_at(self, index: int) -> str:
        if self._tree is not None:
            return self._tree[index]
        key = self._sorted.row_at(index).key
        return f"{key.pid}:{key.start_ticks}"

    def index_of(self, key: str) -> int | None:
        if self._tree is not None:
            return self._tree_index.get(key)
        row = self.by_key.get(key)
        return None if row is None else self._sorted.index_of(row.key)

    def cells_of(self, key: str) -> tuple[Cell, ...]:
        """A row's cells, rendered again only when the row is another, unequal object (or its
        tree prefix changed): an unchanged row keeps its cells object, so the grid keeps its
        cached line."""
        row = self.by_key[key]
        prefix = self._prefix.get(key, "")
        cached = self._cells.get(key)
        if cached is not None and cached[1] == prefix:
            if cached[0] is row:
                return cached[2]
            if cached[0] == row:
                self._cells[key] = (row, prefix, cached[2])
                return cached[2]
        cells = self._render(row, prefix)
        self._cells[key] = (row, prefix, cells)
        return cells

    def row(self, key: str) -> ProcessRow | None:
        return self.by_key.get(key)
