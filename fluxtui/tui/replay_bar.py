"""The banner of a replay: whose recording it is, where the replay is, its speed and keys."""

from __future__ import annotations

from datetime import UTC, datetime

from rich.text import Text
from textual.widgets import Static

from fluxtui.replay import ReplaySource
from fluxtui.untrusted_text import visible


def _stamp(epoch: float | None, fmt: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return "?" if epoch is None else datetime.fromtimestamp(epoch, UTC).strftime(fmt)


def banner(source: ReplaySource) -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    out.append(" REPLAY ", style="bold black on yellow")
    out.append(f" of a recording made on {visible(source.host)} at "
               f"{_stamp(source.recorded_at)}  ")
    if source.position is not None:
        offset = "" if source.recorded_at is None else \
            f" (+{max(0.0, source.position - source.recorded_at):.0f} s)"
        out.append(f"at {_stamp(source.position, '%H:%M:%S')}{offset}  ", style="bold")
    out.append(f"speed {source.speed:g}x  ")
    if source.paused:
        out.append("PAUSED  ", style="bold reverse")
    if source.finished:
        style = "bold red" if source.damage is not None else "bold"
        out.append(visible(source.summary()), style=style)
    out.append("   space pause · + faster · - slower", style="dim")
    return out


class ReplayBar(Static):
    DEFAULT_CSS = """
    ReplayBar {
        height: 1;
    }
    """

    def __init__(self, source: ReplaySource, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.source = source

    def on_mount(self) -> None:
        self.show()
        self.set_interval(0.5, self.show)

    def show(self) -> None:
        self.update(banner(self.source))
