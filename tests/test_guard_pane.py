"""The credential prompt, the Guard tab and the rules screen in the real app (FluxApp) through
Textual's Pilot, with real blocked processes on the real kernel (only a temporary home is
marked). The engine's components are started by the test; the app ticks the engine on a timer
(as the engine thread would) and receives every bus event as the real app does.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import DataTable, Input

from fluxtui.capabilities.guard import GuardComponent
from fluxtui.config import Config, GuardConfig
from fluxtui.engine import Engine
from fluxtui.tui.app import FluxApp
from fluxtui.tui.dialogs import ConfirmScreen, KillDialog
from fluxtui.tui.guard_prompt import KEY_GRACE, PromptScreen, PromptState
from fluxtui.tui.guard_rules_screen import RulesScreen
from fluxtui.tui.process_detail import ProcessDetailScreen
from tests.guard_support import Home, guard_config, make_home, require_guard_kernel, started
from tests.tui_support import StepClock, history_item, until

pytestmark = pytest.mark.kernel


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
async def app_for(engine: Engine, size: tuple[int, int] = (130, 45)
                  ) -> AsyncIterator[tuple[FluxApp, object]]:
    app = FluxApp(engine, privileged=True, start_engine=False)
    app.prompt.clock = StepClock()  # the key grace passes when a test says so
    async with app.run_test(size=size) as pilot:
        app.set_interval(0.1, engine.tick)  # the engine thread's job in the real app
        yield app, pilot


def prompt_in_front(app: FluxApp) -> bool:
    """The prompt screen is in front and mounted (its key grace started)."""
    return isinstance(app.screen, PromptScreen) and app.screen.is_mounted \
        and app.prompt.showing


async def decide(pilot, state: PromptState, key: str) -> None:  # type: ignore[no-untyped-def]
    """Press a decision key once the prompt takes them (not right after it came to front)."""
    await until(pilot, lambda: isinstance(pilot.app.screen, PromptScreen)
                and pilot.app.screen.is_mounted)
    keys_ready(state)
    await pilot.press(key)


def keys_ready(state: PromptState) -> None:
    """Let the key grace of the prompt in front pass (on the UI's injected clock)."""
    clock = state.clock
    assert isinstance(clock, StepClock)
    clock.advance(KEY_GRACE + 0.01)
    assert state.accepts_keys


async def finish(proc) -> tuple[bytes, bytes]:  # type: ignore[no-untyped-def]
    return await asyncio.to_thread(proc.communicate, timeout=15)


@pytest.mark.parametrize(("key", "code"), [("a", 0), ("d", 1)])
async def test_allow_once_and_deny_once(home: Home, tmp_path: Path, key: str, code: int
                                        ) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            state = app.prompt
            assert not state.showing and not isinstance(app.screen, PromptScreen)
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                text = state.rendered_text()
                assert "/usr/bin/cat" in text and str(home.key) in text
                assert "ssh-keys" in text and "deny in" in text
                assert f"pid {cat.pid}" in text and "verified: dpkg package coreutils" in text
                assert cat.poll() is None  # really blocked in open()
                await decide(pilot, state, key)
                out, err = await finish(cat)
                await until(pilot, lambda: not isinstance(app.screen, PromptScreen))
            assert cat.returncode == code
            if code == 0:
                assert out == home.key.read_bytes()
            else:
                assert out == b"" and b"Operation not permitted" in err
            guard.flush()
            await pilot.press("4")
            history = app.query_one("#guard-history-table", DataTable)
            await until(pilot, lambda: history.row_count >= 1)
            first = [str(c) for c in history.get_row_at(0)]
            assert ("allowed" if code == 0 else "denied") in first
            assert "keypress" in first and str(home.key) in first


async def test_always_rule_survives_an_engine_restart_and_rules_screen_deletes_it(
        home: Home, tmp_path: Path) -> None:
    config = guard_config(home, tmp_path / "state")
    with guarded_engine(config) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                await decide(pilot, app.prompt, "A")
                out, _ = await finish(cat)
            assert cat.returncode == 0 and out == home.key.read_bytes()
    rules_file = tmp_path / "state" / "rules.yml"
    assert rules_file.exists() and oct(rules_file.stat().st_mode & 0o777) == "0o600"

    with guarded_engine(config) as (engine, guard):  # a new engine reads the rule back
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key)]) as cat:
                out, _ = await finish(cat)
            assert cat.returncode == 0 and out == home.key.read_bytes()
            assert not app.prompt.showing  # no prompt: the rule answered
            [rule] = guard.rules()
            assert rule.group == "ssh-keys" and rule.executable == "/usr/bin/cat"

            await pilot.press("4")  # the Guard tab: its table has the focus, R is its key
            await pilot.press("R")
            await until(pilot, lambda: isinstance(app.screen, RulesScreen))
            screen = app.screen
            assert isinstance(screen, RulesScreen)
            assert screen.query_one(DataTable).row_count == 1
            await pilot.press("x")  # asks first
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            await until(pilot, lambda: app.screen is screen)
            assert guard.rules() == [rule]
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: screen.query_one(DataTable).row_count == 0)
            await until(pilot, lambda: rule.id not in rules_file.read_text())
            await pilot.press("escape")

            with started(["cat", str(home.key)]) as cat:  # asked again now
                await until(pilot, lambda: prompt_in_front(app))
                await pilot.press("R")  # the rules screen from the prompt
                await until(pilot, lambda: isinstance(app.screen, RulesScreen))
                # Under the rules screen the prompt's keys do nothing ("d" is not a deny
                # here), and the countdown was paused by the key.
                await pilot.press("d")
                await until(pilot, lambda: guard.pending()[0].pause_left
                            < config.interaction_cap)
                assert cat.poll() is None and app.prompt.showing
                await pilot.press("escape")
                await until(pilot, lambda: prompt_in_front(app))
                await decide(pilot, app.prompt, "d")
                await finish(cat)
            assert cat.returncode == 1


async def test_timeout_applies_the_default_and_the_prompt_closes(home: Home, tmp_path: Path
                                                                 ) -> None:
    # Long enough for a loaded machine to show the prompt before the default applies.
    config = guard_config(home, tmp_path / "state", decision_timeout=6.0)
    with guarded_engine(config) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app),
                            message=lambda: f"{app.screen_stack} {app.prompt.prompts} "
                                            f"{_guard.pending()} {cat.poll()}")
                front = app.prompt.front
                assert front is not None and front.default_action == "deny"
                assert "deny in" in app.prompt.rendered_text()
                out, _ = await finish(cat)  # nobody presses a key
                await until(pilot, lambda: not isinstance(app.screen, PromptScreen))
            assert cat.returncode == 1 and out == b""


async def test_process_that_exits_takes_its_prompt_away(home: Home, tmp_path: Path) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                os.kill(cat.pid, signal.SIGKILL)
                await finish(cat)
                await until(pilot, lambda: not isinstance(app.screen, PromptScreen))
            assert not app.prompt.showing


async def test_details_pause_the_countdown_and_the_queue_shows_every_request(
        home: Home, tmp_path: Path) -> None:
    config = guard_config(home, tmp_path / "state", decision_timeout=10.0,
                          interaction_pause=5.0, interaction_cap=5.0)
    with guarded_engine(config) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            state = app.prompt
            with started(["cat", str(home.key)]) as cat, \
                    started(["cp", str(home.aws), str(tmp_path / "copy")]) as cp:
                await until(pilot, lambda: len(state.prompts) == 2)
                before = state.front
                assert before is not None
                text = state.rendered_text()
                assert "+1 waiting" in text and "Queue" in text
                other = state.prompts[1]
                # The waiting request: its time left, program and file.
                assert f"{other.requester.exe} → {other.files[0]}" in text
                await until(pilot, lambda: prompt_in_front(app))
                keys_ready(state)
                await pilot.press("x")
                await until(pilot, lambda: state.front is not None
                            and state.front.deadline > before.deadline)
                capped = state.front
                assert capped is not None
                assert "paused" in state.rendered_text() and "Tree" in state.rendered_text()
                # The cap equals one pause: the first key used it all, a second one adds nothing.
                assert capped.pause_left == 0.0
                first_group = capped.group
                await decide(pilot, state, "d")  # the front prompt goes; the other moves up
                await until(pilot, lambda: len(state.prompts) == 1)
                assert state.front is not None
                assert {first_group, state.front.group} == {"ssh-keys", "aws"}
                await decide(pilot, state, "d")
                await finish(cat)
                await finish(cp)
            assert cat.returncode == 1 and cp.returncode == 1


async def test_one_key_denies_every_waiting_request(home: Home, tmp_path: Path) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            state = app.prompt
            with started(["cat", str(home.key)]) as cat, \
                    started(["cp", str(home.aws), str(tmp_path / "copy")]) as cp, \
                    started(["head", str(home.key)]) as head:
                await until(pilot, lambda: len(state.prompts) == 3)
                assert "[N] deny all waiting" in state.rendered_text()
                await decide(pilot, state, "N")
                results = [await finish(p) for p in (cat, cp, head)]
                await until(pilot, lambda: not isinstance(app.screen, PromptScreen))
            assert [p.returncode for p in (cat, cp, head)] == [1, 1, 1]
            assert all(b"Operation not permitted" in err for _, err in results)
            assert guard.pending() == ()


async def test_untrusted_command_line_is_shown_literally(home: Home, tmp_path: Path) -> None:
    evil = "\x1b[2J\x1b]0;owned\x07[bold red]markup[/]\r\xff"
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key), evil]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                text = app.prompt.rendered_text()
                assert "\\x1b[2J\\x1b]0;owned\\x07[bold red]markup[/]\\x0d" in text
                assert "\x1b" not in text and "\r" not in text
                await decide(pilot, app.prompt, "d")
                await finish(cat)


async def test_monitor_mode_from_the_prompt_never_lets_the_waiting_read_through(
        home: Home, tmp_path: Path) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                keys_ready(app.prompt)
                await pilot.press("M")
                await until(pilot, lambda: "mode switch refused" in app.prompt.rendered_text())
                assert guard.mode == "enforce" and cat.poll() is None
                assert len(guard.pending()) == 1
                await decide(pilot, app.prompt, "d")
                await finish(cat)
            assert cat.returncode == 1
            # With nothing waiting, M on the Guard tab asks first, then switches.
            await pilot.press("4")
            await pilot.press("M")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert guard.mode == "enforce"
            await pilot.press("y")
            await until(pilot, lambda: guard.mode == "monitor")


async def test_a_decision_key_right_after_a_prompt_appears_is_ignored(home: Home,
                                                                      tmp_path: Path) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            state = app.prompt
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                assert not state.accepts_keys
                assert "decision keys act in" in state.rendered_text()
                await pilot.press("a")  # meant for something else: must not allow
                await until(pilot, lambda: "key ignored" in state.rendered_text())
                assert cat.poll() is None and len(guard.pending()) == 1
                await decide(pilot, state, "d")
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
            await pilot.press("4")
            table = app.query_one("#guard-history-table", DataTable)
            for expected in (1, 2):
                with started(["cat", str(home.key)]) as cat:
                    await until(pilot, lambda: prompt_in_front(app))
                    await decide(pilot, app.prompt, "d")
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


# --- the prompt comes to the front whatever is open --------------------------------------------

async def open_details(app: FluxApp, pilot) -> object:  # type: ignore[no-untyped-def]
    await pilot.press("enter")
    return await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                       and app.screen)


async def open_kill_dialog(app: FluxApp, pilot) -> object:  # type: ignore[no-untyped-def]
    await pilot.press("k")
    return await until(pilot, lambda: isinstance(app.screen, KillDialog) and app.screen)


async def open_rules(app: FluxApp, pilot) -> object:  # type: ignore[no-untyped-def]
    await pilot.press("4", "R")
    return await until(pilot, lambda: isinstance(app.screen, RulesScreen) and app.screen)


async def open_palette(app: FluxApp, pilot) -> object:  # type: ignore[no-untyped-def]
    await pilot.press("ctrl+p")
    return await until(pilot, lambda: isinstance(app.screen, CommandPalette) and app.screen)


async def open_filter(app: FluxApp, pilot) -> object:  # type: ignore[no-untyped-def]
    await pilot.press("slash")
    return await until(pilot, lambda: isinstance(app.focused, Input) and app.screen)


@pytest.mark.parametrize("opener", [open_details, open_kill_dialog, open_rules, open_palette,
                                    open_filter], ids=lambda f: f.__name__)
async def test_a_new_prompt_comes_in_front_of_whatever_is_open_and_takes_its_keys(
        home: Home, tmp_path: Path, opener) -> None:  # type: ignore[no-untyped-def]
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine) as (app, pilot):
            await until(pilot, lambda: app.process_table.table.row_count > 0)
            under = await opener(app, pilot)
            focused = app.focused
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                # Typed into whatever was open a moment ago: never answers the new prompt.
                await pilot.press("a")
                assert cat.poll() is None and len(guard.pending()) == 1
                await decide(pilot, app.prompt, "d")
                out, err = await finish(cat)
                await until(pilot, lambda: app.screen is under)  # restored underneath
            assert cat.returncode == 1 and out == b"" and b"Operation not permitted" in err
            if isinstance(focused, Input):
                assert app.focused is focused
                assert app.process_table.state.filter == ""  # no prompt key typed into it


async def test_q_with_requests_waiting_says_what_happens_and_asks(home: Home, tmp_path: Path
                                                                  ) -> None:
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, _guard):
        async with app_for(engine) as (app, pilot):
            with started(["cat", str(home.key)]) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                await pilot.press("q")
                screen = await until(pilot, lambda: isinstance(app.screen, ConfirmScreen)
                                     and app.screen)
                shown = " ".join(str(label.render()) for label in screen.query("Label"))
                assert "1 credential request(s) waiting" in shown
                assert "1 will be denied" in shown
                await pilot.press("n")
                await until(pilot, lambda: prompt_in_front(app))
                assert app.is_running and cat.poll() is None
                await decide(pilot, app.prompt, "d")
                await finish(cat)


def preload_libraries(tmp_path: Path, count: int) -> str:
    """`count` copies of a harmless system library outside the system directories."""
    directory = tmp_path / "preload"
    directory.mkdir()
    paths = []
    for i in range(count):
        target = directory / f"libharmless{i}.so"
        shutil.copy("/lib/x86_64-linux-gnu/libz.so.1", target)
        paths.append(str(target))
    return ":".join(paths)


async def test_a_flagged_program_gets_one_flag_line_no_lasting_allow_and_its_keys_on_screen(
        home: Home, tmp_path: Path) -> None:
    env = {**os.environ, "LD_PRELOAD": preload_libraries(tmp_path, 14)}
    with guarded_engine(guard_config(home, tmp_path / "state")) as (engine, guard):
        async with app_for(engine, size=(80, 24)) as (app, pilot):
            state = app.prompt
            with started(["cat", str(home.key)], env=env) as cat:
                await until(pilot, lambda: prompt_in_front(app))
                front = state.front
                assert front is not None and len(front.requester.flags) >= 14
                screen = app.screen
                assert isinstance(screen, PromptScreen)
                await until(pilot, lambda: screen.query("#prompt-keys"))
                keys = screen.query_one("#prompt-keys")
                head = screen.query_one("#prompt-head")
                await until(pilot, lambda: keys.region.height > 0)
                # The key line and the countdown are on the 80x24 screen.
                assert keys.region.bottom <= 24 and head.region.y >= 0
                text = state.rendered_text()
                assert f"{len(front.requester.flags)} flags:" in text and "(x: all)" in text
                assert "[A]" not in text and "[m]" not in text and "[S]" not in text
                assert "[p]" not in text and "[a] allow once" in text
                keys_ready(state)
                await pilot.press("A")  # not offered: says why, answers nothing
                await until(pilot, lambda: "not offered" in state.rendered_text())
                assert cat.poll() is None and len(guard.pending()) == 1
                await pilot.press("x")  # every flag
                await until(pilot, lambda: state.details)
                assert state.rendered_text().count("outside the system directories") >= 14
                await until(pilot, lambda: "outside the system" in str(
                    screen.query_one("#prompt-body").render()))
                # All flags shown: the body scrolls, the countdown and the keys stay on screen.
                assert keys.region.height > 0 and keys.region.bottom <= 24
                assert head.region.height == 1 and head.region.y >= 0
                await decide(pilot, state, "d")
                await finish(cat)
            assert cat.returncode == 1


async def test_at_80_columns_the_history_shows_the_file_read_before_the_program() -> None:
    from textual.app import App

    from fluxtui.tui.guard_pane import GuardHistory
    from tests.fakes import StaticEngine, snapshot

    class Harness(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield GuardHistory(StaticEngine(snapshot()))

    item = history_item(
        1, timestamp=1_800_000_000.0, outcome="denied",
        executable="/tmp/fluxtui-eval.bn1e4mwf/.cache/kworker-with-a-long-name", pid=569,
        user="root", file="/home/alice/.aws/credentials", group="aws",
        decided_by="keypress", latency_us=2600.0)
    app = Harness()
    async with app.run_test(size=(80, 24)) as pilot:
        history = app.query_one(GuardHistory)
        history.apply_rows([item])
        table = app.query_one("#guard-history-table", DataTable)
        await until(pilot, lambda: table.row_count == 1)
        await pilot.pause()  # the row's widths are applied on the next refresh, not a condition
        line = "".join(s.text for s in table.render_line(1))
        assert "/home/alice/.aws/credentials" in line, line


def test_a_released_request_reads_as_let_through_not_as_denied() -> None:
    from fluxtui.tui.guard_pane import GuardHistory

    colors = {"success": "#00aa00", "warning": "#bb8800", "error": "#cc0000"}
    base = {"timestamp": 1.0, "executable": "/usr/bin/cat", "file": "/h/.ssh/id_ed25519"}
    released = GuardHistory._cells(history_item(1, **base, outcome="released"), colors)[1]
    denied = GuardHistory._cells(history_item(2, **base, outcome="denied"), colors)[1]
    assert released.plain == "released (read)" and "#bb8800" in str(released.style)
    assert "#cc0000" in str(denied.style) and "#cc0000" not in str(released.style)


async def test_at_80x24_the_guard_summary_leaves_the_history_its_rows() -> None:
    from textual.app import App
    from textual.widgets import Static

    from fluxtui.tui.guard_pane import GuardHistory
    from fluxtui.views import GuardView
    from tests.fakes import StaticEngine, snapshot

    view = GuardView(  # the notes of a real run on a machine without journald, in a container
        mode="enforce", pending=0, waiting_opens=0, allowed=0, denied=0, errors=0, late=0,
        protected_files=2, marked_dirs=3,
        problems=("PID 1's namespaces cannot be read here: processes are compared with "
                  "fluxtui's own namespaces",), rules=0, rules_error=None,
        audit="/tmp/x/audit.db (1 request(s) released unanswered when fluxtui last stopped)",
        journal="unavailable: no systemd journal running (/run/systemd/journal/socket does "
                "not exist)", process_events="kernel process events", decisions_recorded=0)

    class Harness(App[None]):
        def compose(self):  # type: ignore[no-untyped-def]
            yield GuardHistory(StaticEngine(snapshot()))

    app = Harness()
    async with app.run_test(size=(80, 24)) as pilot:
        history = app.query_one(GuardHistory)
        summary = history.query_one("#guard-summary", Static)
        history.show_summary(view)
        await until(pilot, lambda: summary.size.height > 0)
        assert summary.size.height <= 4, summary.size.height
        table = app.query_one("#guard-history-table", DataTable)
        assert table.size.height >= 24 - 4 - 1 - 2, table.size.height
