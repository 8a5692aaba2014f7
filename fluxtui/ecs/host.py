"""The host in ECS: the per-tick metrics document with every component's state, reason and drop
counters as fields, and a document of its own for each drop (data lost) since the last one.

Drop counters come from `ComponentStatus.drops` (totals since the component started, by kind);
`DropLedger` turns them into "since start" and "since the last document" figures. A component
that restarts (its total goes down) counts from zero again: the difference is its new total.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fluxtui.ecs.common import iso_time
from fluxtui.events import ComponentStatus, IoRate, Snapshot, SystemMetrics

METRICS_DATASET = "fluxtui.metrics"
DROPS_DATASET = "fluxtui.drops"


def _rates(rates: tuple[IoRate, ...], read: str, write: str) -> list[dict[str, Any]]:
    return [{"name": r.name, read: round(r.read_per_s, 1), write: round(r.write_per_s, 1)}
            for r in rates]


def metrics_fields(metrics: SystemMetrics) -> dict[str, Any]:
    cpu = metrics.cpu
    mem = metrics.memory
    return {
        "interval_s": metrics.interval,
        "cpu": None if cpu is None else {
            "total_pct": round(cpu.total, 2),
            "user_pct": round(cpu.user, 2),
            "system_pct": round(cpu.system, 2),
            "iowait_pct": round(cpu.iowait, 2),
            "per_core_pct": [round(c, 2) for c in metrics.cpu_per_core],
        },
        "memory": {
            "total_bytes": mem.total, "used_bytes": mem.used,
            "available_bytes": mem.available, "used_pct": round(mem.percent, 2),
        },
        "swap": {"total_bytes": mem.swap_total, "used_bytes": mem.swap_used,
                 "used_pct": round(mem.swap_percent, 2)},
        "disks": _rates(metrics.disks, "read_bytes_per_s", "write_bytes_per_s"),
        "networks": _rates(metrics.networks, "rx_bytes_per_s", "tx_bytes_per_s"),
        "load": dict(zip(("1m", "5m", "15m"), metrics.load_average, strict=True)),
        "uptime_s": metrics.uptime_s,
        "process_count": metrics.process_count,
    }


class DropLedger:
    """Remembers the totals of the last metrics document, per component and kind."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], int] = {}

    def update(self, drops: Mapping[str, Mapping[str, int]]
               ) -> dict[str, dict[str, dict[str, int]]]:
        """component -> kind -> {"total", "since_last"} for every counter given."""
        out: dict[str, dict[str, dict[str, int]]] = {}
        for name, kinds in drops.items():
            for kind, total in kinds.items():
                before = self._last.get((name, kind), 0)
                since = total - before if total >= before else total
                self._last[(name, kind)] = total
                out.setdefault(name, {})[kind] = {"total": int(total), "since_last": int(since)}
        return out


def statuses_fields(statuses: Iterable[ComponentStatus],
                    drops: Mapping[str, Mapping[str, Mapping[str, int]]]
                    ) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for status in statuses:
        out[status.name] = {
            "state": status.state.value,
            "running": status.running,
            "reason": status.reason or None,
            "detail": status.detail or None,
            "drops": {kind: dict(figures) for kind, figures in drops.get(status.name, {}).items()},
        }
    for name, kinds in drops.items():  # a counter of something that is not a component
        if name not in out:
            out[name] = {"drops": {kind: dict(figures) for kind, figures in kinds.items()}}
    return out


def all_drops(statuses: Iterable[ComponentStatus],
              extra: Mapping[str, Mapping[str, int]] | None = None
              ) -> dict[str, dict[str, int]]:
    """component -> kind -> total since start: the components' own counters and those of
    parts that are not components (the stream's queue, the journal)."""
    out = {s.name: {k: int(v) for k, v in s.drops.items()} for s in statuses}
    for name, kinds in (extra or {}).items():
        out.setdefault(name, {}).update(kinds)
    return out


def metrics_document(snapshot: Snapshot, drops: Mapping[str, Mapping[str, Mapping[str, int]]]
                     ) -> dict[str, Any]:
    """The tick's host figures, every component's status and drop counters (numbers a SIEM can
    alert on), as of the snapshot's own time."""
    metrics = snapshot.metrics
    cpu = metrics.cpu
    lost_total = sum(f["total"] for kinds in drops.values() for f in kinds.values())
    lost_since = sum(f["since_last"] for kinds in drops.values() for f in kinds.values())
    return {
        "@timestamp": iso_time(metrics.timestamp),
        "event": {"kind": "metric", "dataset": METRICS_DATASET, "category": ["host"],
                  "type": ["info"]},
        "host": {
            "cpu": {"usage": None if cpu is None else round(cpu.total / 100.0, 4)},
            "uptime": int(metrics.uptime_s),
        },
        "fluxtui": {
            "tick": snapshot.sequence,
            "metrics": metrics_fields(metrics),
            "collectors": statuses_fields(snapshot.statuses, drops),
            "drops": {"total": lost_total, "since_last": lost_since},
        },
    }


def drop_documents(timestamp: float, drops: Mapping[str, Mapping[str, Mapping[str, int]]]
                   ) -> list[dict[str, Any]]:
    """One event per counter that went up since the last metrics document."""
    docs = []
    for name, kinds in sorted(drops.items()):
        for kind, figures in sorted(kinds.items()):
            if figures["since_last"] <= 0:
                continue
            docs.append({
                "@timestamp": iso_time(timestamp),
                "event": {"kind": "event", "dataset": DROPS_DATASET, "category": ["host"],
                          "type": ["info"], "action": "data-lost", "outcome": "failure"},
                "message": f"{name}: {figures['since_last']} {kind.replace('_', ' ')} lost "
                           f"({figures['total']} since start)",
                "fluxtui": {"drop": {"component": name, "kind": kind,
                                     "count": figures["since_last"],
                                     "total": figures["total"]}},
            })
    return docs
