"""What one component hands to a later one goes through typed channels; the order is checked
when the engine is built, and a write after a read is refused instead of being lost."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.anomaly import AnomalyComponent
from fluxtui.capabilities.assembly import build_components
from fluxtui.capabilities.risk_scorer import RiskScorer
from fluxtui.capabilities.syscall_risk import SyscallCapture
from fluxtui.component import (
    ANOMALIES,
    RISK_INPUTS,
    Channel,
    ChannelOrderError,
    TickContext,
    check_order,
)
from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import ComponentState, ComponentStatus, ProcessKey
from fluxtui.views import RiskView
from tests.fakes import metrics, row

KEY = ProcessKey(4242, 77)


class PortScanner:
    """A producer of risk inputs, like the connections component."""

    name = "scanner"
    produces: ClassVar[tuple[Channel[Any], ...]] = (RISK_INPUTS,)
    consumes: ClassVar[tuple[Channel[Any], ...]] = ()

    def start(self, bus: EventBus) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> ComponentStatus:
        return ComponentStatus(self.name, ComponentState.RUNNING)

    def on_tick(self, tick: TickContext) -> None:
        tick.add_risk(KEY, 60, "port scan of 200 ports")


class Undeclared(PortScanner):
    """The same producer without its declaration: only the tick can catch it."""

    name = "undeclared"
    produces: ClassVar[tuple[Channel[Any], ...]] = ()


def test_the_assembled_order_is_accepted() -> None:
    check_order(build_components(Config(), privileged=False, interactive=False))


@pytest.mark.parametrize("late", [SyscallCapture, AnomalyComponent, PortScanner])
def test_a_producer_placed_after_the_risk_scorer_is_refused_when_the_engine_is_built(
        late: type) -> None:
    config = Config()
    producer = late(config) if late is not PortScanner else late()
    with pytest.raises(ValueError, match=r"risk reads .* before .* put"):
        Engine(config, [RiskScorer(config), producer])


def test_the_scorer_reads_risk_inputs_of_producers_before_it() -> None:
    config = Config()
    engine = Engine(config, [PortScanner(), RiskScorer(config)])
    engine.processes.sample = lambda: {KEY: _row()}  # type: ignore[method-assign]
    snapshot = engine.start_sync()
    view = snapshot.views["risk"]
    assert isinstance(view, RiskView)
    assert view.scores[KEY].score > 0
    assert any("port scan" in r for r in view.scores[KEY].reasons)


def test_an_undeclared_producer_after_the_scorer_stops_with_the_reason_instead_of_being_lost(
        ) -> None:
    config = Config()
    engine = Engine(config, [RiskScorer(config), Undeclared()])
    engine.processes.sample = lambda: {KEY: _row()}  # type: ignore[method-assign]
    snapshot = engine.start_sync()
    status = next(s for s in snapshot.statuses if s.name == "undeclared")
    assert status.state is ComponentState.UNAVAILABLE
    assert "risk_inputs written after a component read it" in status.reason


def test_a_channel_carries_only_its_type_and_a_write_after_a_read_raises() -> None:
    tick = TickContext(0.0, 1.0, metrics(), {}, EventBus())
    typed: Channel[int] = Channel("answer", int)
    with pytest.raises(TypeError, match="carries int"):
        tick.publish(typed, "42")  # type: ignore[arg-type]
    assert tick.read(typed) is None
    with pytest.raises(ChannelOrderError):
        tick.publish(typed, 42)
    assert tick.read(ANOMALIES) is not None
    with pytest.raises(ChannelOrderError):
        tick.anomaly_model = "no model"


def _row() -> Any:
    from dataclasses import replace

    return replace(row(KEY.pid, "nc"), key=KEY)


class SlowProducer(PortScanner):
    """A producer whose start takes a while (a BPF compile): it records which components had
    started, and so joined the ticks, by then."""

    name = "slow"
    started: set[str] = set()  # the engine's own set, given by the test

    def start(self, bus: EventBus) -> None:
        self.seen = set(self.started)


def test_consumers_start_before_the_producers_so_no_first_tick_is_lost() -> None:
    """The risk scorer started after the syscall capture (registration order): the final
    records of processes that exited in the capture's first ticks found no scorer (35 in a
    real start) and were never scored."""
    config = Config()
    producer = SlowProducer()
    engine = Engine(config, [producer, RiskScorer(config)])
    producer.started = engine._started
    try:
        engine.start_sync()
    finally:
        engine.stop()
    assert producer.seen == {"risk"}
