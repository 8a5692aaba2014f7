from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
from pathlib import Path

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import ProcessKey
from fluxtui.tui.app import FluxApp
from fluxtui.tui.dialogs import KillDialog
from fluxtui.tui.process_table import ProcessTable, row_key
from fluxtui.untrusted_text import visible
from tests.fakes import StaticEngine, row, snapshot
from tests.tui_support import run_palette_command, until

SIZE = (160, 48)


def make_app(snap=None) -> FluxApp:
    return FluxApp(StaticEngine(snap or snapshot()), privileged=True)


def order(app: FluxApp) -> list[int]:
    return [int(key.split(":")[0]) for key in app.process_table.table.keys]


async def test_default_sort_is_cpu_and_s_cycles_columns() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        assert order(app) == [301, 400, 300, 1, 200]  # CPU, highest first
        await pilot.press("s")  # next column after CPU: memory
        assert app.process_table.current_sort().column == "memory"
        assert order(app)[0] == 400
        await pilot.press("r")
        assert order(app)[-1] == 400


async def test_sort_by_risk_by_default_when_risk_is_measured() -> None:
    snap = snapshot([row(1, "a", risk=5.0, cpu=90.0), row(2, "b", risk=80.0, cpu=1.0),
                     row(3, "c", risk=None)])
    app = make_app(snap)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        assert order(app) == [2, 1, 3]


async def test_command_palette_sorts_by_name() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        await run_palette_command(pilot, app, "Sort processes by Name")
        assert app.process_table.current_sort().column == "name"
        assert order(app) == [300, 400, 200, 1, 301]  # bash postgres sshd systemd vim


async def test_filter_with_slash_and_escape_clears() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        await pilot.press("slash", *"alice")
        assert sorted(order(app)) == [300, 301]
        await pilot.press("escape")
        assert sorted(order(app)) == [1, 200, 300, 301, 400]
        assert app.focused is app.process_table.table


async def test_tree_view_toggle() -> None:
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        await pilot.press("t")
        assert order(app) == [1, 400, 200, 300, 301]  # siblings by CPU, children under parents
        vim = app.process_table.table.cell(row_key(ProcessKey(301, 1301)), "name")
        assert vim.endswith("└─ vim")
        await pilot.press("t")
        assert order(app) == [301, 400, 300, 1, 200]


async def test_table_updates_in_place_when_a_new_tick_arrives() -> None:
    engine = StaticEngine(snapshot())
    app = FluxApp(engine, privileged=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        rows = [row(1, "systemd", ppid=0, cpu=99.0), row(200, "sshd", cpu=0.0),
                row(500, "newcomer", cpu=50.0)]
        engine.current = snapshot(rows, sequence=2)
        app.refresh_from_engine()
        await until(pilot, lambda: order(app) == [1, 500, 200])


def spawn_sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "60"])


def sleeper_snapshot(pid: int, start_ticks: int):
    target = row(pid, "sleep", cpu=99.0)
    target = dataclasses.replace(target, key=ProcessKey(pid, start_ticks))
    return snapshot([target, row(1, "systemd", ppid=0, cpu=0.1)])


async def test_kill_dialog_terminates_a_real_child() -> None:
    child = spawn_sleeper()
    try:
        ticks = read_start_ticks(child.pid)
        assert ticks is not None
        app = make_app(sleeper_snapshot(child.pid, ticks))
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
            assert order(app)[0] == child.pid  # cursor starts on the first row
            await pilot.press("k")
            assert isinstance(app.screen, KillDialog)
            await pilot.press("escape")  # cancel: nothing sent
            assert not isinstance(app.screen, KillDialog)
            assert child.poll() is None
            await pilot.press("k")
            await pilot.press("y")
            assert child.wait(timeout=10) == -signal.SIGTERM
    finally:
        child.kill()
        child.wait(timeout=10)


async def test_kill_refuses_a_reused_pid() -> None:
    child = spawn_sleeper()
    try:
        ticks = read_start_ticks(child.pid)
        assert ticks is not None
        # The table believes the PID belongs to a process started at another time.
        app = make_app(sleeper_snapshot(child.pid, ticks - 1))
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
            await pilot.press("k", "K")
            await until(pilot, lambda: any("PID now names another process" in str(n.message)
                                           for n in app._notifications))
            assert child.poll() is None
    finally:
        child.kill()
        child.wait(timeout=10)


async def test_theme_from_option_and_switch_from_command_palette() -> None:
    app = FluxApp(StaticEngine(snapshot()), privileged=True, theme_name="fluxtui-light")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        assert app.theme == "fluxtui-light"
        await run_palette_command(pilot, app, "Theme: fluxtui-contrast")
        await until(pilot, lambda: app.theme == "fluxtui-contrast")


async def test_markup_and_escapes_in_a_process_name_are_shown_literally(tmp_path: Path) -> None:
    evil_name = "[b]x\x1b[2Jy[i]"
    program = tmp_path / evil_name
    shutil.copy("/bin/sleep", program)
    child = subprocess.Popen([str(program), "30"])
    try:
        engine = Engine(Config())
        snap = engine.start_sync()
        mine = next(r for r in snap.processes.values() if r.pid == child.pid)
        assert mine.name == evil_name[:15]
        app = make_app(snap)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
            await pilot.press("slash", *str(child.pid))
            cell = app.process_table.table.cell(row_key(mine.key), "name")
            assert cell == visible(mine.name) == "[b]x\\x1b[2Jy[i]"
            svg = app.export_screenshot()
            assert "[b]x\\x1b[2Jy[i]" in svg.replace("&#160;", " ")
    finally:
        child.kill()
        child.wait(timeout=10)


async def test_processtable_posts_selected_on_enter() -> None:
    app = make_app()
    seen: list[ProcessKey] = []
    async with app.run_test(size=SIZE, message_hook=lambda m: seen.append(m.key)
                            if isinstance(m, ProcessTable.Selected) else None) as pilot:
        await until(pilot, lambda: len(order(app)) > 0)  # the first snapshot
        await pilot.press("enter")
        await until(pilot, lambda: seen)
        assert set(seen) == {ProcessKey(301, 1301)}  # the hook sees it at every hop

