"""The TUI's bus inbox keeps only what a widget reads, and a bounded number of those: a
`ProcessExit` on every exit of a build machine must not pile up in the UI."""

from __future__ import annotations

from textual.widgets import RichLog

from fluxtui.capabilities.connection_tracker import ConnectionEvent
from fluxtui.events import ProcessExit, ProcessKey, ProcessLifetime
from fluxtui.tui.app import FluxApp
from fluxtui.tui.connections_tab import ConnectionsPane
from fluxtui.tui.inbox import INBOX_LIMIT, EventsDropped, Inbox, dispatch
from tests.fakes import StaticEngine, snapshot
from tests.test_connections_tui import ROWS
from tests.tui_support import until


def process_exit(pid: int) -> ProcessExit:
    life = ProcessLifetime(ProcessKey(pid, pid), "cc1", "/usr/lib/gcc/cc1", (), 0, None,
                           1_800_000_000.0, 1_800_000_001.0, {"read": 10}, 0, ())
    return ProcessExit(life, 1.0, (), (), 0.0, "")


def connection_event(n: int) -> ConnectionEvent:
    return ConnectionEvent(float(n), "opened", ROWS[3].entry, ROWS[3].owners)


def log_text(app: FluxApp) -> str:
    log = app.query_one(ConnectionsPane).query_one("#conn-events", RichLog)
    return "\n".join(line.text for line in log.lines)


async def test_exits_no_widget_reads_are_not_kept_and_the_rest_is_bounded() -> None:
    engine = StaticEngine(snapshot())
    app = FluxApp(engine, privileged=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.process_table.table.row_count == 5)
        await pilot.press("2")  # the events log lays out its lines once it is shown
        await until(pilot, lambda: "connection events" in log_text(app))
        # Published from this coroutine, the UI thread cannot drain in between: what the
        # inbox holds now is what it would hold while the UI is busy.
        for pid in range(20_000):
            engine.bus.publish(process_exit(pid + 2))
        assert len(app.inbox) == 0, "ProcessExit is read by no widget: not kept"
        for n in range(INBOX_LIMIT + 500):
            engine.bus.publish(connection_event(n))
        assert len(app.inbox) == INBOX_LIMIT
        await until(pilot, lambda: "500 events not shown" in log_text(app), message=lambda:
                    log_text(app)[-300:])
        assert len(app.inbox) == 0


def test_inbox_counts_what_it_drops_and_dispatches_by_declared_type() -> None:
    inbox = Inbox((ConnectionEvent,), limit=3)
    assert inbox.offer(connection_event(0)) is True  # first of a batch: wake the UI
    assert inbox.offer(connection_event(1)) is False
    assert inbox.offer(process_exit(5)) is False
    for n in range(2, 6):
        inbox.offer(connection_event(n))
    events, dropped = inbox.drain()
    assert [e.timestamp for e in events] == [3.0, 4.0, 5.0]  # type: ignore[attr-defined]
    assert dropped == 3 and inbox.dropped_total == 3

    class Reader:
        EVENT_TYPES = (ConnectionEvent, EventsDropped)

        def __init__(self) -> None:
            self.got: list[object] = []

        def handle_event(self, event: object) -> None:
            self.got.append(event)

    class Deaf:
        EVENT_TYPES = (EventsDropped,)

        def __init__(self) -> None:
            self.got: list[object] = []

        def handle_event(self, event: object) -> None:
            self.got.append(event)

    reader, deaf = Reader(), Deaf()
    dispatch(events, dropped, [reader, deaf])
    assert reader.got[0] == EventsDropped(3) and len(reader.got) == 4
    assert deaf.got == [EventsDropped(3)]
