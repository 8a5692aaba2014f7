"""The credential guard in the UI: the prompt pane and the history of decisions.

`GuardPane` (id "guard-prompt") is docked on the main screen. It is hidden while nothing is
pending and appears, with the countdown, as soon as a program asks for a credential file,
whatever tab is showing. The request in front shows the program, command line, user, pid, the
process tree up to init, the file and its group, the verification (package, hash, flags) and the
seconds left before the default action; the number of other requests waiting is in its title.

Keys (PROMPT_BINDINGS, installed by the app at screen level and forwarded to the pane; they are
active only while a prompt is showing). The decision keys (a d A D m p S) are ignored for
KEY_GRACE seconds after the prompt in front changes, so a key meant for something else cannot
answer a prompt that just appeared; the pane says so meanwhile.

    a  allow once            d  deny once
    A  allow always          D  deny always      ("always": this executable + this group)
    m  allow for 5 minutes   p  allow for this process's lifetime
    S  allow for this session
    x  show/hide details (the full tree and hash); pauses the countdown
    M  toggle enforce / monitor
    R  the rules screen (lists and deletes "always" rules); pauses the countdown

`GuardHistory` (for the "Guard" tab) shows the mode and counters and every decision, newest
first; its keys, active when it has focus: M toggle mode, R rules screen.

Every untrusted string (paths, command lines, user names) is shown through `safe_text`/`visible`.
"""

from __future__ import annotations

import contextlib
import logging
import time
from datetime import datetime
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.timer import Timer
from textual.widget import Widget
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowDoesNotExist

from fluxtui.capabilities.guard import GuardComponent, GuardView
from fluxtui.engine import Engine
from fluxtui.events import Snapshot
from fluxtui.guard.events import GuardDecision, PromptsChanged, PromptView
from fluxtui.text import visible
from fluxtui.tui.rules_screen import RulesScreen

log = logging.getLogger(__name__)

# (key, action name on the pane, label, shown in the footer)
_PROMPT_KEYS: list[tuple[str, str, str, bool]] = [
    ("a", "allow_once", "Allow once", True),
    ("d", "deny_once", "Deny once", True),
    ("A", "allow_always", "Allow always", True),
    ("D", "deny_always", "Deny always", True),
    ("m", "allow_5min", "Allow 5 min", True),
    ("p", "allow_process", "Allow process", True),
    ("S", "allow_session", "Allow session", True),
    ("x", "details", "Details", True),
    ("M", "toggle_mode", "Enforce/monitor", False),
    ("R", "rules", "Rules", False),
]

PROMPT_BINDINGS: list[Binding] = [
    Binding(key, f"guard_prompt('{name}')", label, show=show, id=f"guard.{name}")
    for key, name, label, show in _PROMPT_KEYS
]
"""Install these at screen (or app) level together with `GuardPromptKeys`; they call
`GuardPane.run_prompt_action(name)`."""

KEY_GRACE = 1.0  # seconds during which decision keys are ignored after the front prompt changes

# action name -> (action, scope, label written to the audit trail)
_DECISIONS: dict[str, tuple[str, str, str]] = {
    "allow_once": ("allow", "once", "key a: allow once"),
    "deny_once": ("deny", "once", "key d: deny once"),
    "allow_always": ("allow", "always", "key A: allow always"),
    "deny_always": ("deny", "always", "key D: deny always"),
    "allow_5min": ("allow", "5min", "key m: allow for 5 minutes"),
    "allow_process": ("allow", "process", "key p: allow for this process"),
    "allow_session": ("allow", "session", "key S: allow for this session"),
}


def guard_of(engine: Engine) -> GuardComponent | None:
    component = engine.component("guard")
    return component if isinstance(component, GuardComponent) else None


class GuardPromptKeys:
    """Mix into the App or Screen that installs PROMPT_BINDINGS: forwards them to the pane and
    hides/disables them while no prompt is showing."""

    def action_guard_prompt(self, name: str) -> None:
        pane = _find_pane(self)
        if pane is not None:
            pane.run_prompt_action(name)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "guard_prompt":
            pane = _find_pane(self)
            return pane is not None and pane.showing
        return super().check_action(action, parameters)  # type: ignore[misc, no-any-return]


def _find_pane(node: Any) -> GuardPane | None:
    """The pane on the screen in front; None under a modal (the prompt is not visible then,
    so its keys must not act)."""
    app = getattr(node, "app", node)
    found = app.screen.query(GuardPane)
    return found.first() if found else None


def _age(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S")


def render_prompt(view: PromptView, others: int, now: float, details: bool,
                  notice: str = "", keys_ready: bool = True) -> Text:
    """The prompt as Rich Text; untrusted strings are made visible, never parsed."""
    r = view.requester
    remaining = view.remaining(now)
    out = Text()
    out.append(" CREDENTIAL ACCESS ", style="bold white on red")
    out.append(f" {view.group} ", style="bold")
    out.append(f"({view.technique})  ", style="dim")
    countdown = f"{view.default_action} in {remaining:4.0f} s"
    out.append(countdown, style="bold yellow" if remaining > 5 else "bold red")
    if view.paused(now):
        out.append("  (paused: you are looking)", style="italic")
    if others:
        out.append(f"   {others} more waiting", style="bold magenta")
    out.append("\n")

    def row(label: str, value: str, style: str = "") -> None:
        out.append(f"{label:<9}", style="dim")
        out.append(visible(value), style=style)
        out.append("\n")

    row("Program", r.exe or "(unknown executable)", "bold")
    row("Command", " ".join(r.cmdline) or "(empty)")
    user = f"{r.user} (uid {r.uid}" + (f", euid {r.euid}" if r.euid != r.uid else "") + ")"
    row("User", f"{user}   pid {r.pid}")
    files = view.files[0] + (f"   (+{len(view.files) - 1} more)" if len(view.files) > 1 else "")
    row("File", files, "bold")
    if view.requests > 1:
        row("Waiting", f"{view.requests} opens from pid(s) "
                       f"{', '.join(str(p) for p in view.pids[:8])}")
    out.append(f"{'Identity':<9}", style="dim")
    out.append(visible(r.verification), style="green" if r.verified else "yellow")
    out.append("\n")
    out.append(f"{'Flags':<9}", style="dim")
    if r.flags:
        out.append(visible(", ".join(r.flags)), style="bold red")
        out.append("  (no rule applies to a flagged process)", style="dim")
    else:
        out.append("none")
    out.append("\n")
    if details:
        row("sha256", r.sha256 or "(not hashed)")
        row("Parent", f"{r.ppid} {r.parent_exe}")
        out.append("Tree\n", style="dim")
        for depth, (pid, exe) in enumerate(view.tree):
            out.append(f"  {'  ' * depth}{pid} ")
            out.append(visible(exe))
            out.append("\n")
    else:
        tree = "  <  ".join(f"{pid} {exe.rsplit('/', 1)[-1]}" for pid, exe in view.tree[:6])
        if len(view.tree) > 6:
            tree += f"  <  … ({len(view.tree) - 6} more)"
        row("Tree", tree)
        row("sha256", (r.sha256 or "(not hashed)")[:16] + "…")
    if notice:
        out.append(visible(notice) + "\n", style="bold yellow")
    if not keys_ready:
        out.append(f"New prompt: decision keys act in {KEY_GRACE:.0f} s\n", style="bold yellow")
    out.append("[a] allow once  [d] deny once  [A] allow always  [D] deny always  "
               "[m] 5 min  [p] process  [S] session  [x] details  [R] rules  [M] mode",
               style="reverse" if keys_ready else "dim")
    return out


class GuardPane(Widget):
    """The prompt for the request in front; hidden while nothing is pending."""

    DEFAULT_CSS = """
    GuardPane {
        dock: bottom;
        height: auto;
        max-height: 70%;
        display: none;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    GuardPane.-showing {
        display: block;
    }
    GuardPane > #guard-prompt-body {
        height: auto;
    }
    """

    def __init__(self, engine: Engine, **kwargs: Any) -> None:
        kwargs.setdefault("id", "guard-prompt")
        super().__init__(**kwargs)
        self.engine = engine
        self._details = False
        self._notice = ""
        self._prompts: tuple[PromptView, ...] = ()
        self._timer: Timer | None = None
        self._keys_from = 0.0  # time.monotonic() from which decision keys act
        self._body = Static(id="guard-prompt-body")

    def compose(self) -> ComposeResult:
        yield self._body

    @property
    def guard(self) -> GuardComponent | None:
        return guard_of(self.engine)

    @property
    def showing(self) -> bool:
        return bool(self._prompts)

    @property
    def front(self) -> PromptView | None:
        return self._prompts[0] if self._prompts else None

    # --- contract with the app -------------------------------------------------------------------

    def refresh_from(self, snapshot: Snapshot) -> None:
        self.sync()

    def handle_event(self, event: object) -> None:
        if isinstance(event, PromptsChanged | PromptView | GuardDecision):
            self.sync()

    # --- state ----------------------------------------------------------------------------------

    def sync(self) -> None:
        guard = self.guard
        prompts = guard.pending() if guard is not None else ()
        if prompts and (not self._prompts or prompts[0].id != self._prompts[0].id):
            self._details = False
            self._notice = ""
            self._keys_from = time.monotonic() + KEY_GRACE
        was_showing = self.showing
        self._prompts = prompts
        self.set_class(bool(prompts), "-showing")
        if prompts and self._timer is None:
            self._timer = self.set_interval(0.25, self._render_prompt)
        elif not prompts and self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._render_prompt()
        if self.showing != was_showing:
            # The prompt keys appear or go: the footer recomposes, which is costly every tick.
            self.refresh_bindings()

    def _render_prompt(self) -> None:
        front = self.front
        body = self._body
        if front is None:
            body.update("")
            return
        body.update(render_prompt(front, len(self._prompts) - 1, time.monotonic(),
                                  self._details, self._notice, self.accepts_keys))

    def rendered_text(self) -> str:
        """The prompt as plain text (tests, captures)."""
        front = self.front
        if front is None:
            return ""
        return render_prompt(front, len(self._prompts) - 1, time.monotonic(), self._details,
                             self._notice, self.accepts_keys).plain

    @property
    def accepts_keys(self) -> bool:
        """Whether decision keys act now (not within KEY_GRACE of the front prompt changing)."""
        return self.front is not None and time.monotonic() >= self._keys_from

    # --- actions ----------------------------------------------------------------------------------

    def run_prompt_action(self, name: str) -> None:
        method = getattr(self, f"action_{name}", None)
        if method is not None:
            method()

    def _decide(self, name: str) -> None:
        guard, front = self.guard, self.front
        if guard is None or front is None:
            return
        if not self.accepts_keys:
            self._notice = "key ignored: this prompt has just appeared"
            self._render_prompt()
            return
        action, scope, label = _DECISIONS[name]
        if scope == "always" and guard.rules_error:
            self.app.notify(f"saved for this session only: {visible(guard.rules_error)}",
                            severity="warning", markup=False)
        guard.answer(front.id, action, scope, label)

    def action_allow_once(self) -> None:
        self._decide("allow_once")

    def action_deny_once(self) -> None:
        self._decide("deny_once")

    def action_allow_always(self) -> None:
        self._decide("allow_always")

    def action_deny_always(self) -> None:
        self._decide("deny_always")

    def action_allow_5min(self) -> None:
        self._decide("allow_5min")

    def action_allow_process(self) -> None:
        self._decide("allow_process")

    def action_allow_session(self) -> None:
        self._decide("allow_session")

    def _hold(self) -> None:
        guard, front = self.guard, self.front
        if guard is not None and front is not None:
            guard.hold(front.id)

    def action_details(self) -> None:
        self._hold()
        self._details = not self._details
        self._render_prompt()

    def action_toggle_mode(self) -> None:
        guard = self.guard
        if guard is not None:
            mode = guard.toggle_mode()
            self.app.notify(f"guard mode: {mode}")

    def action_rules(self) -> None:
        self._hold()
        if self.guard is not None:
            self.app.push_screen(RulesScreen(self.guard))


_HISTORY_COLUMNS = (("time", "Time"), ("outcome", "Outcome"), ("program", "Program"),
                    ("pid", "PID"), ("user", "User"), ("file", "File"), ("group", "Group"),
                    ("by", "Decided by"), ("count", "Opens"), ("latency", "Latency"),
                    ("reason", "Reason"))


class _TimeCell(Text):
    """The time column: shown as HH:MM:SS, ordered by (timestamp, row id)."""

    def __init__(self, shown: str, order: tuple[float, int]) -> None:
        super().__init__(shown)
        self.order = order


class GuardHistory(Vertical):
    """For the Guard tab: mode and counters, then every decision (newest first)."""

    DEFAULT_CSS = """
    GuardHistory {
        height: 1fr;
    }
    GuardHistory > #guard-summary {
        height: auto;
        padding: 0 1;
    }
    GuardHistory > DataTable {
        height: 1fr;
    }
    """

    BINDINGS = [
        Binding("M", "toggle_mode", "Enforce/monitor"),
        Binding("R", "rules", "Rules"),
    ]

    def __init__(self, engine: Engine, limit: int = 200, **kwargs: Any) -> None:
        kwargs.setdefault("id", "guard-history")
        super().__init__(**kwargs)
        self.engine = engine
        self.limit = limit
        self._seen: int | None = None
        self._loading = False
        self._again = False
        self._shown: dict[str, tuple[Any, Any]] = {}  # row key -> (count, last_ts) shown
        self._summary_widget = Static(id="guard-summary")
        self._table: DataTable[Any] = DataTable(id="guard-history-table", cursor_type="row",
                                                zebra_stripes=True)

    def compose(self) -> ComposeResult:
        yield self._summary_widget
        yield self._table

    def on_mount(self) -> None:
        for key, label in _HISTORY_COLUMNS:
            self._table.add_column(label, key=key)

    @property
    def guard(self) -> GuardComponent | None:
        return guard_of(self.engine)

    def refresh_from(self, snapshot: Snapshot) -> None:
        guard = self.guard
        summary = self._summary_widget
        view = snapshot.views.get("guard")
        if guard is None or not isinstance(view, GuardView):
            reason = guard.reason if guard is not None else "not configured"
            summary.update(Text(f"Credential guard unavailable: {visible(reason)}",
                                style="bold yellow"))
            return
        summary.update(self._summary(view, guard))
        if view.decisions_recorded != self._seen:
            self._seen = view.decisions_recorded
            self.reload()

    def handle_event(self, event: object) -> None:
        return  # the history follows the snapshot's counter; nothing urgent here

    def _summary(self, view: GuardView, guard: GuardComponent) -> Text:
        t = Text()
        style = "bold white on red" if view.mode == "enforce" else "bold black on yellow"
        t.append(f" {view.mode.upper()} ", style=style)
        t.append(f"  {view.pending} pending ({view.waiting_opens} opens)  ")
        t.append(f"{view.allowed} allowed", style="green")
        t.append("  ")
        t.append(f"{view.denied} denied", style="red")
        t.append(f"  errors {view.errors}  late answers {view.late}\n")
        t.append(f"protected files {view.protected_files}  marked directories "
                 f"{view.marked_dirs}  rules {view.rules}  process cache: "
                 f"{visible(view.process_events)}\n", style="dim")
        t.append(f"audit: {visible(view.audit)}   journal: {visible(view.journal)}\n",
                 style="dim")
        if view.rules_error:
            t.append(visible(view.rules_error) + "\n", style="bold yellow")
        for problem in view.problems[:3]:
            t.append(visible(problem) + "\n", style="yellow")
        t.append("[M] enforce/monitor  [R] rules", style="dim")
        return t

    class Loaded(Message):
        """The history, read off the UI thread."""

        def __init__(self, items: list[dict[str, Any]]) -> None:
            super().__init__()
            self.items = items

    def reload(self) -> None:
        """Read the history (SQLite) on a worker thread; the rows are applied when it is back.
        One read at a time: a reload asked for meanwhile runs when it is done."""
        guard = self.guard
        if guard is None or not self._table.columns:
            return
        if self._loading:
            self._again = True
            return
        self._loading = True
        limit = self.limit

        def load() -> None:
            try:
                items = guard.history(limit)
            except Exception as exc:  # reported, the table keeps what it shows
                log.warning("guard history: %s", exc)
                items = None
            self.post_message(self.Loaded(items if items is not None else []))

        self.run_worker(load, thread=True, group="guard-history", exit_on_error=False)

    def on_guard_history_loaded(self, message: GuardHistory.Loaded) -> None:
        message.stop()
        self._loading = False
        self.apply_rows(message.items)
        if self._again:
            self._again = False
            self.reload()

    def apply_rows(self, items: list[dict[str, Any]]) -> None:
        """Bring the table to `items` (newest first) by row id: rows that left are removed,
        new rows added, changed ones (a fold counted more) updated; untouched rows stay."""
        table = self._table
        wanted: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(items):
            wanted[str(item.get("id", f"mem-{index}-{item['ts']}"))] = item
        present = {str(k.value) for k in table.rows}
        for key in present - wanted.keys():
            table.remove_row(key)
        added = False
        for key, item in wanted.items():
            cells = self._cells(item)
            if key not in present:
                table.add_row(*cells, key=key)
                added = True
            elif self._shown.get(key) != (item.get("count"), item.get("last_ts")):
                for (column, _label), value in zip(_HISTORY_COLUMNS, cells, strict=True):
                    table.update_cell(key, column, value)
            self._shown[key] = (item.get("count"), item.get("last_ts"))
        for key in set(self._shown) - wanted.keys():
            del self._shown[key]
        if added:  # new rows went to the bottom: newest first again, the cursor stays put
            selected = None
            if table.row_count and table.cursor_row >= 0:
                selected = table.coordinate_to_cell_key((table.cursor_row, 0)).row_key.value
            table.sort("time", key=lambda cell: cell.order, reverse=True)
            if selected is not None:
                with contextlib.suppress(RowDoesNotExist):
                    table.move_cursor(row=table.get_row_index(selected))

    @staticmethod
    def _cells(item: dict[str, Any]) -> tuple[Any, ...]:
        allowed = item["outcome"] == "allowed"
        latency = item.get("latency_us")
        if latency is None:
            latency_text = "—"
        elif latency >= 1e6:
            latency_text = f"{latency / 1e6:.1f} s"
        elif latency >= 1e3:
            latency_text = f"{latency / 1e3:.1f} ms"
        else:
            latency_text = f"{latency:.0f} µs"
        return (
            _TimeCell(_age(item["ts"]), (item["ts"], item.get("id") or 0)),
            Text(item["outcome"], style="green" if allowed else "bold red"),
            Text(visible(item.get("executable") or "?")),
            str(item.get("pid") or ""),
            Text(visible(item.get("user") or "")),
            Text(visible(item.get("target") or "")),
            Text(visible(item.get("category") or "")),
            item.get("decided_by") or "",
            str(item.get("count", 1)),
            latency_text,
            Text(visible(item.get("reason") or "")),
        )

    def action_toggle_mode(self) -> None:
        guard = self.guard
        if guard is not None:
            self.app.notify(f"guard mode: {guard.toggle_mode()}")

    def action_rules(self) -> None:
        pane = _find_pane(self)
        if pane is not None and pane.showing:
            pane.action_rules()  # the same key as on the prompt: also pauses its countdown
        elif self.guard is not None:
            self.app.push_screen(RulesScreen(self.guard))
