"""The process detail view (Enter on a process or an alert): the process's risk score and its
reasons, its top syscalls, its recent high-signal events and alerts, its container. Escape
closes it. It reads the engine's snapshot and the syscall/risk components once a second; when
a component is unavailable, the section says why instead of showing nothing.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture
from fluxtui.engine import Engine
from fluxtui.events import CollectorStatus, ProcessKey, Snapshot
from fluxtui.text import safe_text
from fluxtui.tui.format import DASH

TOP_SYSCALLS = 12


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold")


def _status(snapshot: Snapshot | None, name: str) -> CollectorStatus | None:
    if snapshot is None:
        return None
    return next((s for s in snapshot.statuses if s.name == name), None)


class ProcessDetailScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    ProcessDetailScreen { align: center middle; }
    ProcessDetailScreen > VerticalScroll {
        width: 90%; height: 90%; border: thick $primary; background: $surface; padding: 0 1;
    }
    """
    BINDINGS = [Binding("escape", "close", "Close", id="process_detail.close")]
    # Rows are cut at the window's edge, never wrapped past it: untrusted text is one line.

    def __init__(self, engine: Engine, key: ProcessKey) -> None:
        super().__init__()
        self.engine = engine
        self.key = key

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail-body")

    def on_mount(self) -> None:
        box = self.query_one(VerticalScroll)
        box.border_title = f"Process {self.key.pid}"
        box.border_subtitle = "Esc closes  ↑↓ scroll"
        self.update_view()
        self.set_interval(1.0, self.update_view)

    def action_close(self) -> None:
        self.dismiss(None)

    def update_view(self) -> None:
        self.query_one("#detail-body", Static).update(self.render_detail())

    def render_detail(self) -> Group:
        snapshot = self.engine.snapshot
        row = snapshot.processes.get(self.key) if snapshot else None
        capture = self.engine.component(SyscallCapture.name)
        scorer = self.engine.component(RiskScorer.name)
        parts: list[Text | Table] = []

        head = Text()
        if row is not None:
            head.append_text(safe_text(row.name, style="bold"))
            head.append(f"  pid {row.pid}  ppid {row.ppid}  user ")
            head.append_text(safe_text(row.user))
            parts.append(head)
            parts.append(safe_text(" ".join(row.cmdline) or row.exe or DASH, style="dim"))
        else:
            head.append(f"pid {self.key.pid}: no longer in the process table (exited)",
                        style="bold")
            parts.append(head)

        parts.append(_section("Risk"))
        score = scorer.explain(self.key) if isinstance(scorer, RiskScorer) else None
        if score is None:
            parts.append(Text(self._why_missing(snapshot, RiskScorer.name, "no score")))
        else:
            parts.append(Text(
                f"{score.score:.0f}/100  (syscalls {score.syscall_points:.1f}, "
                f"events {score.event_points:.1f}, anomaly {score.anomaly:.0f}: "
                f"{score.anomaly_reason})"))
            parts.extend(safe_text(f"  {reason}") for reason in score.reasons)
            if not score.reasons:
                parts.append(Text("  nothing risky seen", style="dim"))
        container = scorer.container(self.key) if isinstance(scorer, RiskScorer) else None
        where = (safe_text(f"{container.runtime} {container.container_id}"
                           + (f" (pod {container.pod_uid})" if container.pod_uid else ""))
                 if container else Text("none (host)"))
        parts.append(Text.assemble(("Container: ", "bold"), where))

        parts.append(_section("Top syscalls"))
        if isinstance(capture, SyscallCapture) and capture.status().running:
            parts.append(self._syscall_table(capture))
            parts.append(_section("Recent events"))
            events = capture.recent_events(self.key)
            if not events:
                parts.append(Text("none", style="dim"))
            for event in reversed(events):
                line = Text(time.strftime("%H:%M:%S ", time.localtime(event.timestamp)))
                line.append_text(safe_text(event.describe()))
                parts.append(line)
        else:
            parts.append(Text(self._why_missing(snapshot, SyscallCapture.name,
                                                "syscall capture not running")))

        parts.append(_section("Alerts"))
        alerts = [a for a in (snapshot.alerts if snapshot else ()) if a.key == self.key]
        if not alerts:
            parts.append(Text("none", style="dim"))
        for alert in reversed(alerts):
            line = Text(time.strftime("%H:%M:%S ", time.localtime(alert.timestamp)))
            line.append(f"{alert.severity.value:<8} {alert.technique_id or DASH:<10} ")
            line.append_text(safe_text(f"{alert.title}: {'; '.join(alert.reasons)}"))
            parts.append(line)
        return Group(*parts)

    def _syscall_table(self, capture: SyscallCapture) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("syscall")
        table.add_column("calls since seen", justify="right")
        table.add_column("last tick", justify="right")
        last = dict(capture.last_tick_syscalls(self.key))
        top = capture.top_syscalls(self.key)[:TOP_SYSCALLS]
        for name, count in top:
            table.add_row(name, f"{count:,}", f"{last.get(name, 0):,}")
        if not top:
            table.add_row(Text("no syscalls counted yet", style="dim"), "", "")
        return table

    @staticmethod
    def _why_missing(snapshot: Snapshot | None, name: str, fallback: str) -> str:
        status = _status(snapshot, name)
        if status is not None and status.reason:
            return f"{name}: {status.state.value}: {status.reason}"
        return fallback
