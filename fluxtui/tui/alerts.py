"""The alerts pane: every alert in the snapshot, newest first, with its MITRE ATT&CK technique
and the reasons behind it. Enter on a row opens the detail view of the alert's process.

The table is rebuilt only when the alerts change (they are appended at most a few per tick and
bounded by general.max_alerts). Untrusted strings (process names, reasons) are shown as plain
text with control characters made visible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from fluxtui.events import Alert, ProcessKey, Severity, Snapshot
from fluxtui.tui.format import DASH
from fluxtui.tui.process_detail import ProcessDetailScreen
from fluxtui.untrusted_text import safe_text
from fluxtui.views import DashboardSource

SEVERITY_STYLE = {
    Severity.LOW: "dim",
    Severity.MEDIUM: "$warning",
    Severity.HIGH: "bold $error",
    Severity.CRITICAL: "bold reverse $error",
}
SEVERITY_ORDER = {s: i for i, s in enumerate(Severity)}
# When, how bad, what, who first: at 80 columns the alert's title is on screen (it was past
# the edge behind Technique, Count and First); the rest scrolls into view.
COLUMNS = (("time", "Last", 8), ("severity", "Severity", 8), ("title", "Alert", 30),
           ("process", "Process", 18), ("technique", "Technique", 10), ("count", "Count", 5),
           ("first", "First", 8), ("reasons", "Reasons", 50))
COLUMN_INDEX = {key: i for i, (key, _, _) in enumerate(COLUMNS)}
GROWING = {"process": 1, "title": 2, "reasons": 3}  # shares of the width left over


@dataclass(frozen=True)
class AlertGroup:
    """Repeats of one rule on one executable, folded into one row."""

    alerts: tuple[Alert, ...]  # oldest first

    @property
    def last(self) -> Alert:
        return self.alerts[-1]

    @property
    def first(self) -> Alert:
        return self.alerts[0]

    @property
    def severity(self) -> Severity:
        return max((a.severity for a in self.alerts), key=SEVERITY_ORDER.__getitem__)


def fold(alerts: tuple[Alert, ...], executables: dict[ProcessKey, str]) -> list[AlertGroup]:
    """Group alerts by (rule, executable) — the executable from the process table, else the
    process name — newest group first, each group's alerts oldest first."""
    groups: dict[tuple[str, str], list[Alert]] = {}
    for alert in alerts:
        exe = executables.get(alert.key) if alert.key is not None else None
        groups.setdefault((alert.rule_id, exe or alert.process_name), []).append(alert)
    folded = [AlertGroup(tuple(members)) for members in groups.values()]
    folded.sort(key=lambda g: g.last.timestamp, reverse=True)
    return folded


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _style(style: str, variables: dict[str, str]) -> str:
    for name, value in variables.items():
        style = style.replace(f"${name}", value)
    return style


def alert_cells(group: AlertGroup, variables: dict[str, str] | None = None
                ) -> tuple[Text, ...]:
    alert = group.last
    process = f"{alert.key.pid} {alert.process_name}" if alert.key else alert.process_name
    colors = variables or {"warning": "yellow", "error": "red"}
    count = len(group.alerts)
    cells = {
        "time": Text(_clock(alert.timestamp)),
        "severity": Text(group.severity.value,
                         style=_style(SEVERITY_STYLE[group.severity], colors)),
        "technique": safe_text(alert.technique_id or DASH),
        "process": safe_text(process),
        "count": Text(str(count), style="bold" if count > 1 else "", justify="right"),
        "first": Text(_clock(group.first.timestamp) if count > 1 else DASH),
        "title": safe_text(alert.title),
        "reasons": safe_text("; ".join(alert.reasons) or DASH),
    }
    return tuple(cells[key] for key, _, _ in COLUMNS)


class AlertsTable(DataTable[Text]):
    """The alerts table; its Enter (open the process's details) is shown in the footer."""

    BINDINGS = [Binding("enter", "select_cursor", "Details", id="alerts.details")]


class AlertsPane(Widget):
    """Contract with the app: `refresh_from(snapshot)` on the refresh timer; `handle_event` for
    bus events (alerts also arrive in the snapshot of the same tick, so it ignores them)."""

    DEFAULT_CSS = """
    AlertsPane { height: 1fr; }
    AlertsPane > #alerts-summary { height: 1; padding: 0 1; color: $text-muted; }
    AlertsPane > DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("enter", "open_process", "Details", id="alerts.open_process")]

    def __init__(self, source: DashboardSource, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.source = source
        self._alerts: tuple[Alert, ...] = ()
        self._executables: dict[ProcessKey, str] | None = None
        self._groups: list[AlertGroup] = []  # newest first, as in the table
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Static("no alerts yet", id="alerts-summary")
        table: DataTable[Text] = AlertsTable(cursor_type="row", zebra_stripes=True,
                                             id="alerts-table")
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        yield table

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#alerts-table", DataTable)

    @property
    def shown(self) -> tuple[Alert, ...]:
        """The newest alert of each row, in table order (newest first)."""
        return tuple(g.last for g in self._groups)

    @property
    def groups(self) -> list[AlertGroup]:
        return list(self._groups)

    def on_resize(self) -> None:
        self._fit_columns()

    def _fit_columns(self) -> None:
        """Alert, Reasons and Process take the width a large terminal gives."""
        width = self.size.width
        if not width or width == self._width or not self.table.columns:
            return
        self._width = width
        fixed = sum(w + 2 for _, _, w in COLUMNS)  # DataTable pads each cell by one each side
        spare = max(0, width - fixed - 2)
        total = sum(GROWING.values())
        for key, _label, base in COLUMNS:
            column = self.table.columns.get(key)  # type: ignore[call-overload]
            if column is not None:
                column.width = base + spare * GROWING.get(key, 0) // total
                column.auto_width = False
        self.table.refresh(layout=True)
        self._rebuild(force=True)

    def refresh_from(self, snapshot: Snapshot) -> None:
        alerts = snapshot.alerts
        if (len(alerts) == len(self._alerts)
                and (not alerts or alerts[-1] is self._alerts[-1])):
            return
        self._alerts = alerts
        self._executables = {k: r.exe for k, r in snapshot.processes.items()}
        self._rebuild()

    def _rebuild(self, force: bool = False) -> None:
        if self._executables is None:  # no snapshot yet
            return
        selected = self.selected_alert()
        selected_group = next((g for g in self._groups if selected in g.alerts), None)
        groups = fold(self._alerts, self._executables)
        table = self.table
        cursor = table.cursor_row
        self._groups = groups
        table.clear()
        variables = self.app.theme_variables
        for i, group in enumerate(groups):
            table.add_row(*alert_cells(group, variables), key=str(i))
        if groups:
            # New alerts go on top: the cursor stays on the row it was on, not on its index.
            same = None
            if selected_group is not None:
                anchor = selected_group.first
                same = next((i for i, g in enumerate(groups) if anchor in g.alerts), None)
            table.move_cursor(row=same if same is not None else min(cursor, len(groups) - 1))
        counts = {s: 0 for s in Severity}
        for alert in self._alerts:
            counts[alert.severity] += 1
        summary = ", ".join(f"{n} {s.value}" for s, n in reversed(counts.items()) if n)
        self.query_one("#alerts-summary", Static).update(
            f"Enter: details · {len(self._alerts)} alerts ({summary}) in {len(groups)} rows "
            "(repeats of a rule on one executable folded)"
            if self._alerts else "no alerts yet")

    def selected_alert(self) -> Alert | None:
        """The newest alert of the selected row."""
        row = self.table.cursor_row
        if 0 <= row < len(self._groups):
            return self._groups[row].last
        return None

    def action_open_process(self) -> None:
        alert = self.selected_alert()
        if alert is None or alert.key is None:
            self.notify("this alert names no process", severity="warning")
            return
        self.app.push_screen(ProcessDetailScreen(self.source, alert.key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_process()
