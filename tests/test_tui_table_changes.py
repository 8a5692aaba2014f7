"""The process table's tick costs what changed (issue 13): given the snapshot's change set
(`Snapshot.changed`/`removed`, against the previous sequence), it walks no row that did not
change, renders only changed rows on screen, and still shows exactly the order, filter and
selection a full pass would. A skipped sequence or an unknown change set is diffed against the
rows shown (by identity: rows are immutable), never sorted afresh for a few changes."""

from __future__ import annotations

import dataclasses
import random
import sys
from collections.abc import Iterable
from typing import Any

import pytest

import fluxtui.tui.process_table as process_table
from fluxtui.capabilities.risk_scorer import RiskView
from fluxtui.events import ProcessKey, ProcessRow, Snapshot
from fluxtui.tui.app import FluxApp
from fluxtui.tui.grid import FastTable
from fluxtui.tui.process_order import SortSpec, matches, sort_rows
from fluxtui.tui.process_table import row_key
from fluxtui.tui.sorted_rows import SortedRows
from tests.fakes import StaticEngine, row, snapshot
from tests.test_tui_exited import exited, final_record
from tests.tui_support import until

SIZE = (120, 30)
COUNT = 2000


class Watched(dict[ProcessKey, ProcessRow]):
    """A snapshot's processes that count every walk over all of them by the process table
    (other panels, e.g. the header's counts, are not what is measured here)."""

    walks = 0

    def _walked(self) -> None:
        caller = sys._getframe(2).f_globals.get("__name__", "")
        if caller.startswith(("fluxtui.tui.process_", "fluxtui.tui.sorted_rows")):
            Watched.walks += 1

    def values(self) -> Any:
        self._walked()
        return super().values()

    def items(self) -> Any:
        self._walked()
        return super().items()

    def keys(self) -> Any:
        self._walked()
        return super().keys()

    def __iter__(self) -> Any:
        self._walked()
        return super().__iter__()


def sleeping(count: int = COUNT) -> list[ProcessRow]:
    return [row(10_000 + i, f"sleep{i}", cpu=0.0) for i in range(count)]


def following(before: Snapshot, changed: Iterable[ProcessRow] = (),
              removed: Iterable[ProcessKey] = (), sequence: int | None = None,
              known: bool = True, watched: bool = False, **fields: Any) -> Snapshot:
    """The next snapshot as the engine makes it: rows not changed are the same objects."""
    processes = dict(before.processes)
    gone = frozenset(removed)
    for key in gone:
        del processes[key]
    new = {r.key: r for r in changed}
    processes.update(new)
    return dataclasses.replace(
        before, sequence=before.sequence + 1 if sequence is None else sequence,
        processes=Watched(processes) if watched else processes,
        changed=frozenset(new) if known else None, removed=gone, **fields)


def counting_renders(monkeypatch: pytest.MonkeyPatch) -> list[ProcessRow]:
    rendered: list[ProcessRow] = []
    original = process_table.render_cells

    def counted(r: ProcessRow, prefix: str = "") -> Any:
        rendered.append(r)
        return original(r, prefix)

    monkeypatch.setattr(process_table, "render_cells", counted)
    return rendered


def counting_line_refreshes(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The regions the process grid asks to redraw ("all" for the whole view)."""
    asked: list[Any] = []
    original = FastTable.refresh

    def counted(self: FastTable, *regions: Any, **kwargs: Any) -> Any:
        asked.extend(regions or ["all"])
        return original(self, *regions, **kwargs)

    monkeypatch.setattr(FastTable, "refresh", counted)
    return asked


def expected_keys(snap: Snapshot, spec: SortSpec, needle: str = "") -> list[str]:
    rows = [r for r in snap.processes.values() if matches(r, needle)]
    return [row_key(r.key) for r in sort_rows(rows, spec)]


async def started(pilot: Any, app: FluxApp, engine: StaticEngine, snap: Snapshot) -> None:
    engine.current = snap
    app.refresh_from_engine()
    table = app.process_table.table
    await until(pilot, lambda: table.row_count == len(snap.processes) and table.size.height > 1)
    await pilot.pause()


def show(app: FluxApp, engine: StaticEngine, snap: Snapshot) -> None:
    engine.current = snap
    app.refresh_from_engine()


async def test_one_changed_row_of_2000_is_the_only_one_walked_rendered_and_redrawn(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = snapshot(sleeping(), sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        await started(pilot, app, engine, first)
        rendered = counting_renders(monkeypatch)
        refreshed = counting_line_refreshes(monkeypatch)
        Watched.walks = 0
        # A row on screen (sorted by CPU, all 0: by pid, the first rows) changes its name.
        top = first.processes[ProcessKey(10_003, 11_003)]
        second = following(first, [dataclasses.replace(top, name="renamed")], watched=True)
        show(app, engine, second)
        assert Watched.walks == 0, "the table walked every row of an unchanged snapshot"
        assert [r.name for r in rendered] == ["renamed"]
        assert len(refreshed) == 1 and refreshed[0] != "all"
        assert (refreshed[0].y, refreshed[0].height) == (1 + 3, 1)  # the fourth row
        # A row far off screen changes: placed, not rendered, nothing redrawn.
        rendered.clear()
        refreshed.clear()
        far = first.processes[ProcessKey(11_500, 12_500)]
        third = following(second, [dataclasses.replace(far, name="elsewhere")], watched=True)
        show(app, engine, third)
        assert Watched.walks == 0
        assert rendered == [] and refreshed == []
        assert table.cell("11500:12500", "name") == "elsewhere"
        assert table.keys == expected_keys(third, SortSpec("cpu", True))


async def test_a_changed_sort_value_moves_the_row_and_a_removed_one_leaves(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = snapshot(sleeping(), sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        await started(pilot, app, engine, first)
        rendered = counting_renders(monkeypatch)
        last = first.processes[ProcessKey(10_000 + COUNT - 1, 11_000 + COUNT - 1)]
        busy = dataclasses.replace(last, cpu_percent=75.0)
        gone = ProcessKey(10_001, 11_001)
        second = following(first, [busy], removed=[gone])
        show(app, engine, second)
        assert table.keys[0] == row_key(busy.key)  # the busiest first
        assert row_key(gone) not in table.keys and table.row_count == COUNT - 1
        assert table.keys == expected_keys(second, SortSpec("cpu", True))
        # the rows on screen shifted by one: the new top row is rendered, the others were
        # rendered before (the last sleeping row on screen is new too: it came up from below)
        assert busy in rendered and len(rendered) <= 2
        # back to idle: it goes back to the end
        third = following(second, [dataclasses.replace(busy, cpu_percent=0.0)])
        show(app, engine, third)
        assert table.keys[-1] == row_key(busy.key)
        assert table.keys == expected_keys(third, SortSpec("cpu", True))


async def test_the_selection_stays_on_its_process_while_rows_move_around_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    first = snapshot(sleeping(300), sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        await started(pilot, app, engine, first)
        table.move_cursor_to(5)
        chosen = table.cursor_key
        assert chosen == "10005:11005"
        # a row above it becomes idle-er (its CPU unknown: it sorts last), one below it busy
        above = first.processes[ProcessKey(10_002, 11_002)]
        below = first.processes[ProcessKey(10_200, 11_200)]
        second = following(first, [dataclasses.replace(above, cpu_percent=None),
                                   dataclasses.replace(below, cpu_percent=3.0)])
        show(app, engine, second)
        await pilot.pause()
        assert table.cursor_key == chosen and table.cursor_row == 5  # one out, one in above
        assert app.process_table.selected_row() is second.processes[ProcessKey(10_005, 11_005)]
        refreshed = counting_line_refreshes(monkeypatch)
        third = following(second, removed=[ProcessKey(10_000, 11_000)])
        show(app, engine, third)
        assert table.cursor_key == chosen and table.cursor_row == 4
        # the cursor followed its row on screen: the lines that changed are drawn again (those
        # below the busy row on top moved up by one), not the whole view
        assert "all" not in refreshed
        lines = sorted(y for r in refreshed for y in range(r.y, r.bottom))
        assert lines == list(range(2, table.size.height))
        assert table.keys == expected_keys(third, SortSpec("cpu", True))


async def test_a_skipped_sequence_or_an_unknown_change_set_sorts_nothing_afresh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The UI timer can miss a sequence (two engine ticks between two of its polls): the rows
    that differ from those shown are placed; sorting every row again cost the most of a busy
    machine's ticks (issue 13)."""
    rebuilds = [0]
    original = SortedRows.rebuild

    def counted(self: SortedRows, *args: Any, **kwargs: Any) -> Any:
        rebuilds[0] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SortedRows, "rebuild", counted)
    first = snapshot(sleeping(300), sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        await started(pilot, app, engine, first)
        arrived = row(99, "arrived", cpu=40.0)
        # sequence 3 after 1: its change set is against 2, which the table never saw (2 brought
        # `arrived`); here 3's own change set is empty
        missed = following(first, [arrived])
        skipped = following(missed)
        assert skipped.sequence == 3 and not skipped.changed
        rebuilds[0] = 0
        show(app, engine, skipped)
        assert table.keys[0] == row_key(arrived.key)
        assert table.keys == expected_keys(skipped, SortSpec("cpu", True))
        assert rebuilds[0] == 0
        # a row left and another changed its sort value, both in a sequence not seen
        gone, busy = first.processes[ProcessKey(10_000, 11_000)], row(10_150, "sleep150", cpu=9.0)
        fifth = following(following(skipped, [busy], [gone.key]), sequence=5)
        show(app, engine, fifth)
        assert table.keys == expected_keys(fifth, SortSpec("cpu", True))
        assert row_key(gone.key) not in table.keys and rebuilds[0] == 0
        # a hand-made snapshot (changed None) with the next sequence: every row again
        other = row(98, "other", cpu=50.0)
        unknown = following(fifth, sequence=6, known=False)
        unknown = dataclasses.replace(unknown, processes={**unknown.processes, other.key: other})
        rebuilds[0] = 0
        rendered = counting_renders(monkeypatch)
        show(app, engine, unknown)
        assert table.keys[0] == row_key(other.key)
        assert table.keys == expected_keys(unknown, SortSpec("cpu", True))
        assert rebuilds[0] == 0
        assert [r.name for r in rendered] == ["other"]  # the rows below it moved, unchanged


async def test_changes_through_a_filter_and_the_default_sort_turning_to_risk() -> None:
    first = snapshot(sleeping(300), sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        pt = app.process_table
        await started(pilot, app, engine, first)
        pt.state.filter = "sleep1"
        pt._apply()
        spec = SortSpec("cpu", True)
        assert table.keys == expected_keys(first, spec, "sleep1")
        # one stops matching, one starts matching, one matching changes, one arrives matching
        k = {n: ProcessKey(10_000 + n, 11_000 + n) for n in (15, 42, 120)}
        second = following(first, [
            dataclasses.replace(first.processes[k[15]], name="other"),
            dataclasses.replace(first.processes[k[42]], name="sleep1x"),
            dataclasses.replace(first.processes[k[120]], cpu_percent=9.0),
            row(77, "sleep1new", cpu=1.0)])
        show(app, engine, second)
        assert table.keys == expected_keys(second, spec, "sleep1")
        assert table.keys[0] == row_key(k[120]) and "10042:11042" in table.keys
        # a risk score appears on one row: the default sort is risk from now on
        risky = dataclasses.replace(second.processes[k[42]], risk=30.0)
        third = following(second, [risky])
        show(app, engine, third)
        assert pt.current_sort() == SortSpec("risk", True)
        assert table.keys == expected_keys(third, SortSpec("risk", True), "sleep1")
        assert table.keys[0] == row_key(risky.key)
        # that process leaves: CPU again
        fourth = following(third, removed=[risky.key])
        show(app, engine, fourth)
        assert pt.current_sort() == spec
        assert table.keys == expected_keys(fourth, spec, "sleep1")


async def test_an_exited_row_renamed_by_a_new_final_record_is_shown_renamed() -> None:
    """The engine's row is the same object (not in `changed`); the final record that names it
    arrived in the risk view: the table's row is another one all the same."""
    stale = dataclasses.replace(exited(700), name="bash", exe="/usr/bin/bash",
                                cmdline=("-bash",))
    first = snapshot([stale, *sleeping(100)], sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        await started(pilot, app, engine, first)
        assert table.cell("700:1700", "name") == "bash"
        view = RiskView(50.0, exits={stale.key: final_record(700)})
        show(app, engine, following(first, views={"risk": view}))
        assert table.cell("700:1700", "name") == "ptracer"
        # the record is dropped from the view: the engine's own row again
        show(app, engine, following(engine.current, sequence=3, views={}))
        assert table.cell("700:1700", "name") == "bash"


async def test_a_thousand_random_changes_keep_the_order_a_full_pass_gives() -> None:
    """Changed values (ties, unknown, exits), arrivals and departures over many ticks, with a
    filter, in each direction: the kept order is always what sorting afresh gives."""
    rng = random.Random(13)  # a fixed seed: the same sequence every run
    rows = [row(10_000 + i, f"p{i % 9}", cpu=float(i % 4)) for i in range(400)]
    first = snapshot(rows, sequence=1)
    engine = StaticEngine(first)
    app = FluxApp(engine, privileged=True, start_engine=False)
    async with app.run_test(size=SIZE) as pilot:
        table = app.process_table.table
        await started(pilot, app, engine, first)
        current = first
        pid = 20_000
        for step, spec, needle in ((0, SortSpec("cpu", True), ""), (1, SortSpec("cpu", False), ""),
                                   (2, SortSpec("name", False), "p3"),
                                   (3, SortSpec("risk", True), "")):
            app.process_table.state.filter = needle
            app.process_table.sort_by(spec.column, spec.reverse)
            for _ in range(25):
                keys = list(current.processes)
                changed = []
                for key in rng.sample(keys, 8):
                    r = current.processes[key]
                    changed.append(dataclasses.replace(
                        r, cpu_percent=rng.choice([None, 0.0, 1.0, 2.0, 50.0]),
                        name=rng.choice([r.name, f"p{rng.randrange(9)}"]),
                        risk=rng.choice([None, r.risk, 10.0]),
                        exited_at=rng.choice([None, None, 5.0])))
                removed = [k for k in rng.sample(keys, 3) if k not in {c.key for c in changed}]
                for _ in range(3):
                    pid += 1
                    changed.append(row(pid, f"p{pid % 9}", cpu=rng.choice([None, 3.0])))
                current = following(current, changed, removed)
                show(app, engine, current)
                assert table.keys == expected_keys(current, spec, needle), (step, spec)
