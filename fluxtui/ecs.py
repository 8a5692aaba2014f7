"""Elastic Common Schema documents for the headless stream: field names nested as ECS has them,
fluxtui's own fields under `fluxtui.`. Values a collector could not measure are null."""

from __future__ import annotations

import os
import platform
import socket
from datetime import UTC, datetime
from typing import Any

from fluxtui.events import IoRate, ProcessExit, ProcessRow, Snapshot, SystemMetrics


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def host_fields() -> dict[str, Any]:
    uname = os.uname()
    return {
        "hostname": socket.gethostname(),
        "architecture": platform.machine(),
        "os": {"kernel": uname.release, "type": "linux", "platform": platform.system().lower()},
    }


def _rates(rates: tuple[IoRate, ...], read: str, write: str) -> list[dict[str, Any]]:
    return [{"name": r.name, read: round(r.read_per_s, 1), write: round(r.write_per_s, 1)}
            for r in rates]


def metrics_document(metrics: SystemMetrics) -> dict[str, Any]:
    cpu = metrics.cpu
    mem = metrics.memory
    return {
        "@timestamp": iso_time(metrics.timestamp),
        "event": {"kind": "metric", "module": "fluxtui", "dataset": "fluxtui.metrics"},
        "host": {
            "cpu": {"usage": None if cpu is None else round(cpu.total / 100.0, 4)},
            "uptime": int(metrics.uptime_s),
        },
        "fluxtui": {
            "metrics": {
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
                "process_count": metrics.process_count,
            }
        },
    }


def process_entry(row: ProcessRow) -> dict[str, Any]:
    return {
        "pid": row.pid,
        "start_ticks": row.key.start_ticks,
        "parent": {"pid": row.ppid},
        "name": row.name,
        "executable": row.exe or None,
        "args": list(row.cmdline),
        "user": {"name": row.user},
        "thread": {"count": row.threads},
        "state": row.state,
        "end": None if row.exited_at is None else iso_time(row.exited_at),
        "cpu": {"pct": None if row.cpu_percent is None else round(row.cpu_percent, 2)},
        "memory": {"rss_bytes": row.memory_rss},
        "risk": {"score": row.risk, "reasons": list(row.risk_reasons)},
        "syscalls": {"per_s": row.syscalls_per_s, "counts": dict(row.syscall_counts)},
        "network": {"connections": row.connections, "rx_bytes_per_s": row.net_rx_per_s,
                    "tx_bytes_per_s": row.net_tx_per_s},
        "container": {**row.container_identity.to_ecs().get("container", {}),
                      "state": row.container_identity.state},
    }


def processes_document(snapshot: Snapshot) -> dict[str, Any]:
    rows = sorted(snapshot.processes.values(), key=lambda r: r.pid)
    return {
        "@timestamp": iso_time(snapshot.metrics.timestamp),
        "event": {"kind": "state", "module": "fluxtui", "dataset": "fluxtui.processes"},
        "fluxtui": {"processes": [process_entry(r) for r in rows],
                    "collectors": {s.name: {"state": s.state.value, "reason": s.reason or None,
                                            "detail": s.detail or None}
                                   for s in snapshot.statuses}},
    }


def with_envelope(doc: dict[str, Any], host: dict[str, Any], now: float) -> dict[str, Any]:
    """Add `@timestamp` and `host` identity to a document that lacks them."""
    out = dict(doc)
    out.setdefault("@timestamp", iso_time(now))
    out["host"] = {**host, **out.get("host", {})}
    out.setdefault("ecs", {"version": "8.11.0"})
    return out


def process_exit_document(exit_: ProcessExit) -> dict[str, Any]:
    """One process's final record: ECS process fields (start, end, uptime, exit time), the
    risk and syscall totals of its whole life under `fluxtui.`."""
    life = exit_.lifetime
    process: dict[str, Any] = {
        "pid": life.key.pid,
        "name": life.name,
        "start": iso_time(life.started),
        "end": iso_time(life.exited),
        "uptime": int(life.lifetime_s),
        "args": [life.exe or life.name, *life.args],
    }
    if life.exe:
        process["executable"] = life.exe
    if life.parent is not None:
        process["parent"] = {"pid": life.parent.pid}
    if life.uid is not None:
        process["user"] = {"id": str(life.uid)}
    doc: dict[str, Any] = {
        "@timestamp": iso_time(life.exited),
        "event": {"kind": "event", "module": "fluxtui", "dataset": "fluxtui.process_exit",
                  "category": ["process"], "type": ["end"], "action": "process-exited",
                  "risk_score": exit_.risk},
        "message": f"{life.name} (pid {life.key.pid}) exited after {life.lifetime_s:.2f} s, "
                   f"{life.total_syscalls} syscalls, risk {exit_.risk:g}",
        "process": process,
        "fluxtui": {"process": {
            "start_ticks": life.key.start_ticks,
            "parent_start_ticks": life.parent.start_ticks if life.parent else None,
            "lifetime_s": round(life.lifetime_s, 3),
            "exit_seen": life.exit_seen,
            "syscalls": {"total": life.total_syscalls, "by_name": dict(sorted(
                life.syscalls.items(), key=lambda kv: (-kv[1], kv[0])))},
            "events": life.events,
            "rules": list(life.rules),
            "risk": {"score": exit_.risk, "reasons": list(exit_.reasons),
                     "anomaly": exit_.anomaly, "anomaly_reason": exit_.anomaly_reason},
            "alerts": list(exit_.alerts),
        }},
    }
    where = life.container.to_ecs()
    doc["fluxtui"].update(where.pop("fluxtui"))
    doc.update(where)
    if exit_.technique_id:
        doc["threat"] = {"framework": "MITRE ATT&CK",
                         "technique": {"id": exit_.technique_id, "name": exit_.technique_name}}
    return doc
