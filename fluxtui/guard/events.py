"""What the guard reports: pending prompts (for the UI) and decisions (for every output).

Both are frozen and carry `to_ecs()` for the headless JSON stream (event.category file,
event.outcome, file.path, process.executable, threat.technique.id).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxtui.ecs import iso_time
from fluxtui.events import ProcessKey

TECHNIQUE_NAMES = {
    "T1552.001": "Unsecured Credentials: Credentials In Files",
    "T1552.004": "Unsecured Credentials: Private Keys",
    "T1555": "Credentials from Password Stores",
    "T1555.003": "Credentials from Password Stores: Credentials from Web Browsers",
    "T1003.008": "OS Credential Dumping: /etc/passwd and /etc/shadow",
}


@dataclass(frozen=True)
class Requester:
    """The process behind a request, as read when it asked."""

    key: ProcessKey
    exe: str
    cmdline: tuple[str, ...]
    uid: int
    euid: int
    user: str
    ppid: int
    parent_exe: str
    sha256: str | None  # None while (or when) the executable could not be hashed
    package: str | None
    verified: bool
    verification: str  # one line: verified / why not
    flags: tuple[str, ...]

    @property
    def pid(self) -> int:
        return self.key.pid


@dataclass(frozen=True)
class PromptView:
    """One pending prompt: the requests of one executable for one credential group."""

    id: int
    group: str
    technique: str
    requester: Requester  # the process in front
    tree: tuple[tuple[int, str], ...]  # (pid, executable) up to init
    files: tuple[str, ...]  # distinct files waiting
    requests: int  # opens waiting in this prompt (all processes)
    pids: tuple[int, ...]
    deadline: float  # time.monotonic() at which the responder applies the default action
    paused_until: float  # monotonic; the countdown is paused until then
    pause_left: float  # seconds of pausing still allowed by the interaction cap
    created: float  # epoch seconds
    default_action: str

    def remaining(self, now: float) -> float:
        """Seconds left, measured from the deadline the responder owns."""
        return max(0.0, self.deadline - max(now, self.paused_until))

    def paused(self, now: float) -> bool:
        return now < self.paused_until

    def to_ecs(self) -> dict[str, Any]:
        r = self.requester
        return {
            "@timestamp": iso_time(self.created),
            "event": {"kind": "event", "category": ["file"], "type": ["access"],
                      "action": "credential-access-request", "outcome": "unknown",
                      "module": "fluxtui", "dataset": "fluxtui.guard"},
            "message": f"{r.exe} asks to read {self.files[0]} ({self.group})",
            "file": {"path": self.files[0]},
            "process": _process(r),
            "user": {"id": str(r.uid), "name": r.user},
            "threat": _threat(self.technique),
            "fluxtui": {"guard": {"prompt_id": self.id, "group": self.group,
                                  "files": list(self.files), "requests": self.requests,
                                  "default_action": self.default_action}},
        }


@dataclass(frozen=True)
class PromptsChanged:
    """Sent when the set of pending prompts changed (shown, answered, expired, cancelled)."""

    pending: tuple[PromptView, ...]


@dataclass(frozen=True)
class GuardDecision:
    """The answer given to one open (or to `count` identical opens folded together)."""

    timestamp: float
    file: str
    group: str
    technique: str
    allowed: bool
    decided_by: str  # rule, catalogue, keypress, timeout, headless, monitor, process-exit, error
    reason: str
    requester: Requester
    latency_us: float  # from reading the event to writing the answer (the longest if folded)
    mode: str
    count: int = 1
    last_timestamp: float | None = None
    credential: str = ""  # the path the file is protected as, when opened through another name
    vetted: bool = False  # the policy (verified listed program, rule) or the user allows it

    @property
    def outcome(self) -> str:
        return "allowed" if self.allowed else "denied"

    def to_ecs(self) -> dict[str, Any]:
        r = self.requester
        return {
            "@timestamp": iso_time(self.timestamp),
            "event": {"kind": "event", "category": ["file"],
                      "type": ["access", "allowed" if self.allowed else "denied"],
                      "action": "credential-access",
                      "outcome": "success" if self.allowed else "failure",
                      "module": "fluxtui", "dataset": "fluxtui.guard",
                      "reason": self.reason,
                      "duration": int(self.latency_us * 1000)},
            "message": f"{self.outcome} {r.exe or '?'} (pid {r.pid}) to read {self.file}"
                       + (f" (protected as {self.credential})" if self.credential else "")
                       + f": {self.reason}",
            "file": {"path": self.file},
            "process": _process(r),
            "user": {"id": str(r.uid), "name": r.user},
            "threat": _threat(self.technique),
            "rule": {"name": self.reason},
            "fluxtui": {"guard": {"group": self.group, "decided_by": self.decided_by,
                                  "mode": self.mode, "count": self.count,
                                  "verified": r.verified, "verification": r.verification,
                                  "flags": list(r.flags), "package": r.package,
                                  "latency_us": round(self.latency_us, 1),
                                  "credential": self.credential or self.file}},
        }


def _process(r: Requester) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "pid": r.pid, "executable": r.exe or None, "args": list(r.cmdline),
        "command_line": " ".join(r.cmdline), "parent": {"pid": r.ppid,
                                                         "executable": r.parent_exe or None},
        "user": {"id": str(r.uid)}, "start_ticks": r.key.start_ticks,
    }
    if r.sha256:
        doc["hash"] = {"sha256": r.sha256}
    return doc


def _threat(technique: str) -> dict[str, Any]:
    return {"framework": "MITRE ATT&CK",
            "technique": {"id": technique, "name": TECHNIQUE_NAMES.get(technique, technique)}}
