"""The header and the system metric panels (CPU, memory, disk and network I/O)."""

from __future__ import annotations

import os
import socket
from collections import deque

from rich.text import Text
from textual.widgets import Static

from fluxtui.events import CollectorState, IoRate, Snapshot
from fluxtui.text import visible
from fluxtui.tui.format import bar, duration, human_bytes, human_rate, level_style, sparkline


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


class StatusHeader(Static):
    """Host, kernel, privilege mode and every collector's status."""

    def __init__(self, privileged: bool, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.privileged = privileged
        self.host, self.kernel = host_identity()

    def refresh_from(self, snapshot: Snapshot) -> None:
        m = snapshot.metrics
        line = Text()
        line.append(" fluxtui ", style="bold reverse")
        line.append(f"  {visible(self.host)}  kernel {self.kernel}  ")
        if self.privileged:
            line.append(" ROOT ", style="bold black on green")
        else:
            line.append(" PASSIVE: not root, kernel collectors off ", style="bold black on yellow")
        load = " ".join(f"{v:.2f}" for v in m.load_average)
        line.append(f"  up {duration(m.uptime_s)}  load {load}  {m.process_count} procs\n")
        for status in snapshot.statuses:
            if status.state is CollectorState.RUNNING:
                line.append(" ● ", style="green")
                line.append(status.name)
                if status.detail:
                    line.append(f" ({visible(status.detail)})", style="dim")
            else:
                line.append(" ✗ ", style="red")
                line.append(f"{status.name}: {visible(status.reason or status.state.value)}",
                            style="dim")
        self.update(line)


class CpuPanel(Static):
    def __init__(self, history: History, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = history

    def refresh_from(self, snapshot: Snapshot) -> None:
        m = snapshot.metrics
        width = max(10, self.size.width - 2)
        text = Text()
        if m.cpu is None:
            text.append("CPU  measuring (rates need two samples)…\n", style="dim")
        else:
            self.history.add("cpu", m.cpu.total)
            text.append("CPU ", style="bold")
            text.append(f"{m.cpu.total:5.1f}%", style=level_style(m.cpu.total))
            text.append(f"  usr {m.cpu.user:4.1f}  sys {m.cpu.system:4.1f}  "
                        f"iow {m.cpu.iowait:4.1f}\n")
            text.append(sparkline(self.history.get("cpu"), width, 100.0) + "\n",
                        style=level_style(m.cpu.total))
        bar_width = max(4, width - 12)
        for index, value in enumerate(m.cpu_per_core):
            text.append(f"{index:>3} ")
            text.append(bar(value, bar_width), style=level_style(value))
            text.append(f" {value:5.1f}%\n")
        self.update(text)


class MemoryPanel(Static):
    def refresh_from(self, snapshot: Snapshot) -> None:
        mem = snapshot.metrics.memory
        width = max(4, self.size.width - 2)
        text = Text()
        text.append("Mem  ", style="bold")
        text.append(f"{human_bytes(mem.used)} / {human_bytes(mem.total)}  ")
        text.append(f"{mem.percent:.1f}%\n", style=level_style(mem.percent))
        text.append(bar(mem.percent, width) + "\n", style=level_style(mem.percent))
        text.append(f"avail {human_bytes(mem.available)}\n", style="dim")
        text.append("Swap ", style="bold")
        if mem.swap_total:
            text.append(f"{human_bytes(mem.swap_used)} / {human_bytes(mem.swap_total)}  ")
            text.append(f"{mem.swap_percent:.1f}%\n", style=level_style(mem.swap_percent))
        else:
            text.append("none configured\n", style="dim")
        self.update(text)


def _io_lines(text: Text, rates: tuple[IoRate, ...], history: History, prefix: str,
              labels: tuple[str, str], width: int) -> None:
    history.retain(prefix, {rate.name for rate in rates})
    for rate in rates:
        total = rate.read_per_s + rate.write_per_s
        history.add(prefix + rate.name, total)
        text.append(f"{visible(rate.name)[:10]:<10} ", style="bold")
        text.append(f"{labels[0]} {human_rate(rate.read_per_s):>9} "
                    f"{labels[1]} {human_rate(rate.write_per_s):>9} ")
        spark_width = max(0, width - 36)
        if spark_width:
            text.append(sparkline(history.get(prefix + rate.name), spark_width), style="cyan")
        text.append("\n")


class IoPanel(Static):
    def __init__(self, history: History, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.history = history

    def refresh_from(self, snapshot: Snapshot) -> None:
        m = snapshot.metrics
        width = max(20, self.size.width - 2)
        text = Text()
        text.append("Disk I/O\n", style="bold underline")
        if m.interval is None:
            text.append("measuring…\n", style="dim")
        elif not m.disks:
            text.append("no physical disk found in /sys/block\n", style="dim")
        _io_lines(text, m.disks, self.history, "disk:", ("R", "W"), width)
        text.append("Network\n", style="bold underline")
        if m.interval is None:
            text.append("measuring…\n", style="dim")
        elif not m.networks:
            text.append("no interface other than loopback\n", style="dim")
        _io_lines(text, m.networks, self.history, "net:", ("↓", "↑"), width)
        self.update(text)
