"""The contract between the engine and the capabilities plugged into it.

A `Component` (syscalls and risk, credential guard, connections, ...) is started with the
`EventBus`, and on every engine tick receives a `TickContext` to add what it knows to the
snapshot. Nothing here imports textual.

What one component hands to a later one within a tick goes through a typed `Channel`: the
producer publishes (`publish`, `add_risk`, `set_anomaly`), the consumer reads (`read`), and
each declares it (`produces` / `consumes`, see `DataFlow`). `check_order` refuses, when the
engine is built, a consumer placed before a producer of what it reads; and a write to a channel
that a component has already read this tick raises `ChannelOrderError` (it would be lost).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Protocol, TypeVar, runtime_checkable

from fluxtui.bus import EventBus
from fluxtui.events import (
    Alert,
    AnomalyInput,
    ComponentStatus,
    ContainerIdentity,
    ProcessKey,
    ProcessRow,
    RiskInput,
    SystemMetrics,
)

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Channel(Generic[T]):
    """A typed input handed from producers to consumers within one tick. `in_snapshot`: the
    value is also the snapshot's view of that name (what the UI and the stream see)."""

    name: str
    kind: type[T]
    in_snapshot: bool = False


@dataclass(frozen=True)
class Anomalies:
    """The anomaly model's verdicts of this tick, and why there are none ("" when a model ran)."""

    verdicts: Mapping[ProcessKey, AnomalyInput] = field(default_factory=dict)
    why_none: str = ""


# Channels every component may use through the TickContext's own methods.
RISK_INPUTS: Channel[tuple[RiskInput, ...]] = Channel("risk_inputs", tuple)  # add_risk
ANOMALIES: Channel[Anomalies] = Channel("anomalies", Anomalies)  # set_anomaly, anomaly_model


class ChannelOrderError(RuntimeError):
    """A component wrote to a channel after another read it in the same tick."""


@runtime_checkable
class DataFlow(Protocol):
    """A component that declares what it hands on and what it reads (checked by `check_order`)."""

    produces: ClassVar[tuple[Channel[Any], ...]]
    consumes: ClassVar[tuple[Channel[Any], ...]]


def check_order(components: Sequence[object]) -> None:
    """Raise ValueError when a component is placed before a producer of what it consumes
    (`on_tick` runs in list order: it would never see that input)."""
    for i, consumer in enumerate(components):
        if not isinstance(consumer, DataFlow):
            continue
        for producer in components[i + 1:]:
            if not isinstance(producer, DataFlow):
                continue
            late = [c.name for c in consumer.consumes if c in producer.produces]
            if late:
                raise ValueError(
                    f"component order: {_name(consumer)} reads {', '.join(late)} but runs "
                    f"before {_name(producer)}, which produces it; put {_name(producer)} first")


def _name(component: object) -> str:
    return str(getattr(component, "name", type(component).__name__))


class TickContext:
    """What a component sees during one tick, and how it contributes to the snapshot."""

    def __init__(self, now: float, interval: float | None, metrics: SystemMetrics,
                 processes: dict[ProcessKey, ProcessRow], bus: EventBus,
                 appeared: AbstractSet[ProcessKey] | None = None) -> None:
        self.now = now
        self.interval = interval  # seconds since previous tick, None on the first
        self.metrics = metrics
        self.processes = processes  # read-only for components: use annotate()
        self._appeared = appeared
        self.first_tick = True  # set by the engine: the running component's first tick
        self.component = ""  # set by the engine: the component whose on_tick runs
        self.annotated_by: dict[str, set[str]] = {}  # component -> the columns it set
        self.bus = bus
        self.annotations: dict[ProcessKey, dict[str, Any]] = {}
        self.alerts: list[Alert] = []
        self.views: dict[str, Any] = {}
        self.risk_inputs: list[RiskInput] = []
        self.anomalies: dict[ProcessKey, AnomalyInput] = {}
        self._anomaly_model = ""
        self.stale_identities: list[ProcessKey] = []
        # Where a process runs, for alerts raised without it (set by the syscall capture, which
        # owns the container index): every alert about a process names its container.
        self.container_of: Callable[[ProcessKey], ContainerIdentity] | None = None
        self._channels: dict[str, object] = {}
        self._read: set[str] = set()

    # --- channels --------------------------------------------------------------------------------

    def publish(self, channel: Channel[T], value: T) -> None:
        """Hand `value` to the components after this one (and to the snapshot when the channel
        is `in_snapshot`)."""
        if not isinstance(value, channel.kind):
            raise TypeError(f"channel {channel.name} carries {channel.kind.__name__}, "
                            f"not {type(value).__name__}")
        self._written(channel)
        self._channels[channel.name] = value
        if channel.in_snapshot:
            self.views[channel.name] = value

    def read(self, channel: Channel[T]) -> T | None:
        """What was published on `channel` this tick (None: nothing). After a read, a write to
        the channel raises ChannelOrderError."""
        self._read.add(channel.name)
        if channel is RISK_INPUTS:
            value: object = tuple(self.risk_inputs)
        elif channel is ANOMALIES:
            value = Anomalies(dict(self.anomalies), self._anomaly_model)
        else:  # set_view(name, ...) publishes on the channel of that name too
            value = self._channels.get(channel.name,
                                       self.views.get(channel.name) if channel.in_snapshot
                                       else None)
        return value if isinstance(value, channel.kind) else None

    def _written(self, channel: Channel[Any]) -> None:
        if channel.name in self._read:
            raise ChannelOrderError(
                f"{channel.name} written after a component read it this tick: the producer "
                "must run before its consumers (capabilities/assembly.py)")

    @property
    def anomaly_model(self) -> str:
        """Why there is no anomaly verdict ("" when a model ran)."""
        return self._anomaly_model

    @anomaly_model.setter
    def anomaly_model(self, why: str) -> None:
        self._written(ANOMALIES)
        self._anomaly_model = why

    @property
    def appeared(self) -> AbstractSet[ProcessKey]:
        """The processes new in the table since the last tick: those a component annotates
        for the first time. Every process on the component's first tick (it may join late:
        a BPF compile takes seconds), or when the engine did not say."""
        if self._appeared is None or self.first_tick:
            return self.processes.keys()
        return self._appeared

    def annotate(self, key: ProcessKey, **columns: Any) -> None:
        """Fill ProcessRow columns (risk, syscalls_per_s, connections, ...) for one process.
        Columns persist: the engine keeps them on the process's row until they are set again
        or the process leaves the table, so a component sets them when they change (and for
        `appeared` processes), not for every process every tick."""
        self.annotate_columns(key, columns)

    def annotate_columns(self, key: ProcessKey, columns: Mapping[str, Any]) -> None:
        """`annotate` with the columns in a mapping (not copied by the caller: a component
        can hand the same mapping for many processes)."""
        mine = self.annotations.get(key)
        if mine is None:
            self.annotations[key] = dict(columns)
        else:
            mine.update(columns)
        names = self.annotated_by.get(self.component)
        if names is None:
            self.annotated_by[self.component] = set(columns)
        elif not names.issuperset(columns):
            names.update(columns)

    def add_risk(self, key: ProcessKey, points: float, reason: str,
                 technique: tuple[str, str] = ("", ""), group: str = "") -> None:
        """Report risk seen by a non-syscall source (e.g. a port scan); the risk scorer, which
        runs after the producers, folds it into the process's score with the same decay.
        Inputs of one `group` (e.g. a rule id) count once, at their largest."""
        self._written(RISK_INPUTS)
        self.risk_inputs.append(RiskInput(key, points, reason, technique, group))

    def keep_exited(self, row: ProcessRow) -> None:
        """Show a process that has exited (`row.exited_at` set) in this tick's snapshot; the
        risk scorer keeps them for `risk.exited_retention_s`."""
        self.processes.setdefault(row.key, row)

    def set_anomaly(self, verdict: AnomalyInput) -> None:
        """The anomaly model's verdict for one process this tick; the risk scorer, which runs
        after it, enters it into the score with `risk.anomaly_weight`."""
        self._written(ANOMALIES)
        self.anomalies[verdict.key] = verdict

    def identity_changed(self, key: ProcessKey) -> None:
        """The process's credentials or executable changed (setuid, exec): its user, executable
        and command line are re-read at the next tick instead of on the slow rotation."""
        self.stale_identities.append(key)

    def raise_alert(self, alert: Alert) -> None:
        if alert.container is None and alert.key is not None and self.container_of is not None:
            alert = dataclasses.replace(alert, container=self.container_of(alert.key))
        self.alerts.append(alert)
        self.bus.publish(alert)

    def set_view(self, name: str, view: Any) -> None:
        if name in self._read:
            raise ChannelOrderError(f"{name} written after a component read it this tick")
        self.views[name] = view


class Component(Protocol):
    """A capability plugged into the engine (syscalls, risk, guard, connections, ...).

    `start` may spawn threads; it must not raise for a missing kernel feature but report it in
    `status()`. `on_tick` runs on the engine's tick thread, in registration order, and must be
    quick (drain maps, merge caches), never blocking on I/O that may hang.

    A component may set `quick_start = True` (a class attribute): its start does no kernel
    set-up, and the engine starts it before the others, so a consumer (the risk scorer) is
    ticking when its producers (the syscall capture, seconds into a BPF compile) join, and
    nothing they hand on in their first ticks is lost."""

    name: str

    def start(self, bus: EventBus) -> None: ...

    def stop(self) -> None: ...

    def status(self) -> ComponentStatus: ...

    def on_tick(self, tick: TickContext) -> None: ...
