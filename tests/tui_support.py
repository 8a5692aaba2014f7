"""Waiting helpers for Pilot tests: wait for a condition (bounded), never for a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from textual.command import CommandList, CommandPalette

from fluxtui.views import GuardHistoryItem, GuardView


async def until(pilot: Any, condition: Callable[[], Any], timeout: float = 10.0,
                message: Callable[[], str] | None = None) -> Any:
    """Let the app run until `condition()` is truthy; fails after `timeout` seconds (a bound
    for a broken app, not a pause: a working app returns at the first true check)."""
    end = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            detail = f": {message()}" if message is not None else ""
            raise AssertionError(f"condition not met within {timeout} s{detail}")
        await pilot.pause(0.02)


def palette_options(app: Any) -> list[str]:
    """The commands the open palette lists now (empty when it is not open)."""
    screen = app.screen
    if not isinstance(screen, CommandPalette):
        return []
    commands = screen.query_one(CommandList)
    return [str(commands.get_option_at_index(i).prompt) for i in range(commands.option_count)]


def palette_highlighted(app: Any) -> str:
    screen = app.screen
    if not isinstance(screen, CommandPalette):
        return ""
    option = screen.query_one(CommandList).highlighted_option
    return "" if option is None else str(option.prompt)


async def run_palette_command(pilot: Any, app: Any, text: str) -> None:
    """Open the palette, type `text`, wait until the command is highlighted, press Enter."""
    await pilot.press("ctrl+p")
    await until(pilot, lambda: isinstance(app.screen, CommandPalette))
    await pilot.press(*text)
    await until(pilot, lambda: text.lower() in palette_highlighted(app).lower())
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, CommandPalette))


def guard_view(**fields: Any) -> GuardView:
    """A GuardView with quiet defaults (an enforcing guard that has seen nothing yet)."""
    base: dict[str, Any] = dict(
        mode="enforce", pending=0, waiting_opens=0, allowed=0, denied=0, errors=0, late=0,
        protected_files=3, marked_dirs=1, problems=(), rules=0, rules_error=None, audit="",
        journal="", process_events="", decisions_recorded=0)
    base.update(fields)
    return GuardView(**base)


def history_item(index: int, **fields: Any) -> GuardHistoryItem:
    """One decision of the guard's history, as the Guard tab shows it."""
    base: dict[str, Any] = dict(
        id=str(index), timestamp=1_800_000_000.0 + index,
        last_timestamp=1_800_000_000.0 + index, count=1, outcome="denied", pid=index,
        user="root", executable="/usr/bin/cat", file="/k", group="ssh-keys",
        decided_by="keypress", reason="", latency_us=None)
    base.update(fields)
    return GuardHistoryItem(**base)


class StepClock:
    """A monotonic clock for the UI that moves only when the test says (`advance`): the
    prompt's key grace is then a fact of the test, not of how loaded the machine is."""

    def __init__(self) -> None:
        self.now = time.monotonic()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
