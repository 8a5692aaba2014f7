"""Detections and guard answers in ECS: alerts (`event.kind: alert`, at the time the detection
was made), credential prompts and the guard's decisions (`event.category: file` with
`event.type: access`; ECS pairs allowed/denied with other categories only, so the answer is in
`event.outcome`: success = the open went through, failure = it was denied)."""

from __future__ import annotations

from typing import Any

from fluxtui.ecs.common import entity_id, iso_time
from fluxtui.ecs.processes import with_container
from fluxtui.events import Alert, Severity
from fluxtui.guard.events import TECHNIQUE_NAMES, GuardDecision, PromptView, Requester

SEVERITY_NUMBER = {Severity.LOW: 21, Severity.MEDIUM: 47, Severity.HIGH: 73,
                   Severity.CRITICAL: 99}
GUARD_DATASET = "fluxtui.guard"


def alert_dataset(rule_id: str) -> str:
    return f"fluxtui.{rule_id.split('.')[0]}"


def _threat(technique_id: str, technique_name: str) -> dict[str, Any]:
    return {"framework": "MITRE ATT&CK",
            "technique": {"id": [technique_id], "name": [technique_name or technique_id]}}


def alert_document(alert: Alert) -> dict[str, Any]:
    """An alert, stamped with the time of the detection (not of writing)."""
    doc: dict[str, Any] = {
        "@timestamp": iso_time(alert.timestamp),
        "event": {
            "kind": "alert",
            "dataset": alert_dataset(alert.rule_id),
            "category": ["intrusion_detection"],
            "type": ["info"],
            "action": alert.rule_id,
            "severity": SEVERITY_NUMBER[alert.severity],
            "reason": "; ".join(alert.reasons) or alert.title,
        },
        "rule": {"id": alert.rule_id, "name": alert.title},
        "message": alert.title,
        "fluxtui": {"alert": {"severity": alert.severity.value,
                              "reasons": list(alert.reasons),
                              "details": {k: v if isinstance(v, str | int | float | bool)
                                          or v is None else str(v)
                                          for k, v in alert.extra.items()}}},
    }
    if alert.technique_id:
        doc["threat"] = _threat(alert.technique_id, alert.technique_name)
    if alert.key is not None:
        process: dict[str, Any] = {
            "pid": alert.key.pid, "name": alert.process_name,
            "entity_id": entity_id(alert.key.pid, alert.key.start_ticks)}
        executable = alert.extra.get("executable")
        if isinstance(executable, str) and executable:
            process["executable"] = executable
        uid = alert.extra.get("uid")
        if isinstance(uid, int) and not isinstance(uid, bool):
            process["real_user"] = {"id": str(uid)}
        doc["process"] = process
        doc["fluxtui"]["process"] = {"start_ticks": alert.key.start_ticks}
    return with_container(doc, alert.container)


def _requester(r: Requester) -> dict[str, Any]:
    process: dict[str, Any] = {
        "pid": r.pid,
        "entity_id": entity_id(r.pid, r.key.start_ticks),
        "args": list(r.cmdline),
        "command_line": " ".join(r.cmdline),
        "parent": {"pid": r.ppid},
        "user": {"id": str(r.euid)},
        "real_user": {"id": str(r.uid)},
    }
    if r.exe:
        process["executable"] = r.exe
        process["name"] = r.exe.rsplit("/", 1)[-1]
    if r.user:
        process["real_user"]["name"] = r.user
    if r.parent_exe:
        process["parent"]["executable"] = r.parent_exe
    if r.sha256:
        process["hash"] = {"sha256": r.sha256}
    return process


def _requester_fields(r: Requester) -> dict[str, Any]:
    return {"start_ticks": r.key.start_ticks, "verified": r.verified,
            "verification": r.verification, "flags": list(r.flags), "package": r.package}


def prompt_document(view: PromptView) -> dict[str, Any]:
    """A credential read waiting for the user's answer (the outcome is not known yet)."""
    r = view.requester
    return {
        "@timestamp": iso_time(view.created),
        "event": {"kind": "event", "category": ["file"], "type": ["access"],
                  "action": "credential-access-request", "outcome": "unknown",
                  "dataset": GUARD_DATASET},
        "message": f"{r.exe} asks to read {view.files[0]} ({view.group})",
        "file": {"path": view.files[0]},
        "process": _requester(r),
        "threat": _threat(view.technique, TECHNIQUE_NAMES.get(view.technique, "")),
        "fluxtui": {"guard": {"prompt_id": view.id, "group": view.group,
                              "files": list(view.files), "requests": view.requests,
                              "pids": list(view.pids),
                              "default_action": view.default_action,
                              "requester": _requester_fields(r)}},
    }


def decision_document(decision: GuardDecision) -> dict[str, Any]:
    """The answer given to one open (or to `count` identical opens folded together)."""
    r = decision.requester
    return {
        "@timestamp": iso_time(decision.timestamp),
        "event": {"kind": "event", "category": ["file"], "type": ["access"],
                  "action": "credential-access",
                  "outcome": "success" if decision.allowed else "failure",
                  "dataset": GUARD_DATASET,
                  "reason": decision.reason,
                  "duration": int(decision.latency_us * 1000)},
        "message": f"{decision.outcome} {r.exe or '?'} (pid {r.pid}) to read {decision.file}"
                   + (f" (protected as {decision.credential})" if decision.credential else "")
                   + f": {decision.reason}",
        "file": {"path": decision.file},
        "process": _requester(r),
        "threat": _threat(decision.technique, TECHNIQUE_NAMES.get(decision.technique, "")),
        "rule": {"name": decision.reason},
        "fluxtui": {"guard": {"group": decision.group, "decided_by": decision.decided_by,
                              "decision": decision.outcome,
                              "mode": decision.mode, "count": decision.count,
                              "last": None if decision.last_timestamp is None
                              else iso_time(decision.last_timestamp),
                              "vetted": decision.vetted,
                              "latency_us": round(decision.latency_us, 1),
                              "credential": decision.credential or decision.file,
                              "requester": _requester_fields(r)}},
    }
