"""What the engine says about one scenario: its alerts, its processes' risk, guard decisions.

The observer is an `EventBus` subscriber: on the publishing threads it only appends to a deque;
the runner's thread calls `drain()` to sort events out. A process belongs to the scenario when
it is in one of the scenario's cgroups: the kernel's events carry the cgroup id, and a process
seen only in a snapshot is looked up in /proc/PID/cgroup (checked against its start time).
"""

from __future__ import annotations

import contextlib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.events import Alert, ProcessKey, Severity, Snapshot
from fluxtui.guard.events import GuardDecision
from fluxtui.untrusted_text import visible

SEVERITY_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}
MODEL_PREFIX = "anomaly"  # rule ids of alerts raised by the anomaly model
RISK_RULE = "risk.threshold"  # raised by the risk scorer on the combined score


def alert_source(rule_id: str) -> str:
    """"model" (the anomaly model), "risk" (the combined score crossed the threshold) or
    "rules" (every detection rule: syscall, network, guard)."""
    if rule_id.split(".", 1)[0] == MODEL_PREFIX:
        return "model"
    return "risk" if rule_id == RISK_RULE else "rules"


def rules_part(syscall_points: float, event_points: float) -> float:
    """The score without a model: what the syscall mix and the rules' findings add up to."""
    return min(100.0, syscall_points + event_points)


@dataclass
class ProcessRecord:
    key: ProcessKey
    role: str
    name: str = ""
    final: float = 0.0  # highest combined score seen
    rules: float = 0.0  # highest rules part
    model: float = 0.0  # highest anomaly part
    reasons: tuple[str, ...] = ()  # at the highest combined score
    model_reason: str = ""


@dataclass(frozen=True)
class AlertRecord:
    rule_id: str
    severity: str
    technique: str
    process: str
    pid: int | None
    role: str  # actor, support, or "" when the alert names no process
    source: str  # rules, model, risk
    title: str
    rules_part: float | None = None  # risk alerts: the parts of the score that crossed
    model_part: float | None = None

    @property
    def medium_or_higher(self) -> bool:
        return SEVERITY_RANK.get(Severity(self.severity), 0) >= 1

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Observation:
    processes: dict[ProcessKey, ProcessRecord] = field(default_factory=dict)
    alerts: list[AlertRecord] = field(default_factory=list)
    unattributed: list[AlertRecord] = field(default_factory=list)
    guard: list[str] = field(default_factory=list)
    ticks: int = 0

    def members(self, roles: tuple[str, ...]) -> list[ProcessRecord]:
        return [p for p in self.processes.values() if p.role in roles]


class Observer:
    def __init__(self, cgroup_root: Path, proc: str = "/proc") -> None:
        self._cgroup_root = cgroup_root
        self._proc = proc
        self._queue: deque[object] = deque()
        self._ids: dict[int, str] = {}
        self._paths: dict[str, str] = {}
        self._roles: dict[ProcessKey, str | None] = {}
        self._names: dict[ProcessKey, str] = {}
        self._active: Observation | None = None
        # Alerts and guard decisions about a process whose cgroup is not known yet: the guard
        # answers before the tick that brings the process's exec event; tried again at end().
        self._pending: list[Alert | GuardDecision] = []
        self.sequence = 0  # of the latest snapshot drained

    def __call__(self, event: object) -> None:
        """Runs on the publishing thread: never blocks, never raises."""
        self._queue.append(event)

    # --- scenario window ---------------------------------------------------------------------

    def begin(self, ids: dict[int, str], paths: dict[str, str]) -> Observation:
        self.drain()  # what happened before belongs to no scenario
        self._ids, self._paths = dict(ids), dict(paths)
        # Host processes stay outside every scenario; members of the last one are forgotten.
        self._roles = {k: r for k, r in self._roles.items() if r is None}
        self._names.clear()
        self._active = Observation()
        self._pending = []
        return self._active

    def end(self) -> Observation:
        self.drain()
        pending, self._pending = self._pending, []
        for item in pending:
            if isinstance(item, Alert):
                self._alert(item, final=True)
            else:
                self._decision(item, final=True)
        observation, self._active = self._active, None
        assert observation is not None
        return observation

    # --- the runner's thread -----------------------------------------------------------------

    def drain(self) -> None:
        while self._queue:
            event = self._queue.popleft()
            if isinstance(event, Snapshot):
                self.sequence = max(self.sequence, event.sequence)
            if self._active is None:
                continue
            if isinstance(event, KernelEvent):
                self._kernel_event(event)
            elif isinstance(event, Alert):
                self._alert(event)
            elif isinstance(event, Snapshot):
                self._snapshot(event)
            elif isinstance(event, GuardDecision):
                self._decision(event)
            elif type(event).__name__ == "ProcessExit":
                self._exit(event)

    def role(self, key: ProcessKey) -> str | None:
        if key in self._roles:
            return self._roles[key]
        try:
            text = Path(f"{self._proc}/{key.pid}/cgroup").read_text(errors="replace")
        except OSError:
            return None  # gone: only its kernel events can tell
        if read_start_ticks(key.pid, self._proc) != key.start_ticks:
            return None
        path = next((line[3:] for line in text.splitlines() if line.startswith("0::")), "")
        role = self._paths.get(path)
        self._roles[key] = role
        return role

    def _kernel_event(self, event: KernelEvent) -> None:
        # The latest event wins: a process may move from the launch cgroup to the actor's.
        self._roles[event.key] = self._ids.get(event.cgroup_id) or self._container_role(event)
        if event.kind == "exec" and event.key not in self._names:
            self._names[event.key] = event.name
        if self._roles[event.key] in ("actor", "support"):
            self._record(event.key, self._roles[event.key] or "")

    def _container_role(self, event: KernelEvent) -> str | None:
        """A container a scenario started under its own cgroup (`--cgroup-parent`) acts for
        it: the role of the nearest scenario cgroup above the container's."""
        where = event.container
        path = where.cgroup if where is not None and where.is_container else ""
        while path.count("/") > 1:
            path = path.rsplit("/", 1)[0]
            if path in self._paths:
                return self._paths[path]
        return None

    def _record(self, key: ProcessKey, role: str) -> ProcessRecord:
        assert self._active is not None
        record = self._active.processes.get(key)
        if record is None:
            record = self._active.processes[key] = ProcessRecord(key, role)
        record.role = role
        if not record.name:
            record.name = self._names.get(key, "")
        return record

    def _snapshot(self, snapshot: Snapshot) -> None:
        assert self._active is not None
        self._active.ticks += 1
        for key, row in snapshot.processes.items():
            self._names.setdefault(key, row.name)
        risk = snapshot.views.get("risk")
        scores = getattr(risk, "scores", {}) or {}
        for key in set(snapshot.processes) | set(scores):
            role = self.role(key)
            if role not in ("actor", "support"):
                continue
            record = self._record(key, role)
            score = scores.get(key)
            if score is None:
                continue
            rules = rules_part(score.syscall_points, score.event_points)
            record.rules = max(record.rules, rules)
            record.model = max(record.model, float(score.anomaly))
            if score.score > record.final or not record.reasons:
                record.final = max(record.final, float(score.score))
                record.reasons = tuple(score.reasons)
            if score.anomaly > 0 and float(score.anomaly) >= record.model:
                record.model_reason = score.anomaly_reason

    def _unknown(self, key: ProcessKey, item: Alert | GuardDecision, final: bool) -> bool:
        """True (and kept for later) when nothing is known about the process yet."""
        if final or key in self._roles:
            return False
        self.role(key)  # caches what /proc says while the process lives
        if key in self._roles:
            return False
        self._pending.append(item)
        return True

    def _exit(self, event: Any) -> None:
        """A process's final record (whole-life score), where the engine publishes one. It has
        the combined score and the anomaly part but not the rules' part: that is exact only
        when the anomaly part is 0 (else the threshold alert, when there is one, gives it)."""
        lifetime = getattr(event, "lifetime", None)
        key = getattr(lifetime, "key", None)
        if not isinstance(key, ProcessKey):
            return
        role = self.role(key)
        if role not in ("actor", "support"):
            return
        record = self._record(key, role)
        if not record.name:
            record.name = visible(str(getattr(lifetime, "name", "")))
        risk, anomaly = float(getattr(event, "risk", 0.0)), float(getattr(event, "anomaly", 0.0))
        if risk > record.final:
            record.final = risk
            record.reasons = tuple(getattr(event, "reasons", ()))
        if anomaly >= record.model and anomaly > 0:
            record.model_reason = str(getattr(event, "anomaly_reason", ""))
        record.model = max(record.model, anomaly)
        if anomaly <= 0:
            record.rules = max(record.rules, risk)

    def _alert(self, alert: Alert, final: bool = False) -> None:
        assert self._active is not None
        if alert.key is not None and self._unknown(alert.key, alert, final):
            return
        extra = alert.extra or {}
        source = alert_source(alert.rule_id)
        parts: dict[str, float | None] = {"rules_part": None, "model_part": None}
        if source == "risk":
            with contextlib.suppress(TypeError, ValueError):
                parts["rules_part"] = rules_part(float(extra.get("syscall_points", 0)),
                                                 float(extra.get("event_points", 0)))
                parts["model_part"] = float(extra.get("anomaly", 0) or 0)
        role = self.role(alert.key) if alert.key is not None else ""
        record = AlertRecord(
            rule_id=alert.rule_id, severity=str(alert.severity),
            technique=alert.technique_id, process=visible(alert.process_name),
            pid=alert.key.pid if alert.key is not None else None, role=role or "",
            source=source, title=visible(alert.title), **parts)
        if alert.key is None:
            self._active.unattributed.append(record)
        elif role in ("actor", "support"):
            self._active.alerts.append(record)
            process = self._record(alert.key, role)
            if record.rules_part is not None:  # the parts when the score crossed
                process.rules = max(process.rules, record.rules_part)
                process.model = max(process.model, record.model_part or 0.0)
                process.final = max(process.final, float(extra.get("score", 0) or 0))

    def _decision(self, decision: GuardDecision, final: bool = False) -> None:
        assert self._active is not None
        requester = decision.requester
        if self._unknown(requester.key, decision, final):
            return
        role = self.role(requester.key)
        if role not in ("actor", "support"):
            return
        self._active.guard.append(visible(
            f"{decision.outcome} {requester.exe or '?'} (pid {requester.pid}) reading "
            f"{decision.file}: {decision.decided_by}, {decision.reason}"))
