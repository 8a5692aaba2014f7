"""What the guard reports: pending prompts (for the UI) and decisions (for every output).

Both are frozen; their ECS documents for the headless stream are made in `fluxtui.ecs.security`.
"""

from __future__ import annotations

from dataclasses import dataclass

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
