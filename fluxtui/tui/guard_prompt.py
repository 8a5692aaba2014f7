"""The credential prompt: a screen that comes to the front whatever is open.

The prompts come from the guard's `PromptsChanged` bus events (the newest set, at once) and,
until the first of those, from the snapshot's `GuardView.prompts`; answers go through
`fluxtui.commands` (a replay refuses them, and the prompt says so). When the guard holds a
request, the app's `sync_prompt` (on every prompt event and tick) pushes a `PromptScreen`
above whatever screen, modal, palette or filter box is in front; the keys below reach it and
nothing else, and the screen underneath is back when it closes. A new prompt that arrives
while a screen opened from the prompt (rules, a confirmation) is in front is pushed above that
one too.

The countdown line on top and the key line at the bottom are always on screen (at 80x24 too);
what is between scrolls. Keys typed within KEY_GRACE of the prompt coming to the front never
answer it (someone may have been typing into the filter box).

    a  allow once            d  deny once            N  deny every waiting request
    A  allow always          D  deny always          ("always": this executable + this group)
    m  allow for 5 minutes   p  allow for this process's lifetime   S  for this session
    x  show all details and flags (pauses the countdown)
    R  the rules screen (pauses the countdown)
    M  monitor mode: refused while requests wait (the switch would let them through)

Allow always / 5 min / process / session are not offered for a flagged program (the guard
never lets a rule or a lasting allowance cover one); pressing one says why.

Every untrusted string (paths, command lines, user names, flags) goes through `visible`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Static

from fluxtui.commands import CommandResult, PromptAction, PromptScope
from fluxtui.events import Snapshot
from fluxtui.guard.events import PromptsChanged, PromptView
from fluxtui.untrusted_text import visible
from fluxtui.views import GUARD, DashboardSource, GuardView, view_of

KEY_GRACE = 1.0  # seconds during which decision keys are ignored after a prompt comes to front

# action name -> (action, scope, label written to the audit trail)
DECISIONS: dict[str, tuple[PromptAction, PromptScope, str]] = {
    "allow_once": ("allow", "once", "key a: allow once"),
    "deny_once": ("deny", "once", "key d: deny once"),
    "allow_always": ("allow", "always", "key A: allow always"),
    "deny_always": ("deny", "always", "key D: deny always"),
    "allow_5min": ("allow", "5min", "key m: allow for 5 minutes"),
    "allow_process": ("allow", "process", "key p: allow for this process"),
    "allow_session": ("allow", "session", "key S: allow for this session"),
}
LASTING_ALLOWS = ("allow_always", "allow_5min", "allow_process", "allow_session")

# (key, action, label in the key line)
PROMPT_KEYS: list[tuple[str, str, str]] = [
    ("a", "allow_once", "allow once"),
    ("d", "deny_once", "deny"),
    ("A", "allow_always", "allow always"),
    ("D", "deny_always", "deny always"),
    ("m", "allow_5min", "5 min"),
    ("p", "allow_process", "process"),
    ("S", "allow_session", "session"),
    ("N", "deny_all", "deny all waiting"),
    ("x", "details", "details"),
    ("R", "rules", "rules"),
]
KEY_OF = {action: key for key, action, _ in PROMPT_KEYS}


def offered(view: PromptView) -> list[tuple[str, str, str]]:
    """The keys that apply to this prompt: no lasting allowance for a flagged program."""
    flagged = bool(view.requester.flags)
    return [k for k in PROMPT_KEYS if not (flagged and k[1] in LASTING_ALLOWS)]


def _clock(seconds: float) -> str:
    return f"{seconds:.0f} s"


def render_head(view: PromptView, waiting: int, now: float) -> Text:
    """The first line: what is asked and the countdown (always on screen)."""
    remaining = view.remaining(now)
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(" CREDENTIAL ACCESS ", style="bold white on red")
    out.append(f" {view.default_action} in {_clock(remaining)} ",
               style="bold black on yellow" if remaining > 5 else "bold white on red")
    if view.paused(now):
        out.append(" paused", style="italic")
    if waiting:
        out.append(f"  +{waiting} waiting", style="bold magenta")
    out.append(f"  {view.group} ", style="bold")
    out.append(f"({view.technique})", style="dim")
    return out


def render_body(view: PromptView, others: tuple[PromptView, ...], now: float, details: bool,
                notice: str = "", keys_ready: bool = True) -> Text:
    """The request in front and the queue; untrusted strings are made visible, never parsed."""
    r = view.requester
    out = Text()

    def row(label: str, value: str, style: str = "") -> None:
        out.append(f"{label:<9}", style="dim")
        out.append(visible(value), style=style)
        out.append("\n")

    if notice:
        out.append(visible(notice) + "\n", style="bold yellow")
    if not keys_ready:
        out.append(f"New prompt: decision keys act in {KEY_GRACE:.0f} s\n", style="bold yellow")
    row("Program", r.exe or "(unknown executable)", "bold")
    row("File", view.files[0] + (f"   (+{len(view.files) - 1} more)"
                                 if len(view.files) > 1 else ""), "bold")
    out.append(f"{'Flags':<9}", style="dim")
    if not r.flags:
        out.append("none\n")
    elif details or len(r.flags) == 1:
        out.append("\n" if len(r.flags) > 1 else "")
        for flag in r.flags:
            out.append(("  " if len(r.flags) > 1 else "") + visible(flag) + "\n",
                       style="bold red")
    else:
        out.append(f"{len(r.flags)} flags: ", style="bold red")
        out.append(visible(r.flags[0]), style="bold red")
        out.append("  … (x: all)\n", style="dim")
    user = f"{r.user} (uid {r.uid}" + (f", euid {r.euid}" if r.euid != r.uid else "") + ")"
    row("User", f"{user}   pid {r.pid}")
    row("Command", " ".join(r.cmdline) or "(empty)")
    out.append(f"{'Identity':<9}", style="dim")
    out.append(visible(r.verification), style="green" if r.verified else "yellow")
    out.append("\n")
    if view.requests > 1:
        row("Opens", f"{view.requests} waiting from pid(s) "
                     f"{', '.join(str(p) for p in view.pids[:8])}")
    if others:
        out.append("Queue", style="bold")
        out.append(f"  ({len(others)} more; N denies all)\n", style="dim")
        for other in others:
            out.append(f"  {_clock(other.remaining(now)):>5} {other.default_action:<5} ",
                       style="yellow")
            out.append(visible(other.requester.exe or "?"))
            out.append(" → ", style="dim")
            out.append(visible(other.files[0]) + "\n")
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
    out.rstrip()
    return out


def render_keys(view: PromptView, keys_ready: bool) -> Text:
    """The key line (always on screen): only the keys that apply to this prompt."""
    out = Text()
    style = "reverse" if keys_ready else "dim"
    for key, _action, label in offered(view):
        out.append(f"[{key}]", style=f"bold {style}")
        out.append(f" {label}  ")
    if view.requester.flags:
        out.append("(flagged: no lasting allow)", style="dim")
    return out


class PromptState:
    """What the prompt shows and the keys' timing; owned by the app, so it outlives the
    screens that show it."""

    def __init__(self, source: DashboardSource,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.source = source
        self.clock = clock
        self.prompts: tuple[PromptView, ...] = ()
        self.details = False
        self.notice = ""
        self.keys_from = 0.0
        self._from_bus: tuple[PromptView, ...] | None = None  # the newest PromptsChanged

    def take_event(self, event: PromptsChanged) -> None:
        """The guard's pending set changed: it replaces what the snapshots said."""
        self._from_bus = event.pending

    def events_lost(self) -> None:
        """The bounded inbox dropped events (the newest pending set may be among them): the
        snapshots say what waits until the next PromptsChanged."""
        self._from_bus = None

    def guard_view(self) -> GuardView | None:
        return view_of(self.source.latest_snapshot(), GUARD, GuardView)

    @property
    def showing(self) -> bool:
        return bool(self.prompts)

    @property
    def front(self) -> PromptView | None:
        return self.prompts[0] if self.prompts else None

    def update(self, snapshot: Snapshot | None = None) -> bool:
        """Take the pending prompts (the bus's newest set, else the snapshot's); True when the
        one in front is new."""
        if self._from_bus is not None:
            prompts = self._from_bus
        else:
            view = view_of(snapshot or self.source.latest_snapshot(), GUARD, GuardView)
            prompts = view.prompts if view is not None else ()
        new = bool(prompts) and (not self.prompts or prompts[0].id != self.prompts[0].id)
        if new:
            self.details = False
            self.notice = ""
            self.restart_grace()
        self.prompts = prompts
        return new

    def restart_grace(self) -> None:
        self.keys_from = self.clock() + KEY_GRACE

    @property
    def accepts_keys(self) -> bool:
        """Whether decision keys act now (not within KEY_GRACE of the prompt coming to front)."""
        return self.front is not None and self.clock() >= self.keys_from

    def rendered_text(self) -> str:
        """The prompt as plain text (tests, captures)."""
        front = self.front
        if front is None:
            return ""
        now = self.clock()
        return "\n".join((render_head(front, len(self.prompts) - 1, now).plain,
                          render_body(front, self.prompts[1:], now, self.details, self.notice,
                                      self.accepts_keys).plain,
                          render_keys(front, self.accepts_keys).plain))

    # --- actions (the screen's keys) -------------------------------------------------------------

    def _result(self, result: CommandResult) -> str | None:
        """A refused command is said in the prompt; a note of a done one is returned."""
        if not result.ok:
            self.notice = result.message
            return None
        return result.message or None

    def decide(self, name: str) -> str | None:
        """Answer the front prompt; returns a note for the user, if any."""
        front = self.front
        if front is None:
            return None
        if not self.accepts_keys:
            self.notice = "key ignored: this prompt has just appeared"
            return None
        if name in LASTING_ALLOWS and front.requester.flags:
            self.notice = (f"{KEY_OF[name]} is not offered: this program is flagged "
                           f"({len(front.requester.flags)} flag(s), x shows them), and no rule "
                           "or lasting allowance covers a flagged program. a allows once.")
            return None
        action, scope, label = DECISIONS[name]
        return self._result(self.source.commands.answer_prompt(front.id, action, scope, label))

    def deny_all(self) -> None:
        if not self.prompts:
            return
        if not self.accepts_keys:
            self.notice = "key ignored: this prompt has just appeared"
            return
        commands = self.source.commands
        for prompt in self.prompts:
            self._result(commands.answer_prompt(prompt.id, "deny", "once",
                                                "key N: deny all waiting"))

    def hold(self) -> None:
        front = self.front
        if front is not None:
            self._result(self.source.commands.hold_prompt(front.id))


class PromptScreen(ModalScreen[None]):
    """The prompt in front of everything; closes itself when nothing is pending."""

    DEFAULT_CSS = """
    PromptScreen {
        align: center top;
        background: $background 30%;
    }
    PromptScreen > #prompt-box {
        width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $error;
        background: $surface;
        padding: 0 1;
    }
    PromptScreen #prompt-head { height: 1; }
    PromptScreen #prompt-scroll { height: auto; }
    PromptScreen #prompt-body { height: auto; }
    PromptScreen #prompt-keys { height: auto; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, f"prompt('{action}')", label.capitalize(), show=False,
                  id=f"guard.{action}") for key, action, label in PROMPT_KEYS),
        Binding("M", "mode", "Mode", show=False, id="guard.mode"),
        Binding("q", "app.quit", "Quit", show=False),  # a modal hides the app's bindings
    ]

    def __init__(self, state: PromptState) -> None:
        super().__init__()
        self.state = state
        self._room = -1  # rows given to the scrolling body

    def compose(self) -> ComposeResult:
        with Vertical(id="prompt-box"):
            yield Static(id="prompt-head")
            with VerticalScroll(id="prompt-scroll"):
                yield Static(id="prompt-body")
            yield Static(id="prompt-keys")

    def on_mount(self) -> None:
        self.state.restart_grace()
        self.set_interval(0.25, self.show)
        self.show()

    def on_screen_resume(self) -> None:
        if not self.state.showing:
            self.dismiss(None)
            return
        self.show()

    def show(self) -> None:
        front = self.state.front
        if front is None or not self._body_ready():
            return
        now = self.state.clock()
        ready = self.state.accepts_keys
        self.query_one("#prompt-head", Static).update(
            render_head(front, len(self.state.prompts) - 1, now))
        self.query_one("#prompt-body", Static).update(
            render_body(front, self.state.prompts[1:], now, self.state.details,
                        self.state.notice, ready))
        keys = render_keys(front, ready)
        self.query_one("#prompt-keys", Static).update(keys)
        self._fit(keys)

    def _fit(self, keys: Text) -> None:
        """The body scrolls in what is left once the countdown line, the key line and the
        border have their rows: those two are always on screen, at 80x24 too."""
        width = max(10, self.size.width - 4)  # border and padding
        key_rows = max(1, len(keys.wrap(self.app.console, width)))
        room = max(2, self.size.height - 2 - 1 - key_rows)
        if room != self._room:  # set once per change: setting it lays the screen out again
            self._room = room
            self.query_one("#prompt-scroll").styles.max_height = room

    def on_resize(self) -> None:
        self.show()

    def _body_ready(self) -> bool:
        """False until the children are mounted (the app may ask to show right after the
        push)."""
        try:
            for part in ("#prompt-head", "#prompt-body", "#prompt-keys", "#prompt-scroll"):
                self.query_one(part)
        except NoMatches:
            return False
        return True

    def action_prompt(self, name: str) -> None:
        state = self.state
        if name in DECISIONS:
            warning = state.decide(name)
            if warning:
                self.app.notify(visible(warning), severity="warning", markup=False)
        elif name == "deny_all":
            state.deny_all()
        elif name == "details":
            state.hold()
            state.details = not state.details
        elif name == "rules":
            state.hold()
            from fluxtui.tui.guard_rules_screen import RulesScreen

            self.app.push_screen(RulesScreen(state.source))
        self.show()

    def action_mode(self) -> None:
        self.state.notice = ("mode switch refused while requests wait: monitor mode would let "
                             "them through. Answer them first (N denies all).")
        self.show()
