"""What a tick redraws (issue 13): a tick that changes no panel's shape lays nothing out (a
layout redraws the whole screen, the process table included), and a panel whose number of lines
changes is laid out again."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from textual.screen import Screen
from textual.scrollbar import ScrollBar
from textual.visual import Visual

from fluxtui.tui.app import FluxApp
from fluxtui.tui.grid import FastTable
from fluxtui.tui.line_panel import LinePanel
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


def rows_of(count: int, busy: int = -1) -> list:
    return [row(1000 + i, f"proc{i}", cpu=50.0 if i == busy else 0.0) for i in range(count)]


def counting_table_layouts(monkeypatch) -> list[int]:  # type: ignore[no-untyped-def]
    """Layouts the process table asks for (a focus change elsewhere lays the screen out too,
    at moments a test does not control)."""
    count = [0]
    original = FastTable.refresh

    def counted(self, *regions: Any, **kwargs: Any) -> Any:
        if kwargs.get("layout"):
            count[0] += 1
        return original(self, *regions, **kwargs)

    monkeypatch.setattr(FastTable, "refresh", counted)
    return count


async def test_rows_coming_and_going_past_a_page_lay_nothing_out_and_end_still_scrolls(
        monkeypatch) -> None:
    layouts = counting_table_layouts(monkeypatch)
    engine = StaticEngine(snapshot(rows_of(200)))
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 200 and table.max_scroll_y > 0
                    and app.focused is table)
        await pilot.pause()
        layouts[0] = 0
        for sequence, count in ((2, 230), (3, 190), (4, 205)):
            engine.current = snapshot(rows_of(count, busy=count - 1), sequence=sequence)
            app.refresh_from_engine()
            await pilot.pause()
            assert table.row_count == count
            assert table.max_scroll_y == (count + 1 - table.container_size.height
                                          + table.scrollbar_size_horizontal)
        assert layouts[0] == 0
        # the busiest row came first (sorted by CPU) and its line shows it
        assert "50.0" in "".join(s.text for s in table.render_line(1))
        await pilot.press("end")
        await until(pilot, lambda: table.cursor_row == 204 and table.scroll_y > 0)
        assert table.scroll_y <= 204 < table.scroll_y + table.size.height - 1  # on screen
        # down to fewer rows than a page: laid out (the scrollbar goes), all rows shown
        engine.current = snapshot(rows_of(10), sequence=5)
        app.refresh_from_engine()
        await until(pilot, lambda: table.row_count == 10 and table.max_scroll_y == 0)
        assert layouts[0] >= 1


async def test_end_pressed_before_the_layout_shows_the_scrollbar_still_scrolls() -> None:
    """Rows arriving past a page ask for a layout (the scrollbar comes); End pressed before
    that layout ran was ignored by Textual (no scrollbar yet: no vertical scroll allowed), and
    the cursor stayed below the screen."""
    engine = StaticEngine(snapshot(rows_of(5)))
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 5 and app.focused is table)
        await pilot.pause()
        engine.current = snapshot(rows_of(200), sequence=2)
        app.refresh_from_engine()
        table.action_jump(-1)  # at once: the layout has not run yet
        await until(pilot, lambda: table.show_vertical_scrollbar)
        await until(pilot, lambda: table.scroll_y > 0, message=lambda: (
            f"cursor {table.cursor_row}, scroll {table.scroll_y}/{table.max_scroll_y}"))
        assert table.cursor_row == 199
        assert table.scroll_y <= 199 < table.scroll_y + table.size.height - 1  # on screen


def counting_rendered_lines(monkeypatch) -> Counter[str]:  # type: ignore[no-untyped-def]
    """Content lines rendered by Textual (`Visual.to_strips`), by widget id."""
    counts: Counter[str] = Counter()
    original = Visual.to_strips.__func__  # type: ignore[attr-defined]

    def counted(cls: Any, widget: Any, *args: Any, **kwargs: Any) -> Any:
        strips = original(cls, widget, *args, **kwargs)
        counts[widget.id or type(widget).__name__] += len(strips)
        return strips

    monkeypatch.setattr(Visual, "to_strips", classmethod(counted))
    return counts


PANELS = ("#status-header", "#cpu-panel", "#memory-panel", "#io-panel")


async def test_a_tick_repaints_only_the_panel_lines_whose_text_changed(monkeypatch) -> None:
    """Only the CPU figures change from one tick to the next: the header, the memory panel and
    the lines of the CPU panel that show the same text are not rendered again (Static.update
    rendered every line of every panel each tick), and what is drawn is what Textual draws
    for the whole text."""
    rendered = counting_rendered_lines(monkeypatch)
    engine = StaticEngine(snapshot())
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=(160, 48)) as pilot:
        cpu = app.query_one("#cpu-panel")
        for sequence in (2, 3):
            ticks(engine, sequence)
            app.refresh_from_engine()
            await pilot.pause()
        await until(pilot, lambda: "23.0%" in str(cpu.render()) and cpu.size.height == 6)
        await pilot.pause()
        for sequence in range(4, 8):
            rendered.clear()
            ticks(engine, sequence)
            app.refresh_from_engine()
            await until(pilot, lambda s=sequence: rendered["cpu-panel"] > 0)
            await pilot.pause()
            assert f"{20.0 + sequence:.1f}%" in str(cpu.render())
            # total and sparkline, and the two cores that follow the total (95% and 55% stay)
            assert rendered["cpu-panel"] == 4, rendered
            assert rendered["memory-panel"] == 0 and rendered["status-header"] == 0, rendered
        for selector in PANELS:
            panel = app.query_one(selector, LinePanel)
            width, height = panel.size
            whole = Visual.to_strips(panel, panel.render(), width, height, panel.visual_style)
            assert [panel.render_line(y) for y in range(height)] == whole, selector


async def test_the_scrollbar_is_redrawn_only_when_its_thumb_moves(monkeypatch) -> None:
    """Rows come and go every tick: past a few hundred rows the thumb does not move, and the
    bar (every line of it) is not drawn again; its figures follow, and a change that moves the
    thumb draws it."""
    drawn = [0]
    original = ScrollBar.render

    def counted(self: ScrollBar) -> Any:
        if self.vertical:
            drawn[0] += 1
        return original(self)

    monkeypatch.setattr(ScrollBar, "render", counted)
    engine = StaticEngine(snapshot(rows_of(2000)))
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=(120, 40)) as pilot:
        table = app.process_table.table
        bar = table.vertical_scrollbar
        await until(pilot, lambda: table.row_count == 2000 and table.show_vertical_scrollbar
                    and drawn[0] > 0)
        await pilot.pause()
        drawn[0] = 0
        for sequence, count in ((2, 2001), (3, 1990), (4, 2010)):
            engine.current = snapshot(rows_of(count), sequence=sequence)
            app.refresh_from_engine()
            await pilot.pause()
            assert table.row_count == count
            assert bar.window_virtual_size == count + 1  # the header line
        assert drawn[0] == 0
        table.move_cursor_to(1000)  # the middle: the thumb is half way down
        await until(pilot, lambda: table.scroll_y > 900 and drawn[0] > 0)
        await pilot.pause()
        drawn[0] = 0
        engine.current = snapshot(rows_of(4000), sequence=5)  # twice the rows: a third down
        app.refresh_from_engine()
        await until(pilot, lambda: drawn[0] > 0)
        assert bar.window_virtual_size == 4001
