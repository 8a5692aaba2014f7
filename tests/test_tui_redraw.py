"""What a tick redraws (issue 13): a tick that changes no panel's shape lays nothing out (a
layout redraws the whole screen, the process table included), and a panel whose number of lines
changes is laid out again."""

from __future__ import annotations

import dataclasses
from typing import Any

from textual.screen import Screen

from fluxtui.tui.app import FluxApp
from tests.fakes import StaticEngine, metrics, row, snapshot
from tests.tui_support import until


def ticks(engine: StaticEngine, sequence: int, **changes: Any) -> None:
    base = snapshot([row(1000 + i, f"proc{i}", cpu=float(i % 5)) for i in range(50)],
                    sequence=sequence, cpu=20.0 + sequence)
    engine.current = dataclasses.replace(
        base, metrics=dataclasses.replace(metrics(20.0 + sequence), **changes))


def counting_layouts(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    count = [0]
    original = Screen._refresh_layout

    def counted(self, *args: Any, **kwargs: Any) -> Any:
        count[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Screen, "_refresh_layout", counted)
    return count


async def test_ticks_that_change_no_panel_shape_lay_nothing_out(monkeypatch) -> None:
    layouts = counting_layouts(monkeypatch)
    engine = StaticEngine(snapshot())
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=(160, 48)) as pilot:
        cpu = app.query_one("#cpu-panel")
        for sequence in (2, 3):  # the first frames: mounting, the first layouts
            ticks(engine, sequence)
            app.refresh_from_engine()
            await pilot.pause()
        await until(pilot, lambda: "23.0%" in str(cpu.render()) and cpu.size.height == 6)
        await pilot.pause()
        layouts[0] = 0
        for sequence in range(4, 9):
            ticks(engine, sequence)
            app.refresh_from_engine()
            await pilot.pause()  # what the tick asked for (a repaint, a layout) is done
            assert f"{20.0 + sequence:.1f}%" in str(cpu.render())
        assert layouts[0] == 0, layouts
        header = app.query_one("#status-header")
        assert header.size.height == 2


async def test_a_panel_with_more_lines_is_laid_out_again(monkeypatch) -> None:
    layouts = counting_layouts(monkeypatch)
    engine = StaticEngine(snapshot())
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=(160, 48)) as pilot:
        cpu = app.query_one("#cpu-panel")
        ticks(engine, 2)
        await until(pilot, lambda: cpu.size.height == 6)  # 2 lines + 4 cores
        layouts[0] = 0
        ticks(engine, 3, cpu_per_core=(10.0, 20.0, 30.0, 40.0, 50.0, 60.0))
        app.refresh_from_engine()
        await until(pilot, lambda: cpu.size.height == 8)
        assert layouts[0] >= 1
