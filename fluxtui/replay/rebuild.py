"""Stream documents back into the objects the dashboard shows (the inverse of `fluxtui.ecs` for
what the screen needs). A document missing what it must have raises `RebuildError`."""

from __future__ import annotations

from typing import Any

from fluxtui.collectors.sock_diag import SocketEntry
from fluxtui.collectors.socket_owners import Owner
from fluxtui.connection_views import ConnectionEvent, ConnectionsView, SocketRow
from fluxtui.ecs.common import parse_time
from fluxtui.ecs.security import SEVERITY_NUMBER
from fluxtui.events import (
    HOST,
    UNKNOWN,
    Alert,
    ComponentState,
    ComponentStatus,
    ContainerIdentity,
    CpuTimes,
    IoRate,
    MemoryUsage,
    ProcessKey,
    ProcessRow,
    Severity,
    SystemMetrics,
)
from fluxtui.guard.events import GuardDecision, Requester

SEVERITY_OF = {number: severity for severity, number in SEVERITY_NUMBER.items()}


class RebuildError(Exception):
    """A fluxtui document lacks a field the dashboard needs (or has it of the wrong type)."""


def _time(value: Any) -> float | None:
    return None if value is None else parse_time(str(value))


def metrics_of(doc: dict[str, Any]) -> SystemMetrics:
    m = doc["fluxtui"]["metrics"]
    cpu = m["cpu"]
    mem, swap = m["memory"], m["swap"]
    return SystemMetrics(
        timestamp=parse_time(doc["@timestamp"]),
        interval=m["interval_s"],
        cpu=None if cpu is None else CpuTimes(cpu["total_pct"], cpu["user_pct"],
                                              cpu["system_pct"], cpu["iowait_pct"]),
        cpu_per_core=tuple(cpu["per_core_pct"]) if cpu else (),
        memory=MemoryUsage(mem["total_bytes"], mem["used_bytes"], mem["available_bytes"],
                           mem["used_pct"], swap["total_bytes"], swap["used_bytes"],
                           swap["used_pct"]),
        disks=tuple(IoRate(d["name"], d["read_bytes_per_s"], d["write_bytes_per_s"])
                    for d in m["disks"]),
        networks=tuple(IoRate(n["name"], n["rx_bytes_per_s"], n["tx_bytes_per_s"])
                       for n in m["networks"]),
        load_average=(m["load"]["1m"], m["load"]["5m"], m["load"]["15m"]),
        uptime_s=m["uptime_s"],
        process_count=m["process_count"],
    )


def statuses_of(doc: dict[str, Any]) -> tuple[ComponentStatus, ...]:
    out = []
    for name, fields in doc["fluxtui"]["collectors"].items():
        if "state" not in fields:
            continue  # drop counters of a part that is not a component (the stream's queue)
        drops = {kind: int(f["total"]) for kind, f in (fields.get("drops") or {}).items()}
        out.append(ComponentStatus(name, ComponentState(fields["state"]),
                                   fields.get("reason") or "", fields.get("detail") or "",
                                   drops))
    return tuple(out)


def row_of(p: dict[str, Any]) -> ProcessRow:
    syscalls = p["syscalls"]
    network = p["network"]
    return ProcessRow(
        key=ProcessKey(int(p["pid"]), int(p["start_ticks"])),
        ppid=int(p["ppid"]),
        user=p["user"],
        name=p["name"],
        exe=p["executable"] or "",
        cmdline=tuple(p["args"]),
        cpu_percent=p["cpu_pct"],
        memory_rss=int(p["memory_rss_bytes"]),
        threads=int(p["threads"]),
        state=p["state"],
        risk=p["risk"]["score"],
        risk_reasons=tuple(p["risk"]["reasons"]),
        syscalls_per_s=syscalls["per_s"],
        syscall_counts=tuple((c["name"], int(c["count"])) for c in syscalls["counts"]),
        connections=network["connections"],
        net_rx_per_s=network["rx_bytes_per_s"],
        net_tx_per_s=network["tx_bytes_per_s"],
        container=_container(p["container"]).label if _container(p["container"]).is_container
        else None,
        container_identity=_container(p["container"]),
        exited_at=_time(p["exited_at"]),
    )


def _container(recorded: Any) -> ContainerIdentity:
    """The process's container from its recorded state (a recording of stream version 1 made
    before container identities carries only the label, or null)."""
    if not isinstance(recorded, dict):
        return UNKNOWN
    state = recorded.get("state")
    if state == "host":
        return HOST
    if state != "container":
        return UNKNOWN
    return ContainerIdentity(str(recorded.get("runtime", "")), str(recorded.get("id", "")),
                             str(recorded.get("name", "")))


def alert_of(doc: dict[str, Any]) -> Alert:
    event = doc["event"]
    own = doc["fluxtui"].get("alert", {})
    threat = doc.get("threat", {}).get("technique", {})
    process = doc.get("process")
    key = None
    if process is not None:
        key = ProcessKey(int(process["pid"]), int(doc["fluxtui"]["process"]["start_ticks"]))
    severity = own.get("severity")
    return Alert(
        timestamp=parse_time(doc["@timestamp"]),
        rule_id=doc["rule"]["id"],
        title=doc["rule"]["name"],
        severity=Severity(severity) if severity else SEVERITY_OF[int(event["severity"])],
        technique_id=(threat.get("id") or [""])[0],
        technique_name=(threat.get("name") or [""])[0],
        key=key,
        process_name=process.get("name", "") if process else "",
        reasons=tuple(own.get("reasons", ())),
        extra=dict(own.get("details", {})),
    )


def entry_of(s: dict[str, Any]) -> SocketEntry:
    return SocketEntry(s["proto"], int(s["family"]), s["state"], s["local"]["ip"],
                       int(s["local"]["port"]), s["remote"]["ip"], int(s["remote"]["port"]),
                       s["uid"], int(s["inode"]), int(s["cookie"]), int(s["recv_q"]),
                       int(s["send_q"]), s["rtt_us"], s["bytes_sent"], s["bytes_received"])


def owners_of(s: dict[str, Any]) -> tuple[Owner, ...] | None:
    if s["owner"] == "unknown":
        return None
    return tuple(Owner(int(o["pid"]), int(o["start_ticks"]), o["name"]) for o in s["owners"])


def listing_of(doc: dict[str, Any]) -> ConnectionsView:
    c = doc["fluxtui"]["connections"]
    return ConnectionsView(
        timestamp=parse_time(doc["@timestamp"]),
        rows=tuple(SocketRow(entry_of(s), owners_of(s)) for s in c["sockets"]),
        poll_interval=c["poll_interval_s"], query_ms=c["query_ms"], notes=tuple(c["notes"]),
        unreadable_processes=int(c["unreadable_processes"]))


def connection_of(doc: dict[str, Any]) -> ConnectionEvent:
    c = doc["fluxtui"]["connection"]
    return ConnectionEvent(parse_time(doc["@timestamp"]), c["event"], entry_of(c), owners_of(c),
                           short_lived=bool(c["short_lived"]), observed_by=c["observed_by"],
                           direction=c.get("direction", "unknown"))


def requester_of(doc: dict[str, Any]) -> Requester:
    process = doc["process"]
    own = doc["fluxtui"]["guard"]["requester"]
    return Requester(
        key=ProcessKey(int(process["pid"]), int(own["start_ticks"])),
        exe=process.get("executable", ""),
        cmdline=tuple(process.get("args", ())),
        uid=int(process["real_user"]["id"]),
        euid=int(process["user"]["id"]),
        user=process["real_user"].get("name", ""),
        ppid=int(process["parent"]["pid"]),
        parent_exe=process["parent"].get("executable", ""),
        sha256=process.get("hash", {}).get("sha256"),
        package=own.get("package"),
        verified=bool(own["verified"]),
        verification=own["verification"],
        flags=tuple(own["flags"]),
    )


def decision_of(doc: dict[str, Any]) -> GuardDecision:
    g = doc["fluxtui"]["guard"]
    return GuardDecision(
        timestamp=parse_time(doc["@timestamp"]),
        file=doc["file"]["path"],
        group=g["group"],
        technique=(doc.get("threat", {}).get("technique", {}).get("id") or [""])[0],
        allowed=doc["event"]["outcome"] == "success",
        decided_by=g["decided_by"],
        reason=doc["event"].get("reason", ""),
        requester=requester_of(doc),
        latency_us=float(g["latency_us"]),
        mode=g["mode"],
        count=int(g["count"]),
        last_timestamp=_time(g.get("last")),
        credential=g.get("credential", ""),
        vetted=bool(g.get("vetted", False)),
    )


def history_item(doc: dict[str, Any], index: int) -> dict[str, Any]:
    """A guard decision or prompt as a row of the guard tab's history (the shape the guard's
    own history store gives)."""
    process = doc.get("process", {})
    g = doc["fluxtui"]["guard"]
    prompt = doc["event"].get("action") == "credential-access-request"
    outcome = "prompt" if prompt else ("allowed" if doc["event"]["outcome"] == "success"
                                       else "denied")
    return {
        "id": index,
        "ts": parse_time(doc["@timestamp"]),
        "outcome": outcome,
        "executable": process.get("executable", ""),
        "pid": process.get("pid"),
        "user": process.get("real_user", {}).get("name", ""),
        "target": doc["file"]["path"],
        "category": g["group"],
        "decided_by": "" if prompt else g["decided_by"],
        "count": g.get("count", g.get("requests", 1)),
        "latency_us": g.get("latency_us"),
        "reason": "asked (recorded prompt)" if prompt else doc["event"].get("reason", ""),
    }
