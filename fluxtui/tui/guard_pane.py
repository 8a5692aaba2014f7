"""The Guard tab: the guard's mode and counters, and every decision, newest first.

Keys (active when the tab has focus): M switch enforce / monitor (asks first; refused while
requests wait, since monitor mode would let them through), R the rules screen.
The credential prompt itself is `guard_prompt.PromptScreen`.

It reads the snapshot's `GuardView` only (the history in it is read by the guard on its own
worker thread) and switches the mode through `Commands.set_guard_mode`.

Every untrusted string (paths, command lines, user names) is shown through `visible`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from fluxtui.commands import GuardMode
from fluxtui.events import Snapshot
from fluxtui.replay import ReplaySource
from fluxtui.replay.source import HISTORY_LIMIT
from fluxtui.tui.dialogs import ConfirmScreen
from fluxtui.tui.guard_rules_screen import RulesScreen
from fluxtui.tui.panels import COMPACT_HEIGHT
from fluxtui.tui.themes import level_colors
from fluxtui.untrusted_text import visible
from fluxtui.views import GUARD, DashboardSource, GuardHistoryItem, GuardView, view_of


def _age(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def guard_status(snapshot: Snapshot | None) -> str:
    """Why the guard shows no view: its status's reason (or that it is not configured)."""
    status = next((s for s in snapshot.statuses if s.name == GUARD), None) if snapshot else None
    if status is None:
        return "not configured"
    if status.running:
        return "starting (its figures come with the next tick)"
    return status.reason or status.state.value


def switch_mode(node: Any, source: DashboardSource) -> None:
    """Enforce <-> monitor, after a confirmation; never while requests wait (the responder
    answers waiting requests "allowed" when it goes to monitor mode: the command refuses it
    too, with the same words)."""
    app = node.app
    snapshot = source.latest_snapshot()
    view = view_of(snapshot, GUARD, GuardView)
    if view is None:
        app.notify(f"the credential guard is not running: {visible(guard_status(snapshot))}",
                   severity="warning", markup=False)
        return
    waiting = view.pending
    target: GuardMode = "monitor" if view.mode == "enforce" else "enforce"
    if target == "monitor" and waiting:
        app.notify(f"not switched: {waiting} request(s) waiting would be allowed by monitor "
                   "mode; answer them first", severity="warning")
        return

    def done(yes: bool | None) -> None:
        if yes:
            result = source.commands.set_guard_mode(target)
            app.notify(visible(result.message), markup=False,
                       severity="information" if result.ok else "warning")

    if target == "monitor":
        app.push_screen(ConfirmScreen(
            "Switch the credential guard to MONITOR mode?",
            "Every protected file becomes readable by any program without asking; reads are "
            "only logged.", "switch to monitor"), done)
    else:
        done(True)


# The file read comes before who read it: at 80 columns a program's long path (a tool under
# /tmp/…/.cache) pushed the file past the edge.
_HISTORY_COLUMNS = (("time", "Time"), ("outcome", "Outcome"), ("file", "File"),
                    ("program", "Program"), ("pid", "PID"), ("user", "User"), ("group", "Group"),
                    ("by", "Decided by"), ("count", "Opens"), ("latency", "Latency"),
                    ("reason", "Reason"))


def outcome_text(outcome: str, colors: Mapping[str, str]) -> Text:
    """A decision's outcome in the theme's colours. "released" (the kernel let the read through
    when fluxtui stopped without answering) is a warning, not a denial: the file was read."""
    if outcome == "allowed":
        return Text(outcome, style=colors["success"])
    if outcome == "released":
        return Text("released (read)", style=f"bold {colors['warning']}")
    return Text(outcome, style=f"bold {colors['error']}")


class _TimeCell(Text):
    """The time column: shown as HH:MM:SS, ordered by (timestamp, row id)."""

    def __init__(self, shown: str, order: tuple[float, int]) -> None:
        super().__init__(shown)
        self.order = order


class GuardHistory(Vertical):
    """For the Guard tab: mode and counters, then every decision (newest first)."""

    DEFAULT_CSS = """
    GuardHistory {
        height: 1fr;
    }
    GuardHistory > #guard-summary {
        height: auto;
        padding: 0 1;
    }
    GuardHistory > DataTable {
        height: 1fr;
    }
    """

    BINDINGS = [
        Binding("M", "toggle_mode", "Enforce/monitor", id="guard_tab.mode"),
        Binding("R", "rules", "Rules", id="guard_tab.rules"),
    ]

    def __init__(self, source: DashboardSource, **kwargs: Any) -> None:
        kwargs.setdefault("id", "guard-history")
        super().__init__(**kwargs)
        self.source = source
        self._seen: tuple[GuardHistoryItem, ...] | None = None
        self._shown: dict[str, tuple[int, float]] = {}  # row key -> (count, last_ts) shown
        self._summary_widget = Static(id="guard-summary")
        self._table: DataTable[Any] = DataTable(id="guard-history-table", cursor_type="row",
                                                zebra_stripes=True)

    def compose(self) -> ComposeResult:
        yield self._summary_widget
        yield self._table

    def on_mount(self) -> None:
        for key, label in _HISTORY_COLUMNS:
            self._table.add_column(label, key=key)

    def refresh_from(self, snapshot: Snapshot) -> None:
        summary = self._summary_widget
        if isinstance(self.source, ReplaySource):  # recorded history, nothing to answer
            summary.update(Text("Replay: the recorded guard decisions and prompts (history "
                                "only: nothing here can be answered)", style="bold"))
            if self._table.columns:
                self.apply_rows([GuardHistoryItem.from_record(record, i) for i, record
                                 in enumerate(self.source.guard_history(HISTORY_LIMIT))])
            return
        view = view_of(snapshot, GUARD, GuardView)
        if view is None:
            why = guard_status(snapshot)
            word = "" if why.startswith("starting") else " unavailable"
            summary.update(Text(f"Credential guard{word}: {visible(why)}", style="bold yellow"))
            return
        self.show_summary(view)
        if view.history is not self._seen and self._table.columns:
            self._seen = view.history
            self.apply_rows(view.history)

    def show_summary(self, view: GuardView) -> None:
        summary = self._summary_widget
        small = self.app.size.height < COMPACT_HEIGHT
        summary.styles.text_wrap = "nowrap" if small else "wrap"
        summary.styles.text_overflow = "ellipsis" if small else "fold"
        summary.update(self._summary(view))

    def _summary(self, view: GuardView) -> Text:
        """Mode, counters and notes. On a small screen (below COMPACT_HEIGHT rows) each note
        keeps to one line, cut with "…", and only the first problem shows, so that the history
        keeps the rows (at 80x24 the wrapped notes left it three). The keys are in the footer."""
        small = self.app.size.height < COMPACT_HEIGHT
        t = Text()
        style = "bold white on green" if view.mode == "enforce" else "bold black on yellow"
        t.append(f" {view.mode.upper()} ", style=style)
        t.append(f"  {view.pending} pending ({view.waiting_opens} opens)  ")
        t.append(f"{view.allowed} allowed", style="green")
        t.append("  ")
        t.append(f"{view.denied} denied", style="red")
        t.append(f"  errors {view.errors}  late answers {view.late}\n")
        t.append(f"protected files {view.protected_files}  marked directories "
                 f"{view.marked_dirs}  rules {view.rules}  process cache: "
                 f"{visible(view.process_events)}\n", style="dim")
        t.append(f"audit: {visible(view.audit)}   journal: {visible(view.journal)}\n",
                 style="dim")
        if view.rules_error:
            t.append(visible(view.rules_error) + "\n", style="bold yellow")
        if view.history_error:
            t.append(visible(view.history_error) + "\n", style="bold yellow")
        for problem in view.problems[:1 if small else 3]:
            t.append(visible(problem) + "\n", style="yellow")
        t.rstrip()
        return t

    def apply_rows(self, items: Sequence[GuardHistoryItem]) -> None:
        """Bring the table to `items` (newest first) by row id: rows that left are removed,
        new rows added, changed ones (a fold counted more) updated; untouched rows stay."""
        table = self._table
        wanted = {item.id: item for item in items}
        present = {str(k.value) for k in table.rows}
        for key in present - wanted.keys():
            table.remove_row(key)
        added = False
        for key, item in wanted.items():
            cells = self._cells(item, level_colors(self.app.current_theme))
            if key not in present:
                table.add_row(*cells, key=key)
                added = True
            elif self._shown.get(key) != (item.count, item.last_timestamp):
                for (column, _label), value in zip(_HISTORY_COLUMNS, cells, strict=True):
                    table.update_cell(key, column, value)
            self._shown[key] = (item.count, item.last_timestamp)
        for key in set(self._shown) - wanted.keys():
            del self._shown[key]
        if added:  # new rows went to the bottom: newest first again, the cursor stays put
            selected = None
            if table.row_count and table.cursor_row >= 0:
                selected = table.coordinate_to_cell_key(
                    Coordinate(table.cursor_row, 0)).row_key.value
            table.sort("time", key=lambda cell: cell.order, reverse=True)
            if selected is not None:
                with contextlib.suppress(RowDoesNotExist):
                    table.move_cursor(row=table.get_row_index(selected))

    @staticmethod
    def _cells(item: GuardHistoryItem, colors: Mapping[str, str] | None = None
               ) -> tuple[Any, ...]:
        colors = colors or {"success": "green", "warning": "yellow", "error": "red"}
        latency = item.latency_us
        if latency is None:
            latency_text = "—"
        elif latency >= 1e6:
            latency_text = f"{latency / 1e6:.1f} s"
        elif latency >= 1e3:
            latency_text = f"{latency / 1e3:.1f} ms"
        else:
            latency_text = f"{latency:.0f} µs"
        order = (item.timestamp, int(item.id) if item.id.isdigit() else 0)
        cells = {
            "time": _TimeCell(_age(item.timestamp), order),
            "outcome": outcome_text(item.outcome, colors),
            "program": Text(visible(item.executable or "?")),
            "pid": str(item.pid or ""),
            "user": Text(visible(item.user)),
            "file": Text(visible(item.file)),
            "group": Text(visible(item.group)),
            "by": item.decided_by,
            "count": str(item.count),
            "latency": latency_text,
            "reason": Text(visible(item.reason)),
        }
        return tuple(cells[key] for key, _label in _HISTORY_COLUMNS)

    def action_toggle_mode(self) -> None:
        switch_mode(self, self.source)

    def action_rules(self) -> None:
        self.app.push_screen(RulesScreen(self.source))
