"""Confirmation dialog for terminating or killing a process."""

from __future__ import annotations

import signal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label

from fluxtui.events import ProcessRow
from fluxtui.text import visible


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
            with Horizontal(id="kill-buttons"):
                yield Button("Terminate (SIGTERM) [y]", id="terminate", variant="warning")
                yield Button("Kill (SIGKILL) [K]", id="kill", variant="error")
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
