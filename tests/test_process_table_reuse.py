"""The table's inputs keep their identity from tick to tick when nothing changed, so that the
table redraws only rows that changed (issue 13)."""

from __future__ import annotations

import dataclasses

from fluxtui.capabilities.risk_scorer import RiskView
from fluxtui.events import ProcessExit, ProcessLifetime
from fluxtui.tui.process_table import FinalCache, with_final_identities
from tests.fakes import row, snapshot


def exited_snapshot(exe: str = "/tmp/x/ptracer"):  # type: ignore[no-untyped-def]
    gone = dataclasses.replace(row(77, "bash"), exited_at=5.0)
    life = ProcessLifetime(gone.key, "ptracer", exe, ("-v",), 0, None, 1.0, 5.0, {}, 0, ())
    final = ProcessExit(life, 10.0, (), (), 0.0, "")
    snap = snapshot([row(1, "init"), gone])
    return dataclasses.replace(snap, views={"risk": RiskView(50.0, exits={gone.key: final})})


def test_an_exited_row_named_by_its_final_record_is_the_same_object_next_time() -> None:
    snap = exited_snapshot()
    cache: FinalCache = {}
    first = with_final_identities(snap, cache)
    second = with_final_identities(snap, cache)
    key = next(k for k in snap.processes if k.pid == 77)
    assert first.processes[key].exe == "/tmp/x/ptracer"
    assert second.processes[key] is first.processes[key]
    # a new final record: named again
    other = exited_snapshot("/tmp/y/other")
    other = dataclasses.replace(other, processes={**other.processes, key: snap.processes[key]})
    third = with_final_identities(other, cache)
    assert third.processes[key].exe == "/tmp/y/other"
