"""Which processes the table shows and in what order: filter, sort, tree. Pure functions."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fluxtui.events import ProcessKey, ProcessRow


@dataclass(frozen=True)
class SortSpec:
    column: str
    reverse: bool


# column id -> (header label, value for sorting; None sorts last whatever the direction)
SORT_VALUES: dict[str, Callable[[ProcessRow], Any]] = {
    "pid": lambda r: r.pid,
    "user": lambda r: r.user.lower(),
    "name": lambda r: r.name.lower(),
    "cpu": lambda r: r.cpu_percent,
    "memory": lambda r: r.memory_rss,
    "threads": lambda r: r.threads,
    "state": lambda r: r.state,
    "risk": lambda r: r.risk,
    "syscalls": lambda r: r.syscalls_per_s,
    "top_syscalls": lambda r: r.syscall_counts[0][0] if r.syscall_counts else None,
    "connections": lambda r: r.connections,
    "net_rx": lambda r: r.net_rx_per_s,
    "net_tx": lambda r: r.net_tx_per_s,
    "container": lambda r: r.container,
}


def matches(row: ProcessRow, needle: str) -> bool:
    """Case-insensitive substring match on pid, name, user, executable and command line."""
    if not needle:
        return True
    needle = needle.lower()
    haystack = (str(row.pid), row.name, row.user, row.exe, " ".join(row.cmdline),
                row.container or "")
    return any(needle in field.lower() for field in haystack)


def sort_rows(rows: Iterable[ProcessRow], spec: SortSpec) -> list[ProcessRow]:
    value = SORT_VALUES[spec.column]
    present = []
    missing = []
    for row in rows:
        (missing if value(row) is None else present).append(row)
    # pid as a tie-breaker keeps the order stable from tick to tick.
    present.sort(key=lambda r: (value(r), -r.pid if spec.reverse else r.pid), reverse=spec.reverse)
    missing.sort(key=lambda r: r.pid)
    return present + missing


def default_sort(rows: Iterable[ProcessRow]) -> SortSpec:
    """Risk when a risk collector provides it, CPU otherwise."""
    if any(r.risk is not None for r in rows):
        return SortSpec("risk", True)
    return SortSpec("cpu", True)


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
