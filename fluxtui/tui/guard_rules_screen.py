"""The rules screen: the guard's "always" rules (executable identity + credential group), with
deletion. Keys: delete or x deletes the selected rule, escape or q closes."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from fluxtui.capabilities.guard import GuardComponent
from fluxtui.tui.dialogs import ConfirmScreen
from fluxtui.untrusted_text import visible

_COLUMNS = (("id", "Rule"), ("action", "Action"), ("group", "Group"),
            ("executable", "Executable"), ("sha256", "sha256"), ("created", "Created"),
            ("by", "Decided by"))


class RulesScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    RulesScreen {
        align: center middle;
    }
    RulesScreen > #rules-box {
        width: 90%;
        height: 80%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    RulesScreen #rules-info {
        height: auto;
    }
    RulesScreen DataTable {
        height: 1fr;
    }
    """

    BINDINGS = [
        Binding("escape,q", "close", "Close"),
        Binding("delete,x", "delete_rule", "Delete rule"),
    ]

    def __init__(self, guard: GuardComponent) -> None:
        super().__init__()
        self.guard = guard

    def compose(self) -> ComposeResult:
        with Vertical(id="rules-box"):
            yield Static(id="rules-info")
            table: DataTable[Any] = DataTable(id="rules-table", cursor_type="row")
            for key, label in _COLUMNS:
                table.add_column(label, key=key)
            yield table

    def on_mount(self) -> None:
        self.reload()
        self.query_one(DataTable).focus()

    def reload(self) -> None:
        info = Text()
        info.append("Always rules", style="bold")
        info.append(f"  ({visible(self.guard.rules_path)})\n", style="dim")
        if self.guard.rules_error:
            info.append(visible(self.guard.rules_error) + "\n", style="bold yellow")
        info.append("An allow rule applies only to the same executable (path and sha256) and "
                    "never to a flagged process.  [x/Delete] delete  [Esc] close", style="dim")
        self.query_one("#rules-info", Static).update(info)
        table = self.query_one(DataTable)
        table.clear()
        for rule in self.guard.rules():
            table.add_row(
                rule.id,
                Text(rule.action, style="green" if rule.action == "allow" else "bold red"),
                Text(visible(rule.group)), Text(visible(rule.executable)),
                rule.sha256[:16] + "…", rule.created, Text(visible(rule.decided_by)),
                key=rule.id)

    def selected_rule_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value

    def action_delete_rule(self) -> None:
        rule_id = self.selected_rule_id()
        if rule_id is None:
            return
        rule = next((r for r in self.guard.rules() if r.id == rule_id), None)
        what = (f"{rule.action} {visible(rule.group)} for {visible(rule.executable)}"
                if rule is not None else rule_id)

        def done(yes: bool | None) -> None:
            if yes and self.guard.delete_rule(rule_id):
                self.notify(f"deleted rule {rule_id}", markup=False)
            self.reload()

        self.app.push_screen(ConfirmScreen(f"Delete rule {rule_id}?", what, "delete"), done)

    def action_close(self) -> None:
        self.dismiss(None)
