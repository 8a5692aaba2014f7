"""What a tick does for a process that did not change (issue 13): the same objects handed on,
so that the engine, the table and the stream skip it by identity."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fluxtui.bus import EventBus
from fluxtui.capabilities.syscall_risk import RiskScorer
from fluxtui.component import TickContext
from fluxtui.config import Config
from fluxtui.detection.risk import NO_MODEL, RiskModel
from fluxtui.engine import Engine
from fluxtui.events import ProcessKey
from tests.fakes import metrics
from tests.test_engine import FixedRows

A, B = ProcessKey(501, 1501), ProcessKey(502, 1502)


def test_processes_with_nothing_against_them_share_one_zero_score() -> None:
    """No anomaly model (the usual case: a reason that is not the bare NO_MODEL): every process
    without risk scored a new RiskScore each tick; one shared object per reason now."""
    model = RiskModel(Config().risk)
    model.set_anomalies({}, f"{NO_MODEL} (/var/lib/fluxtui/anomaly.model does not exist)")
    first = model.score(A, 10.0)
    assert first.score == 0.0 and first.reasons == ()
    assert first.anomaly_reason.startswith(NO_MODEL)
    assert model.score(B, 10.0) is first
    assert model.score(A, 11.0) is first
    model.set_anomalies({}, "anomaly model stopped")  # a new reason: a new score says it
    assert model.score(A, 12.0).anomaly_reason == "anomaly model stopped"


def test_annotating_a_shared_mapping_never_changes_it() -> None:
    """annotate_columns copies on first use: a component may hand the same mapping for many
    processes and ticks, and a later component's columns for one process stay that process's."""
    tick = TickContext(0.0, 1.0, metrics(), {}, EventBus())
    shared = {"syscalls_per_s": 0.0, "syscall_counts": ()}
    tick.annotate_columns(A, shared)
    tick.annotate_columns(B, shared)
    tick.annotate(A, risk=12.0)
    assert shared == {"syscalls_per_s": 0.0, "syscall_counts": ()}
    assert tick.annotations[A] == {"syscalls_per_s": 0.0, "syscall_counts": (), "risk": 12.0}
    assert tick.annotations[B] == shared


def test_an_unchanged_process_keeps_its_row_object_through_the_risk_scorer(
        tmp_path: Path) -> None:
    rows = FixedRows()
    config = Config()
    engine = Engine(config, [RiskScorer(config, proc=str(tmp_path))],
                    processes=rows)  # type: ignore[arg-type]
    first = engine.start_sync()
    (key,) = first.processes
    assert first.processes[key].risk == 0.0
    second = engine.tick()
    assert second.processes[key] is first.processes[key]
    # a changed collector row is merged again, with the scorer's columns
    rows.rows[key] = dataclasses.replace(rows.rows[key], name="renamed")
    third = engine.tick()
    assert third.processes[key] is not first.processes[key]
    assert third.processes[key].name == "renamed" and third.processes[key].risk == 0.0
