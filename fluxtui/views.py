"""What the dashboard reads: typed, immutable views in the snapshot, and the source that serves
them (`DashboardSource`: the live engine, or a replay of a recording).

Each view is put in `Snapshot.views[<name>]` by the component named in its docstring; the UI
gets it with `view_of(snapshot, NAME, Type)` and never calls into a component. Everything here
is frozen: a snapshot handed to the UI thread is never changed by the engine's threads.
Nothing here imports textual.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fluxtui.commands import Commands
from fluxtui.config import Config
from fluxtui.detection.risk import RiskScore
from fluxtui.events import ContainerIdentity, ProcessExit, ProcessKey, Snapshot
from fluxtui.guard.access_rules import SavedRule
from fluxtui.guard.events import PromptView

# Keys of Snapshot.views (the names of the components that put them there).
GUARD = "guard"
RISK = "risk"
DETAILS = "details"

V = TypeVar("V")


def view_of(snapshot: Snapshot | None, name: str, kind: type[V]) -> V | None:
    """The view `name` of the snapshot when it is a `kind` (None: absent, or not running)."""
    if snapshot is None:
        return None
    view = snapshot.views.get(name)
    return view if isinstance(view, kind) else None


@dataclass(frozen=True)
class GuardHistoryItem:
    """One decision of the guard (or `count` identical ones folded), newest first in
    `GuardView.history`; from the audit database, or from memory when it is unavailable."""

    id: str  # stable across reloads: the table's row key
    timestamp: float
    last_timestamp: float
    count: int
    outcome: str  # allowed, denied, released, ...
    pid: int | None
    user: str
    executable: str
    file: str
    group: str
    decided_by: str
    reason: str
    latency_us: float | None

    @staticmethod
    def from_record(item: Mapping[str, Any], index: int) -> GuardHistoryItem:
        """From an audit record (`AuditStore.recent`) or the recorder's in-memory form."""
        ts = float(item["ts"])
        latency = item.get("latency_us")
        return GuardHistoryItem(
            id=str(item.get("id") or f"mem-{index}-{ts}"), timestamp=ts,
            last_timestamp=float(item.get("last_ts") or ts), count=int(item.get("count") or 1),
            outcome=str(item.get("outcome") or ""), pid=item.get("pid"),
            user=str(item.get("user") or ""), executable=str(item.get("executable") or ""),
            file=str(item.get("target") or ""), group=str(item.get("category") or ""),
            decided_by=str(item.get("decided_by") or ""), reason=str(item.get("reason") or ""),
            latency_us=None if latency is None else float(latency))


@dataclass(frozen=True)
class GuardView:
    """Snapshot.views["guard"] (the guard component, while it runs): its figures for the header
    and the Guard tab (measured, never estimated), the prompts waiting, its rules and the latest
    decisions. When the guard does not run there is no view: its status says why."""

    mode: str
    pending: int  # prompts waiting for an answer
    waiting_opens: int  # opens blocked in those prompts
    allowed: int  # opens of protected files allowed since start
    denied: int
    errors: int
    late: int  # answers written more than 10 ms after their deadline
    protected_files: int
    marked_dirs: int
    problems: tuple[str, ...]
    rules: int
    rules_error: str | None
    audit: str
    journal: str
    process_events: str
    decisions_recorded: int  # changes whenever the history has something new
    prompts: tuple[PromptView, ...] = ()  # oldest first: the one in front is [0]
    rule_list: tuple[SavedRule, ...] = ()
    rules_path: str = ""
    history: tuple[GuardHistoryItem, ...] = ()  # newest first, bounded
    history_error: str = ""  # why the history could not be read ("" when it could)


@dataclass(frozen=True)
class RiskView:
    """Snapshot.views["risk"] (the risk scorer): the score and container of every process in
    the table (the table's container column holds the short label; this has the full id and
    runtime), and the final records of processes that exited, kept for their retention."""

    threshold: float
    scores: Mapping[ProcessKey, RiskScore] = field(default_factory=dict)
    containers: Mapping[ProcessKey, ContainerIdentity] = field(default_factory=dict)
    exits: Mapping[ProcessKey, ProcessExit] = field(default_factory=dict)


@dataclass(frozen=True)
class KernelEventLine:
    """A high-signal kernel event of a process, as the detail view lists it."""

    timestamp: float
    text: str  # untrusted (paths, arguments): display with safe_text


@dataclass(frozen=True)
class ProcessActivity:
    """What the syscall capture knows of one watched process."""

    key: ProcessKey
    top_syscalls: tuple[tuple[str, int], ...]  # since fluxtui first saw it, most first
    last_tick: tuple[tuple[str, int], ...]  # in the last tick
    recent_events: tuple[KernelEventLine, ...]  # oldest first
    note: str = ""  # why the counts are empty when they must be (e.g. fluxtui's own process)


@dataclass(frozen=True)
class DetailsView:
    """Snapshot.views["details"] (the process details component): the activity of the
    processes the UI watches (`Commands.watch_process`), or why there is none."""

    activity: Mapping[ProcessKey, ProcessActivity] = field(default_factory=dict)
    unavailable: str = ""  # "" while the syscall capture runs


class DashboardSource(Protocol):
    """What the dashboard reads from and acts through: the live engine (`fluxtui.engine.Engine`)
    or a replay. A replay returns `ReadOnlyCommands` from `commands` and does nothing in
    `start`/`stop` beyond its own reader."""

    config: Config

    def latest_snapshot(self) -> Snapshot | None:
        """The newest snapshot (None before the first); cheap, called on the UI's timer."""
        ...

    def subscribe(self, subscriber: Callable[[object], None]) -> Callable[[], None]:
        """Deliver every bus event (alerts, prompts, decisions, ...) to `subscriber`, on the
        producing thread: it must only enqueue. Returns the unsubscribe function."""
        ...

    @property
    def commands(self) -> Commands: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...
