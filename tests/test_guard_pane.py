"""The prompt pane, the history and the rules screen through Textual's Pilot, with real blocked
processes on the real kernel (only a temporary home is marked).

The harness app does what the main app does: installs PROMPT_BINDINGS at app level with the
GuardPromptKeys forwarding, refreshes widgets from engine snapshots on a timer, and hands every
bus event to `handle_event` on the UI thread (posted as a message, never call_from_thread).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from textual.app import App, ComposeResult
from textual.message import Message
from textual.widgets import DataTable, Footer

from fluxtui.capabilities.guard import GuardComponent
from fluxtui.config import Config, GuardConfig
from fluxtui.engine import Engine
from fluxtui.events import Snapshot
from fluxtui.tui.guard_pane import PROMPT_BINDINGS, GuardHistory, GuardPane, GuardPromptKeys
from fluxtui.tui.rules_screen import RulesScreen
from tests.guard_support import Home, guard_config, make_home, require_guard_kernel, started

pytestmark = pytest.mark.kernel


class BusEvent(Message):
    def __init__(self, event: object) -> None:
        super().__init__()
        self.event = event


class Harness(GuardPromptKeys, App[None]):
    BINDINGS = PROMPT_BINDINGS

    def __init__(self, engine: Engine) -> None:
        super().__init__()
        self.engine = engine
        self._unsubscribe = None

    def compose(self) -> ComposeResult:
        yield GuardHistory(self.engine)
        yield GuardPane(self.engine)
        yield Footer()

    def on_mount(self) -> None:
        self._unsubscribe = self.engine.bus.subscribe(self._on_bus)
        self.set_interval(0.1, self._refresh)

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()

    def _on_bus(self, event: object) -> None:  # collector threads: only post
        if not isinstance(event, Snapshot):
            self.post_message(BusEvent(event))

    def _widgets(self) -> list[GuardPane | GuardHistory]:
        return [*self.query(GuardPane), *self.query(GuardHistory)]  # none while tearing down

    def on_bus_event(self, message: BusEvent) -> None:
        for widget in self._widgets():
            widget.handle_event(message.event)

    def _refresh(self) -> None:
        snapshot = self.engine.tick()
        for widget in self._widgets():
            widget.refresh_from(snapshot)


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    return make_home(tmp_path)


@contextmanager
def guarded_engine(config: GuardConfig) -> Iterator[tuple[Engine, GuardComponent]]:
    guard = GuardComponent(config, interactive=True)
    engine = Engine(Config(guard=config), [guard])
    try:
        engine.start_sync()
        assert guard.running, guard.reason
        yield engine, guard
    finally:
        engine.stop()  # stops the guard: its fanotify fd is closed


@asynccontextmanager
async def app_for(engine: Engine) -> AsyncIterator[tuple[Harness, object]]:
    app = Harness(engine)
    async with app.run_test(size=(130, 45)) as pilot:
        yield app, pilot


async def until(pilot: object, condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"condition not met within {timeout} s")
        await pilot.pause(0.05)  # type: ignore[attr-defined]


async def decide(pilot, pane: GuardPane, key: str) -> None:  # type: ignore[no-untyped-def]
    """Press a decision key once the pane takes them (not right after the prompt changed)."""
    await until(pilot, lambda: pane.accepts_keys)
    await pilot.press(key)


async def finish(proc) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(proc.communicate, timeout=15)


@pytest.mark.parametrize(("key", "code"), [("a", 0), ("d", 1)])
async def test_allow_once_and_deny_once(home: Home, tmp_path: Path, key: str, code: int
                                        ) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            assert not pane.showing and not pane.has_class("-showing")
            assert app.check_action("guard_prompt", ("allow_once",)) is False
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: pane.showing)
                assert pane.has_class("-showing")
                await until(pilot, lambda: pane.region.height > 3)  # laid out on screen
                assert app.check_action("guard_prompt", ("allow_once",)) is True
                text = pane.rendered_text()
                assert "/usr/bin/cat" in text and str(home.key) in text
                assert "ssh-keys" in text and "deny in" in text
                assert f"pid {cat.pid}" in text and "verified: dpkg package coreutils" in text
                assert cat.poll() is None  # really blocked in open()
                await decide(pilot, pane, key)
                out, err = await finish(cat)
                await until(pilot, lambda: not pane.showing)
            assert cat.returncode == code
            if code == 0:
                assert out == home.key.read_bytes()
            else:
                assert out == b"" and b"Operation not permitted" in err
            guard.flush()
            await until(pilot, lambda: app.query_one(DataTable).row_count >= 1)
            history = app.query_one("#guard-history-table", DataTable)
            first = [str(c) for c in history.get_row_at(0)]
            assert ("allowed" if code == 0 else "denied") in first
            assert "keypress" in first and str(home.key) in first


async def test_always_rule_survives_an_engine_restart_and_rules_screen_deletes_it(
        home: Home, tmp_path: Path) -> None:
    config = guard_config(home, tmp_path / "state")
    with guarded_engine(config) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: pane.showing)
                await decide(pilot, pane, "A")
                out, _ = await finish(cat)
            assert cat.returncode == 0 and out == home.key.read_bytes()
    rules_file = tmp_path / "state" / "rules.yml"
    assert rules_file.exists() and oct(rules_file.stat().st_mode & 0o777) == "0o600"

    with guarded_engine(config) as (engine, guard):  # a new engine reads the rule back
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat:
                out, _ = await finish(cat)
            assert cat.returncode == 0 and out == home.key.read_bytes()
            assert not pane.showing  # no prompt: the rule answered
            [rule] = guard.rules()
            assert rule.group == "ssh-keys" and rule.executable == "/usr/bin/cat"

            app.query_one("#guard-history-table", DataTable).focus()
            await pilot.press("R")  # the Guard tab's key
            await until(pilot, lambda: isinstance(app.screen, RulesScreen))
            screen = app.screen
            assert isinstance(screen, RulesScreen)
            assert screen.query_one(DataTable).row_count == 1
            await pilot.press("x")
            await until(pilot, lambda: screen.query_one(DataTable).row_count == 0)
            await until(pilot, lambda: rule.id not in rules_file.read_text())
            await pilot.press("escape")

            with started(["cat", str(home.key)]) as cat:  # asked again now
                await until(pilot, lambda: pane.showing)
                await pilot.press("R")  # the rules screen from the prompt
                await until(pilot, lambda: isinstance(app.screen, RulesScreen))
                # Under the modal the prompt is hidden: its keys do nothing ("d" is not a
                # deny here), and the countdown was paused by the key.
                assert app.check_action("guard_prompt", ("deny_once",)) is False
                await pilot.press("d")
                await pilot.pause(0.2)
                assert cat.poll() is None and pane.showing
                await until(pilot, lambda: guard.pending()[0].pause_left
                            < config.interaction_cap)
                await pilot.press("escape")
                await until(pilot, lambda: not isinstance(app.screen, RulesScreen))
                await decide(pilot, pane, "d")
                await finish(cat)
            assert cat.returncode == 1


async def test_timeout_applies_the_default_and_the_pane_hides(home: Home, tmp_path: Path
                                                              ) -> None:
    config = guard_config(home, tmp_path / "state", decision_timeout=2.0)
    with guarded_engine(config) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: pane.showing)
                front = pane.front
                assert front is not None and front.default_action == "deny"
                assert "deny in" in pane.rendered_text()
                out, _ = await finish(cat)  # nobody presses a key
                await until(pilot, lambda: not pane.showing)
            assert cat.returncode == 1 and out == b""


async def test_process_that_exits_takes_its_prompt_away(home: Home, tmp_path: Path) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: pane.showing)
                os.kill(cat.pid, signal.SIGKILL)
                await finish(cat)
                await until(pilot, lambda: not pane.showing)
            assert app.check_action("guard_prompt", ("allow_once",)) is False


async def test_details_pause_the_countdown_and_queue_is_shown(home: Home, tmp_path: Path
                                                              ) -> None:
    config = guard_config(home, tmp_path / "state", decision_timeout=10.0,
                          interaction_pause=5.0, interaction_cap=5.0)
    with guarded_engine(config) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat, \
                    started(["cp", str(home.aws), str(tmp_path / "copy")]) as cp:
                await until(pilot, lambda: len(pane._prompts) == 2)
                before = pane.front
                assert before is not None and "1 more waiting" in pane.rendered_text()
                await pilot.press("x")
                await until(pilot, lambda: pane.front is not None
                            and pane.front.deadline > before.deadline)
                capped = pane.front
                assert capped is not None
                assert "paused" in pane.rendered_text() and "Tree" in pane.rendered_text()
                # The cap equals one pause: the first key used it all, a second one adds nothing.
                assert capped.pause_left == 0.0
                await pilot.press("x")
                await pilot.press("x")  # nothing left to extend
                await pilot.pause(0.2)
                assert pane.front is not None and pane.front.deadline == capped.deadline
                first_group = capped.group
                await decide(pilot, pane, "d")  # the front prompt goes; the other moves up
                await until(pilot, lambda: len(pane._prompts) == 1)
                assert pane.front is not None
                assert {first_group, pane.front.group} == {"ssh-keys", "aws"}
                await decide(pilot, pane, "d")
                await finish(cat)
                await finish(cp)
            assert cat.returncode == 1 and cp.returncode == 1


async def test_untrusted_command_line_is_shown_literally(home: Home, tmp_path: Path) -> None:
    evil = "\x1b[2J\x1b]0;owned\x07[bold red]markup[/]"
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key), evil]) as cat:
                await until(pilot, lambda: pane.showing)
                text = pane.rendered_text()
                assert "\\x1b[2J\\x1b]0;owned\\x07[bold red]markup[/]" in text
                assert "\x1b" not in text
                await decide(pilot, pane, "d")
                await finish(cat)


async def test_mode_toggle_from_the_prompt_allows_what_waits(home: Home, tmp_path: Path
                                                             ) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: pane.showing)
                await pilot.press("M")
                out, _ = await finish(cat)
            assert cat.returncode == 0 and out == home.key.read_bytes()
            await until(pilot, lambda: guard.mode == "monitor")


async def test_a_decision_key_right_after_a_prompt_appears_is_ignored(home: Home,
                                                                      tmp_path: Path) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: pane.showing)
                assert not pane.accepts_keys
                assert "decision keys act in" in pane.rendered_text()
                await pilot.press("a")  # meant for something else: must not allow
                await pilot.pause(0.1)
                assert cat.poll() is None and len(guard.pending()) == 1
                assert "key ignored" in pane.rendered_text()
                await decide(pilot, pane, "d")
                out, _ = await finish(cat)
            assert cat.returncode == 1 and out == b""


async def test_history_is_read_off_the_ui_thread_and_updated_by_row(home: Home, tmp_path: Path
                                                                    ) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        threads: list[str] = []
        real_history = guard.history

        def history(limit: int = 200) -> list[dict[str, object]]:
            threads.append(threading.current_thread().name)
            return real_history(limit)

        guard.history = history  # type: ignore[method-assign]
        async with app_for(engine) as (app, pilot):
            pane = app.query_one(GuardPane)
            table = app.query_one("#guard-history-table", DataTable)
            for expected in (1, 2):
                with started(["cat", str(home.key)]) as cat:
                    await until(pilot, lambda: pane.showing)
                    await decide(pilot, pane, "d")
                    await finish(cat)
                guard.flush()
                await until(pilot, lambda n=expected: table.row_count == n)
                if expected == 1:
                    first_key = table.coordinate_to_cell_key((0, 0)).row_key
            # The older row kept its key and moved down: the newest is on top.
            assert table.coordinate_to_cell_key((1, 0)).row_key == first_key
            assert int(str(table.coordinate_to_cell_key((0, 0)).row_key.value)) > int(
                str(first_key.value))
        assert threads and threading.main_thread().name not in threads
