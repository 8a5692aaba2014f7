"""Which processes the table shows and in what order: filter, sort, tree. Pure functions."""

from __future__ import annotations

import contextlib
import pwd
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fluxtui.events import ProcessKey, ProcessRow


@dataclass(frozen=True)
class SortSpec:
    column: str
    reverse: bool


@lru_cache(maxsize=1024)
def user_label(user: str) -> str:
    """A user name; a bare uid (what an exited process's final record carries) is looked up,
    so that one user does not show as "root" on one row and "0" on the next."""
    if user.isdigit():
        with contextlib.suppress(KeyError, OverflowError):
            return pwd.getpwuid(int(user)).pw_name
    return user


def name_label(row: ProcessRow) -> str:
    """The process name; a short-lived process seen only by its exit may have none: then its
    executable's or command's base name, else its pid in brackets."""
    if row.name:
        return row.name
    for path in (row.exe, *row.cmdline[:1]):
        base = path.rstrip("/").rsplit("/", 1)[-1]
        if base:
            return base
    return f"[{row.pid}]"


def _live(value: Callable[[ProcessRow], Any]) -> Callable[[ProcessRow], Any]:
    """A figure only a running process has: none for an exited one (it sorts last, as its
    cell shows "—"), never its last value or a zero."""
    return lambda r: None if r.exited_at is not None else value(r)


# column id -> value for sorting; None sorts last whatever the direction
SORT_VALUES: dict[str, Callable[[ProcessRow], Any]] = {
    "pid": lambda r: r.pid,
    "user": lambda r: user_label(r.user).lower(),
    "name": lambda r: name_label(r).lower(),
    "cpu": _live(lambda r: r.cpu_percent),
    "memory": _live(lambda r: r.memory_rss),
    "threads": _live(lambda r: r.threads),
    "state": lambda r: r.state,
    "risk": lambda r: r.risk,
    "syscalls": _live(lambda r: r.syscalls_per_s),
    "top_syscalls": _live(lambda r: r.syscall_counts[0][0] if r.syscall_counts else None),
    "connections": _live(lambda r: r.connections),
    "net_rx": _live(lambda r: r.net_rx_per_s),
    "net_tx": _live(lambda r: r.net_tx_per_s),
    "container": lambda r: r.container,
}


def matches(row: ProcessRow, needle: str) -> bool:
    """Case-insensitive substring match on pid, name, user, executable and command line;
    "exited" finds the processes kept after their exit."""
    if not needle:
        return True
    needle = needle.lower()
    haystack = (str(row.pid), row.name, row.user, user_label(row.user), row.exe,
                " ".join(row.cmdline), row.container or "",
                "exited" if row.exited_at is not None else "")
    return any(needle in field.lower() for field in haystack)


SortKey = tuple[Any, bool, int, int]


def sort_key(row: ProcessRow, value: Any, reverse: bool) -> SortKey:
    """Ascending key of a row whose value is not None. At an equal value a running process
    comes before an exited one (the exits of a busy machine do not push the live processes of
    the same risk down); then pid, which keeps the order stable from tick to tick; then the
    start time, which makes every key unique (rows themselves are never compared)."""
    alive = row.exited_at is None
    pid = row.key.pid
    return (value, alive if reverse else not alive, -pid if reverse else pid,
            row.key.start_ticks)


def missing_key(row: ProcessRow) -> tuple[bool, int, int]:
    return (row.exited_at is not None, row.pid, row.key.start_ticks)


def sort_rows(rows: Iterable[ProcessRow], spec: SortSpec) -> list[ProcessRow]:
    """Rows with a value in `spec` order (descending when reversed), then those without one."""
    value = SORT_VALUES[spec.column]
    present: list[tuple[SortKey, ProcessRow]] = []
    missing = []
    reverse = spec.reverse
    for row in rows:
        v = value(row)
        if v is None:
            missing.append(row)
        else:
            present.append((sort_key(row, v, reverse), row))
    present.sort(key=_first, reverse=reverse)
    missing.sort(key=missing_key)
    return [row for _, row in present] + missing


def _first(item: tuple[SortKey, ProcessRow]) -> SortKey:
    return item[0]


def tree_order(rows: list[ProcessRow], spec: SortSpec) -> list[tuple[ProcessRow, str]]:
    """Depth-first order with a prefix drawing the tree; siblings sorted by `spec`.
    Processes whose parent is not shown are roots."""
    by_pid = {r.pid: r for r in rows}
    children: dict[int, list[ProcessRow]] = {}
    roots = []
    for row in rows:
        if row.ppid in by_pid and row.ppid != row.pid:
            children.setdefault(row.ppid, []).append(row)
        else:
            roots.append(row)
    out: list[tuple[ProcessRow, str]] = []
    seen: set[ProcessKey] = set()

    def walk(row: ProcessRow, lead: str, branch: str) -> None:
        if row.key in seen:  # a pid cycle cannot happen in the kernel, but data can be torn
            return
        seen.add(row.key)
        out.append((row, lead + branch))
        kids = sort_rows(children.get(row.pid, []), spec)
        child_lead = lead + ("   " if branch == "└─ " else "│  " if branch else "")
        for i, kid in enumerate(kids):
            walk(kid, child_lead, "└─ " if i == len(kids) - 1 else "├─ ")

    for root in sort_rows(roots, spec):
        walk(root, "", "")
    return out
