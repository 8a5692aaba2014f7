"""The alerts pane: every alert in the snapshot, newest first, with its MITRE ATT&CK technique
and the reasons behind it. Enter on a row opens the detail view of the alert's process.

The table is rebuilt only when the alerts change (they are appended at most a few per tick and
bounded by general.max_alerts). Untrusted strings (process names, reasons) are shown as plain
text with control characters made visible.
"""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, Static

from fluxtui.engine import Engine
from fluxtui.events import Alert, Severity, Snapshot
from fluxtui.text import safe_text
from fluxtui.tui.format import DASH
from fluxtui.tui.process_detail import ProcessDetailScreen

SEVERITY_STYLE = {
    Severity.LOW: "dim",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "bold red",
    Severity.CRITICAL: "bold reverse red",
}
COLUMNS = (("time", "Time", 8), ("severity", "Severity", 8), ("technique", "Technique", 10),
           ("process", "Process", 22), ("title", "Alert", 44), ("reasons", "Reasons", 60))


def alert_cells(alert: Alert) -> tuple[Text, ...]:
    process = f"{alert.key.pid} {alert.process_name}" if alert.key else alert.process_name
    return (
        Text(time.strftime("%H:%M:%S", time.localtime(alert.timestamp))),
        Text(alert.severity.value, style=SEVERITY_STYLE[alert.severity]),
        safe_text(alert.technique_id or DASH),
        safe_text(process),
        safe_text(alert.title),
        safe_text("; ".join(alert.reasons) or DASH),
    )


class AlertsPane(Widget):
    """Contract with the app: `refresh_from(snapshot)` on the refresh timer; `handle_event` for
    bus events (alerts also arrive in the snapshot of the same tick, so it ignores them)."""

    DEFAULT_CSS = """
    AlertsPane { height: 1fr; }
    AlertsPane > #alerts-summary { height: 1; padding: 0 1; color: $text-muted; }
    AlertsPane > DataTable { height: 1fr; }
    """
    BINDINGS = [Binding("enter", "open_process", "Process detail", id="alerts.open_process")]

    def __init__(self, engine: Engine, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.engine = engine
        self._shown: tuple[Alert, ...] = ()  # newest first, as in the table

    def compose(self) -> ComposeResult:
        yield Static("no alerts yet", id="alerts-summary")
        table: DataTable[Text] = DataTable(cursor_type="row", zebra_stripes=True,
                                           id="alerts-table")
        for key, label, width in COLUMNS:
            table.add_column(label, width=width, key=key)
        yield table

    def on_show(self) -> None:
        self.table.focus()  # shown (its tab opened): arrows and Enter go to the alerts

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#alerts-table", DataTable)

    @property
    def shown(self) -> tuple[Alert, ...]:
        """The alerts in table order (newest first)."""
        return self._shown

    def refresh_from(self, snapshot: Snapshot) -> None:
        alerts = snapshot.alerts
        if (len(alerts) == len(self._shown)
                and (not alerts or alerts[-1] is self._shown[0])):
            return
        selected = self.selected_alert()
        self._shown = tuple(reversed(alerts))
        table = self.table
        cursor = table.cursor_row
        table.clear()
        for i, alert in enumerate(self._shown):
            table.add_row(*alert_cells(alert), key=str(i))
        if self._shown:
            # New alerts go on top: the cursor stays on the alert it was on, not on its row.
            same = next((i for i, a in enumerate(self._shown) if a is selected), None)
            table.move_cursor(row=same if same is not None
                              else min(cursor, len(self._shown) - 1))
        counts = {s: 0 for s in Severity}
        for alert in alerts:
            counts[alert.severity] += 1
        summary = ", ".join(f"{n} {s.value}" for s, n in reversed(counts.items()) if n)
        self.query_one("#alerts-summary", Static).update(
            f"{len(alerts)} alerts ({summary}); Enter: process detail" if alerts
            else "no alerts yet")

    def handle_event(self, event: object) -> None:
        """Alerts reach the table through the snapshot of the tick that raised them."""

    def selected_alert(self) -> Alert | None:
        row = self.table.cursor_row
        if 0 <= row < len(self._shown):
            return self._shown[row]
        return None

    def action_open_process(self) -> None:
        alert = self.selected_alert()
        if alert is None or alert.key is None:
            self.notify("this alert names no process", severity="warning")
            return
        self.app.push_screen(ProcessDetailScreen(self.engine, alert.key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_open_process()
