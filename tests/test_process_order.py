from __future__ import annotations

import dataclasses

from fluxtui.events import ProcessRow
from fluxtui.tui.process_order import SortSpec, matches, sort_rows, tree_order
from fluxtui.tui.sorted_rows import SortedRows
from tests.fakes import row


def test_sort_numbers_descending_with_unknown_values_last() -> None:
    rows = [row(1, "a", cpu=None), row(2, "b", cpu=5.0), row(3, "c", cpu=50.0)]
    assert [r.pid for r in sort_rows(rows, SortSpec("cpu", True))] == [3, 2, 1]
    assert [r.pid for r in sort_rows(rows, SortSpec("cpu", False))] == [2, 3, 1]


def test_sort_by_name_is_case_insensitive_and_stable_on_ties() -> None:
    rows = [row(9, "beta"), row(3, "Alpha"), row(5, "alpha")]
    assert [r.pid for r in sort_rows(rows, SortSpec("name", False))] == [3, 5, 9]


def test_filter_matches_pid_name_user_and_command_line() -> None:
    r = row(4242, "nginx", user="www-data", cmdline=("nginx", "-g", "daemon off;"))
    assert matches(r, "")
    assert matches(r, "4242")
    assert matches(r, "NGIN")
    assert matches(r, "www")
    assert matches(r, "daemon off")
    assert not matches(r, "apache")


def test_tree_order_draws_children_under_parents() -> None:
    rows = [row(1, "init", ppid=0), row(10, "sshd", ppid=1), row(11, "bash", ppid=10),
            row(12, "cron", ppid=1), row(99, "orphan", ppid=5000)]
    lines = [(r.pid, prefix) for r, prefix in tree_order(rows, SortSpec("pid", False))]
    assert lines == [(1, ""), (10, "├─ "), (11, "│  └─ "), (12, "└─ "), (99, "")]


def placed_in_order(kept: SortedRows, current: list[ProcessRow], spec: SortSpec) -> None:
    """Every read SortedRows offers agrees with a fresh sort."""
    expected = sort_rows(current, spec)
    assert list(kept) == expected
    assert len(kept) == len(expected)
    assert [kept.row_at(i) for i in range(len(kept))] == expected
    assert [kept.index_of(r.key) for r in expected] == list(range(len(expected)))


def test_kept_order_equals_a_fresh_sort_through_changes_arrivals_and_exits() -> None:
    """SortedRows places only the rows it is given (changed or new) and takes out those gone;
    whatever happened, it must give exactly what sorting afresh gives (ties, unknown values,
    exited rows, reversed and not), and find each row's index."""
    rows = [row(pid, f"p{pid % 7}", cpu=None if pid % 5 == 0 else float(pid % 4))
            for pid in range(1, 200)]
    for spec in (SortSpec("cpu", True), SortSpec("cpu", False), SortSpec("name", False)):
        kept = SortedRows()
        current = list(rows)
        kept.rebuild(current, spec)
        placed_in_order(kept, current, spec)
        for step in range(1, 12):
            # a few rows change value, one exits (kept as exited), one leaves, one arrives
            changed = []
            for i in range(step, len(current), 37):
                current[i] = dataclasses.replace(current[i], cpu_percent=float(step % 3))
                changed.append(current[i])
            current[step * 3] = dataclasses.replace(current[step * 3], exited_at=float(step))
            changed.append(current[step * 3])
            gone = current.pop(step * 5)
            current.append(row(1000 + step, "new", cpu=None if step % 2 else 2.0))
            changed.append(current[-1])
            kept.discard(gone.key)
            for r in changed:
                if r.key != gone.key:
                    kept.place(r)
            placed_in_order(kept, current, spec)
        # a value that becomes unknown and back
        current[0] = dataclasses.replace(current[0], cpu_percent=None)
        kept.place(current[0])
        placed_in_order(kept, current, spec)
        current[0] = dataclasses.replace(current[0], cpu_percent=99.0)
        kept.place(current[0])
        placed_in_order(kept, current, spec)
        assert kept.index_of(gone.key) is None
