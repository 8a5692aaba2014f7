"""The process table: updated by diff each tick (stable row keys, update_cell only what changed),
sortable by any column, filterable with `/`, with a tree view."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input

from fluxtui.events import ProcessKey, ProcessRow, Snapshot
from fluxtui.text import safe_text
from fluxtui.tui.format import DASH, human_bytes, human_rate, level_style, percent
from fluxtui.tui.process_order import (
    SORT_VALUES,
    SortSpec,
    default_sort,
    matches,
    sort_rows,
    tree_order,
)

COLUMNS: list[tuple[str, str, int | None]] = [  # id, label, width (None: auto)
    ("pid", "PID", 8),
    ("user", "User", 10),
    ("name", "Name", 28),
    ("cpu", "CPU%", 6),
    ("memory", "Mem", 7),
    ("threads", "Thr", 4),
    ("state", "State", 9),
    ("risk", "Risk", 5),
    ("syscalls", "Sys/s", 7),
    ("top_syscalls", "Top syscalls", 22),
    ("connections", "Conn", 5),
    ("net_rx", "Rx/s", 8),
    ("net_tx", "Tx/s", 8),
    ("container", "Container", 12),
]
COLUMN_IDS = [c[0] for c in COLUMNS]


def row_key(key: ProcessKey) -> str:
    return f"{key.pid}:{key.start_ticks}"


def _right(value: str, style: str = "") -> Text:
    return Text(value, style=style, justify="right")


def _number(value: float | None, fmt: str = "{:.0f}") -> Text:
    return _right(DASH if value is None else fmt.format(value))


def render_cells(row: ProcessRow, name_prefix: str = "") -> tuple[object, ...]:
    """The table cells of one process. Untrusted strings go through safe_text: never markup."""
    risk_style = "" if row.risk is None else level_style(row.risk)
    top = ", ".join(f"{n}:{c}" for n, c in row.syscall_counts[:3]) if row.syscall_counts else DASH
    name = Text(name_prefix, style="dim") + safe_text(row.name)
    return (
        _right(str(row.pid)),
        safe_text(row.user),
        name,
        _right(percent(row.cpu_percent)),
        _right(human_bytes(row.memory_rss)),
        _number(row.threads),
        Text(row.state),
        _right(DASH if row.risk is None else f"{row.risk:.0f}", risk_style),
        _number(row.syscalls_per_s),
        Text(top),
        _number(row.connections),
        _right(human_rate(row.net_rx_per_s)),
        _right(human_rate(row.net_tx_per_s)),
        safe_text(row.container[:12]) if row.container else Text(DASH),
    )


@dataclass
class TableState:
    sort: SortSpec | None = None  # None: the default (risk, else CPU)
    filter: str = ""
    tree: bool = False


class FilterInput(Input):
    """The filter box: Escape clears it and hands focus back to the table."""

    BINDINGS = [Binding("escape", "clear", "Clear filter")]

    def action_clear(self) -> None:
        table = self.parent
        if isinstance(table, ProcessTable):
            table.action_clear_filter()


class ProcessTable(Vertical):
    """Filter input + DataTable. Posts `ProcessTable.Selected` on Enter."""

    BINDINGS = [
        Binding("slash", "start_filter", "Filter", id="filter"),
        Binding("s", "next_sort", "Sort", id="sort"),
        Binding("r", "reverse_sort", "Reverse", id="reverse"),
        Binding("t", "toggle_tree", "Tree", id="tree"),
        Binding("k", "kill", "Kill", id="kill"),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class Selected(Message):
        def __init__(self, key: ProcessKey) -> None:
            super().__init__()
            self.key = key

    class KillRequested(Message):
        def __init__(self, row: ProcessRow) -> None:
            super().__init__()
            self.row = row

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.state = TableState()
        self._cells: dict[str, tuple[object, ...]] = {}
        self._order: list[str] = []
        self._rows: dict[str, ProcessRow] = {}
        self._snapshot: Snapshot | None = None

    def compose(self) -> ComposeResult:
        yield FilterInput(
            placeholder="filter: name, pid, user, command line (Enter keeps, Esc clears)",
            id="process-filter", classes="hidden")
        table: DataTable[object] = DataTable(id="process-datatable", cursor_type="row",
                                             zebra_stripes=True)
        for column_id, label, width in COLUMNS:
            table.add_column(label, key=column_id, width=width)
        yield table

    @property
    def table(self) -> DataTable[object]:
        return self.query_one("#process-datatable", DataTable)

    # --- data --------------------------------------------------------------------------------

    def current_sort(self) -> SortSpec:
        if self.state.sort is not None:
            return self.state.sort
        rows = self._snapshot.processes.values() if self._snapshot else ()
        return default_sort(rows)

    def refresh_from(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._apply()

    def _visible(self) -> list[tuple[ProcessRow, str]]:
        if self._snapshot is None:
            return []
        rows = [r for r in self._snapshot.processes.values() if matches(r, self.state.filter)]
        spec = self.current_sort()
        if self.state.tree:
            return tree_order(rows, spec)
        return [(r, "") for r in sort_rows(rows, spec)]

    def _apply(self) -> None:
        table = self.table
        visible = self._visible()
        new_order = [row_key(r.key) for r, _ in visible]
        new_keys = set(new_order)
        cursor_key = self.selected_key_str()
        turned_over = len(new_keys - set(self._order))
        if self._order and turned_over > len(new_order) // 2:
            table.clear()
            self._cells.clear()
        else:
            for gone in set(self._cells) - new_keys:
                table.remove_row(gone)
                del self._cells[gone]
        for row, prefix in visible:
            key = row_key(row.key)
            cells = render_cells(row, prefix)
            before = self._cells.get(key)
            if before is None:
                table.add_row(*cells, key=key)
            else:
                for column_id, old, new in zip(COLUMN_IDS, before, cells, strict=True):
                    if old != new:
                        table.update_cell(key, column_id, new)
            self._cells[key] = cells
        self._rows = {row_key(r.key): r for r, _ in visible}
        if new_order != self._current_table_order():
            rank = {key.split(":", 1)[0]: i for i, key in enumerate(new_order)}
            table.sort("pid", key=lambda cell: rank[cell.plain])
        self._order = new_order
        if cursor_key in new_keys:
            table.move_cursor(row=table.get_row_index(cursor_key), animate=False)
        self._update_labels()

    def _current_table_order(self) -> list[str]:
        table = self.table
        return [table.coordinate_to_cell_key((i, 0)).row_key.value or ""
                for i in range(table.row_count)]

    def _update_labels(self) -> None:
        spec = self.current_sort()
        table = self.table
        for column_id, label, _ in COLUMNS:
            arrow = (" ▼" if spec.reverse else " ▲") if column_id == spec.column else ""
            column = table.columns.get(column_id)  # type: ignore[call-overload]
            if column is not None:
                column.label = Text(label + arrow)
        table.refresh()

    def selected_key_str(self) -> str | None:
        table = self.table
        if table.row_count == 0:
            return None
        try:
            return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        except Exception:  # cursor outside the table after rows vanished
            return None

    def selected_row(self) -> ProcessRow | None:
        key = self.selected_key_str()
        return None if key is None else self._rows.get(key)

    # --- actions -----------------------------------------------------------------------------

    def action_start_filter(self) -> None:
        box = self.query_one("#process-filter", Input)
        box.remove_class("hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#process-filter", Input)
        box.value = ""
        box.add_class("hidden")
        self.state.filter = ""
        self.table.focus()
        self._apply()

    @on(Input.Changed, "#process-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.state.filter = event.value.strip()
        self._apply()

    @on(Input.Submitted, "#process-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        if not event.value.strip():
            event.input.add_class("hidden")
        self.table.focus()

    def sort_by(self, column: str, reverse: bool | None = None) -> None:
        if column not in SORT_VALUES:
            raise ValueError(f"unknown column {column!r}")
        current = self.current_sort()
        if reverse is None:
            # Numbers start highest first; a second press on the same column flips it.
            reverse = (not current.reverse if current.column == column
                       else column not in ("pid", "user", "name", "state", "container"))
        self.state.sort = SortSpec(column, reverse)
        self._apply()

    def action_next_sort(self) -> None:
        current = self.current_sort().column
        column = COLUMN_IDS[(COLUMN_IDS.index(current) + 1) % len(COLUMN_IDS)]
        self.sort_by(column)

    def action_reverse_sort(self) -> None:
        spec = self.current_sort()
        self.sort_by(spec.column, not spec.reverse)

    def action_toggle_tree(self) -> None:
        self.state.tree = not self.state.tree
        self.table.clear()
        self._cells.clear()
        self._apply()

    def action_kill(self) -> None:
        row = self.selected_row()
        if row is not None:
            self.post_message(self.KillRequested(row))

    @on(DataTable.HeaderSelected, "#process-datatable")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self.sort_by(str(event.column_key.value))

    @on(DataTable.RowSelected, "#process-datatable")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        row = self._rows.get(str(event.row_key.value))
        if row is not None:
            self.post_message(self.Selected(row.key))
