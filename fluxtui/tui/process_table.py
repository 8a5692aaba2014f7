"""The process table: sortable by any column, filterable with `/`, with a tree view. Each tick
costs what changed: the snapshot names the processes whose row changed and those that left
(`Snapshot.changed`/`removed`), only those are placed anew in the sorted order, and only the
rows on screen are rendered (issue 13). A skipped snapshot, an unknown change set or a new view
(sort, filter, tree) redo every row."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import compress
from operator import is_not

from rich.cells import cell_len
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input

from fluxtui.events import ProcessKey, ProcessRow, Snapshot
from fluxtui.tui.final_names import FinalNames
from fluxtui.tui.final_names import final_identity as final_identity  # the details use it
from fluxtui.tui.format import DASH, human_bytes, human_rate, level_style, percent
from fluxtui.tui.grid import Cell, Column, FastTable
from fluxtui.tui.process_order import (
    SORT_VALUES,
    SortSpec,
    matches,
    name_label,
    tree_order,
    user_label,
)
from fluxtui.tui.process_rows import ProcessRows
from fluxtui.tui.process_rows import row_key as row_key  # the grid key of a process
from fluxtui.tui.themes import TOKEN_LEVELS
from fluxtui.untrusted_text import visible

# Ordered so that at 80 columns PID, User, Name, Risk, CPU, memory and state are on screen;
# the extra width of a larger terminal goes to the names and the syscall list.
COLUMNS: list[Column] = [
    Column("pid", "PID", 7, right=True),
    Column("user", "User", 8),
    Column("name", "Name", 16, grow=3),
    Column("risk", "Risk", 5, right=True),
    Column("cpu", "CPU%", 5, right=True),
    Column("memory", "Mem", 7, right=True),
    Column("threads", "Thr", 4, right=True),
    Column("state", "State", 8),
    Column("syscalls", "Sys/s", 6, right=True),
    Column("top_syscalls", "Top syscalls", 22, grow=2),
    Column("connections", "Conn", 4, right=True),
    Column("net_rx", "Rx/s", 8, right=True),
    Column("net_tx", "Tx/s", 8, right=True),
    Column("container", "Container", 12, grow=1),
]
COLUMN_IDS = [c.key for c in COLUMNS]


def _alarm(value: float | None) -> str:
    """Colour only what is worth a look (50/70/90%): a table of green is noise."""
    return "" if value is None or value < 50 else level_style(value, TOKEN_LEVELS)


def _number(value: float | None) -> Cell:
    return (DASH if value is None else f"{value:.0f}", "")


# Kernel states whose psutil names are wider than the State column (8): never cut mid-word.
STATE_LABELS = {"disk-sleep": "D-sleep", "tracing-stop": "traced", "wake-kill": "wakekill"}
EXITED_STYLE = "dim italic"  # a row kept after its process exited: readable, clearly not live


def render_cells(row: ProcessRow, name_prefix: str = "") -> tuple[Cell, ...]:
    """The table cells of one process. Untrusted strings are made visible, never markup.
    An exited process keeps its identity and its final risk; what only a live process has
    (CPU, memory, threads, rates, connections) shows as not measured, not as zero."""
    top = ", ".join(f"{n}:{c}" for n, c in row.syscall_counts[:3]) if row.syscall_counts else DASH
    user, name = visible(user_label(row.user)), name_prefix + visible(name_label(row))
    risk = (DASH if row.risk is None else f"{row.risk:.0f}", _alarm(row.risk))
    if row.exited_at is not None:
        muted = EXITED_STYLE
        return ((str(row.pid), muted), (user, muted), (name, muted),
                (risk[0], f"{risk[1]} italic" if risk[1] else muted),
                (DASH, muted), (DASH, muted), (DASH, muted), ("exited", f"bold {muted}"),
                (DASH, muted), (DASH, muted), (DASH, muted), (DASH, muted), (DASH, muted),
                (_container(row), muted))
    return (
        (str(row.pid), ""),
        (user, ""),
        (name, ""),
        risk,
        (percent(row.cpu_percent), _alarm(row.cpu_percent)),
        (human_bytes(row.memory_rss), ""),
        _number(row.threads),
        (STATE_LABELS.get(row.state, row.state), ""),
        _number(row.syscalls_per_s),
        (top, ""),
        _number(row.connections),
        (human_rate(row.net_rx_per_s), ""),
        (human_rate(row.net_tx_per_s), ""),
        (_container(row), ""),
    )


def _container(row: ProcessRow) -> str:
    """Runtime and name of the container, "—" for none known (the details tell the host from
    "not known yet")."""
    return visible(row.container) if row.container else DASH


def _render(row: ProcessRow, prefix: str) -> tuple[Cell, ...]:
    return render_cells(row, prefix)  # looked up at each call: tests count the renders


def _changes(snapshot: Snapshot, shown: dict[ProcessKey, ProcessRow], renamed: set[ProcessKey]
             ) -> tuple[list[ProcessKey], frozenset[ProcessKey]]:
    """The processes whose shown row is another object than last time, and those gone: the
    engine's changes, plus the exited rows renamed by a new or dropped final record."""
    assert snapshot.changed is not None
    listed = snapshot.changed
    changed = [key for key in listed if key in shown]
    changed.extend(key for key in renamed if key not in listed and key in shown)
    return changed, snapshot.removed


def _differences(old: dict[ProcessKey, ProcessRow], new: dict[ProcessKey, ProcessRow]
                 ) -> tuple[list[ProcessKey], frozenset[ProcessKey]]:
    """The changes between two shown snapshots when the engine's change set cannot say (a
    sequence skipped by the UI timer, or a snapshot without one): rows are immutable and the
    engine keeps an unchanged row as the same object, so a row is changed when it is not the
    object shown last (compared in C: no Python code per row)."""
    keys = list(new)
    changed = list(compress(keys, map(is_not, map(old.get, keys), new.values())))
    return changed, frozenset(old.keys() - new.keys())


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
    """Filter input + table. Posts `ProcessTable.Selected` on Enter."""

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
        self._labelled: SortSpec | None = None
        self._raw: Snapshot | None = None  # the engine's snapshot last shown
        self._snapshot: Snapshot | None = None  # the same, exited rows named by their finals
        self._finals = FinalNames()
        self._rows = ProcessRows(_render)
        self._applied_view: tuple[str, SortSpec, bool] | None = None
        self._with_risk = 0  # rows with a risk score: the default sort is risk while any

    def compose(self) -> ComposeResult:
        yield FilterInput(
            placeholder="filter: name, pid, user, command line (Enter keeps, Esc clears)",
            id="process-filter", classes="hidden")
        yield FastTable(COLUMNS, id="process-grid")

    @property
    def table(self) -> FastTable:
        return self.query_one("#process-grid", FastTable)

    # --- data --------------------------------------------------------------------------------

    def current_sort(self) -> SortSpec:
        if self.state.sort is not None:
            return self.state.sort
        return SortSpec("risk", True) if self._with_risk else SortSpec("cpu", True)

    def refresh_from(self, snapshot: Snapshot) -> None:
        if snapshot is self._raw:
            return
        before, raw_before = self._snapshot, self._raw
        self._raw = snapshot
        current, renamed = self._finals.apply(snapshot)
        self._snapshot = current
        changes = None
        if (before is not None and raw_before is not None and snapshot.changed is not None
                and snapshot.sequence == raw_before.sequence + 1):
            changes = _changes(snapshot, current.processes, renamed)
        elif before is not None:
            changes = _differences(before.processes, current.processes)
        if changes is None:
            self._with_risk = sum(1 for r in current.processes.values() if r.risk is not None)
        else:
            self._count_risk(before.processes if before else {}, current.processes, *changes)
        self._apply(changes)

    def _count_risk(self, old: dict[ProcessKey, ProcessRow], new: dict[ProcessKey, ProcessRow],
                    changed: list[ProcessKey], removed: frozenset[ProcessKey]) -> None:
        count = self._with_risk
        for key in changed:
            was = old.get(key)
            count += (new[key].risk is not None) - (was is not None and was.risk is not None)
        for key in removed:
            was = old.get(key)
            count -= was is not None and was.risk is not None
        self._with_risk = count

    def _apply(self, changes: tuple[list[ProcessKey], frozenset[ProcessKey]] | None = None
               ) -> None:
        """Show the current snapshot. `changes` (the processes whose row changed and those
        gone, against the snapshot shown last) in the same view: only those are placed again.
        Otherwise, or with a tree (its prefixes depend on the neighbours) or too many changes
        (sorting afresh is then cheaper than placing one by one), every row is."""
        snapshot = self._snapshot
        if snapshot is None:
            return
        view = (self.state.filter, self.current_sort(), self.state.tree)
        if changes is not None and view == self._applied_view:
            changed, removed = changes
            if not changed and not removed:
                return
            if not self.state.tree and (len(changed) + len(removed)) * 4 <= len(snapshot.processes):
                self._place(changed, removed)
                self.table.set_source(self._rows)
                return
        self._applied_view = view
        needle = self.state.filter
        rows = ([r for r in snapshot.processes.values() if matches(r, needle)] if needle
                else snapshot.processes.values())
        spec = self.current_sort()
        deepest = 0
        if self.state.tree:
            lines = tree_order(list(rows), spec)
            self._rows.show_tree(lines)
            # A tree's names need room for their depth: the deepest one's, room allowing.
            deepest = max((cell_len(prefix + visible(name_label(r))) for r, prefix in lines),
                          default=0)
        else:
            self._rows.show_flat(rows, spec)
        self.table.want_width("name", deepest)
        self.table.set_source(self._rows)
        if spec != self._labelled:
            self._update_labels()

    def _place(self, changed: list[ProcessKey], removed: frozenset[ProcessKey]) -> None:
        processes = self._snapshot.processes if self._snapshot is not None else {}
        needle = self.state.filter
        shown: list[ProcessRow] = []
        hidden: list[ProcessKey] = list(removed)
        for key in changed:
            row = processes.get(key)
            if row is not None and (not needle or matches(row, needle)):
                shown.append(row)
            else:
                hidden.append(key)
        self._rows.update(shown, hidden)

    def _update_labels(self) -> None:
        spec = self._labelled = self.current_sort()
        arrow = " ▼" if spec.reverse else " ▲"
        self.table.set_labels({c.key: c.label + (arrow if c.key == spec.column else "")
                               for c in COLUMNS})

    @property
    def rows(self) -> dict[str, ProcessRow]:
        """The rows shown, by table key, in the table's order (built on demand)."""
        rows = self._rows
        return {key: rows.by_key[key] for key in (rows.key_at(i) for i in range(len(rows)))}

    def selected_key_str(self) -> str | None:
        return self.table.cursor_key

    def selected_row(self) -> ProcessRow | None:
        key = self.selected_key_str()
        return None if key is None else self._rows.row(key)

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
        self.table.scroll_home_keep()  # a new order is read from its top

    def action_next_sort(self) -> None:
        current = self.current_sort().column
        column = COLUMN_IDS[(COLUMN_IDS.index(current) + 1) % len(COLUMN_IDS)]
        self.sort_by(column)

    def action_reverse_sort(self) -> None:
        spec = self.current_sort()
        self.sort_by(spec.column, not spec.reverse)

    def action_toggle_tree(self) -> None:
        self.state.tree = not self.state.tree
        self._apply()

    def action_kill(self) -> None:
        row = self.selected_row()
        if row is None:
            return
        if row.exited_at is not None:
            self.app.notify(f"process {row.pid} ({visible(name_label(row))}) has already "
                            "exited: there is nothing to signal", severity="warning", markup=False)
            return
        self.post_message(self.KillRequested(row))

    @on(FastTable.HeaderClicked, "#process-grid")
    def _header_clicked(self, event: FastTable.HeaderClicked) -> None:
        self.sort_by(event.column)

    @on(FastTable.RowSelected, "#process-grid")
    def _row_chosen(self, event: FastTable.RowSelected) -> None:
        row = self._rows.row(event.key)
        if row is not None:
            self.post_message(self.Selected(row.key))
