"""The demo's narration line and keys: `DemoApp` is the dashboard with a `Narration` line above
the footer and three keys (n next step, space pause, b restart). The line follows the player's
`DemoNarration` events and brings the tab that shows the step to the front."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Static

from fluxtui.demo_mode.narration import FINISHED, PAUSED, PLAYING, DemoNarration
from fluxtui.demo_mode.player import DemoPlayer
from fluxtui.tui.app import FluxApp
from fluxtui.views import DashboardSource


class Narration(Static):
    """What happens now and what to look at or press (plain text: never markup)."""

    DEFAULT_CSS = """
    Narration {
        height: auto;
        max-height: 3;
        padding: 0 1;
        background: $accent;
        color: $text;
        text-style: bold;
    }
    Narration.-paused {
        background: $warning;
    }
    """
    EVENT_TYPES: ClassVar[tuple[type, ...]] = (DemoNarration,)

    def __init__(self, player: DemoPlayer, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.player = player
        self._shown_step = -1

    def on_mount(self) -> None:
        self.show(self.player.narration)

    def handle_event(self, event: object) -> None:
        if isinstance(event, DemoNarration):
            self.show(event)

    def show(self, narration: DemoNarration) -> None:
        self.update(Text(narration.line()))
        self.set_class(narration.state == PAUSED, "-paused")
        app = self.app
        if narration.state == PLAYING and narration.number != self._shown_step \
                and isinstance(app, FluxApp):
            self._shown_step = narration.number
            app.action_show_tab(narration.view)
        if narration.state == FINISHED and self.player.loops is not None \
                and self.player.played_stories >= self.player.loops:
            app.exit(0)


class DemoApp(FluxApp):
    BINDINGS: ClassVar[list[Binding]] = [  # type: ignore[assignment]
        Binding("n", "demo_next", "Next step", id="demo-next"),
        Binding("space", "demo_pause", "Pause", id="demo-pause"),
        Binding("b", "demo_restart", "Restart", id="demo-restart"),
    ]

    def __init__(self, engine: DashboardSource, player: DemoPlayer, theme_name: str | None = None
                 ) -> None:
        super().__init__(engine, privileged=True, theme_name=theme_name)
        self.player = player
        self.sub_title = "demo"

    def compose(self) -> ComposeResult:
        for widget in super().compose():
            if isinstance(widget, Footer):
                yield Narration(self.player, id="demo-narration")
            yield widget

    def action_demo_next(self) -> None:
        self.player.next()

    def action_demo_pause(self) -> None:
        self.player.toggle_pause()

    def action_demo_restart(self) -> None:
        self.player.restart()
