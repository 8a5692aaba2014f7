"""The responder's working objects: a request (one open waiting for its answer), a prompt (the
requests of one executable for one credential group), and what goes to the recorder after an
answer was written (`Outcome`, or a `Fold` of repeated cached allowances)."""

from __future__ import annotations

import time
from typing import NamedTuple

from fluxtui.events import ProcessKey
from fluxtui.guard.access_rules import Verdict
from fluxtui.guard.catalogue import Group
from fluxtui.guard.events import PromptView, Requester
from fluxtui.guard.identity import ExeVerification, ProcessInfo
from fluxtui.guard.inodes import ProtectedFile
from fluxtui.guard.processes import CachedProcess


class Request:
    __slots__ = ("answered", "created", "credential", "deadline", "fd", "file", "group", "id",
                 "noted", "paused_total", "paused_until", "pid", "proc", "released", "t0",
                 "verification", "vetted")

    def __init__(self, rid: int, fd: int, pid: int, proc: CachedProcess, file: str,
                 group: Group, t0: int, deadline: float, credential: str = "") -> None:
        self.id = rid
        self.fd = fd  # the event's fd: answered and closed exactly once (see `answered`)
        self.pid = pid
        self.proc = proc
        self.file = file  # the name the open came through
        self.credential = credential  # the path it is protected as, when that differs
        self.group = group
        self.t0 = t0  # time.monotonic_ns() when the event was read
        self.created = time.time()
        self.deadline = deadline  # time.monotonic()
        self.paused_until = 0.0
        self.paused_total = 0.0
        self.verification: ExeVerification | None = None
        self.answered = False
        # Monitor mode: the kernel was told "allow" at once; the request only waits for its
        # executable's verification before it is recorded.
        self.released = False
        # The policy (a verified listed program, a rule) or the user allows this reader: a read
        # that is not vetted is a finding for the risk score.
        self.vetted = False
        self.noted = False  # recorded as pending (see Sink.pending)
        proc.waiting += 1


class Prompt:
    def __init__(self, prompt_id: int, first: Request, tree: tuple[tuple[int, str], ...]
                 ) -> None:
        self.id = prompt_id
        self.requests = [first]
        self.tree = tree
        self.created = first.created

    @property
    def key(self) -> tuple[object, ...]:
        return prompt_key(self.requests[0])


def prompt_key(request: Request) -> tuple[object, ...]:
    """Requests queue together, and so get one answer, only when the prompt shown for the
    first says all that differs between them: the same executable (by identity: device, inode,
    size, times, and path), the same credential group, the same real and effective user, the
    same flags (injection variables, tracer), the same command line and the same parent
    program. (Without the last two, `cat -A KEY` joined the prompt of `cat KEY` and an answer
    given to what the prompt showed let both read.)"""
    info = request.proc.info
    return (info.exe_key, info.exe, request.group.name, info.uid, info.euid, request.proc.flags,
            info.cmdline, info.parent_exe)


class Outcome(NamedTuple):
    """One answer, as handed to the recorder after it was written to the kernel."""

    ts: float
    info: ProcessInfo | None
    verification: ExeVerification | None
    flags: tuple[str, ...]
    path: str
    group: Group
    allowed: bool
    decided_by: str
    reason: str
    latency_us: float
    mode: str
    credential: str = ""  # the path the file is protected as, when it was opened by another
    vetted: bool = False  # the policy or the user allows this reader (see Request.vetted)
    request_id: int = 0  # the request's id when it was recorded as pending, else 0


class PendingNote(NamedTuple):
    """A request that waits (verification, prompt): recorded as pending, so that if fluxtui is
    killed the kernel's release of it (it allows every waiting open) is known at next start."""

    request_id: int
    ts: float
    info: ProcessInfo
    path: str
    group: Group
    credential: str
    mode: str


class Fold:
    """Opens allowed from the verdict cache for one (process, file), counted together."""

    __slots__ = ("count", "first", "flags", "info", "last", "max_latency_us", "protected",
                 "verdict", "verification")

    def __init__(self, info: ProcessInfo, verification: ExeVerification | None,
                 flags: tuple[str, ...], protected: ProtectedFile, verdict: Verdict,
                 ts: float, latency_us: float) -> None:
        self.info = info
        self.verification = verification
        self.flags = flags
        self.protected = protected
        self.verdict = verdict
        self.first = self.last = ts
        self.count = 1
        self.max_latency_us = latency_us

    def add(self, ts: float, latency_us: float) -> None:
        self.last = ts
        self.count += 1
        if latency_us > self.max_latency_us:
            self.max_latency_us = latency_us


class Sink:
    """Where answers and prompt changes go (the recorder). Called on the responder thread:
    must not block."""

    def record(self, outcome: Outcome, urgent: bool = False) -> None: ...

    def record_folds(self, folds: list[Fold], mode: str) -> None: ...

    def prompts_changed(self, views: tuple[PromptView, ...]) -> None: ...

    def pending(self, note: PendingNote) -> None: ...


def requester_of(info: ProcessInfo | None, verification: ExeVerification | None,
                 flags: tuple[str, ...]) -> Requester:
    if info is None:
        return Requester(key=ProcessKey(0, 0), exe="", cmdline=(), uid=-1, euid=-1, user="",
                         ppid=0, parent_exe="", sha256=None, package=None, verified=False,
                         verification="not checked", flags=flags)
    return Requester(
        key=info.key, exe=info.exe, cmdline=info.cmdline, uid=info.uid, euid=info.euid,
        user=info.user, ppid=info.ppid, parent_exe=info.parent_exe,
        sha256=verification.sha256 if verification else None,
        package=verification.package if verification else None,
        verified=bool(verification and verification.verified),
        verification=verification.summary() if verification else "not checked",
        flags=flags)
