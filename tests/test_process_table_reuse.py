"""The table's inputs keep their identity from tick to tick when nothing changed, so that the
table redraws only rows that changed (issue 13)."""

from __future__ import annotations

import dataclasses

from fluxtui.capabilities.risk_scorer import RiskView
from fluxtui.events import ProcessExit, ProcessLifetime
from fluxtui.tui.final_names import FinalNames
from tests.fakes import row, snapshot


def exited_snapshot(exe: str = "/tmp/x/ptracer"):  # type: ignore[no-untyped-def]
    gone = dataclasses.replace(row(77, "bash"), exited_at=5.0)
    life = ProcessLifetime(gone.key, "ptracer", exe, ("-v",), 0, None, 1.0, 5.0, {}, 0, ())
    final = ProcessExit(life, 10.0, (), (), 0.0, "")
    snap = snapshot([row(1, "init"), gone])
    return dataclasses.replace(snap, views={"risk": RiskView(50.0, exits={gone.key: final})})


def test_an_exited_row_named_by_its_final_record_is_the_same_object_next_time() -> None:
    snap = exited_snapshot()
    names = FinalNames()
    first, renamed = names.apply(snap)
    key = next(k for k in snap.processes if k.pid == 77)
    assert first.processes[key].exe == "/tmp/x/ptracer"
    assert renamed == {key}
    # the same records again (in a new mapping, as the risk scorer publishes them): the same row
    again = dataclasses.replace(snap, views={"risk": RiskView(50.0, exits=dict(
        snap.views["risk"].exits))})
    second, renamed = names.apply(again)
    assert second.processes[key] is first.processes[key]
    assert renamed == set()
    # a new final record: named again
    other = exited_snapshot("/tmp/y/other")
    other = dataclasses.replace(other, processes={**other.processes, key: snap.processes[key]})
    third, renamed = names.apply(other)
    assert third.processes[key].exe == "/tmp/y/other"
    assert renamed == {key}
    # the record dropped: the engine's row, and said so
    fourth, renamed = names.apply(dataclasses.replace(other, views={}))
    assert fourth.processes[key] is snap.processes[key]
    assert renamed == {key}


def test_a_record_for_a_process_still_running_names_nothing_and_is_not_looked_at_again(
        ) -> None:
    """A final record can arrive while the listing still shows the process running."""
    snap = exited_snapshot()
    key = next(k for k in snap.processes if k.pid == 77)
    running = dataclasses.replace(snap.processes[key], exited_at=None)
    snap = dataclasses.replace(snap, processes={**snap.processes, key: running})
    names = FinalNames()
    shown, renamed = names.apply(snap)
    assert shown.processes[key] is running and renamed == set()
    assert names.apply(snap) == (snap, set())
