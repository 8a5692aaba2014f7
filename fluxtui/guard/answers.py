"""Answering the kernel, then feeding the audit trail: the only writer of answers.

Each request is answered exactly once (`Request.answered`); the answer is written before
anything is recorded, and recording only queues an `Outcome` for the recorder thread.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable

from fluxtui.collectors.fanotify import FanotifyGroup
from fluxtui.guard.catalogue import Group
from fluxtui.guard.identity import ExeVerification, ProcessInfo
from fluxtui.guard.requests import Outcome, Request, Sink

log = logging.getLogger(__name__)

LATE_TOLERANCE = 0.010  # seconds: an answer later than deadline + this counts as late


class Answers:
    def __init__(self, fan: FanotifyGroup, sink: Sink, clock: Callable[[], float],
                 mode: Callable[[], str], on_error: Callable[[str], None]) -> None:
        self.fan = fan
        self.sink = sink
        self.clock = clock
        self.mode = mode
        self.on_error = on_error
        # Figures for the header and the benchmark (written by the responder thread only).
        self.allowed = 0
        self.denied = 0
        self.late = 0  # answers written after their deadline + LATE_TOLERANCE
        self.max_lateness = 0.0

    def write(self, fd: int, allow: bool, name: bool = False) -> bool | str:
        """Answer one event and close its fd. False when nobody waits for it any more. With
        `name`, the path the open came through is read after the answer (the opener no longer
        waits for it) and returned instead of True ("" when it cannot be read)."""
        try:
            sent = self.fan.respond(fd, allow)
            if name:
                try:
                    return os.readlink(f"/proc/self/fd/{fd}")
                except OSError:
                    return ""
            return sent
        except OSError as exc:
            log.error("guard: cannot answer the kernel: %s", exc)
            self.on_error(f"cannot answer the kernel: {exc}")
            return False
        finally:
            os.close(fd)

    def finish(self, request: Request, allow: bool, decided_by: str, reason: str,
               flags: tuple[str, ...] | None = None, urgent: bool = False) -> bool:
        """Answer a waiting request (once) and record it; False when it was answered before."""
        if request.answered:
            return False
        request.answered = True
        if request.released:
            allow = True  # what the kernel was told when the request came in
        else:
            self.write(request.fd, allow)
        request.proc.release()
        now = self.clock()
        if now > request.deadline + LATE_TOLERANCE:
            self.late += 1
        if decided_by == "timeout":
            self.max_lateness = max(self.max_lateness, now - request.deadline)
        self.record(request.proc.info, request.verification,
                    request.proc.flags if flags is None else flags, request.file,
                    request.group, allow, decided_by, reason, request.t0, urgent,
                    request.credential, request.vetted,
                    request.id if request.noted else 0,
                    # the mode it came in under (a switch meanwhile does not change it)
                    "monitor" if request.released else "enforce")
        return True

    def record(self, info: ProcessInfo | None, verification: ExeVerification | None,
               flags: tuple[str, ...], path: str, group: Group, allow: bool, decided_by: str,
               reason: str, t0: int, urgent: bool = False, credential: str = "",
               vetted: bool = False, request_id: int = 0, mode: str = "") -> None:
        if allow:
            self.allowed += 1
        else:
            self.denied += 1
        latency_us = (time.monotonic_ns() - t0) / 1000.0
        self.sink.record(Outcome(time.time(), info, verification, flags, path, group, allow,
                                 decided_by, reason, latency_us, mode or self.mode(),
                                 credential,
                                 vetted, request_id),
                         urgent)
