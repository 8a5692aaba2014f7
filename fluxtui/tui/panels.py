"""The header and the system metric panels (CPU, memory, disk and network I/O).

Every line is built from parts that are either shown whole or left out: a number is never cut
in the middle to fit a narrow panel (at 80 columns the less important parts go first). Below
COMPACT_HEIGHT rows the panels show three lines each, so that the tables keep the screen.
"""

from __future__ import annotations

import os
import socket
from collections import deque
from collections.abc import Mapping

from rich.cells import cell_len
from rich.text import Text

from fluxtui.events import ComponentState, IoRate, Snapshot
from fluxtui.tui.format import bar, duration, human_bytes, level_style, sparkline
from fluxtui.tui.line_panel import LinePanel
from fluxtui.tui.themes import level_colors
from fluxtui.untrusted_text import visible
from fluxtui.views import GUARD, GuardView, view_of

COMPACT_HEIGHT = 32  # terminal rows below which the panels are compact

SHORT_NAMES = {"processes": "procs", "syscalls": "sysc", "connections": "conn",
               "metrics": "metr"}



def show(panel: LinePanel, text: Text) -> None:
    """The panel's new text, only its changed lines repainted, with a layout of the screen only
    when the panel's size may change: the panels are `height: auto`, and at 1 Hz a layout
    redraws the whole screen, the process table included (issue 13). A layout is asked for when
    the number of lines changes, when a line is wider than the panel, and whenever the panel's
    laid out height is not its number of lines (not laid out yet, or laid out from other content:
    a header laid out at zero height shows again at the next tick, whatever hid it)."""
    lines = text.plain.count("\n") + 1
    size = panel.size
    settled = (size.width > 0 and size.height == lines
               and all(cell_len(line) <= size.width for line in text.plain.split("\n")))
    panel.show_text(text, layout=not settled)


class History:
    """A bounded series per name, for sparklines."""

    def __init__(self, length: int) -> None:
        self.length = max(2, length)
        self.series: dict[str, deque[float]] = {}

    def add(self, name: str, value: float) -> None:
        self.series.setdefault(name, deque(maxlen=self.length)).append(value)

    def get(self, name: str) -> list[float]:
        return list(self.series.get(name, ()))

    def retain(self, prefix: str, names: set[str]) -> None:
        """Forget series of `prefix` whose name is gone (an interface or disk removed)."""
        gone = [k for k in self.series if k.startswith(prefix) and k[len(prefix):] not in names]
        for key in gone:
            del self.series[key]


def host_identity() -> tuple[str, str]:
    """Host name and kernel release."""
    return socket.gethostname(), os.uname().release


class Line:
    """One line of at most `width` cells, built from parts that are shown whole or not at all."""

    def __init__(self, text: Text, width: int) -> None:
        self.text = text
        self.width = width
        self.left = width
        self.full = False

    def add(self, *choices: str, style: str = "", gap: str = " ", keep_going: bool = False
            ) -> bool:
        """Append the first of `choices` that fits (after `gap` unless the line is empty).
        Once nothing fits, later parts are left out too so that the order keeps its meaning,
        unless `keep_going` (independent items, such as one per collector)."""
        if self.full and not keep_going:
            return False
        sep = gap if self.left != self.width else ""
        for part in choices:
            need = cell_len(sep + part)
            if need <= self.left:
                self.text.append(sep)
                self.text.append(part, style=style)
                self.left -= need
                return True
        self.full = True
        return False


def _width_of(widget: LinePanel, fallback: int) -> int:
    width = widget.content_region.width or widget.size.width
    return width if width > 0 else fallback


def compact(widget: LinePanel) -> bool:
    return widget.app.size.height < COMPACT_HEIGHT


def colors(widget: LinePanel) -> Mapping[str, str]:
    return level_colors(widget.app.current_theme)


class StatusHeader(LinePanel):
    """Host, kernel, privilege mode and every collector's status (names abbreviated and details
    left out when narrow; a collector that is not running always shows with its ✗)."""

    def __init__(self, privileged: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.privileged = privileged
        self.host, self.kernel = host_identity()

    def refresh_from(self, snapshot: Snapshot) -> None:
        m = snapshot.metrics
        width = _width_of(self, 80)
        level = colors(self)
        text = Text(no_wrap=True, overflow="crop")
        first = Line(text, width)
        first.add(" fluxtui ", style="bold reverse")
        first.add(visible(self.host)[:24])
        if self.privileged:
            first.add(" ROOT ", style=f"bold black on {level['success']}")
        else:
            first.add(" PASSIVE: not root ", style=f"bold black on {level['warning']}")
        guard = view_of(snapshot, GUARD, GuardView)
        mode = guard.mode if guard is not None else None
        if mode == "monitor":
            first.add(" GUARD: MONITOR ", style=f"bold black on {level['warning']}")
        first.add(f"up {duration(m.uptime_s)}")
        first.add("load " + " ".join(f"{v:.2f}" for v in m.load_average))
        first.add(f"{m.process_count} procs")
        first.add(f"kernel {self.kernel}")
        text.append("\n")
        text.append_text(self._statuses(snapshot, width, mode, level))
        show(self, text)


    @staticmethod
    def _statuses(snapshot: Snapshot, width: int, mode: str | None,
                  level: Mapping[str, str]) -> Text:
        """Every component on one line, as much said as fits: details and reasons; else why
        the stopped ones stopped (in full, then its first clause) with names only, then with
        abbreviated names; else names alone. Why something is off matters more than a name
        in full or a running component's details."""
        text = Text()
        for detailed, short, reasons in STATUS_TIERS:
            text = Text(no_wrap=True, overflow="crop")
            line = Line(text, width)
            fits = True
            for status in snapshot.statuses:
                name = SHORT_NAMES.get(status.name, status.name) if short else status.name
                if status.state is ComponentState.RUNNING:
                    detail = f" ({visible(status.detail)})" if detailed and status.detail \
                        else ""
                    # Monitor mode lets every read through: a warning, not a green light.
                    style = level["warning"] if status.name == "guard" and mode == "monitor" \
                        else level["success"]
                    fits = line.add(f"● {name}{detail}", style=style) and fits
                else:
                    why = visible(status.reason or status.state.value)
                    reason = {"full": f": {why}", "short": f": {first_clause(why)}"}.get(
                        reasons, "")
                    fits = line.add(f"✗ {name}{reason}", style=level["error"]) and fits
            if fits:
                return text
        return text


# (running components' details, abbreviated names, reasons of the others), most said first
STATUS_TIERS = ((True, False, "full"), (False, False, "full"), (False, False, "short"),
                (False, True, "full"), (False, True, "short"), (False, False, "none"),
                (False, True, "none"))


def first_clause(reason: str) -> str:
    """A reason's first clause: "no model trained (/var/... does not exist)" -> "no model
    trained"."""
    for mark in (" (", "; ", ": "):
        reason = reason.split(mark, 1)[0]
    return reason


class CpuPanel(LinePanel):
    def __init__(self, history: History, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.history = history

    def refresh_from(self, snapshot: Snapshot) -> None:
        m = snapshot.metrics
        width = _width_of(self, 28)
        level = colors(self)
        small = compact(self)
        text = Text(no_wrap=True, overflow="crop")
        if m.cpu is None:
            Line(text, width).add("CPU measuring…", style="dim")
            text.append("\n")
        else:
            self.history.add("cpu", m.cpu.total)
            line = Line(text, width)
            line.add("CPU", style="bold")
            line.add(f"{m.cpu.total:.1f}%", style=level_style(m.cpu.total, level))
            line.add(f"usr {m.cpu.user:.1f}")
            line.add(f"sys {m.cpu.system:.1f}")
            line.add(f"iow {m.cpu.iowait:.1f}")
            text.append("\n")
            text.append(sparkline(self.history.get("cpu"), width, 100.0) + "\n",
                        style=level_style(m.cpu.total, level))
        if small:  # one line for every core, as many as fit
            line = Line(text, width)
            for index, value in enumerate(m.cpu_per_core):
                line.add(f"{index}:{value:.0f}%", style=level_style(value, level), gap="  ")
            text.append("\n")
        else:
            bar_width = max(4, width - 12)
            for index, value in enumerate(m.cpu_per_core[:8]):
                text.append(f"{index:>3} ")
                text.append(bar(value, bar_width), style=level_style(value, level))
                text.append(f" {value:5.1f}%\n")
        text.rstrip()
        show(self, text)


class MemoryPanel(LinePanel):
    def refresh_from(self, snapshot: Snapshot) -> None:
        mem = snapshot.metrics.memory
        width = _width_of(self, 12)
        level = colors(self)
        text = Text(no_wrap=True, overflow="crop")
        line = Line(text, width)
        line.add("Mem", style="bold")
        line.add(f"{mem.percent:.1f}%", style=level_style(mem.percent, level))
        text.append("\n")
        Line(text, width).add(f"{human_bytes(mem.used)} / {human_bytes(mem.total)}",
                              f"{human_bytes(mem.used)}/{human_bytes(mem.total)}")
        text.append("\n")
        if not compact(self):
            text.append(bar(mem.percent, width) + "\n", style=level_style(mem.percent, level))
            Line(text, width).add(f"avail {human_bytes(mem.available)}", style="dim")
            text.append("\n")
        line = Line(text, width)
        line.add("Swap", style="bold")
        if mem.swap_total:
            line.add(f"{mem.swap_percent:.1f}%", style=level_style(mem.swap_percent, level))
            line.add(f"{human_bytes(mem.swap_used)}/{human_bytes(mem.swap_total)}")
        else:
            line.add("none", style="dim")
        show(self, text)


def _rate(value: float) -> str:
    return human_bytes(value)  # the panel's title says "per second"


def _io_lines(text: Text, rates: tuple[IoRate, ...], history: History, prefix: str,
              arrows: tuple[str, str], width: int, limit: int, spark_style: str) -> None:
    history.retain(prefix, {rate.name for rate in rates})
    for rate in rates:
        history.add(prefix + rate.name, rate.read_per_s + rate.write_per_s)
    busiest = sorted(rates, key=lambda r: r.read_per_s + r.write_per_s, reverse=True)
    for rate in busiest[:limit]:
        line = Line(text, width)
        line.add(f"{visible(rate.name)[:8]:<8}", style="bold")
        line.add(f"{arrows[0]}{_rate(rate.read_per_s):>7}")
        line.add(f"{arrows[1]}{_rate(rate.write_per_s):>7}")
        spark = width - 27
        if spark > 3:
            line.add(sparkline(history.get(prefix + rate.name), spark), style=spark_style)
        text.append("\n")


class IoPanel(LinePanel):
    def __init__(self, history: History, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.history = history

    def on_mount(self) -> None:
        self.border_title = "I/O per second"

    def refresh_from(self, snapshot: Snapshot) -> None:
        m = snapshot.metrics
        width = _width_of(self, 28)
        small = compact(self)
        spark_style = self.app.current_theme.accent or "cyan"
        text = Text(no_wrap=True, overflow="crop")
        if m.interval is None:
            Line(text, width).add("measuring…", style="dim")
            show(self, text)
            return
        if small:  # the busiest three of disks and interfaces
            _io_lines(text, m.disks, self.history, "disk:", ("R", "W"), width, 1, spark_style)
            _io_lines(text, m.networks, self.history, "net:", ("↓", "↑"), width, 2, spark_style)
        else:
            text.append("Disk\n", style="bold underline")
            if not m.disks:
                text.append("no physical disk in /sys/block\n", style="dim")
            _io_lines(text, m.disks, self.history, "disk:", ("R", "W"), width, 4, spark_style)
            text.append("Network\n", style="bold underline")
            if not m.networks:
                text.append("no interface but loopback\n", style="dim")
            _io_lines(text, m.networks, self.history, "net:", ("↓", "↑"), width, 4,
                      spark_style)
        text.rstrip()  # in place
        show(self, text)
