"""Exited processes kept in the table: visibly exited, no live figure shown for them, sorted
after the running processes they tie with, `k` says they have exited, and their details show
their whole life from the final record."""

from __future__ import annotations

import dataclasses
import io

import pytest
from rich.console import Console

from fluxtui.capabilities.risk_scorer import RiskView
from fluxtui.events import (
    ComponentState,
    ComponentStatus,
    ProcessExit,
    ProcessKey,
    ProcessLifetime,
    ProcessRow,
)
from fluxtui.tui.app import FluxApp
from fluxtui.tui.dialogs import KillDialog
from fluxtui.tui.process_detail import ProcessDetailScreen
from fluxtui.tui.process_order import SortSpec, matches, sort_rows
from fluxtui.tui.process_table import COLUMNS, render_cells
from tests.fakes import StaticEngine, row, snapshot
from tests.tui_support import until

EXIT_TIME = 1_800_000_100.0


def exited(pid: int, name: str = "ptracer", risk: float = 57.0, user: str = "0",
           rss: int = 50 * 1024 * 1024) -> ProcessRow:
    return dataclasses.replace(row(pid, name, rss=rss, user=user, risk=risk), state="exited",
                               exited_at=EXIT_TIME, cpu_percent=None, threads=0,
                               exe="/tmp/ptracer", cmdline=("/tmp/ptracer", "-x"))


def final_record(pid: int) -> ProcessExit:
    life = ProcessLifetime(
        ProcessKey(pid, 1000 + pid), "ptracer", "/tmp/ptracer", ("-x",), 0, ProcessKey(1, 1001),
        EXIT_TIME - 0.4, EXIT_TIME, {"ptrace": 3, "wait4": 2, "execve": 1}, 2,
        ("syscall.ptrace_attach",))
    return ProcessExit(life, 57.0, ("PTRACE_ATTACH of pid 31010 (+40)", "uses ptrace (+17)"),
                       ("risk.threshold", "syscall.ptrace_attach"), 0.0, "no model trained",
                       "T1055.008", "Ptrace System Calls")


def test_an_exited_row_shows_no_live_figure_and_is_styled_as_exited() -> None:
    cells = render_cells(exited(700, name="", user="0"))
    text = [c[0] for c in cells]
    assert text[1] == "root"  # a bare uid is shown as the user name, as on live rows
    assert text[2] == "ptracer"  # no name: the executable's base name
    assert text[3] == "57"  # its final risk stays
    assert text[4:7] == ["—", "—", "—"]  # CPU, memory, threads: not "0B" / "0"
    assert text[7] == "exited"
    assert all("italic" in style for _, style in cells)  # the whole row reads as not live


def test_exited_rows_sort_after_the_running_processes_they_tie_with() -> None:
    live = [row(10, "bash", risk=2.0), row(11, "big", risk=1.0, rss=900 * 1024 * 1024)]
    gone = [exited(5, "bash", risk=2.0), exited(6, "huge", risk=1.0, rss=2 * 1024**3)]
    by_risk = [r.pid for r in sort_rows(live + gone, SortSpec("risk", True))]
    assert by_risk == [10, 5, 11, 6]
    by_memory = [r.pid for r in sort_rows(live + gone, SortSpec("memory", True))]
    assert by_memory[:2] == [11, 10]  # an exited process has no memory: last, whatever it had
    assert set(by_memory[2:]) == {5, 6}


def test_the_filter_finds_exited_rows_and_uids_by_user_name() -> None:
    assert matches(exited(5), "exited") and not matches(row(10, "bash"), "exited")
    assert matches(exited(5, user="0"), "root")


async def test_k_on_an_exited_row_says_it_has_exited_instead_of_offering_a_signal() -> None:
    rows = [exited(700, risk=90.0), row(10, "bash", risk=2.0)]
    app = FluxApp(StaticEngine(snapshot(rows)), privileged=True)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.process_table
        await until(pilot, lambda: table.table.row_count == 2)
        assert table.selected_row().pid == 700  # type: ignore[union-attr]
        await pilot.press("k")
        await until(pilot, lambda: app._notifications)
        assert not isinstance(app.screen, KillDialog)
        notes = [n.message for n in app._notifications]
        assert any("700" in n and "has already exited" in n for n in notes), notes
        await pilot.press("down", "k")
        await until(pilot, lambda: isinstance(app.screen, KillDialog))


def detail_text(screen: ProcessDetailScreen) -> str:
    console = Console(width=140, file=io.StringIO(), record=True, color_system=None)
    console.print(screen.render_detail())
    return console.export_text()


async def test_details_of_an_exited_actor_show_its_whole_life() -> None:
    gone = exited(700)
    view = RiskView(50.0, exits={gone.key: final_record(700)})
    first = dataclasses.replace(snapshot([gone, row(10, "bash")]), views={"risk": view})
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.process_table.table.row_count == 2)
        await pilot.press("enter")
        screen = await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                             and app.screen)
        shown = detail_text(screen)
        assert "exited at" in shown and "after 400 ms" in shown  # not "0.0 s"
        assert "anomaly not scored: no model trained" in shown and "anomaly 0" not in shown
        assert "57/100 at exit" in shown and "PTRACE_ATTACH of pid 31010 (+40)" in shown
        assert "6 calls, 3 distinct; 2 high-signal events" in shown
        assert "syscall.ptrace_attach" in shown and "T1055.008" in shown
        assert "rules that alerted over its life: risk.threshold, syscall.ptrace_attach" in shown
        assert "no score" not in shown  # not the live view's "nothing known"
        # Its retention ends while the window is open: the whole life stays on screen.
        engine.current = dataclasses.replace(snapshot([row(10, "bash")]), sequence=2)
        screen.update_view()
        assert "57/100 at exit" in detail_text(screen)
        assert "(exited)" in str(screen.query_one("VerticalScroll").border_title)


ANOMALY_OFF = ComponentStatus(
    "anomaly", ComponentState.UNAVAILABLE,
    "no model trained (/var/lib/fluxtui/anomaly.model does not exist; run fluxtui train)")


@pytest.mark.parametrize("width", [80, 160])
async def test_the_header_says_why_the_anomaly_model_is_off_at_80_and_160_columns(
        width: int) -> None:
    from tests.test_tui_loop import STATUSES, full_snapshot
    statuses = (*[s for s in STATUSES if s.name != "connections"], ANOMALY_OFF)
    app = FluxApp(StaticEngine(full_snapshot(statuses)), privileged=True)
    async with app.run_test(size=(width, 24)) as pilot:
        header = app.query_one("#status-header")
        await until(pilot, lambda: "risk" in str(header.render()))
        second = str(header.render()).splitlines()[1]
        assert len(second) <= width
        assert second.count("●") + second.count("✗") == len(statuses), second
        assert "✗ anomaly: no model trained" in second, second


def test_every_kernel_state_fits_the_state_column_uncut() -> None:
    state = next(c for c in COLUMNS if c.key == "state")
    for name in ("running", "sleeping", "disk-sleep", "stopped", "tracing-stop", "zombie",
                 "dead", "wake-kill", "waking", "idle", "locked", "waiting", "parked"):
        shown = render_cells(dataclasses.replace(row(5, "x"), state=name))[7][0]
        assert len(shown) <= state.min_width and shown, (name, shown)


async def test_rows_arriving_above_do_not_scroll_the_top_of_the_order_away() -> None:
    live = [row(2000 + i, f"proc{i:02d}", risk=0.0) for i in range(40)]
    engine = StaticEngine(snapshot(live))
    app = FluxApp(engine, privileged=True)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 40)
        first = table.cursor_key
        # A burst of short-lived processes exits, each scored above the idle live ones.
        gone = [exited(3000 + i, "bash", risk=1.0) for i in range(30)]
        actor = exited(4000, "ptracer", risk=57.0)
        engine.current = dataclasses.replace(snapshot([actor, *gone, *live]), sequence=2)
        await until(pilot, lambda: table.row_count == 71 and table.keys[0] == "4000:5000")
        assert int(table.scroll_y) == 0, "the view followed the selection down"
        assert table.keys[0] == "4000:5000"  # the risky actor is on screen, at the top
        assert table.cursor_row < table.size.height - 1  # the selection is on screen
        assert table.cursor_key != first  # its process went below the first page


async def test_an_exited_row_is_named_by_its_final_record_not_a_listing_before_its_exec(
        ) -> None:
    # /proc listed the forked shell; it then exec'd /tmp/ptracer and exited within the tick.
    stale = dataclasses.replace(exited(700), name="bash", exe="/usr/bin/bash",
                                cmdline=("-bash",))
    view = RiskView(50.0, exits={stale.key: final_record(700)})
    engine = StaticEngine(dataclasses.replace(snapshot([stale]), views={"risk": view}))
    app = FluxApp(engine, privileged=True)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 1)
        assert table.cell("700:1700", "name") == "ptracer"
        await pilot.press("enter")
        screen = await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                             and app.screen)
        shown = detail_text(screen)
        assert "ptracer  pid 700" in shown and "/tmp/ptracer -x" in shown
        assert "bash" not in shown, shown
