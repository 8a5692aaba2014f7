"""The Textual application: reads snapshots of a `DashboardSource` (the live engine, or a
replay) on a timer, receives urgent items as messages, and acts only through the source's
`commands` (fluxtui/commands.py)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable, Iterable
from functools import partial

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.containers import Horizontal
from textual.css.query import NoMatches
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message
from textual.widgets import Footer, TabbedContent, TabPane

from fluxtui.events import Snapshot
from fluxtui.guard.events import PromptsChanged
from fluxtui.replay import ReplaySource
from fluxtui.tui.alerts import AlertsPane
from fluxtui.tui.connections_tab import ConnectionsPane
from fluxtui.tui.dialogs import ConfirmScreen, KillDialog
from fluxtui.tui.guard_pane import GuardHistory, guard_status, switch_mode
from fluxtui.tui.guard_prompt import PromptScreen, PromptState
from fluxtui.tui.guard_rules_screen import RulesScreen
from fluxtui.tui.inbox import BusReader, Inbox, SnapshotReader, dispatch
from fluxtui.tui.panels import CpuPanel, History, IoPanel, MemoryPanel, StatusHeader
from fluxtui.tui.process_detail import ProcessDetailScreen
from fluxtui.tui.process_table import COLUMNS, ProcessTable
from fluxtui.tui.quiet_driver import QuietLinuxDriver
from fluxtui.tui.replay_bar import ReplayBar
from fluxtui.tui.themes import bundled_themes
from fluxtui.untrusted_text import visible
from fluxtui.views import GUARD, DashboardSource, GuardView, view_of

TABS = {"processes": "Processes", "connections": "Connections", "alerts": "Alerts",
        "guard": "Guard"}
# The widget that takes the keys when its tab is shown.
MAIN_WIDGET = {"processes": "#process-grid", "connections": "#conn-table",
               "alerts": "#alerts-table", "guard": "#guard-history-table"}


# Events that carry the guard's pending prompts (the newest set wins).
PROMPT_EVENTS: tuple[type, ...] = (PromptsChanged,)


class EventsPending(Message):
    """Bus events are waiting in the app's inbox (posted once per batch, not per event)."""


class FluxCommands(Provider):
    """fluxtui's own commands in the palette, listed before anything is typed."""

    def commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        assert isinstance(app, FluxApp)
        table = app.process_table
        out: list[tuple[str, object, str]] = [
            (f"Show {label} tab", partial(app.action_show_tab, tab), f"key {i}")
            for i, (tab, label) in enumerate(TABS.items(), 1)]
        out += [(f"Sort processes by {column.label}", partial(app.sort_processes, column.key),
                 "again on the same column reverses") for column in COLUMNS]
        out += [
            ("Toggle process tree view", partial(app.run_on_processes, table.action_toggle_tree),
             "key t"),
            ("Filter processes", partial(app.run_on_processes, table.action_start_filter),
             "key /"),
            ("Guard: switch enforce / monitor", app.action_guard_mode, "asks first"),
            ("Guard: always rules", app.action_guard_rules, "list and delete rules"),
        ]
        out += [(f"Theme: {theme.name}", partial(setattr, app, "theme", theme.name), "")
                for theme in bundled_themes()]
        return out

    async def discover(self) -> Hits:
        for text, callback, help_text in self.commands():
            yield DiscoveryHit(text, callback, help=help_text)  # type: ignore[arg-type]

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for text, callback, help_text in self.commands():
            score = matcher.match(text)
            if score > 0:
                yield Hit(score, matcher.highlight(text), callback,  # type: ignore[arg-type]
                          help=help_text)


class FluxApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "fluxtui"
    COMMANDS = App.COMMANDS | {FluxCommands}
    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("1", "show_tab('processes')", "Processes", show=False),
        Binding("2", "show_tab('connections')", "Connections", show=False),
        Binding("3", "show_tab('alerts')", "Alerts", show=False),
        Binding("4", "show_tab('guard')", "Guard", show=False),
        # a replay only (check_action): pause and speed
        Binding("space", "replay_pause", "Pause", id="replay.pause"),
        Binding("plus", "replay_faster", "Faster", key_display="+", id="replay.faster"),
        Binding("minus", "replay_slower", "Slower", key_display="-", id="replay.slower"),
    ]

    def __init__(self, source: DashboardSource, privileged: bool, theme_name: str | None = None,
                 start_engine: bool = True) -> None:
        super().__init__()
        self.source = source
        self.privileged = privileged
        self._theme_name = theme_name or source.config.general.theme
        self._start_engine = start_engine
        refresh = source.config.general.refresh_interval
        self.history = History(round(source.config.general.history_seconds / refresh))
        self._seen_sequence = -1
        self.inbox = Inbox(PROMPT_EVENTS)  # widened to the widgets' types once they exist
        self._unsubscribe: Callable[[], None] | None = None
        self._snapshot_widgets: list[tuple[SnapshotReader, TabPane | None]] = []
        self._event_widgets: list[BusReader] = []
        self.prompt = PromptState(source)

    def get_driver_class(self) -> type[Driver]:
        """Textual's Linux driver with an input thread that waits for input instead of polling
        (quiet_driver.py); any other (TEXTUAL_DRIVER, another platform) as Textual picks it."""
        chosen = super().get_driver_class()
        return QuietLinuxDriver if chosen is LinuxDriver else chosen

    @property
    def replay(self) -> ReplaySource | None:
        return self.source if isinstance(self.source, ReplaySource) else None

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action.startswith("replay_"):
            return self.replay is not None
        return True

    def action_replay_pause(self) -> None:
        if self.replay is not None:
            self.replay.toggle_pause()

    def action_replay_faster(self) -> None:
        if self.replay is not None:
            self.replay.faster()

    def action_replay_slower(self) -> None:
        if self.replay is not None:
            self.replay.slower()

    def compose(self) -> ComposeResult:
        if self.replay is not None:
            yield ReplayBar(self.replay, id="replay-bar")
        yield StatusHeader(self.privileged, id="status-header")
        with Horizontal(id="metrics"):
            yield CpuPanel(self.history, id="cpu-panel")
            yield MemoryPanel(id="memory-panel")
            yield IoPanel(self.history, id="io-panel")
        with TabbedContent(id="tabs", initial="processes"):
            with TabPane("Processes [1]", id="processes"):
                yield ProcessTable(id="process-table")
            with TabPane("Connections [2]", id="connections"):
                yield ConnectionsPane(self.source, id="connections-pane")
            with TabPane("Alerts [3]", id="alerts"):
                yield AlertsPane(self.source, id="alerts-pane")
            with TabPane("Guard [4]", id="guard"):
                yield GuardHistory(self.source, id="guard-history")
        yield Footer()

    @property
    def process_table(self) -> ProcessTable:
        return self.screen_stack[0].query_one(ProcessTable)

    def on_mount(self) -> None:
        for theme in bundled_themes():
            self.register_theme(theme)
        self.theme = self._theme_name  # checked before start (cli): unknown is an error
        self._collect_widgets()
        self._unsubscribe = self.source.subscribe(self._on_bus_event)
        if self._start_engine:
            self.source.start()
        interval = min(0.5, self.source.config.general.refresh_interval)
        self.set_interval(interval, self.refresh_from_engine)
        self.call_after_refresh(self.refresh_from_engine)  # first frame: no waiting for a timer
        self.process_table.table.focus()

    def on_unmount(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._start_engine:
            self.source.stop()

    # --- data flow ---------------------------------------------------------------------------

    def refresh_from_engine(self) -> None:
        snapshot = self.source.latest_snapshot()
        if snapshot is None or snapshot.sequence == self._seen_sequence:
            return
        self._seen_sequence = snapshot.sequence
        self.show_snapshot(snapshot)
        self.sync_prompt()

    def show_snapshot(self, snapshot: Snapshot) -> None:
        for widget in self._data_widgets():
            # NoMatches: its children are not mounted yet (first frames); the next tick shows it.
            with contextlib.suppress(NoMatches):
                widget.refresh_from(snapshot)

    def _data_widgets(self) -> Iterable[SnapshotReader]:
        """Widgets that show snapshots: all of them outside the tabs, and only those of the
        active tab inside (a hidden table with thousands of rows is not worth updating)."""
        try:
            active = self.query_one(TabbedContent).active_pane
        except NoMatches:  # the panes are not mounted yet
            active = None
        for widget, pane in self._snapshot_widgets:
            if pane is None or pane is active:
                yield widget

    def _collect_widgets(self) -> None:
        """The widgets that take snapshots and bus events, found once: the main screen's
        widgets are fixed after compose, so the UI loop does not walk the DOM on every tick."""
        self._snapshot_widgets = [
            (w, next((a for a in w.ancestors if isinstance(a, TabPane)), None))
            for w in self.query("*") if isinstance(w, SnapshotReader)]
        self._event_widgets = [w for w in self.query("*") if isinstance(w, BusReader)]
        wanted = {t for w in self._event_widgets for t in w.EVENT_TYPES} | set(PROMPT_EVENTS)
        self.inbox = Inbox(wanted)

    @on(TabbedContent.TabActivated)
    def _tab_shown(self, event: TabbedContent.TabActivated) -> None:
        snapshot = self.source.latest_snapshot()
        if snapshot is not None:
            self.show_snapshot(snapshot)

    def focus_tab(self, tab: str) -> None:
        """Focus the tab's main table, so that its keys work at once and the footer shows
        them. Set at once (not deferred): were the old pane's table left focused while it is
        hidden, Textual would move the focus to another pane and switch the tab back."""
        with contextlib.suppress(NoMatches):
            screen = self.screen_stack[0]
            screen.set_focus(screen.query_one(MAIN_WIDGET[tab]))

    def _on_bus_event(self, event: object) -> None:
        """Runs on collector threads: keep only what a widget reads (bounded), and post one
        wake-up per batch."""
        if self.inbox.offer(event):
            self.post_message(EventsPending())

    def on_events_pending(self, _: EventsPending) -> None:
        events, dropped = self.inbox.drain()
        if dropped:
            self.prompt.events_lost()
        for event in events:
            if isinstance(event, PromptsChanged):
                self.prompt.take_event(event)
        dispatch(events, dropped, self._event_widgets)
        if dropped or any(isinstance(e, PROMPT_EVENTS) for e in events):
            self.sync_prompt()

    # --- the credential prompt -----------------------------------------------------------------

    def sync_prompt(self) -> None:
        """Bring the prompt to the front when a request is new, whatever screen is open; close
        it when nothing waits (the screen underneath is shown again)."""
        if not self.screen_stack:  # shutting down
            return
        new = self.prompt.update()
        top = self.screen
        if self.prompt.showing:
            if not isinstance(top, PromptScreen) and (new or not self._prompt_in_stack()):
                self.push_screen(PromptScreen(self.prompt))
            elif isinstance(top, PromptScreen):
                if new:
                    self.prompt.restart_grace()
                top.show()
        elif isinstance(top, PromptScreen):
            top.dismiss(None)

    def _prompt_in_stack(self) -> bool:
        return any(isinstance(s, PromptScreen) for s in self.screen_stack)

    # --- actions -----------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        tabs = self.screen_stack[0].query_one(TabbedContent)
        tabs.active = tab
        self.focus_tab(tab)

    def run_on_processes(self, action: object) -> None:
        self.action_show_tab("processes")
        self.call_after_refresh(action)  # type: ignore[arg-type]

    def sort_processes(self, column: str) -> None:
        self.action_show_tab("processes")
        self.process_table.sort_by(column)

    def action_guard_mode(self) -> None:
        switch_mode(self, self.source)

    def action_guard_rules(self) -> None:
        snapshot = self.source.latest_snapshot()
        if view_of(snapshot, GUARD, GuardView) is None:
            self.notify(f"the credential guard is not running: "
                        f"{visible(guard_status(snapshot))}", severity="warning", markup=False)
        else:
            self.push_screen(RulesScreen(self.source))

    async def action_quit(self) -> None:
        waiting = self.prompt.prompts
        if not waiting:
            self.exit(0)
            return
        outcomes: dict[str, int] = {}
        for prompt in waiting:
            action = prompt.default_action
            outcomes[action] = outcomes.get(action, 0) + prompt.requests
        detail = ", ".join(f"{n} will be {'allowed' if action == 'allow' else 'denied'}"
                           for action, n in outcomes.items())

        def done(yes: bool | None) -> None:
            if yes:
                self.exit(0)

        self.push_screen(ConfirmScreen(
            f"Quit with {sum(outcomes.values())} credential request(s) waiting?",
            f"They get the default action: {detail}.", "quit"), done)

    @on(ProcessTable.Selected)
    def _show_process(self, event: ProcessTable.Selected) -> None:
        self.push_screen(ProcessDetailScreen(self.source, event.key))

    @on(ProcessTable.KillRequested)
    def _confirm_kill(self, event: ProcessTable.KillRequested) -> None:
        row = event.row

        def done(choice: signal.Signals | None) -> None:
            if choice is None:
                return
            result = self.source.commands.kill_process(row.key, int(choice))
            self.notify(visible(result.message), markup=False,
                        severity="information" if result.ok else "warning")

        self.push_screen(KillDialog(row), done)
