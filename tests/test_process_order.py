from __future__ import annotations

from fluxtui.tui.process_order import SortSpec, default_sort, matches, sort_rows, tree_order
from tests.fakes import row


def test_sort_numbers_descending_with_unknown_values_last() -> None:
    rows = [row(1, "a", cpu=None), row(2, "b", cpu=5.0), row(3, "c", cpu=50.0)]
    assert [r.pid for r in sort_rows(rows, SortSpec("cpu", True))] == [3, 2, 1]
    assert [r.pid for r in sort_rows(rows, SortSpec("cpu", False))] == [2, 3, 1]


def test_sort_by_name_is_case_insensitive_and_stable_on_ties() -> None:
    rows = [row(9, "beta"), row(3, "Alpha"), row(5, "alpha")]
    assert [r.pid for r in sort_rows(rows, SortSpec("name", False))] == [3, 5, 9]


def test_default_sort_is_risk_when_measured_else_cpu() -> None:
    assert default_sort([row(1, "a")]) == SortSpec("cpu", True)
    assert default_sort([row(1, "a", risk=10.0)]) == SortSpec("risk", True)


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
