"""The engine's tick by change sets: columns persist per process, only changed rows are merged,
and the snapshot says which rows changed (issue 13: the tick's work follows what changed, not
the thousands of processes that sleep)."""

from __future__ import annotations

import dataclasses

from fluxtui.component import TickContext
from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import ProcessKey, ProcessRow
from tests.test_engine import Annotator
from tests.test_engine import FixedRows as Rows

A, B, C = ProcessKey(4242, 1), ProcessKey(4243, 1), ProcessKey(4244, 1)


def _row(key: ProcessKey, cpu: float = 0.0) -> ProcessRow:
    return ProcessRow(key, 1, "root", f"p{key.pid}", "/x", ("/x",), cpu, 1, 1, "sleeping")


class Once(Annotator):
    """Sets a process's connections column once, for new processes only; records what it saw."""

    name = "once"

    def __init__(self) -> None:
        super().__init__()
        self.appeared: list[set[ProcessKey]] = []
        self.fail = False

    def on_tick(self, tick: TickContext) -> None:
        if self.fail:
            raise RuntimeError("kaput")
        self.appeared.append(set(tick.appeared))
        for key in tick.appeared:
            tick.annotate(key, connections=key.pid - 4240)


def _engine(rows: Rows, component: Once) -> Engine:
    return Engine(Config(), [component], processes=rows)  # type: ignore[arg-type]


def test_columns_persist_and_only_new_processes_appear() -> None:
    rows, once = Rows(A, B), Once()
    engine = _engine(rows, once)
    first = engine.start_sync()
    assert first.processes[A].connections == 2 and first.changed is None
    second = engine.tick()
    assert second.processes[A].connections == 2  # set once, kept
    assert second.processes[A] is first.processes[A]  # nothing changed: the same object
    assert second.changed == frozenset() and second.removed == frozenset()
    rows.rows[C] = _row(C)
    third = engine.tick()
    assert once.appeared == [{A, B}, set(), {C}]
    assert third.changed == {C} and third.processes[C].connections == 4
    engine.stop()


def test_a_changed_row_keeps_its_columns_and_a_removed_one_is_said() -> None:
    rows, once = Rows(A, B), Once()
    engine = _engine(rows, once)
    engine.start_sync()
    rows.rows[A] = _row(A, cpu=50.0)
    del rows.rows[B]
    snapshot = engine.tick()
    assert snapshot.changed == {A} and snapshot.removed == {B}
    assert snapshot.processes[A].cpu_percent == 50.0
    assert snapshot.processes[A].connections == 2  # the collector's new row, the column kept
    assert B not in snapshot.processes
    engine.stop()


def test_a_component_that_stops_after_an_error_leaves_no_stale_columns() -> None:
    rows, once = Rows(A), Once()
    engine = _engine(rows, once)
    assert engine.start_sync().processes[A].connections == 2
    once.fail = True
    snapshot = engine.tick()
    assert snapshot.processes[A].connections is None  # not measured any more, not frozen
    assert A in (snapshot.changed or ())
    engine.stop()


def test_a_component_that_joins_late_sees_every_process_appear() -> None:
    rows, once = Rows(A, B), Once()
    engine = _engine(rows, once)
    engine.start_sync()
    late = Once()
    late.name = "late"
    engine.components.append(late)  # type: ignore[arg-type]
    engine._started.add("late")
    engine.tick()
    assert late.appeared == [{A, B}]
    engine.stop()


def test_the_collector_says_which_rows_it_read_again() -> None:
    """ProcessCollector.changed: the rows that are not last sample's objects, and only those."""
    from fluxtui.collectors.processes import ProcessCollector

    collector = ProcessCollector(process_events=False)
    try:
        first = collector.sample()
        assert collector.changed == set(first)  # all new
        second = collector.sample()  # a CPU figure for every process: all change
        third = collector.sample()
        assert collector.changed == {k for k, row in third.items() if second.get(k) is not row}
        assert len(collector.changed) < len(third)  # most processes did not run in between
    finally:
        collector.close()


def test_merged_rows_are_copies_with_the_columns_not_the_collectors_rows() -> None:
    rows, once = Rows(A), Once()
    engine = _engine(rows, once)
    snapshot = engine.start_sync()
    assert snapshot.processes[A] == dataclasses.replace(rows.rows[A], connections=2)
    engine.stop()
