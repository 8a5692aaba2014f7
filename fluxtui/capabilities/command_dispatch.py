"""The engine's side of `fluxtui.commands.Commands`: each command goes to the component that
does the job, found by its type (never looked up by name), and comes back as a
`CommandResult` the UI shows. Nothing here blocks on the kernel or imports textual.
"""

from __future__ import annotations

import signal
from collections.abc import Sequence
from typing import TypeVar

from fluxtui.capabilities.guard import GuardComponent
from fluxtui.capabilities.process_details import ProcessDetails
from fluxtui.collectors.process_control import ProcessGone, send_signal
from fluxtui.commands import CommandResult, GuardMode, PromptAction, PromptScope
from fluxtui.component import Component
from fluxtui.events import ProcessKey

C = TypeVar("C")


class EngineCommands:
    """`Commands` over the engine's components (the list is read at each call: components
    are fixed once the engine is built)."""

    def __init__(self, components: Sequence[Component]) -> None:
        self._components = components

    def _find(self, kind: type[C]) -> C | None:
        return next((c for c in self._components if isinstance(c, kind)), None)

    def _guard(self) -> GuardComponent | CommandResult:
        guard = self._find(GuardComponent)
        if guard is None:
            return CommandResult.refused("the credential guard is not configured")
        if not guard.running:
            return CommandResult.refused(f"the credential guard is not running: {guard.reason}")
        return guard

    # --- the guard ---------------------------------------------------------------------------

    def answer_prompt(self, prompt_id: int, action: PromptAction, scope: PromptScope,
                      label: str) -> CommandResult:
        guard = self._guard()
        if isinstance(guard, CommandResult):
            return guard
        try:
            guard.answer(prompt_id, action, scope, label)
        except ValueError as exc:
            return CommandResult.refused(str(exc))
        if scope == "always" and guard.rules_error:
            return CommandResult.done(f"saved for this session only: {guard.rules_error}")
        return CommandResult.done()

    def hold_prompt(self, prompt_id: int) -> CommandResult:
        guard = self._guard()
        if isinstance(guard, CommandResult):
            return guard
        guard.hold(prompt_id)
        return CommandResult.done()

    def set_guard_mode(self, mode: GuardMode) -> CommandResult:
        guard = self._guard()
        if isinstance(guard, CommandResult):
            return guard
        waiting = len(guard.pending())
        if mode == "monitor" and waiting:
            # Monitor mode answers what waits "allowed": never as a side effect of a switch.
            return CommandResult.refused(
                f"not switched: {waiting} request(s) waiting would be allowed by monitor mode; "
                "answer them first")
        try:
            guard.set_mode(mode)
        except ValueError as exc:
            return CommandResult.refused(str(exc))
        return CommandResult.done(f"guard mode: {mode}")

    def delete_rule(self, rule_id: str) -> CommandResult:
        guard = self._guard()
        if isinstance(guard, CommandResult):
            return guard
        if not guard.delete_rule(rule_id):
            return CommandResult.refused(f"no rule {rule_id} (deleted already?)")
        return CommandResult.done(f"deleted rule {rule_id}")

    # --- processes ---------------------------------------------------------------------------

    def kill_process(self, key: ProcessKey, signal_number: int) -> CommandResult:
        try:
            sig = signal.Signals(signal_number)
        except ValueError:
            return CommandResult.refused(f"no signal number {signal_number}")
        try:
            send_signal(key, sig)
        except ProcessGone as exc:
            return CommandResult.refused(str(exc))
        except PermissionError:
            return CommandResult.refused(f"not permitted to signal process {key.pid}")
        return CommandResult.done(f"sent {sig.name} to {key.pid}")

    def watch_process(self, key: ProcessKey) -> CommandResult:
        details = self._find(ProcessDetails)
        if details is None:
            return CommandResult.refused("process details are not collected by this engine")
        details.watch(key)
        return CommandResult.done()

    def unwatch_process(self, key: ProcessKey) -> CommandResult:
        details = self._find(ProcessDetails)
        if details is not None:
            details.unwatch(key)
        return CommandResult.done()
