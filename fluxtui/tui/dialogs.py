"""Confirmation dialogs: terminating a process, and a yes/no question."""

from __future__ import annotations

import signal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from fluxtui.events import ProcessRow
from fluxtui.untrusted_text import visible


class KillDialog(ModalScreen[signal.Signals | None]):
    """Returns the signal chosen (SIGTERM or SIGKILL), or None when cancelled."""

    BINDINGS = [
        Binding("escape,n", "cancel", "Cancel"),
        Binding("y,enter", "terminate", "Terminate"),
        Binding("K", "kill", "Kill"),
    ]

    def __init__(self, row: ProcessRow) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        row = self.row
        command = visible(" ".join(row.cmdline) or row.exe or row.name)
        with Vertical(id="kill-dialog"):
            yield Label(Text(f"Terminate process {row.pid}?", style="bold"))
            yield Label(Text(f"{visible(row.name)} (user {visible(row.user)})"))
            yield Label(Text(command[:200], style="dim"))
            yield Label(Text("y: SIGTERM (asks it to exit)   K: SIGKILL (ends it at once)   "
                             "Esc: cancel"), id="kill-keys")
            with Horizontal(id="kill-buttons"):
                yield Button("SIGTERM [y]", id="terminate", variant="warning")
                yield Button("SIGKILL [K]", id="kill", variant="error")
                yield Button("Cancel [Esc]", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        choice = {"terminate": signal.SIGTERM, "kill": signal.SIGKILL}.get(event.button.id or "")
        self.dismiss(choice)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_terminate(self) -> None:
        self.dismiss(signal.SIGTERM)

    def action_kill(self) -> None:
        self.dismiss(signal.SIGKILL)


class ConfirmScreen(ModalScreen[bool]):
    """A question answered with y (yes) or n / Escape (no)."""

    DEFAULT_CSS = """
    ConfirmScreen { align: center middle; }
    ConfirmScreen > #confirm-box {
        width: 70; max-width: 100%; height: auto; border: thick $warning;
        background: $surface; padding: 1 2;
    }
    ConfirmScreen #confirm-keys { margin-top: 1; }
    """
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, detail: str = "", yes: str = "yes") -> None:
        super().__init__()
        self.question = question
        self.detail = detail
        self.yes = yes

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Label(Text(self.question, style="bold"), id="confirm-question")
            if self.detail:
                yield Label(Text(self.detail))
            yield Label(Text(f"y: {self.yes}   n / Esc: cancel", style="bold"), id="confirm-keys")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
