"""Frozen dataclasses that flow between layers.

Collectors produce them, the engine assembles them into a `Snapshot` every tick, and the TUI and
the headless stream consume them. Nothing here imports textual.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple


class ProcessKey(NamedTuple):
    """A process identity that survives PID reuse: pid plus start time in clock ticks since boot
    (field 22 of /proc/PID/stat, the same value BPF derives from task->start_boottime).
    A NamedTuple: hashed and compared in C (tens of thousands of dict lookups a tick at 2,000
    processes; a dataclass's __hash__ runs as Python code)."""

    pid: int
    start_ticks: int


class ComponentState(StrEnum):
    RUNNING = "running"
    UNAVAILABLE = "unavailable"
    STOPPED = "stopped"


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: ComponentState
    reason: str = ""
    detail: str = ""  # short measured figure for the header, e.g. "dropped 0"
    # data this component lost since it started, by kind ("syscall_counts", "kernel_events",
    # "argv", "event_queue", ...): the stream carries these as numbers, a SIEM alerts on them
    drops: Mapping[str, int] = field(default_factory=dict)

    @property
    def running(self) -> bool:
        return self.state is ComponentState.RUNNING


@dataclass(frozen=True)
class CpuTimes:
    """Share of elapsed time, in percent, over the last sampling interval."""

    total: float
    user: float
    system: float
    iowait: float


@dataclass(frozen=True)
class MemoryUsage:
    total: int
    used: int  # total - MemAvailable
    available: int
    percent: float
    swap_total: int
    swap_used: int
    swap_percent: float


@dataclass(frozen=True)
class IoRate:
    """Bytes per second for one device or interface over the last interval."""

    name: str
    read_per_s: float  # disks: read; interfaces: received
    write_per_s: float  # disks: written; interfaces: sent


@dataclass(frozen=True)
class SystemMetrics:
    timestamp: float
    interval: float | None  # seconds since the previous sample; None for the first sample
    cpu: CpuTimes | None  # None on the first sample: rates need two samples
    cpu_per_core: tuple[float, ...]
    memory: MemoryUsage
    disks: tuple[IoRate, ...]
    networks: tuple[IoRate, ...]
    load_average: tuple[float, float, float]
    uptime_s: float
    process_count: int


@dataclass(frozen=True)
class ContainerIdentity:
    """Where a process runs: a container as its runtime names it, or one of the two values
    `HOST` (no container) and `UNKNOWN` (not known yet, or not knowable: the process was gone
    before its cgroup could be read). Full ids, never shortened; `name` from the runtime's
    state on disk ("" when it records none)."""

    runtime: str  # docker, podman, containerd, cri-o, kubernetes; "host"; "unknown"
    id: str = ""  # 64 hex digits, or plain containerd's own id; "" for a pod's own cgroup
    name: str = ""
    pod_uid: str = ""  # Kubernetes pod UID with dashes
    namespace: str = ""  # plain containerd's namespace
    cgroup: str = field(default="", compare=False)  # the cgroup path it was read from

    @property
    def state(self) -> str:
        """host, unknown or container."""
        return self.runtime if self.runtime in ("host", "unknown") else "container"

    @property
    def is_container(self) -> bool:
        return self.state == "container"

    @property
    def label(self) -> str:
        """The table's short form: runtime and name (or the id's first 12 digits)."""
        if not self.is_container:
            return self.runtime
        if self.name:
            return f"{self.runtime}:{self.name}"
        if self.id:
            return f"{self.runtime}:{self.id[:12]}"
        return f"pod:{self.pod_uid}"

    def describe(self) -> str:
        """One line for the details: everything known, the full id included."""
        if self.runtime == "host":
            return "none (host)"
        if self.runtime == "unknown":
            return "unknown (its cgroup could not be read: gone, or not seen yet)"
        parts = [self.runtime]
        if self.name:
            parts.append(self.name)
        if self.id:
            parts.append(f"id {self.id}")
        if self.namespace:
            parts.append(f"namespace {self.namespace}")
        if self.pod_uid:
            parts.append(f"Kubernetes pod {self.pod_uid}")
        return ", ".join(parts)


HOST = ContainerIdentity("host")
UNKNOWN = ContainerIdentity("unknown")


@dataclass(frozen=True, slots=True)
class ProcessRow:
    """One process as shown in the process table. Columns that a capability fills stay None
    (shown as "—") until its collector provides them."""

    key: ProcessKey
    ppid: int
    user: str
    name: str
    exe: str
    cmdline: tuple[str, ...]
    cpu_percent: float | None  # None on the first sample of a process
    memory_rss: int
    threads: int
    state: str
    # Filled by later capabilities through `TickContext.annotate`.
    risk: float | None = None
    risk_reasons: tuple[str, ...] = ()
    syscalls_per_s: float | None = None
    syscall_counts: tuple[tuple[str, int], ...] = ()  # this tick, most frequent first
    connections: int | None = None
    net_rx_per_s: float | None = None
    net_tx_per_s: float | None = None
    container: str | None = None  # the container's label; None for the host or unknown
    exited_at: float | None = None  # wall clock of its exit: an exited process kept for a while
    container_identity: ContainerIdentity = UNKNOWN

    @property
    def pid(self) -> int:
        return self.key.pid


@dataclass(frozen=True)
class RiskInput:
    """Risk points for one process from a source other than its syscalls, with the reason shown."""

    key: ProcessKey
    points: float
    reason: str
    technique: tuple[str, str] = ("", "")  # MITRE ATT&CK (id, name) of the finding
    group: str = ""  # inputs of one group count once, at their largest (default: the reason)


@dataclass(frozen=True, slots=True)
class ProcessLifetime:
    """What the kernel reported about one process from its start (or from when fluxtui started)
    to its exit: syscall totals by name, the high-signal events and the rules they raised."""

    key: ProcessKey
    name: str
    exe: str  # "" when no exec was seen and /proc could not tell
    args: tuple[str, ...]
    uid: int | None
    parent: ProcessKey | None
    started: float  # wall clock, from the kernel's start time of the process
    exited: float  # wall clock of the exit event ("exit not seen": of the tick that noticed)
    syscalls: dict[str, int]  # name -> calls over the whole life seen
    events: int  # high-signal events
    rules: tuple[str, ...]  # rule ids that fired on it
    exit_seen: bool = True  # False: gone from /proc without its exit event (ring buffer full)
    container: ContainerIdentity = UNKNOWN  # where it ran

    @property
    def lifetime_s(self) -> float:
        return max(0.0, self.exited - self.started)

    @property
    def total_syscalls(self) -> int:
        return sum(self.syscalls.values())


@dataclass(frozen=True, slots=True)
class ProcessExit:
    """A process's final record, published on the bus once when it exits: its lifetime and the
    risk it was scored at over its whole life (the headless stream writes it as one ECS event)."""

    lifetime: ProcessLifetime
    risk: float
    reasons: tuple[str, ...]
    alerts: tuple[str, ...]  # rule ids of the alerts raised on it
    anomaly: float
    anomaly_reason: str
    technique_id: str = ""
    technique_name: str = ""


@dataclass(frozen=True, slots=True)
class AnomalyInput:
    """The anomaly model's verdict on one process's latest window: `score` 0-100 (0 = like
    training, 100 = far outside it) and the reasons that name what deviated."""

    key: ProcessKey
    score: float
    reasons: tuple[str, ...]


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


@dataclass(frozen=True)
class Alert:
    """A detection: what crossed a line, on which process, and why (its ECS document:
    `fluxtui.ecs.security`)."""

    timestamp: float
    rule_id: str
    title: str
    severity: Severity
    technique_id: str  # MITRE ATT&CK, e.g. "T1055.008"
    technique_name: str
    key: ProcessKey | None
    process_name: str
    reasons: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    container: ContainerIdentity | None = None  # of the process; None: not about a process


@dataclass(frozen=True)
class Snapshot:
    """Everything the UI shows for one tick. Immutable; the engine swaps in a new one each tick."""

    sequence: int
    metrics: SystemMetrics
    processes: dict[ProcessKey, ProcessRow]
    statuses: tuple[ComponentStatus, ...]
    alerts: tuple[Alert, ...]  # most recent last, bounded
    # Per-capability views keyed by component name (e.g. "connections"); each component documents
    # the type it puts here.
    views: dict[str, Any] = field(default_factory=dict)
    # Against the previous snapshot (sequence - 1): the processes whose row is another object
    # (new ones included) and those it had that this one has not. A consumer that saw it
    # updates only these; None: not known (the first snapshot, or a hand-made one).
    changed: frozenset[ProcessKey] | None = None
    removed: frozenset[ProcessKey] = frozenset()


@dataclass(frozen=True)
class FileChange:
    """A change of a watched persistence place (fluxtui/capabilities/persistence.py), published
    on the bus for the stream whether or not it raised an alert. Every string is already made
    visible (untrusted names); `lines` never hold secrets (see detection/persistence_rules.py)."""

    timestamp: float
    path: str
    place: str  # the catalogue entry it belongs to
    technique_id: str
    actions: tuple[str, ...]  # created, written, renamed in, deleted, attributes changed, ...
    pid: int
    executable: str
    user: str
    verified: bool
    expected: str  # why the writer is expected ("" when it is not)
    lines: tuple[str, ...] = ()  # "+ added" / "- removed", redacted
    count: int = 1  # > 1: a burst summarised in one event
    note: str = ""


@dataclass(frozen=True)
class DemoNarration:
    """What `fluxtui demo` says on screen, published on the bus (the UI shows it, a recording
    keeps it): one per change of step or state."""

    number: int  # the step, 1-based (0 before the first)
    total: int
    title: str  # what happens (a scenario's title: text of this repository, not of a process)
    view: str  # the tab that shows it: processes, connections, guard
    state: str
    hint: str = ""  # what to look at or press
    outcome: str = ""  # after the step: what fluxtui caught, or why it was skipped
    auto: bool = False

    def line(self) -> str:
        """ "Step 3/8 · A script reads ~/.aws/credentials · press d to deny" """
        parts = [f"Step {self.number}/{self.total}" if self.number else "Demo", self.title]
        if self.outcome:
            parts.append(self.outcome)
        if self.hint:
            parts.append(self.hint)
        return " · ".join(p for p in parts if p)
