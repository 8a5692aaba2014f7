"""The rules screen: the guard's "always" rules (executable identity + credential group), with
deletion. Keys: delete or x deletes the selected rule, escape or q closes.

It shows `GuardView.rule_list` of the newest snapshot (re-read on a timer while open) and
deletes through `Commands.delete_rule`; a rule deleted here stays hidden until the snapshots
no longer list it.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.coordinate import Coordinate
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from fluxtui.guard.access_rules import SavedRule
from fluxtui.tui.dialogs import ConfirmScreen
from fluxtui.untrusted_text import visible
from fluxtui.views import GUARD, DashboardSource, GuardView, view_of

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

    def __init__(self, source: DashboardSource) -> None:
        super().__init__()
        self.source = source
        self._deleted: set[str] = set()  # deleted here, still in the snapshot until its tick
        self._shown: tuple[tuple[SavedRule, ...], str | None, str] | None = None

    def compose(self) -> ComposeResult:
        with Vertical(id="rules-box"):
            yield Static(id="rules-info")
            table: DataTable[Any] = DataTable(id="rules-table", cursor_type="row")
            for key, label in _COLUMNS:
                table.add_column(label, key=key)
            yield table

    def on_mount(self) -> None:
        self.reload()
        self.set_interval(0.5, self.reload)
        self.query_one(DataTable).focus()

    def view(self) -> GuardView | None:
        return view_of(self.source.latest_snapshot(), GUARD, GuardView)

    def rules(self) -> tuple[SavedRule, ...]:
        view = self.view()
        if view is None:
            return ()
        listed = {r.id for r in view.rule_list}
        self._deleted &= listed  # gone from the snapshot: nothing left to hide
        return tuple(r for r in view.rule_list if r.id not in self._deleted)

    def reload(self) -> None:
        view = self.view()
        rules = self.rules()
        state = (rules, view.rules_error if view else None, view.rules_path if view else "")
        if state == self._shown:
            return
        self._shown = state
        info = Text()
        info.append("Always rules", style="bold")
        if view is None:
            info.append("  the credential guard is not running\n", style="bold yellow")
        else:
            info.append(f"  ({visible(view.rules_path)})\n", style="dim")
        if view is not None and view.rules_error:
            info.append(visible(view.rules_error) + "\n", style="bold yellow")
        if view is not None and not rules:
            info.append("No always rules yet: A (allow always) or D (deny always) on a prompt "
                        "saves one.\n", style="bold")
        info.append("An allow rule applies only to the same executable (path and sha256) and "
                    "never to a flagged process.  [x/Delete] delete  [Esc] close", style="dim")
        self.query_one("#rules-info", Static).update(info)
        table = self.query_one(DataTable)
        selected = self.selected_rule_id()
        table.clear()
        for rule in rules:
            table.add_row(
                rule.id,
                Text(rule.action, style="green" if rule.action == "allow" else "bold red"),
                Text(visible(rule.group)), Text(visible(rule.executable)),
                rule.sha256[:16] + "…", rule.created, Text(visible(rule.decided_by)),
                key=rule.id)
        index = next((i for i, r in enumerate(rules) if r.id == selected), None)
        if index is not None:
            table.move_cursor(row=index)

    def selected_rule_id(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return table.coordinate_to_cell_key(Coordinate(table.cursor_row, 0)).row_key.value

    def action_delete_rule(self) -> None:
        rule_id = self.selected_rule_id()
        if rule_id is None:
            return
        rule = next((r for r in self.rules() if r.id == rule_id), None)
        what = (f"{rule.action} {visible(rule.group)} for {visible(rule.executable)}"
                if rule is not None else rule_id)

        def done(yes: bool | None) -> None:
            if not yes:
                return
            result = self.source.commands.delete_rule(rule_id)
            if result.ok:
                self._deleted.add(rule_id)
            self.notify(visible(result.message), markup=False,
                        severity="information" if result.ok else "warning")
            self.reload()

        self.app.push_screen(ConfirmScreen(f"Delete rule {rule_id}?", what, "delete"), done)

    def action_close(self) -> None:
        self.dismiss(None)
