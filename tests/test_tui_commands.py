"""The dashboard acts only through `Commands` and reads only snapshot views: a read-only source
(a replay) refuses every action and the UI says why; a detail screen watches its process; the
engine's commands signal exactly the process a key names."""

from __future__ import annotations

import dataclasses
import signal
import subprocess

import pytest

from fluxtui.capabilities.command_dispatch import EngineCommands
from fluxtui.capabilities.process_details import ProcessDetails
from fluxtui.capabilities.syscall_risk import SyscallCapture
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.commands import CommandResult, Commands, ReadOnlyCommands
from fluxtui.component import TickContext
from fluxtui.config import Config
from fluxtui.events import ProcessKey, Snapshot
from fluxtui.guard.events import PromptView, Requester
from fluxtui.tui.app import FluxApp
from fluxtui.tui.guard_prompt import KEY_GRACE, PromptScreen
from fluxtui.tui.process_detail import ProcessDetailScreen
from fluxtui.views import DetailsView, KernelEventLine, ProcessActivity
from tests.fakes import StaticEngine, metrics, snapshot
from tests.test_alerts_ui import text_of
from tests.tui_support import StepClock, guard_view, until


def prompt(prompt_id: int = 7) -> PromptView:
    requester = Requester(ProcessKey(4321, 99), "/usr/bin/cat", ("cat", "/h/.ssh/id_ed25519"),
                          1000, 1000, "alice", 1, "/usr/bin/bash", "ab" * 32, "coreutils",
                          True, "verified: dpkg package coreutils", ())
    return PromptView(prompt_id, "ssh-keys", "T1552.004", requester, ((4321, "/usr/bin/cat"),),
                      ("/h/.ssh/id_ed25519",), 1, (4321,), deadline=1e12, paused_until=0.0,
                      pause_left=30.0, created=1_800_000_000.0, default_action="deny")


class Recording:
    """Commands that record what the UI asked for and accept it."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        def command(*args: object) -> CommandResult:
            self.calls.append((name, *args))
            return CommandResult.done()
        return command


class Source(StaticEngine):
    """A fixed snapshot with the commands the test gives (a replay: ReadOnlyCommands)."""

    def __init__(self, first: Snapshot, commands: object) -> None:
        super().__init__(first)
        self._commands = commands

    @property
    def commands(self) -> Commands:
        return self._commands  # type: ignore[return-value]


async def test_a_read_only_source_shows_the_prompt_and_refuses_its_keys_saying_why() -> None:
    snap = dataclasses.replace(snapshot(), views={"guard": guard_view(
        pending=1, waiting_opens=1, prompts=(prompt(),))})
    app = FluxApp(Source(snap, ReadOnlyCommands()), privileged=False)
    app.prompt.clock = clock = StepClock()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PromptScreen) and app.screen.is_mounted)
        assert "/usr/bin/cat" in app.prompt.rendered_text()
        clock.advance(KEY_GRACE + 0.01)
        await pilot.press("d")
        await until(pilot, lambda: "replay: read-only" in app.prompt.rendered_text())
        assert isinstance(app.screen, PromptScreen)  # still waiting: nothing was answered


async def test_the_prompt_answers_through_the_command_interface() -> None:
    snap = dataclasses.replace(snapshot(), views={"guard": guard_view(
        pending=1, waiting_opens=1, prompts=(prompt(11),))})
    commands = Recording()
    app = FluxApp(Source(snap, commands), privileged=True)
    app.prompt.clock = clock = StepClock()
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, PromptScreen) and app.screen.is_mounted)
        clock.advance(KEY_GRACE + 0.01)
        await pilot.press("D")
        await until(pilot, lambda: any(c[0] == "answer_prompt" for c in commands.calls))
    assert ("answer_prompt", 11, "deny", "always", "key D: deny always") in commands.calls


async def test_a_detail_screen_watches_its_process_and_shows_what_the_snapshot_carries(
        ) -> None:
    base = snapshot()
    key = next(iter(base.processes))
    activity = ProcessActivity(key, (("openat", 1234), ("read", 99)), (("openat", 4),),
                               (KernelEventLine(1_800_000_000.0, "exec of /tmp/[red]x[/]"),))
    snap = dataclasses.replace(base, views={"details": DetailsView({key: activity})})
    commands = Recording()
    app = FluxApp(Source(snap, commands), privileged=True)
    async with app.run_test(size=(140, 45)) as pilot:
        await until(pilot, lambda: app.process_table.table.row_count > 0)
        app.push_screen(ProcessDetailScreen(app.source, key))
        screen = await until(pilot, lambda: isinstance(app.screen, ProcessDetailScreen)
                             and app.screen.is_mounted and app.screen)
        assert ("watch_process", key) in commands.calls
        shown = text_of(screen)
        assert "openat" in shown and "1,234" in shown
        assert "exec of /tmp/[red]x[/]" in shown  # untrusted text shown as it is
        await pilot.press("escape")
        await until(pilot, lambda: ("unwatch_process", key) in commands.calls)


def test_process_details_copy_only_watched_processes_and_say_why_without_a_capture() -> None:
    config = Config()
    capture = SyscallCapture(config)  # never started: not running
    details = ProcessDetails([capture])
    key = ProcessKey(1, 2)
    commands = EngineCommands([capture, details])
    assert commands.watch_process(key).ok
    tick = TickContext(0.0, 1.0, metrics(), {}, StaticEngine(snapshot()).bus)
    details.on_tick(tick)
    view = tick.views["details"]
    assert isinstance(view, DetailsView) and "syscalls: stopped" in view.unavailable
    refused = EngineCommands([]).watch_process(key)
    assert not refused.ok and "not collected" in refused.message


def test_guard_commands_without_a_guard_are_refused_with_the_reason() -> None:
    commands = EngineCommands([])
    for result in (commands.answer_prompt(1, "allow", "once", "key a"),
                   commands.set_guard_mode("monitor"), commands.delete_rule("abc")):
        assert not result.ok and "not configured" in result.message


@pytest.fixture
def sleeper():  # type: ignore[no-untyped-def]
    proc = subprocess.Popen(["sleep", "60"])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_kill_signals_exactly_the_process_its_key_names(sleeper: subprocess.Popen[bytes]
                                                        ) -> None:
    commands = EngineCommands([])
    key = ProcessKey(sleeper.pid, read_start_ticks(sleeper.pid))
    reused = ProcessKey(sleeper.pid, key.start_ticks + 1)  # the pid, another process's start
    refused = commands.kill_process(reused, signal.SIGTERM)
    assert not refused.ok and "now names another process" in refused.message
    assert sleeper.poll() is None
    done = commands.kill_process(key, signal.SIGTERM)
    assert done.ok and done.message == f"sent SIGTERM to {sleeper.pid}"
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert not commands.kill_process(key, signal.SIGTERM).ok
    assert not commands.kill_process(key, 999).ok  # no such signal


def test_read_only_commands_refuse_everything() -> None:
    commands = ReadOnlyCommands("replay: read-only")
    key = ProcessKey(1, 1)
    results = [commands.answer_prompt(1, "allow", "once", "a"), commands.hold_prompt(1),
               commands.set_guard_mode("enforce"), commands.delete_rule("r"),
               commands.kill_process(key, 15), commands.watch_process(key),
               commands.unwatch_process(key)]
    assert all(not r.ok and r.message == "replay: read-only" for r in results)


async def test_the_rules_screen_says_how_a_rule_is_made_when_there_is_none() -> None:
    from fluxtui.tui.guard_rules_screen import RulesScreen

    snap = dataclasses.replace(snapshot(), views={"guard": guard_view()})
    app = FluxApp(Source(snap, Recording()), privileged=True)
    async with app.run_test(size=(100, 30)) as pilot:
        app.push_screen(RulesScreen(app.source))
        screen = await until(pilot, lambda: isinstance(app.screen, RulesScreen)
                             and app.screen.is_mounted and app.screen)
        info = screen.query_one("#rules-info")
        await until(pilot, lambda: "No always rules yet" in str(info.render()))
