"""The one way the UI acts on what it shows: typed commands, each returning a `CommandResult`.

The engine implements `Commands` (fluxtui/capabilities/command_dispatch.py: it finds the
component that does the job by its type, never by name); a source that only replays what was
recorded implements it with `ReadOnlyCommands`, which refuses every command with its reason.
A command never blocks on the kernel: it hands the job to the component's own thread and
returns. Nothing here imports textual or any component.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from fluxtui.events import ProcessKey

GuardMode = Literal["enforce", "monitor"]
PromptAction = Literal["allow", "deny"]
PromptScope = Literal["once", "always", "5min", "process", "session"]


@dataclass(frozen=True)
class CommandResult:
    """What became of a command: `ok`, and one line for the user (shown as a notification)."""

    ok: bool
    message: str = ""

    @staticmethod
    def done(message: str = "") -> CommandResult:
        return CommandResult(True, message)

    @staticmethod
    def refused(message: str) -> CommandResult:
        return CommandResult(False, message)


class Commands(Protocol):
    """Every action the dashboard can take. Each returns at once; `ok` False says why not."""

    def answer_prompt(self, prompt_id: int, action: PromptAction, scope: PromptScope,
                      label: str) -> CommandResult:
        """Answer a pending credential prompt (`label` goes to the audit trail)."""
        ...

    def hold_prompt(self, prompt_id: int) -> CommandResult:
        """Pause the prompt's countdown (someone is reading its details)."""
        ...

    def set_guard_mode(self, mode: GuardMode) -> CommandResult: ...

    def delete_rule(self, rule_id: str) -> CommandResult:
        """Forget an "always" rule of the guard (and rewrite its rules file)."""
        ...

    def kill_process(self, key: ProcessKey, signal_number: int) -> CommandResult:
        """Signal the process `key` names (never another that reused its pid)."""
        ...

    def watch_process(self, key: ProcessKey) -> CommandResult:
        """Put the process's activity (syscall totals, recent events) in the next snapshots'
        `views["details"]` until `unwatch_process`."""
        ...

    def unwatch_process(self, key: ProcessKey) -> CommandResult: ...


class ReadOnlyCommands:
    """`Commands` of a source that cannot act (a replay): every command is refused, saying why."""

    def __init__(self, reason: str = "replay: read-only") -> None:
        self.reason = reason

    def _refuse(self) -> CommandResult:
        return CommandResult.refused(self.reason)

    def answer_prompt(self, prompt_id: int, action: PromptAction, scope: PromptScope,
                      label: str) -> CommandResult:
        return self._refuse()

    def hold_prompt(self, prompt_id: int) -> CommandResult:
        return self._refuse()

    def set_guard_mode(self, mode: GuardMode) -> CommandResult:
        return self._refuse()

    def delete_rule(self, rule_id: str) -> CommandResult:
        return self._refuse()

    def kill_process(self, key: ProcessKey, signal_number: int) -> CommandResult:
        return self._refuse()

    def watch_process(self, key: ProcessKey) -> CommandResult:
        return self._refuse()

    def unwatch_process(self, key: ProcessKey) -> CommandResult:
        return self._refuse()
