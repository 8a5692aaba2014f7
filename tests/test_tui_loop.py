"""The interactive loop without the kernel: visible selection in every table and theme, sort
and column widths, focus following the tabs, the palette, key hints, and the 80x24 screen."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from rich.color import ColorSystem
from rich.segment import Segment
from textual.app import App, ComposeResult
from textual.color import Color
from textual.widgets import DataTable, Footer

from fluxtui.events import Alert, ComponentState, ComponentStatus, ProcessKey, Severity
from fluxtui.guard.access_rules import SavedRule
from fluxtui.tui import panels
from fluxtui.tui.app import FluxApp
from fluxtui.tui.dialogs import KillDialog
from fluxtui.tui.guard_pane import GuardHistory
from fluxtui.tui.guard_rules_screen import RulesScreen
from fluxtui.tui.process_detail import ProcessDetailScreen
from fluxtui.tui.process_table import COLUMNS
from fluxtui.tui.themes import bundled_themes
from tests.fakes import StaticEngine, row, snapshot
from tests.test_connections_tui import view as connections_view
from tests.tui_support import guard_view, history_item, palette_options, until

THEMES = [t.name for t in bundled_themes()]
COLOR_SYSTEMS = [ColorSystem.TRUECOLOR, ColorSystem.EIGHT_BIT]


def many_rows(count: int = 60) -> list:
    return [row(1000 + i, f"proc{i:02d}", cpu=float(i % 17), rss=(i * 7919 % 97) * 1024 * 1024,
                risk=float(i % 11)) for i in range(count)]


def alerts() -> tuple[Alert, ...]:
    return tuple(Alert(1_800_000_000.0 + i, f"rule.{i}", f"Alert {i}", Severity.HIGH,
                       "T1055", "", ProcessKey(1000 + i, 2000 + i), f"proc{i:02d}", ("why",))
                 for i in range(5))


def full_snapshot(statuses: tuple[ComponentStatus, ...] | None = None):
    base = snapshot(many_rows())
    return dataclasses.replace(base, alerts=alerts(),
                               views={"connections": connections_view()},
                               statuses=statuses or base.statuses)


def backgrounds(segments: list[Segment], system: ColorSystem) -> set[Any]:
    out = set()
    for segment in segments:
        color = segment.style.bgcolor if segment.style else None
        if color is not None:
            out.add(color.downgrade(system).get_truecolor())
    return out


def assert_cursor_visible(table: Any, system: ColorSystem, first_row_y: int = 1) -> None:
    """The cursor's row has a background no other visible row has, in `system` colours."""
    cursor_y = first_row_y + table.cursor_row - int(table.scroll_y)
    cursor = backgrounds(list(table.render_line(cursor_y)), system)
    assert cursor, "the cursor row has no background"
    for y in (cursor_y + 1, cursor_y + 2):
        other = backgrounds(list(table.render_line(y)), system)
        assert not cursor & other, f"row {y} looks like the selected row ({system.name})"


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panels, "host_identity", lambda: ("demo-host", "6.1.0-demo"))


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("system", COLOR_SYSTEMS, ids=lambda s: s.name)
async def test_selected_row_is_visible_in_every_main_table(theme: str, system: ColorSystem
                                                           ) -> None:
    app = FluxApp(StaticEngine(full_snapshot()), privileged=True, theme_name=theme)
    async with app.run_test(size=(160, 48)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 60)
        assert_cursor_visible(table, system)
        await pilot.press("down", "down")  # k would ask about this row: it must be visible
        assert_cursor_visible(table, system)
        for tab, selector in (("2", "#conn-table"), ("3", "#alerts-table")):
            await pilot.press(tab)
            data = app.query_one(selector, DataTable)
            await until(pilot, lambda d=data: d.row_count >= 3 and app.focused is d,
                        message=lambda d=data: f"{d.row_count} rows, focus {app.focused}")
            assert_cursor_visible(data, system)


def _with_rules() -> StaticEngine:
    """A snapshot whose guard view lists four rules (what the rules screen shows)."""
    rules = tuple(SavedRule(id=f"r{i}", action="allow", group="ssh-keys",
                            executable=f"/usr/bin/tool{i}", sha256="ab" * 32,
                            created="2026-01-01T00:00:00", decided_by="key A")
                  for i in range(4))
    view = guard_view(rules=len(rules), rule_list=rules, rules_path="/tmp/rules.yml")
    return StaticEngine(dataclasses.replace(snapshot(), views={"guard": view}))


class HistoryAndRules(App[None]):
    def compose(self) -> ComposeResult:
        yield GuardHistory(StaticEngine(snapshot()))
        yield Footer()


@pytest.mark.parametrize("theme", THEMES)
@pytest.mark.parametrize("system", COLOR_SYSTEMS, ids=lambda s: s.name)
async def test_selected_row_is_visible_in_the_history_and_rules_tables(
        theme: str, system: ColorSystem) -> None:
    app = HistoryAndRules()
    async with app.run_test(size=(160, 40)) as pilot:
        for t in bundled_themes():
            app.register_theme(t)
        app.theme = theme
        history = app.query_one(GuardHistory)
        history.apply_rows([history_item(i) for i in range(4)])
        table = app.query_one("#guard-history-table", DataTable)
        table.focus()
        await until(pilot, lambda: table.row_count == 4 and app.focused is table)
        assert_cursor_visible(table, system)
        app.push_screen(RulesScreen(_with_rules()))
        await until(pilot, lambda: isinstance(app.screen, RulesScreen)
                    and app.screen.query(DataTable))
        rules = app.screen.query_one(DataTable)
        await until(pilot, lambda: rules.row_count == 4 and app.focused is rules)
        assert_cursor_visible(rules, system)


async def test_a_sort_change_shows_the_top_of_the_new_order_and_keeps_the_process() -> None:
    app = FluxApp(StaticEngine(snapshot(many_rows())), privileged=True)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 60)
        await until(pilot, lambda: table.max_scroll_y > 0 and app.focused is table)  # laid out
        await pilot.press("end")  # the last row: scrolled down
        await until(pilot, lambda: table.scroll_y > 0, message=lambda: (
            f"cursor {table.cursor_row}, scroll {table.scroll_y}/{table.max_scroll_y}, "
            f"focus {app.focused}"))
        app.process_table.sort_by("memory")
        await until(pilot, lambda: table.scroll_y == 0)
        assert table.cursor_row == 0  # the old row is far below: the selection starts on top
        await pilot.press("down", "down")
        chosen = table.cursor_key
        app.process_table.sort_by("memory")  # reversed: where is the chosen process now?
        await until(pilot, lambda: table.scroll_y == 0)
        index = table.keys.index(chosen)
        page = table.size.height - 1
        assert table.cursor_key == (chosen if index < page else table.keys[0])


async def test_every_column_keeps_its_header_and_sort_arrow() -> None:
    app = FluxApp(StaticEngine(snapshot(many_rows())), privileged=True)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 60)
        for column in COLUMNS:
            app.process_table.sort_by(column.key)
            header = "".join(s.text for s in table._header_strip())
            assert f"{column.label} ▼" in header or f"{column.label} ▲" in header, header


async def test_name_columns_take_the_width_of_a_large_terminal_and_tree_depth() -> None:
    deep = [row(1, "init", ppid=0)] + [row(2 + i, f"level{i}-with-a-long-name", ppid=1 + i)
                                       for i in range(8)]
    app = FluxApp(StaticEngine(snapshot(deep)), privileged=True)
    async with app.run_test(size=(200, 50)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 9)
        name = [c.key for c in table.columns].index("name")
        assert table.widths[name] > 28  # 28: its width before, whatever the terminal
        await pilot.press("t")
        await until(pilot, lambda: app.process_table.state.tree)
        deepest = table.cell(table.keys[-1], "name")
        assert deepest.endswith("level7-with-a-long-name")
        assert len(deepest) <= table.widths[name]  # shown whole, not cut


async def test_number_keys_focus_the_tab_table_so_its_keys_work_at_once() -> None:
    app = FluxApp(StaticEngine(full_snapshot()), privileged=True)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: app.process_table.table.row_count == 60)
        pane = app.query_one("#connections-pane")
        await pilot.press("2")
        await until(pilot, lambda: app.focused is app.query_one("#conn-table"))
        before = pane.sort_column  # type: ignore[attr-defined]
        await pilot.press("s")
        assert pane.sort_column != before  # type: ignore[attr-defined]
        footer_keys = {b.binding.id for b in app.screen.active_bindings.values()}
        assert "connections.sort" in footer_keys and "sort" not in footer_keys
        await pilot.press("3")
        await until(pilot, lambda: app.focused is app.query_one("#alerts-table"))
        shown = {b.binding.description for b in app.screen.active_bindings.values()
                 if b.binding.show}
        assert "Details" in shown  # Enter on an alert
        await pilot.press("4")
        await until(pilot, lambda: app.focused is app.query_one("#guard-history-table"))
        await pilot.press("1")
        await until(pilot, lambda: app.focused is app.process_table.table)


async def test_the_palette_lists_fluxtui_commands_before_anything_is_typed() -> None:
    app = FluxApp(StaticEngine(snapshot()), privileged=True)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.press("ctrl+p")
        await until(pilot, lambda: len(palette_options(app)) > 20)
        shown = "\n".join(palette_options(app))
        for column in COLUMNS:
            assert f"Sort processes by {column.label}" in shown
        for text in ("Toggle process tree view", "Filter processes", "Show Processes tab",
                     "Show Connections tab", "Show Alerts tab", "Show Guard tab",
                     "Guard: switch enforce / monitor", "Guard: always rules",
                     "Theme: fluxtui-light"):
            assert text in shown


async def test_footer_and_dialogs_say_what_the_keys_do() -> None:
    app = FluxApp(StaticEngine(snapshot()), privileged=True)
    async with app.run_test(size=(160, 40)) as pilot:
        await until(pilot, lambda: app.process_table.table.row_count == 5)
        shown = {b.binding.description for b in app.screen.active_bindings.values()
                 if b.binding.show}
        assert "Details" in shown  # Enter
        await pilot.press("k")
        dialog = await until(pilot, lambda: isinstance(app.screen, KillDialog) and app.screen)
        text = " ".join(str(label.render()) for label in dialog.query("Label"))
        assert "y: SIGTERM" in text and "K: SIGKILL" in text and "Esc: cancel" in text
        await pilot.press("escape")
        await pilot.press("enter")
        details = await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                              and app.screen)
        assert "Esc closes" in str(details.query_one("VerticalScroll").border_subtitle)


STATUSES = (
    ComponentStatus("metrics", ComponentState.RUNNING),
    ComponentStatus("processes", ComponentState.RUNNING),
    ComponentStatus("syscalls", ComponentState.RUNNING, "", "153 syscalls/s · dropped 0 calls"),
    ComponentStatus("guard", ComponentState.RUNNING, "", "enforce · 0 pending · 0 allowed"),
    ComponentStatus("connections", ComponentState.UNAVAILABLE, "no NETLINK_SOCK_DIAG here"),
    ComponentStatus("risk", ComponentState.RUNNING, "", "scored 81"),
)


async def test_an_80x24_screen_shows_every_collector_risk_and_ten_rows_uncut() -> None:
    app = FluxApp(StaticEngine(full_snapshot(STATUSES)), privileged=True)
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 60)
        await until(pilot, lambda: "risk" in str(app.query_one("#status-header").render()))
        header = str(app.query_one("#status-header").render())
        for name in ("metr", "procs", "sysc", "guard", "conn", "risk"):
            assert name in header, header
        assert "✗ conn" in header
        assert table.size.height - 1 >= 10  # process rows on screen
        header_line = "".join(s.text for s in table._header_strip())[:table.size.width]
        assert "Risk" in header_line
        widths = dict(zip([c.key for c in table.columns], table.widths, strict=True))
        for column in COLUMNS:
            assert widths[column.key] >= len(column.label) + 2
        for panel in ("#cpu-panel", "#memory-panel", "#io-panel"):
            text = str(app.query_one(panel).render())
            assert "…" not in text, (panel, text)
        memory = str(app.query_one("#memory-panel").render())
        assert "6.0G/16.0G" in memory or "6.0G / 16.0G" in memory


async def test_at_200x60_the_extra_room_goes_to_the_tables() -> None:
    app = FluxApp(StaticEngine(full_snapshot()), privileged=True)
    async with app.run_test(size=(200, 60)) as pilot:
        table = app.process_table.table
        await until(pilot, lambda: table.row_count == 60)
        await until(pilot, lambda: table.size.height - 1 >= 60 - 25,  # the panels stay bounded
                    message=lambda: f"{table.size.height - 1} rows")


async def test_monitor_mode_is_shown_in_the_warning_colour_in_the_header() -> None:
    statuses = (ComponentStatus("guard", ComponentState.RUNNING, "", "monitor · 0 pending"),)
    for mode in ("monitor", "enforce"):
        snap = dataclasses.replace(snapshot(), statuses=statuses,
                                   views={"guard": guard_view(mode=mode)})
        app = FluxApp(StaticEngine(snap), privileged=True)
        async with app.run_test(size=(160, 40)) as pilot:
            header = app.query_one("#status-header")
            await until(pilot, lambda h=header: "guard" in str(h.render()))
            content = header.render()
            plain = str(content)
            start = plain.index("● guard")
            colors = {getattr(span.style, "foreground", None)
                      for span in content.spans  # type: ignore[attr-defined]
                      if span.start <= start < span.end}
            theme = app.current_theme
            wanted = Color.parse(theme.warning if mode == "monitor" else theme.success)
            assert wanted in colors, (mode, colors)
            if mode == "monitor":
                assert "GUARD: MONITOR" in plain


@pytest.mark.parametrize("width", [80, 100, 160, 200])
async def test_the_header_names_every_collector_at_any_width(width: int) -> None:
    long = tuple(dataclasses.replace(s, detail=s.detail * 3) for s in STATUSES)
    app = FluxApp(StaticEngine(full_snapshot(long)), privileged=True)
    async with app.run_test(size=(width, 30)) as pilot:
        header = app.query_one("#status-header")
        await until(pilot, lambda: "risk" in str(header.render()))
        second = str(header.render()).splitlines()[1]
        assert len(second) <= width
        assert second.count("●") + second.count("✗") == len(STATUSES), second
