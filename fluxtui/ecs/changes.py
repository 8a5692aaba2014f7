"""Changes of persistence places (the persistence watch's `FileChange`) and the demo's
narration (`DemoNarration`) in ECS."""

from __future__ import annotations

from typing import Any

from fluxtui.ecs.common import iso_time
from fluxtui.events import DemoNarration, FileChange


def file_change_document(change: FileChange) -> dict[str, Any]:
    kind = ("deletion" if "deleted" in change.actions else
            "creation" if "created" in change.actions else "change")
    return {
        "@timestamp": iso_time(change.timestamp),
        "event": {"kind": "event", "dataset": "fluxtui.persistence", "category": ["file"],
                  "type": [kind], "action": "/".join(change.actions) or "changed"},
        "file": {"path": change.path},
        "process": {"pid": change.pid, "executable": change.executable},
        "user": {"name": change.user},
        "threat": {"framework": "MITRE ATT&CK", "technique": {"id": [change.technique_id]}},
        "message": change.note or f"{change.path}: {'/'.join(change.actions)}",
        "fluxtui": {"persistence": {"place": change.place, "verified": change.verified,
                                    "expected": change.expected, "lines": list(change.lines),
                                    "count": change.count}},
    }


def narration_document(narration: DemoNarration, now: float) -> dict[str, Any]:
    return {
        "@timestamp": iso_time(now),
        "event": {"kind": "event", "category": ["session"], "type": ["info"],
                  "dataset": "fluxtui.demo", "action": narration.state},
        "message": narration.line(),
        "fluxtui": {"demo": {"step": narration.number, "steps": narration.total,
                             "view": narration.view, "state": narration.state,
                             "outcome": narration.outcome}},
    }
