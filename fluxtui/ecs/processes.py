"""Processes in ECS: the per-tick process listing (one document with an array, or one `state`
document per process; the whole table, or what changed since the previous written tick:
ecs/process_changes.py), a process's final record, and the kernel's process events.

`process.user` is the effective user and `process.real_user` the real one, as ECS has them; a
value the source does not know is left out, never filled with the other one.
"""

from __future__ import annotations

from typing import Any

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.ecs.common import entity_id, iso_time
from fluxtui.ecs.process_changes import ProcessChanges
from fluxtui.events import ContainerIdentity, ProcessExit, ProcessKey, ProcessRow, Snapshot

PROCESSES_DATASET = "fluxtui.processes"
PROCESS_STATE_DATASET = "fluxtui.process"


def container_fields(where: ContainerIdentity | None) -> dict[str, Any]:
    """ECS `container.*` (full id, runtime, name) and `orchestrator.*` (a Kubernetes pod) of a
    process, and fluxtui's state of knowledge (`fluxtui.container.state`: container, host, or
    unknown: gone before its cgroup could be read). None: not about a process."""
    if where is None:
        return {}
    state: dict[str, Any] = {"state": where.state}
    out: dict[str, Any] = {"fluxtui": {"container": state}}
    if not where.is_container:
        return out
    container: dict[str, Any] = {"runtime": where.runtime}
    if where.id:
        container["id"] = where.id
    if where.name:
        container["name"] = where.name
    out["container"] = container
    if where.namespace:
        state["namespace"] = where.namespace
    if where.pod_uid:
        out["orchestrator"] = {"type": "kubernetes",
                               "resource": {"type": "pod", "id": where.pod_uid}}
    return out


def with_container(doc: dict[str, Any], where: ContainerIdentity | None) -> dict[str, Any]:
    """`doc` with the container fields merged in (its `fluxtui` object kept)."""
    fields = container_fields(where)
    custom = fields.pop("fluxtui", None)
    if custom:
        doc.setdefault("fluxtui", {}).update(custom)
    doc.update(fields)
    return doc


def process_state(row: ProcessRow) -> dict[str, Any]:
    """fluxtui's record of one process in the table: everything the dashboard shows for it
    (the replay rebuilds the row from this)."""
    return {
        "pid": row.pid,
        "start_ticks": row.key.start_ticks,
        "ppid": row.ppid,
        "name": row.name,
        "executable": row.exe or None,
        "args": list(row.cmdline),
        "user": row.user,
        "threads": row.threads,
        "state": row.state,
        "exited_at": None if row.exited_at is None else iso_time(row.exited_at),
        "cpu_pct": None if row.cpu_percent is None else round(row.cpu_percent, 2),
        "memory_rss_bytes": row.memory_rss,
        "risk": {"score": row.risk, "reasons": list(row.risk_reasons)},
        "syscalls": {"per_s": row.syscalls_per_s,
                     "counts": [{"name": n, "count": c} for n, c in row.syscall_counts]},
        "network": {"connections": row.connections, "rx_bytes_per_s": row.net_rx_per_s,
                    "tx_bytes_per_s": row.net_tx_per_s},
        "container": {"label": row.container, **container_fields(row.container_identity)
                      .get("container", {}), "state": row.container_identity.state},
    }


def _key(key: ProcessKey) -> dict[str, int]:
    return {"pid": key.pid, "start_ticks": key.start_ticks}


def listing_fields(snapshot: Snapshot, changes: ProcessChanges | None) -> dict[str, Any]:
    """`fluxtui.listing`: whether the tick's process documents are the whole table ("full") or
    what changed since the previous written tick ("changes"), and the table's size."""
    if changes is None or changes.full:
        return {"kind": "full", "count": len(snapshot.processes)}
    return {"kind": "changes", "count": len(snapshot.processes),
            "changed": len(changes.changed), "removed": len(changes.removed)}


def processes_document(snapshot: Snapshot, changes: ProcessChanges | None = None
                       ) -> dict[str, Any]:
    """The processes of the tick in one document (`stream.process_documents: list`): every one
    (`fluxtui.listing.kind: full`), or, with `changes` between two full listings, those new or
    changed since the previous written tick and the keys of those gone from the table
    (`fluxtui.removed`)."""
    rows = (sorted(snapshot.processes.values(), key=lambda r: r.key)
            if changes is None or changes.full else changes.changed)
    own: dict[str, Any] = {"tick": snapshot.sequence,
                           "listing": listing_fields(snapshot, changes),
                           "processes": [process_state(r) for r in rows]}
    if changes is not None and not changes.full:
        own["removed"] = [_key(k) for k in changes.removed]
    return {
        "@timestamp": iso_time(snapshot.metrics.timestamp),
        "event": {"kind": "state", "dataset": PROCESSES_DATASET, "category": ["process"],
                  "type": ["info"]},
        "fluxtui": own,
    }


def process_state_documents(snapshot: Snapshot, changes: ProcessChanges | None = None
                            ) -> list[dict[str, Any]]:
    """One `state` document per process (`stream.process_documents: state`): ECS process fields
    keyed by `process.entity_id`, latest wins in an entity index. With `changes` between two
    full listings: only the processes new or changed since the previous written tick, and one
    `event.type: end` document for each process gone from the table
    (`fluxtui.process_removed`)."""
    stamp = iso_time(snapshot.metrics.timestamp)
    listing = listing_fields(snapshot, changes)
    rows = (sorted(snapshot.processes.values(), key=lambda r: r.key)
            if changes is None or changes.full else changes.changed)
    docs = []
    for row in rows:
        process: dict[str, Any] = {
            "pid": row.pid,
            "entity_id": entity_id(row.pid, row.key.start_ticks),
            "name": row.name,
            "parent": {"pid": row.ppid},
            "args": list(row.cmdline),
            "args_count": len(row.cmdline),
        }
        if row.exe:
            process["executable"] = row.exe
        if row.cmdline:
            process["command_line"] = " ".join(row.cmdline)
        if row.user:
            process["real_user"] = {"name": row.user}
        if row.exited_at is not None:
            process["end"] = iso_time(row.exited_at)
        doc: dict[str, Any] = {
            "@timestamp": stamp,
            "event": {"kind": "state", "dataset": PROCESS_STATE_DATASET,
                      "category": ["process"], "type": ["info"]},
            "process": process,
            "fluxtui": {"tick": snapshot.sequence, "listing": listing,
                        "process": process_state(row)},
        }
        if row.risk is not None:
            doc["event"]["risk_score"] = round(row.risk, 2)
        docs.append(with_container(doc, row.container_identity))
    for key in changes.removed if changes is not None and not changes.full else ():
        docs.append({
            "@timestamp": stamp,
            "event": {"kind": "state", "dataset": PROCESS_STATE_DATASET,
                      "category": ["process"], "type": ["end"]},
            "process": {"pid": key.pid, "entity_id": entity_id(key.pid, key.start_ticks)},
            "fluxtui": {"tick": snapshot.sequence, "listing": listing,
                        "process_removed": _key(key)},
        })
    return docs


def process_exit_document(exit_: ProcessExit) -> dict[str, Any]:
    """One process's final record: ECS process fields (start, end, uptime), the risk and syscall
    totals of its whole life under `fluxtui.`."""
    life = exit_.lifetime
    process: dict[str, Any] = {
        "pid": life.key.pid,
        "entity_id": entity_id(life.key.pid, life.key.start_ticks),
        "name": life.name,
        "start": iso_time(life.started),
        "end": iso_time(life.exited),
        "uptime": int(life.lifetime_s),
        "args": [life.exe or life.name, *life.args],
    }
    if life.exe:
        process["executable"] = life.exe
    if life.parent is not None:
        process["parent"] = {"pid": life.parent.pid,
                             "entity_id": entity_id(life.parent.pid, life.parent.start_ticks)}
    if life.uid is not None:
        process["real_user"] = {"id": str(life.uid)}
    doc: dict[str, Any] = {
        "@timestamp": iso_time(life.exited),
        "event": {"kind": "event", "dataset": "fluxtui.process_exit",
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
            "syscalls": {"total": life.total_syscalls, "by_name": [
                {"name": n, "count": c}
                for n, c in sorted(life.syscalls.items(), key=lambda kv: (-kv[1], kv[0]))]},
            "events": life.events,
            "rules": list(life.rules),
            "risk": {"score": exit_.risk, "reasons": list(exit_.reasons),
                     "anomaly": exit_.anomaly, "anomaly_reason": exit_.anomaly_reason},
            "alerts": list(exit_.alerts),
        }},
    }
    if exit_.technique_id:
        doc["threat"] = {"framework": "MITRE ATT&CK",
                         "technique": {"id": [exit_.technique_id],
                                       "name": [exit_.technique_name]}}
    return with_container(doc, life.container)


_KERNEL_TYPES = {"exec": ["start"], "exit": ["end"], "cred": ["change"]}


def kernel_event_document(ev: KernelEvent) -> dict[str, Any]:
    """A high-signal event from the syscall program: an exec, an exit, a credential change or
    a watched syscall with its arguments."""
    action = ev.kind if ev.kind in ("exec", "exit") else ev.syscall
    process: dict[str, Any] = {
        "pid": ev.key.pid,
        "entity_id": entity_id(ev.key.pid, ev.key.start_ticks),
        "thread": {"id": ev.tid},
        "name": ev.name,
        "real_user": {"id": str(ev.uid)},
        "real_group": {"id": str(ev.gid)},
    }
    fluxtui: dict[str, Any] = {"process": {"start_ticks": ev.key.start_ticks},
                               "cgroup_id": ev.cgroup_id}
    if ev.kind == "exec":
        process["executable"] = ev.exe or ev.filename
        process["args"] = list(ev.argv)
        process["args_count"] = len(ev.argv)
        parent: dict[str, Any] = {"pid": ev.ppid, "name": ev.parent_comm}
        if ev.parent_start_ticks:
            parent["entity_id"] = entity_id(ev.ppid, ev.parent_start_ticks)
        if ev.parent_exe:
            parent["executable"] = ev.parent_exe
        process["parent"] = parent
        if ev.euid is not None:
            process["user"] = {"id": str(ev.euid)}
        fluxtui["exec"] = {"filename": ev.filename, "flags": list(ev.flags),
                           "parent_start_ticks": ev.parent_start_ticks,
                           "parent_flags": list(ev.parent_flags)}
    elif ev.kind in ("syscall", "cred"):
        fluxtui["syscall"] = {"name": ev.syscall, "nr": ev.nr, "args": [str(a) for a in ev.args],
                              "strings": [s for s in ev.strings if s]}
    return with_container({
        "@timestamp": iso_time(ev.timestamp),
        "event": {"kind": "event", "dataset": "fluxtui.syscalls", "category": ["process"],
                  "type": _KERNEL_TYPES.get(ev.kind, ["info"]), "action": action},
        "message": ev.describe(),
        "process": process,
        "fluxtui": fluxtui,
    }, ev.container)
