"""ConnectionsPane in a small harness App: rows, sorting, filtering, the events feed, and untrusted
program names shown literally."""

from __future__ import annotations

import dataclasses

from textual.app import App, ComposeResult
from textual.widgets import DataTable, RichLog, Static

from fluxtui.capabilities.connection_tracker import ConnectionEvent, ConnectionsView, SocketRow
from fluxtui.collectors.sock_diag import SocketEntry
from fluxtui.collectors.socket_owners import Owner
from fluxtui.events import Alert, ProcessKey, Severity
from fluxtui.tui.connections_tab import ConnectionsPane, endpoint
from tests.fakes import StaticEngine, snapshot

EVIL = "[bold red]x[/]\x1b[2J"


def entry(cookie: int, proto: str = "tcp", state: str = "ESTAB", lport: int = 40000,
          raddr: str = "127.0.0.1", rport: int = 443, sent: int | None = 10,
          family: int = 4) -> SocketEntry:
    local = "127.0.0.1" if family == 4 else "::1"
    return SocketEntry(proto, family, state, local, lport, raddr, rport, 1000, 100 + cookie,
                       cookie, 0, 0, 250 if proto == "tcp" else None,
                       sent if proto == "tcp" else None, 5 if proto == "tcp" else None)


ROWS = (
    SocketRow(entry(1, sent=5000), (Owner(10, 1, "curl"),)),
    SocketRow(entry(2, state="LISTEN", lport=22, raddr="0.0.0.0", rport=0, sent=0),
              (Owner(20, 2, "sshd"), Owner(21, 3, "sshd"))),
    SocketRow(entry(3, proto="udp", state="UNCONN", lport=53, raddr="::", rport=0, family=6),
              None),
    SocketRow(entry(4, sent=100, raddr="::ffff:127.0.0.1", family=6), (Owner(30, 4, EVIL),)),
)


def view(rows: tuple[SocketRow, ...] = ROWS) -> ConnectionsView:
    return ConnectionsView(timestamp=1.0, rows=rows, poll_interval=0.25, query_ms=3.0,
                           notes=("UDP: no per-socket byte counters",), unreadable_processes=1)


def snap(rows: tuple[SocketRow, ...] = ROWS):
    return dataclasses.replace(snapshot(), views={"connections": view(rows)})


class Harness(App[None]):
    def __init__(self) -> None:
        super().__init__()
        self.engine = StaticEngine(snap())

    def compose(self) -> ComposeResult:
        yield ConnectionsPane(self.engine, id="pane")

    def on_mount(self) -> None:
        self.query_one(ConnectionsPane).refresh_from(self.engine.current)


def column(table: DataTable, key: str) -> list[str]:
    return [table.get_cell(row.key, key).plain for row in table.ordered_rows]


async def test_rows_sort_and_untrusted_names() -> None:
    app = Harness()
    async with app.run_test(size=(140, 40)) as pilot:
        pane = app.query_one(ConnectionsPane)
        table = pane.query_one(DataTable)
        assert table.row_count == 4
        programs = column(table, "program")  # default sort: program, ascending
        assert programs == sorted(programs)
        assert set(column(table, "local")) == {"127.0.0.1:40000", "127.0.0.1:22", "[::1]:53",
                                              "[::1]:40000"}
        assert "[::ffff:127.0.0.1]:443" in column(table, "remote")
        assert "\\x1b[2J" in "".join(programs) and "[bold red]x[/]" in "".join(programs)
        assert "sshd" in programs and "unknown (no permission)" in programs
        pids = column(table, "pid")
        assert "20 +1" in pids and "?" in pids
        assert "n/a" in column(table, "sent")  # UDP: no byte counters
        # `s` cycles the sort column: program -> uid -> sent; `r` reverses.
        await pilot.press("s", "s")
        assert pane.sort_column == "sent"
        await pilot.press("r")
        assert column(table, "sent")[0] == "4.9K"
        await pilot.pause()


async def test_header_click_and_filter() -> None:
    app = Harness()
    async with app.run_test(size=(140, 40)) as pilot:
        pane = app.query_one(ConnectionsPane)
        table = pane.query_one(DataTable)
        table.post_message(DataTable.HeaderSelected(table, table.columns["pid"].key, 4,
                                                    table.columns["pid"].label))
        await pilot.pause()
        assert pane.sort_column == "pid"
        assert column(table, "pid")[0] == "?"  # unknown owner sorts first
        await pilot.press("slash")
        await pilot.pause()
        await pilot.press(*"ssh")
        await pilot.pause()
        assert table.row_count == 1 and column(table, "program") == ["sshd"]
        await pilot.press("escape")
        await pilot.pause()
        assert table.row_count == 4
        # Filter by port and by state.
        pane._set_filter("53")
        assert column(table, "local") == ["[::1]:53"]
        pane._set_filter("listen")
        assert column(table, "state") == ["LISTEN"]
        pane._set_filter("")


async def test_refresh_updates_by_diff_and_events_feed() -> None:
    app = Harness()
    async with app.run_test(size=(140, 40)) as pilot:
        pane = app.query_one(ConnectionsPane)
        table = pane.query_one(DataTable)
        changed = (SocketRow(ROWS[0].entry._replace(bytes_sent=9_000_000), ROWS[0].owners),
                   ROWS[1])
        pane.refresh_from(snap(changed))
        await pilot.pause()
        assert table.row_count == 2
        assert table.get_cell("1", "sent").plain == "8.6M"
        summary = str(pane.query_one("#conn-summary", Static).render())
        assert "2 sockets" in summary
        log = pane.query_one(RichLog)
        before = len(log.lines)
        pane.handle_event(ConnectionEvent(1.0, "opened", ROWS[3].entry, ROWS[3].owners))
        pane.handle_event(ConnectionEvent(2.0, "closed", ROWS[2].entry, None, short_lived=True))
        pane.handle_event(object())  # not a connection event: ignored
        await pilot.pause()
        assert len(log.lines) == before + 2
        text = "\n".join(line.text for line in log.lines)
        assert "opened" in text and "\\x1b[2J" in text and "owner unknown" in text
        assert "opened and closed between listings" in text


async def test_network_alerts_line() -> None:
    app = Harness()
    async with app.run_test(size=(140, 40)) as pilot:
        pane = app.query_one(ConnectionsPane)
        alert = Alert(1.0, "network.port_scan", "Port scan", Severity.HIGH, "T1046",
                      "Network Service Discovery", ProcessKey(77, 1), EVIL,
                      ("tcp connections to 30 ports of 127.0.0.1 within 10 s",), {"pid": 77})
        other = dataclasses.replace(alert, rule_id="guard.denied", title="Denied")
        pane.refresh_from(dataclasses.replace(snap(), alerts=(other, alert)))
        await pilot.pause()
        text = str(pane.query_one("#conn-alerts", Static).render())
        assert "Port scan [T1046]" in text and "(77)" in text and "\\x1b[2J" in text
        assert "Denied" not in text


def test_endpoint_formatting() -> None:
    assert endpoint("127.0.0.1", 80) == "127.0.0.1:80"
    assert endpoint("::ffff:127.0.0.1", 8080) == "[::ffff:127.0.0.1]:8080"
    assert endpoint("0.0.0.0", 0) == "*"
    assert endpoint("::1", 0) == "[::1]:*"
