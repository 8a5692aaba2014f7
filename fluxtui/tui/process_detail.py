"""The process detail view (Enter on a process or an alert): the process's risk score and its
reasons, its top syscalls, its recent high-signal events and alerts, its container. Escape
closes it. It reads the snapshot only, once a second: the risk scorer's `RiskView` and the
`DetailsView` that carries this process's activity while the screen watches it
(`Commands.watch_process` on open, `unwatch_process` on close). When a part is unavailable,
the section says why instead of showing nothing.
"""

from __future__ import annotations

import time

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.screen import ModalScreen
from textual.widgets import Static

from fluxtui.detection.risk import NO_MODEL, NO_VERDICT
from fluxtui.events import ComponentStatus, ProcessExit, ProcessKey, ProcessRow, Snapshot
from fluxtui.tui.format import DASH
from fluxtui.tui.process_order import name_label, user_label
from fluxtui.tui.process_table import final_identity
from fluxtui.untrusted_text import safe_text
from fluxtui.views import DETAILS, RISK, DashboardSource, DetailsView, RiskView, view_of

TOP_SYSCALLS = 12
SYSCALLS = "syscalls"  # the capture's status: why there are no syscalls


def _section(title: str) -> Text:
    return Text(f"\n{title}", style="bold")


def _status(snapshot: Snapshot | None, name: str) -> ComponentStatus | None:
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

    def __init__(self, source: DashboardSource, key: ProcessKey) -> None:
        super().__init__()
        self.source = source
        self.key = key
        self._watch_refused = ""
        # Its final record, once seen: shown on after the table's retention has dropped it.
        self._final: ProcessExit | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(id="detail-body")

    def on_mount(self) -> None:
        box = self.query_one(VerticalScroll)
        box.border_title = f"Process {self.key.pid}"
        box.border_subtitle = "Esc closes  ↑↓ scroll"
        result = self.source.commands.watch_process(self.key)
        self._watch_refused = "" if result.ok else result.message
        self.update_view()
        self.set_interval(1.0, self.update_view)

    def on_unmount(self) -> None:
        self.source.commands.unwatch_process(self.key)

    def action_close(self) -> None:
        self.dismiss(None)

    def update_view(self) -> None:
        try:
            body = self.query_one("#detail-body", Static)
        except NoMatches:  # closing: its children are gone before its timer
            return
        body.update(self.render_detail())
        if self._final is not None:
            self.query_one(VerticalScroll).border_title = f"Process {self.key.pid} (exited)"

    def render_detail(self) -> Group:
        snapshot = self.source.latest_snapshot()
        row = snapshot.processes.get(self.key) if snapshot else None
        risk_view = view_of(snapshot, RISK, RiskView)
        final = risk_view.exits.get(self.key) if risk_view is not None else None
        final = self._final = final or self._final
        if final is not None or (row is not None and row.exited_at is not None):
            parts = self._exited_parts(row, final)
        else:
            parts = self._live_parts(snapshot, row)
        parts += self._alert_parts(snapshot, final)
        return Group(*parts)

    def _head(self, row: ProcessRow) -> Text:
        head = Text()
        head.append_text(safe_text(name_label(row), style="bold"))
        head.append(f"  pid {row.pid}  ppid {row.ppid}  user ")
        head.append_text(safe_text(user_label(row.user)))
        return head

    def _exited_parts(self, row: ProcessRow | None, final: ProcessExit | None
                      ) -> list[Text | Table]:
        """A process that has exited: what it did over its whole life, from its final record
        (the live sections, CPU and this tick's syscalls, no longer apply)."""
        parts: list[Text | Table] = []
        life = final.lifetime if final is not None else None
        if row is not None and final is not None:
            row = final_identity(row, final)  # the table's row can predate its exec
        if row is not None:
            parts.append(self._head(row))
        elif life is not None:
            parts.append(safe_text(f"{life.name or life.exe or DASH}  pid {self.key.pid}",
                                   style="bold"))
        command = (" ".join(row.cmdline) or row.exe) if row is not None else ""
        if not command and life is not None:
            command = " ".join((life.exe or life.name, *life.args))
        parts.append(safe_text(command or DASH, style="dim"))
        if life is None or final is None:
            parts.append(Text(f"pid {self.key.pid} has exited; its final record is not "
                              "available (it is scored once, and kept for "
                              "risk.exited_retention_s seconds)", style="bold"))
            return parts
        when = time.strftime("%H:%M:%S", time.localtime(life.exited))
        seen = "exited" if life.exit_seen else "gone from /proc (its exit event was not seen)"
        parts.append(Text(f"{seen} at {when} after {_lifetime(life.lifetime_s)}",
                          style="bold"))

        parts.append(_section("Risk over its whole life"))
        parts.append(Text(f"{final.risk:.0f}/100 at exit  "
                          f"({anomaly_text(final.anomaly, final.anomaly_reason)})"))
        parts.extend(safe_text(f"  {reason}") for reason in final.reasons)
        if not final.reasons:
            parts.append(Text("  nothing risky seen", style="dim"))
        if final.technique_id:
            parts.append(safe_text(f"ATT&CK: {final.technique_id} {final.technique_name}"))

        parts.append(_section("Syscalls over its whole life"))
        parts.append(Text(f"{life.total_syscalls:,} calls, {len(life.syscalls)} distinct; "
                          f"{life.events:,} high-signal events; rules fired: "
                          f"{', '.join(life.rules) or 'none'}"))
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("syscall")
        table.add_column("calls", justify="right")
        for name, count in sorted(life.syscalls.items(), key=lambda i: (-i[1], i[0]))[
                :TOP_SYSCALLS]:
            table.add_row(safe_text(name), f"{count:,}")
        if not life.syscalls:
            table.add_row(Text("no syscalls counted", style="dim"), "")
        parts.append(table)
        return parts

    def _live_parts(self, snapshot: Snapshot | None, row: ProcessRow | None
                    ) -> list[Text | Table]:
        risk_view = view_of(snapshot, RISK, RiskView)
        parts: list[Text | Table] = []
        if row is not None:
            parts.append(self._head(row))
            parts.append(safe_text(" ".join(row.cmdline) or row.exe or DASH, style="dim"))
        else:
            parts.append(Text(f"pid {self.key.pid}: no longer in the process table (exited)",
                              style="bold"))

        parts.append(_section("Risk"))
        score = risk_view.scores.get(self.key) if risk_view is not None else None
        if score is None:
            parts.append(Text(self._why_missing(snapshot, RISK, "no score")))
        else:
            parts.append(Text(
                f"{score.score:.0f}/100  (syscalls {score.syscall_points:.1f}, "
                f"events {score.event_points:.1f}, "
                f"{anomaly_text(score.anomaly, score.anomaly_reason)})"))
            parts.extend(safe_text(f"  {reason}") for reason in score.reasons)
            if not score.reasons:
                parts.append(Text("  nothing risky seen", style="dim"))
        container = risk_view.containers.get(self.key) if risk_view is not None else None
        if container is None and score is not None and row is not None:
            container = row.container_identity  # the view lists those in a container only
        where = safe_text(container.describe() if container is not None
                          else "unknown (no risk scorer, or not seen yet)")
        parts.append(Text.assemble(("Container: ", "bold"), where))

        parts.append(_section("Top syscalls"))
        parts.extend(self._activity_parts(snapshot))
        return parts

    def _activity_parts(self, snapshot: Snapshot | None) -> list[Text | Table]:
        details = view_of(snapshot, DETAILS, DetailsView)
        if self._watch_refused:
            return [Text(f"not available: {self._watch_refused}", style="dim")]
        if details is None:
            return [Text(self._why_missing(snapshot, DETAILS, "process details not collected"),
                         style="dim")]
        if details.unavailable:  # the capture's own status says why, when it has one
            return [Text(self._why_missing(snapshot, SYSCALLS, details.unavailable))]
        activity = details.activity.get(self.key)
        if activity is None:
            return [Text("collecting: shown from the next tick", style="dim")]
        if activity.note:
            return [Text(activity.note, style="dim")]
        parts: list[Text | Table] = [self._syscall_table(activity.top_syscalls,
                                                         activity.last_tick)]
        parts.append(_section("Recent events"))
        if not activity.recent_events:
            parts.append(Text("none", style="dim"))
        for event in reversed(activity.recent_events):
            line = Text(time.strftime("%H:%M:%S ", time.localtime(event.timestamp)))
            line.append_text(safe_text(event.text))
            parts.append(line)
        return parts

    def _alert_parts(self, snapshot: Snapshot | None, final: ProcessExit | None
                     ) -> list[Text | Table]:
        parts: list[Text | Table] = [_section("Alerts")]
        alerts = [a for a in (snapshot.alerts if snapshot else ()) if a.key == self.key]
        if final is not None:
            # The final record names every rule that alerted, even those whose alert rows
            # have left the bounded alert list.
            parts.append(safe_text(f"rules that alerted over its life: "
                                   f"{', '.join(final.alerts) or 'none'}"))
        if not alerts:
            parts.append(Text("none", style="dim"))
        for alert in reversed(alerts):
            line = Text(time.strftime("%H:%M:%S ", time.localtime(alert.timestamp)))
            line.append(f"{alert.severity.value:<8} {alert.technique_id or DASH:<10} ")
            line.append_text(safe_text(f"{alert.title}: {'; '.join(alert.reasons)}"))
            parts.append(line)
        return parts

    @staticmethod
    def _syscall_table(totals: tuple[tuple[str, int], ...],
                       last_tick: tuple[tuple[str, int], ...]) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False)
        table.add_column("syscall")
        table.add_column("calls since seen", justify="right")
        table.add_column("last tick", justify="right")
        last = dict(last_tick)
        top = totals[:TOP_SYSCALLS]
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


def anomaly_text(score: float, reason: str) -> str:
    """The anomaly part of a score. Without a verdict (no model, or none for this process)
    the score carries 0 and the reason why: shown as not scored, never as a measured 0."""
    if score == 0 and (reason == NO_VERDICT or reason.startswith(NO_MODEL)):
        return f"anomaly not scored: {reason}"
    return f"anomaly {score:.0f}/100: {reason or 'no reason given'}"


def _lifetime(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"
