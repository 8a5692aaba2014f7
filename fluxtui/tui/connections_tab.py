"""The connections tab: every TCP/UDP socket with its owner, sortable and filterable, and a feed of
connection events (opened, closed, listening) below it.

Keys: `s` next sort column (or click a header; again on the same header reverses), `r` reverse,
`/` filter (program, pid, port, state, address, protocol; Enter keeps it, Escape clears it).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import DataTable, Input, RichLog, Static

from fluxtui.connection_views import ConnectionEvent, ConnectionsView, SocketRow
from fluxtui.events import Snapshot
from fluxtui.tui.format import DASH, human_bytes
from fluxtui.tui.inbox import EventsDropped
from fluxtui.untrusted_text import safe_text, visible
from fluxtui.views import DashboardSource


class SortText(Text):
    """A cell that carries the value it sorts by (DataTable sorts on cell values)."""

    def __init__(self, text: str, sort_key: Any, style: str = "", justify: Any = None) -> None:
        super().__init__(text, style=style, no_wrap=True, overflow="ellipsis", justify=justify,
                         end="")
        self.sort_key = sort_key


def endpoint(addr: str, port: int, listening: bool = False) -> str:
    """addr:port as ss prints it: IPv6 in brackets, a missing peer as *."""
    if port == 0 and addr in ("0.0.0.0", "::"):
        return "*"
    host = f"[{addr}]" if ":" in addr else addr
    return f"{host}:{'*' if port == 0 else port}"


def owner_text(row: SocketRow) -> tuple[str, str, int]:
    """(pid, program, sort pid) for the owner columns."""
    if row.owners is None:
        return "?", "unknown (no permission)", -2
    if not row.owners:
        return DASH, DASH, -1
    first = row.owners[0]
    pid = str(first.pid) + (f" +{len(row.owners) - 1}" if len(row.owners) > 1 else "")
    names = sorted({o.name for o in row.owners})
    return pid, ",".join(names), first.pid


def _opt(value: int | None) -> int:
    return -1 if value is None else value


COLUMNS: list[tuple[str, str, Callable[[SocketRow], Any]]] = [
    # (key, label, sort value)
    ("proto", "Proto", lambda r: (r.entry.proto, r.entry.family)),
    ("local", "Local", lambda r: (r.entry.local_addr, r.entry.local_port)),
    ("remote", "Remote", lambda r: (r.entry.remote_addr, r.entry.remote_port)),
    ("state", "State", lambda r: r.entry.state),
    ("pid", "PID", lambda r: owner_text(r)[2]),
    ("program", "Program", lambda r: owner_text(r)[1]),
    ("uid", "UID", lambda r: _opt(r.entry.uid)),
    ("sent", "Sent", lambda r: _opt(r.entry.bytes_sent)),
    ("received", "Recv", lambda r: _opt(r.entry.bytes_received)),
    ("rtt", "RTT ms", lambda r: _opt(r.entry.rtt_us)),
]
COLUMN_KEYS = [key for key, _, _ in COLUMNS]
SORTERS = {key: sorter for key, _, sorter in COLUMNS}


def cells(row: SocketRow) -> tuple[str, ...]:
    """The text of each column (untrusted program names made visible, never markup)."""
    e = row.entry
    pid, program, _ = owner_text(row)
    tcp = e.proto == "tcp"
    return (
        f"{e.proto}{e.family}",
        endpoint(e.local_addr, e.local_port),
        endpoint(e.remote_addr, e.remote_port),
        e.state,
        pid,
        visible(program),
        DASH if e.uid is None else str(e.uid),
        human_bytes(e.bytes_sent) if tcp else "n/a",
        human_bytes(e.bytes_received) if tcp else "n/a",
        (DASH if e.rtt_us is None or e.state == "LISTEN" else f"{e.rtt_us / 1000:.2f}")
        if tcp else "n/a",
    )


def matches(row: SocketRow, text: tuple[str, ...], needle: str) -> bool:
    if not needle:
        return True
    e = row.entry
    haystack = " ".join((*text, e.local_addr, str(e.local_port), e.remote_addr,
                         str(e.remote_port), *(str(o.pid) for o in row.owners or ()))).lower()
    return all(word in haystack for word in needle.lower().split())


class ConnectionsPane(Widget):
    EVENT_TYPES: ClassVar[tuple[type, ...]] = (ConnectionEvent, EventsDropped)
    DEFAULT_CSS = """
    ConnectionsPane { layout: vertical; }
    ConnectionsPane #conn-summary { height: auto; padding: 0 1; }
    ConnectionsPane #conn-alerts { height: auto; max-height: 3; padding: 0 1; }
    ConnectionsPane #conn-filter { display: none; }
    ConnectionsPane #conn-filter.visible { display: block; }
    ConnectionsPane #conn-table { height: 3fr; min-height: 4; }
    ConnectionsPane #conn-notes { height: auto; max-height: 2; padding: 0 1; color: $text-muted; }
    ConnectionsPane #conn-events {
        height: 1fr; min-height: 2; max-height: 8; border-top: solid $primary-darken-2;
    }
    """
    BINDINGS = [
        Binding("s", "cycle_sort", "Sort", id="connections.sort"),
        Binding("r", "reverse_sort", "Reverse", id="connections.reverse"),
        Binding("slash", "filter", "Filter", id="connections.filter"),
        Binding("escape", "clear_filter", "Clear filter", show=False,
                id="connections.clear_filter"),
    ]

    def __init__(self, source: DashboardSource, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.sort_column = "program"
        self.sort_reverse = False
        self.filter_text = ""
        self._shown: dict[str, SocketRow] = {}
        self._view: ConnectionsView | None = None

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(id="conn-summary")
            yield Static(id="conn-alerts")
            # Disabled while hidden so that it never takes the focus (and the keys) unasked.
            yield Input(placeholder="filter: program, pid, port, state, address (Esc clears)",
                        id="conn-filter", disabled=True)
            yield DataTable(id="conn-table", cursor_type="row", zebra_stripes=True)
            yield Static(id="conn-notes")
            yield RichLog(id="conn-events", max_lines=500, wrap=False)

    def on_mount(self) -> None:
        table = self.query_one("#conn-table", DataTable)
        for key, label, _ in COLUMNS:
            table.add_column(label, key=key)
        self.query_one("#conn-events", RichLog).write(
            Text("connection events: opened, closed, listening", style="dim"))

    # --- the contract with the app -----------------------------------------------------------

    def refresh_from(self, snapshot: Snapshot) -> None:
        view = snapshot.views.get("connections")
        if not isinstance(view, ConnectionsView):
            status = next((s for s in snapshot.statuses if s.name == "connections"), None)
            why = "waiting for the first listing" if status is None or status.running else (
                status.reason or status.state.value)
            self.query_one("#conn-summary", Static).update(Text(f"Connections: {why}"))
            return
        self._view = view
        self._update_table(view)
        self._update_alerts(snapshot)

    def handle_event(self, event: object) -> None:
        log = self.query_one("#conn-events", RichLog)
        if isinstance(event, ConnectionEvent):
            log.write(event_line(event))
        elif isinstance(event, EventsDropped):
            log.write(Text(f"{event.count} events not shown: the screen fell behind",
                           style="bold"))

    # --- actions -----------------------------------------------------------------------------

    def action_cycle_sort(self) -> None:
        index = COLUMN_KEYS.index(self.sort_column)
        self.sort_column = COLUMN_KEYS[(index + 1) % len(COLUMN_KEYS)]
        self._resort()

    def action_reverse_sort(self) -> None:
        self.sort_reverse = not self.sort_reverse
        self._resort()

    def action_filter(self) -> None:
        box = self.query_one("#conn-filter", Input)
        box.disabled = False
        box.add_class("visible")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#conn-filter", Input)
        box.value = ""
        box.remove_class("visible")
        box.disabled = True
        self.query_one("#conn-table", DataTable).focus()
        self._set_filter("")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "conn-filter":
            self._set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "conn-filter":
            self.query_one("#conn-table", DataTable).focus()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        key = str(event.column_key.value)
        if key == self.sort_column:
            self.sort_reverse = not self.sort_reverse
        else:
            self.sort_column, self.sort_reverse = key, False
        self._resort()

    def _set_filter(self, value: str) -> None:
        self.filter_text = value.strip()
        if self._view is not None:
            self._update_table(self._view)

    # --- table maintenance -------------------------------------------------------------------

    def _update_table(self, view: ConnectionsView) -> None:
        """Diff the table: remove rows gone, add new ones, update changed cells, then sort."""
        table = self.query_one("#conn-table", DataTable)
        wanted: dict[str, tuple[SocketRow, tuple[str, ...] | None]] = {}
        for row in view.rows:
            key = str(row.entry.cookie)
            old = self._shown.get(key)
            if old == row and not self.filter_text:
                wanted[key] = (row, None)  # unchanged and shown: no need to rebuild its text
                continue
            text = cells(row)
            if matches(row, text, self.filter_text):
                wanted[key] = (row, text)
        changed = False
        for key in [k for k in self._shown if k not in wanted]:
            table.remove_row(key)
            del self._shown[key]
            changed = True
        for key, (row, prepared) in wanted.items():
            old = self._shown.get(key)
            if old == row:
                continue
            text = prepared or cells(row)
            if old is None:
                table.add_row(*self._row_cells(row, text), key=key)
            else:
                old_text = cells(old)
                for column, value, before in zip(COLUMN_KEYS, text, old_text, strict=True):
                    sorter = SORTERS[column]
                    if value != before or sorter(row) != sorter(old):
                        table.update_cell(key, column, self._cell(column, row, value))
            self._shown[key] = row
            changed = True
        if changed:
            self._sort(table)
        self._update_summary(view)

    def _row_cells(self, row: SocketRow, text: tuple[str, ...]) -> list[SortText]:
        return [self._cell(column, row, value)
                for column, value in zip(COLUMN_KEYS, text, strict=True)]

    @staticmethod
    def _cell(column: str, row: SocketRow, value: str) -> SortText:
        right = column in ("pid", "uid", "sent", "received", "rtt")
        style = ""
        if column == "state" and row.entry.state == "LISTEN":
            style = "bold"
        if column == "program" and row.owners is None:
            style = "dim"
        return SortText(value, SORTERS[column](row), style=style,
                        justify="right" if right else None)

    def _resort(self) -> None:
        self._sort(self.query_one("#conn-table", DataTable))
        if self._view is not None:
            self._update_summary(self._view)

    def _sort(self, table: DataTable[Any]) -> None:
        table.sort(self.sort_column, key=lambda cell: cell.sort_key, reverse=self.sort_reverse)

    def _update_alerts(self, snapshot: Snapshot) -> None:
        """The latest network detections, so the tab shows why a process stands out."""
        recent = [a for a in snapshot.alerts if a.rule_id.startswith("network.")][-3:]
        lines = Text()
        for alert in reversed(recent):
            pid = alert.key.pid if alert.key else alert.extra.get("pid", "?")
            if lines:
                lines.append("\n")
            lines.append_text(Text.assemble(
                ("⚠ ", "bold red"), (alert.title, "bold"), f" [{alert.technique_id}] ",
                safe_text(f"{alert.process_name} ({pid}): {'; '.join(alert.reasons)}")))
        self.query_one("#conn-alerts", Static).update(lines)

    def _update_summary(self, view: ConnectionsView) -> None:
        tcp = sum(1 for r in view.rows if r.entry.proto == "tcp")
        label = {k: lab for k, lab, _ in COLUMNS}[self.sort_column]
        summary = Text.assemble(
            (f"{len(view.rows)} sockets", "bold"), f" (tcp {tcp}, udp {len(view.rows) - tcp})",
            f"  shown {len(self._shown)}",
            f"  sort {label} {'↓' if self.sort_reverse else '↑'}",
            ("  filter: " if self.filter_text else ""),
            safe_text(self.filter_text) if self.filter_text else "",
            f"  listed in {view.query_ms:.0f} ms",
        )
        self.query_one("#conn-summary", Static).update(summary)
        self.query_one("#conn-notes", Static).update(
            Text("\n".join(f"· {note}" for note in view.notes), style="dim"))


ACTION_STYLE = {"opened": "green", "closed": "red", "listening": "bold yellow"}


def event_line(event: ConnectionEvent) -> Text:
    e = event.entry
    stamp = time.strftime("%H:%M:%S", time.localtime(event.timestamp))
    owner = event.owner
    if event.owners is None:
        who = "owner unknown"
    elif owner is None:
        who = "no process"
    else:
        who = f"{owner.pid} {owner.name}"
    line = Text.assemble(
        (stamp, "dim"), " ", (f"{event.action:<9}", ACTION_STYLE[event.action]), " ",
        f"{e.proto}{e.family} ", endpoint(e.local_addr, e.local_port),
        " → " if e.has_peer else "", endpoint(e.remote_addr, e.remote_port) if e.has_peer else "",
        f"  {e.state}  ", safe_text(who),
    )
    if event.short_lived:
        line.append("  opened and closed between listings", style="dim")
    if event.action == "closed" and e.bytes_sent is not None:
        line.append(f"  sent {human_bytes(e.bytes_sent)} recv {human_bytes(e.bytes_received)}",
                    style="dim")
    return line
