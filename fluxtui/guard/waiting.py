"""Requests that wait: for their executable's verification, or for an answer to a prompt.

Owns the deadlines of waiting requests (one "deadline" timer at the soonest), the pidfds of the
processes behind them (an exit cancels them), and every way a waiting request ends: an answer,
a pause, the deadline, the process's exit, shutdown (a switch to monitor mode is none). Runs on
the responder thread only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from fluxtui.events import ProcessKey
from fluxtui.guard.access_rules import RuleBook, Scope
from fluxtui.guard.answers import Answers
from fluxtui.guard.events import PromptView
from fluxtui.guard.identity import ExeKey, ExeVerification
from fluxtui.guard.loop import EventLoop
from fluxtui.guard.pidwatch import PidWatch
from fluxtui.guard.prompts import PromptQueue, remember_answer
from fluxtui.guard.requests import PendingNote, Request, Sink
from fluxtui.guard.verifier import Verifier

if TYPE_CHECKING:
    from fluxtui.guard.responder import ResponderSettings

log = logging.getLogger(__name__)


class Waiting:
    def __init__(self, loop: EventLoop, answers: Answers, settings: ResponderSettings,
                 sink: Sink, book: RuleBook, workers: ThreadPoolExecutor,
                 system_dirs: tuple[str, ...], decide: Callable[[Request], None],
                 on_exit: Callable[[int], None], on_error: Callable[[str], None],
                 proceed: Callable[[Request], None]) -> None:
        self.loop = loop
        self.clock = loop.clock
        self.timers = loop.timers
        self.answers = answers
        self.settings = settings
        self.sink = sink
        self.book = book
        self.workers = workers
        self.decide = decide
        self.proceed = proceed  # the next step for a request whose namespaces were checked
        self.exited = on_exit
        self.on_error = on_error
        self.prompts = PromptQueue()
        self.verifier = Verifier(workers, system_dirs, loop.post)
        self.pids = PidWatch(loop, self.on_exit)
        self.views: tuple[PromptView, ...] = ()
        loop.on_timer("deadline", self.expire)
        loop.on_message("verified", self.on_verified)
        loop.on_message("namespaces", self.on_namespaces)
        loop.on_message("answer", self.answer)
        loop.on_message("hold", self.hold)

    def count(self) -> int:
        return self.prompts.count() + self.verifier.count()

    def known(self, key: ExeKey | None) -> ExeVerification | None:
        return self.verifier.known(key)

    # --- answers ------------------------------------------------------------------------------

    def finish(self, request: Request, allow: bool, decided_by: str, reason: str,
               flags: tuple[str, ...] | None = None, urgent: bool = False) -> None:
        if self.answers.finish(request, allow, decided_by, reason, flags, urgent):
            self._unwatch_if_idle(request.pid)

    def finish_all(self, requests: list[Request], allow: bool, decided_by: str, reason: str,
                   urgent: bool = False) -> None:
        for r in requests:
            self.finish(r, allow, decided_by, reason, urgent=urgent)

    def _note(self, request: Request) -> None:
        """Record a request that starts waiting as pending (once; the recorder writes it on its
        own thread). Monitor-mode requests were answered already: nothing is pending."""
        if request.noted or request.released:
            return
        request.noted = True
        self.sink.pending(PendingNote(request.id, request.created, request.proc.info,
                                      request.file, request.group, request.credential,
                                      self.answers.mode()))

    def update_due(self) -> None:
        deadlines = [r.deadline for r in self.prompts.requests()]
        deadlines += [r.deadline for r in self.verifier.requests()]
        if deadlines:
            self.timers.set("deadline", min(deadlines))
        else:
            self.timers.cancel("deadline")

    def expire_due(self) -> None:
        """Apply the deadlines that passed (called between batches of opens as well)."""
        due = self.timers.at("deadline")
        now = self.clock()
        if due is not None and now >= due:
            self.expire(now)

    # --- verification -------------------------------------------------------------------------

    def verify(self, request: Request) -> None:
        if request.proc.info.exe_key is None:
            self.finish(request, False, "error", "the executable cannot be read")
            return
        self.verifier.wait(request)
        self.pids.watch(request.pid)
        self._note(request)
        self.update_due()

    def check_namespaces(self, request: Request) -> None:
        self.verifier.wait_namespaces(request)
        self.pids.watch(request.pid)
        self._note(request)
        self.update_due()

    def on_namespaces(self, key: ProcessKey, future: Future[tuple[str, ...]]) -> None:
        self._continue(*self.verifier.on_namespaces(key, future), self.proceed,
                       "after the namespace check")

    def on_verified(self, key: ExeKey, future: Future[ExeVerification], attempt: int) -> None:
        self._continue(*self.verifier.on_result(key, future, attempt), self.decide,
                       "while deciding")

    def _continue(self, ready: Iterable[Request], failed: Iterable[tuple[Request, str]],
                  step: Callable[[Request], None], where: str) -> None:
        """Requests whose check finished: the failed ones are denied, the rest take `step`;
        an error in `step` fails that request closed."""
        for request, reason in failed:
            self.finish(request, False, "error", reason)
        for request in ready:
            self._unwatch_if_idle(request.pid, request)
            try:
                step(request)
            except Exception as exc:
                log.exception("guard: error %s", where)
                self.on_error(f"error {where}: {exc}")
                self.finish(request, False, "error", f"failed closed after an error: {exc}")
        self.update_due()

    # --- prompts ------------------------------------------------------------------------------

    def prompt(self, request: Request) -> None:
        self.prompts.add(request)
        self.pids.watch(request.pid)
        self._note(request)
        self.publish()
        self.update_due()

    def publish(self) -> None:
        self.views = self.prompts.views(self.settings.interaction_cap,
                                        self.settings.default_allow)
        self.sink.prompts_changed(self.views)

    def answer(self, prompt_id: int, allow: bool, scope: Scope, label: str) -> None:
        prompt = self.prompts.pop(prompt_id)
        if prompt is None:
            return  # expired or cancelled meanwhile
        rule = remember_answer(prompt, allow, scope, label, self.book, self.clock())
        reason = label
        if rule is not None:
            self.workers.submit(self.book.persist)
            reason = f"{label} (rule {rule.id})"
        for request in prompt.requests:
            request.vetted = allow
        self.finish_all(prompt.requests, allow, "keypress", reason, urgent=True)
        self.publish()
        self.update_due()

    def hold(self, prompt_id: int) -> None:
        if self.prompts.hold(prompt_id, self.clock(), self.settings.interaction_pause,
                             self.settings.interaction_cap):
            self.publish()
            self.update_due()

    def expire(self, now: float) -> None:
        default = self.settings.default_allow
        action = "allow" if default else "deny"

        def expired(r: Request) -> bool:
            return r.deadline <= now

        prompted = self.prompts.take(expired)
        self.finish_all(prompted, default, "timeout",
                        f"no answer within the deadline: default action {action}", urgent=True)
        self.finish_all(self.verifier.take(expired), default, "timeout",
                        f"verification did not finish in time: default action {action}")
        if prompted:
            self.publish()
        self.update_due()

    def release_all(self) -> None:
        """Answer everything still waiting with the default action (fluxtui stops)."""
        everything = self.prompts.take(lambda _r: True) + self.verifier.take(lambda _r: True)
        self.finish_all(everything, self.settings.default_allow, "shutdown",
                        "fluxtui stopped: default action")
        self.views = ()
        self.pids.close()
        self.verifier.close()

    # --- waiting processes that exit ------------------------------------------------------------

    def _unwatch_if_idle(self, pid: int, leaving: Request | None = None) -> None:
        for r in (*self.prompts.requests(), *self.verifier.requests()):
            if r.pid == pid and r is not leaving and not r.answered:
                return
        self.pids.unwatch(pid)

    def on_exit(self, pid: int) -> None:
        """The process behind waiting requests exited (killed while blocked): answer them (the
        kernel has already dropped them) and take its prompt away."""

        def gone(r: Request) -> bool:
            return r.pid == pid and not r.released  # a released one only waits to be recorded

        prompted = self.prompts.take(gone)
        self.finish_all(prompted, False, "process-exit", "the process exited while waiting",
                        urgent=True)
        self.finish_all(self.verifier.take(gone), False, "process-exit",
                        "the process exited while waiting")
        self.pids.unwatch(pid)
        self.exited(pid)
        if prompted:
            self.publish()
        self.update_due()
