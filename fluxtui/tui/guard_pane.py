"""The Guard tab: the guard's mode and counters, and every decision, newest first.

Keys (active when the tab has focus): M switch enforce / monitor (asks first; refused while
requests wait, since monitor mode would let them through), R the rules screen.
The credential prompt itself is `guard_prompt.PromptScreen`.

Every untrusted string (paths, command lines, user names) is shown through `visible`.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from fluxtui.capabilities.guard import GuardComponent, GuardView
from fluxtui.engine import Engine
from fluxtui.events import Snapshot
from fluxtui.replay import ReplaySource
from fluxtui.tui.dialogs import ConfirmScreen
from fluxtui.tui.guard_prompt import guard_of
from fluxtui.tui.guard_rules_screen import RulesScreen
from fluxtui.tui.panels import COMPACT_HEIGHT
from fluxtui.tui.themes import level_colors
from fluxtui.untrusted_text import visible

log = logging.getLogger(__name__)


def _age(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def switch_mode(node: Any, guard: GuardComponent) -> None:
    """Enforce <-> monitor, after a confirmation; never while requests wait (the responder
    answers waiting requests "allowed" when it goes to monitor mode)."""
    app = node.app
    waiting = len(guard.pending())
    target = "monitor" if guard.mode == "enforce" else "enforce"
    if target == "monitor" and waiting:
        app.notify(f"not switched: {waiting} request(s) waiting would be allowed by monitor "
                   "mode; answer them first", severity="warning")
        return

    def done(yes: bool | None) -> None:
        if yes:
            guard.set_mode(target)
            app.notify(f"guard mode: {target}")

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

    def __init__(self, engine: Engine, limit: int = 200, **kwargs: Any) -> None:
        kwargs.setdefault("id", "guard-history")
        super().__init__(**kwargs)
        self.engine = engine
        self.limit = limit
        self._seen: int | None = None
        self._loading = False
        self._again = False
        self._shown: dict[str, tuple[Any, Any]] = {}  # row key -> (count, last_ts) shown
        self._summary_widget = Static(id="guard-summary")
        self._table: DataTable[Any] = DataTable(id="guard-history-table", cursor_type="row",
                                                zebra_stripes=True)

    def compose(self) -> ComposeResult:
        yield self._summary_widget
        yield self._table

    def on_mount(self) -> None:
        for key, label in _HISTORY_COLUMNS:
            self._table.add_column(label, key=key)

    @property
    def guard(self) -> GuardComponent | None:
        return guard_of(self.engine)

    def refresh_from(self, snapshot: Snapshot) -> None:
        guard = self.guard
        summary = self._summary_widget
        if isinstance(self.engine, ReplaySource):  # recorded history, nothing to answer
            summary.update(Text("Replay: the recorded guard decisions and prompts (history "
                                "only: nothing here can be answered)", style="bold"))
            if self._table.columns:
                self.apply_rows(self.engine.guard_history(self.limit))
            return
        view = snapshot.views.get("guard")
        if guard is None or not isinstance(view, GuardView):
            reason = guard.reason if guard is not None else "not configured"
            summary.update(Text(f"Credential guard unavailable: {visible(reason)}",
                                style="bold yellow"))
            return
        self.show_summary(view)
        if view.decisions_recorded != self._seen:
            self._seen = view.decisions_recorded
            self.reload()

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
        for problem in view.problems[:1 if small else 3]:
            t.append(visible(problem) + "\n", style="yellow")
        t.rstrip()
        return t

    class Loaded(Message):
        """The history, read off the UI thread."""

        def __init__(self, items: list[dict[str, Any]]) -> None:
            super().__init__()
            self.items = items

    def reload(self) -> None:
        """Read the history (SQLite) on a worker thread; the rows are applied when it is back.
        One read at a time: a reload asked for meanwhile runs when it is done."""
        guard = self.guard
        if guard is None or not self._table.columns:
            return
        if self._loading:
            self._again = True
            return
        self._loading = True
        limit = self.limit

        def load() -> None:
            try:
                items = guard.history(limit)
            except Exception as exc:  # reported, the table keeps what it shows
                log.warning("guard history: %s", exc)
                items = None
            self.post_message(self.Loaded(items if items is not None else []))

        self.run_worker(load, thread=True, group="guard-history", exit_on_error=False)

    def on_guard_history_loaded(self, message: GuardHistory.Loaded) -> None:
        message.stop()
        self._loading = False
        self.apply_rows(message.items)
        if self._again:
            self._again = False
            self.reload()

    def apply_rows(self, items: list[dict[str, Any]]) -> None:
        """Bring the table to `items` (newest first) by row id: rows that left are removed,
        new rows added, changed ones (a fold counted more) updated; untouched rows stay."""
        table = self._table
        wanted: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(items):
            wanted[str(item.get("id", f"mem-{index}-{item['ts']}"))] = item
        present = {str(k.value) for k in table.rows}
        for key in present - wanted.keys():
            table.remove_row(key)
        added = False
        for key, item in wanted.items():
            cells = self._cells(item, level_colors(self.app.current_theme))
            if key not in present:
                table.add_row(*cells, key=key)
                added = True
            elif self._shown.get(key) != (item.get("count"), item.get("last_ts")):
                for (column, _label), value in zip(_HISTORY_COLUMNS, cells, strict=True):
                    table.update_cell(key, column, value)
            self._shown[key] = (item.get("count"), item.get("last_ts"))
        for key in set(self._shown) - wanted.keys():
            del self._shown[key]
        if added:  # new rows went to the bottom: newest first again, the cursor stays put
            selected = None
            if table.row_count and table.cursor_row >= 0:
                selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            table.sort("time", key=lambda cell: cell.order, reverse=True)
            if selected is not None:
                with contextlib.suppress(RowDoesNotExist):
                    table.move_cursor(row=table.get_row_index(selected))

    @staticmethod
    def _cells(item: dict[str, Any], colors: Mapping[str, str] | None = None
               ) -> tuple[Any, ...]:
        colors = colors or {"success": "green", "warning": "yellow", "error": "red"}
        outcome = item["outcome"]
        latency = item.get("latency_us")
        if latency is None:
            latency_text = "—"
        elif latency >= 1e6:
            latency_text = f"{latency / 1e6:.1f} s"
        elif latency >= 1e3:
            latency_text = f"{latency / 1e3:.1f} ms"
        else:
            latency_text = f"{latency:.0f} µs"
        cells = {
            "time": _TimeCell(_age(item["ts"]), (item["ts"], item.get("id") or 0)),
            "outcome": outcome_text(outcome, colors),
            "program": Text(visible(item.get("executable") or "?")),
            "pid": str(item.get("pid") or ""),
            "user": Text(visible(item.get("user") or "")),
            "file": Text(visible(item.get("target") or "")),
            "group": Text(visible(item.get("category") or "")),
            "by": item.get("decided_by") or "",
            "count": str(item.get("count", 1)),
            "latency": latency_text,
            "reason": Text(visible(item.get("reason") or "")),
        }
        return tuple(cells[key] for key, _label in _HISTORY_COLUMNS)

    def action_toggle_mode(self) -> None:
        guard = self.guard
        if guard is not None:
            switch_mode(self, guard)

    def action_rules(self) -> None:
        if self.guard is not None:
            self.app.push_screen(RulesScreen(self.guard))
