"""The alerts pane and the process detail view, driven with Textual's Pilot in a small harness
app (the real app mounts them the same way: `AlertsPane(engine)`, `ProcessDetailScreen(engine,
key)`)."""

from __future__ import annotations

import dataclasses
import io
import time
from pathlib import Path

from rich.console import Console
from textual.app import App, ComposeResult

from fluxtui.capabilities.process_details import ProcessDetails
from fluxtui.capabilities.syscall_risk import RiskScorer
from fluxtui.component import TickContext
from fluxtui.config import Config
from fluxtui.events import Alert, ProcessKey, Severity, Snapshot
from fluxtui.tui.alerts import COLUMN_INDEX as C
from fluxtui.tui.alerts import COLUMNS, AlertsPane
from fluxtui.tui.process_detail import ProcessDetailScreen
from tests.fakes import StaticEngine, metrics, row, snapshot
from tests.tui_support import until

HOSTILE = "[bold red]evil[/] \x1b[31mx\x07"


def alert(seconds: float, pid: int, name: str, technique: str, title: str,
          severity: Severity = Severity.HIGH, reasons: tuple[str, ...] = ("r",)) -> Alert:
    return Alert(timestamp=1_800_000_000.0 + seconds, rule_id="syscalls.test", title=title,
                 severity=severity, technique_id=technique, technique_name="",
                 key=ProcessKey(pid, 1000 + pid), process_name=name, reasons=reasons)


ALERTS = (
    alert(0, 300, "bash", "T1059.004", "Shell started by a program that is not a shell",
          Severity.LOW),
    alert(5, 301, HOSTILE, "T1055.008", "Ptrace attach to another process",
          reasons=("PTRACE_ATTACH of pid 400", HOSTILE)),
)


def with_alerts(alerts: tuple[Alert, ...], rows: list | None = None) -> Snapshot:
    base = snapshot(rows)
    return dataclasses.replace(base, alerts=alerts, sequence=base.sequence + len(alerts))


class Harness(App[None]):
    def __init__(self, engine: StaticEngine) -> None:
        super().__init__()
        self.engine = engine

    def compose(self) -> ComposeResult:
        yield AlertsPane(self.engine, id="alerts")

    def on_mount(self) -> None:
        self.refresh_now()

    def refresh_now(self) -> None:
        snap = self.engine.snapshot
        assert snap is not None
        self.query_one(AlertsPane).refresh_from(snap)


def plain_rows(pane: AlertsPane) -> list[list[str]]:
    table = pane.table
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def text_of(screen: ProcessDetailScreen) -> str:
    console = Console(width=140, file=io.StringIO(), record=True, color_system=None)
    console.print(screen.render_detail())
    return console.export_text()


async def test_alerts_newest_first_with_untrusted_text_shown_literally() -> None:
    engine = StaticEngine(with_alerts(ALERTS))
    app = Harness(engine)
    async with app.run_test(size=(200, 20)):
        pane = app.query_one(AlertsPane)
        rows = plain_rows(pane)
        assert [r[C["technique"]] for r in rows] == ["T1055.008", "T1059.004"]
        assert [r[C["severity"]] for r in rows] == ["high", "low"]
        newest = rows[0]
        assert newest[C["process"]] == "301 [bold red]evil[/] \\x1b[31mx\\x07"
        assert newest[C["reasons"]] == "PTRACE_ATTACH of pid 400; [bold red]evil[/] \\x1b[31mx\\x07"
        assert newest[C["time"]] == time.strftime("%H:%M:%S", time.localtime(ALERTS[1].timestamp))
        assert "2 alerts (1 high, 1 low)" in str(pane.query_one("#alerts-summary").render())


async def test_a_new_alert_goes_on_top() -> None:
    engine = StaticEngine(with_alerts(ALERTS[:1]))
    app = Harness(engine)
    async with app.run_test(size=(200, 20)) as pilot:
        pane = app.query_one(AlertsPane)
        assert len(plain_rows(pane)) == 1
        engine.current = with_alerts(ALERTS)
        app.refresh_now()
        await until(pilot, lambda: [r[C["technique"]] for r in plain_rows(pane)]
                    == ["T1055.008", "T1059.004"])
        assert pane.shown == tuple(reversed(ALERTS))


async def test_a_new_alert_does_not_move_the_selection_to_another_alert() -> None:
    engine = StaticEngine(with_alerts(ALERTS))
    app = Harness(engine)
    async with app.run_test(size=(200, 20)) as pilot:
        pane = app.query_one(AlertsPane)
        pane.table.focus()
        await pilot.press("down")  # onto the older alert (row 1)
        assert pane.selected_alert() is ALERTS[0]
        newer = alert(9, 302, "nc", "T1611", "Namespace or mount change inside a container")
        engine.current = with_alerts((*ALERTS, newer))
        app.refresh_now()
        await until(pilot, lambda: pane.shown[0] is newer)
        assert pane.selected_alert() is ALERTS[0]
        assert pane.table.cursor_row == 2


async def test_enter_opens_the_process_detail_and_escape_closes_it(tmp_path: Path) -> None:
    rows = [row(300, "bash"), row(301, "tracer")]
    snap = with_alerts(ALERTS, rows)
    engine = StaticEngine(snap)
    config = Config()
    scorer = RiskScorer(config, proc=str(tmp_path))
    scorer.start(engine.bus)
    tick = TickContext(snap.metrics.timestamp, 1.0, metrics(), dict(snap.processes), engine.bus)
    tick.add_risk(rows[1].key, 55, "PTRACE_ATTACH of pid 400")
    scorer.on_tick(tick)
    details = ProcessDetails([])  # no syscall capture: the status says why
    details.on_tick(tick)
    engine.components = [scorer, details]
    engine.current = dataclasses.replace(snap, views=tick.views)

    app = Harness(engine)
    async with app.run_test(size=(160, 40)) as pilot:
        app.query_one(AlertsPane).table.focus()
        await pilot.press("enter")  # the cursor is on the newest alert: pid 301
        screen = await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                             and app.screen.is_mounted and app.screen)
        assert isinstance(screen, ProcessDetailScreen)
        assert screen.key == rows[1].key
        shown = text_of(screen)
        assert "tracer  pid 301" in shown
        assert "55/100" in shown and "anomaly not scored: no model trained" in shown
        assert "PTRACE_ATTACH of pid 400 (+55)" in shown
        assert "Container: unknown" in shown  # no /proc here: not known, not the host
        # The snapshot says why syscalls are missing (fakes: "bcc not importable").
        assert "syscalls: unavailable: bcc not importable" in shown
        assert "Ptrace attach to another process" in shown  # the process's own alerts
        assert "Shell started" not in shown  # another process's alert
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ProcessDetailScreen))


async def test_detail_of_an_exited_process_says_so(tmp_path: Path) -> None:
    engine = StaticEngine(with_alerts(ALERTS, [row(300, "bash")]))
    app = Harness(engine)
    async with app.run_test(size=(160, 40)) as pilot:
        gone = ProcessKey(999, 1999)
        app.push_screen(ProcessDetailScreen(engine, gone))
        screen = await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                             and app.screen.is_mounted and app.screen)
        shown = text_of(screen)
        assert "pid 999: no longer in the process table (exited)" in shown
        assert "no score" in shown


async def test_repeats_of_a_rule_on_one_executable_fold_into_one_row_with_count() -> None:
    repeats = tuple(alert(10 + i, 500 + i, "curl", "T1105", "Download tool")
                    for i in range(4))
    other = alert(20, 600, "wget", "T1105", "Download tool")
    rows = [row(500 + i, "curl") for i in range(4)] + [row(600, "wget")]
    engine = StaticEngine(with_alerts((*repeats, other), rows))
    app = Harness(engine)
    async with app.run_test(size=(200, 20)):
        pane = app.query_one(AlertsPane)
        shown = plain_rows(pane)
        assert len(shown) == 2  # four curl alerts in one row, wget in its own
        curl = next(r for r in shown if "curl" in r[C["process"]])
        assert curl[C["count"]] == "4"
        assert curl[C["first"]] == time.strftime("%H:%M:%S", time.localtime(repeats[0].timestamp))
        assert curl[C["time"]] == time.strftime("%H:%M:%S", time.localtime(repeats[-1].timestamp))
        assert curl[C["process"]] == "503 curl"  # the latest process
        assert "5 alerts" in str(pane.query_one("#alerts-summary").render())


async def test_alert_and_reason_columns_take_the_width_of_a_large_terminal() -> None:
    engine = StaticEngine(with_alerts(ALERTS))
    app = Harness(engine)
    async with app.run_test(size=(200, 20)) as pilot:
        pane = app.query_one(AlertsPane)
        narrow = {k: pane.table.columns[k].width for k in ("title", "reasons")}  # type: ignore[index]
        await pilot.resize_terminal(260, 20)
        await until(pilot, lambda: pane.table.columns["reasons"].width  # type: ignore[index]
                    > narrow["reasons"])
        assert pane.table.columns["title"].width > narrow["title"]  # type: ignore[index]
        assert pane.table.columns["title"].width > 44  # type: ignore[index]


async def test_at_80_columns_the_alert_title_is_on_screen() -> None:
    engine = StaticEngine(with_alerts(ALERTS))
    app = Harness(engine)
    async with app.run_test(size=(80, 20)) as pilot:
        pane = app.query_one(AlertsPane)
        await until(pilot, lambda: pane.table.row_count > 0 and pane.table.size.width > 0)
        left = 0
        for key, _label, _width in COLUMNS:
            column = pane.table.columns[key]  # type: ignore[index]
            if key == "title":
                break
            left += column.get_render_width(pane.table)
        title = pane.table.columns["title"]  # type: ignore[index]
        assert left + min(title.get_render_width(pane.table), 20) <= 80, left
