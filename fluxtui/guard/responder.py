"""The responder: one thread that owns the fanotify fd, every deadline and every answer.

It never waits on the UI. The UI (or anything else) talks to it through `answer`, `hold` and
`set_mode`, which only queue a message and wake the thread. Slow work (hashing an executable,
asking the package manager, re-reading the file system for new credential directories) runs on a
worker pool and comes back as a message; meanwhile the request waits with its deadline running.

Per open of a protected file:
1. our own process is allowed at once;
2. the file is identified by inode (marked files) or by directory + name (the plan);
3. monitor mode allows and logs;
4. the process is identified (pid + start time) and cached; the kernel's process events
   (exec, exit, uid change, ptrace attach) keep that cache exact, else it is re-validated from
   /proc on each open;
5. its executable's verification is cached by (device, inode, size, mtime, ctime);
6. `rules.evaluate` decides, or the request goes to a prompt (interactive) or gets the default
   action (headless);
7. the answer is written to the kernel first; the audit trail is fed afterwards.

Any unexpected error while handling a protected file denies it (fail closed) and is reported.

The parts it coordinates live beside it: `timers` (deadlines), `prompts` (the prompt queue),
`verifier` (verification jobs), `pidwatch` (exits of waiting processes), `replan` (marks kept
up to date), `folding` (cached allowances recorded in batches), `limits` (fd budget).
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fluxtui.collectors.fanotify import (
    FAN_OPEN_PERM,
    FAN_Q_OVERFLOW,
    READ_BATCH,
    FanEvent,
    FanotifyGroup,
)
from fluxtui.collectors.inotify import Inotify
from fluxtui.collectors.proc_events import ProcEvents
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.guard.access_rules import RuleBook, Scope, evaluate
from fluxtui.guard.answers import Answers
from fluxtui.guard.catalogue import Catalogue
from fluxtui.guard.events import PromptView
from fluxtui.guard.folding import RECORD_INTERVAL, Folds
from fluxtui.guard.limits import pending_cap, raise_fd_limit
from fluxtui.guard.loop import EventLoop
from fluxtui.guard.marks import MarkPlan, Marks, ProtectedFile
from fluxtui.guard.processes import CachedProcess, ProcessCache
from fluxtui.guard.replan import TIMER as REPLAN_TIMER
from fluxtui.guard.replan import Replanner
from fluxtui.guard.requests import Request, Sink
from fluxtui.guard.waiting import Waiting

__all__ = ["Responder", "ResponderSettings", "raise_fd_limit"]

log = logging.getLogger(__name__)

HOUSEKEEPING_INTERVAL = 1.0
SWEEP_INTERVAL = 10.0


@dataclass(frozen=True)
class ResponderSettings:
    mode: str  # "enforce" or "monitor"
    interactive: bool
    decision_timeout: float
    interaction_pause: float
    interaction_cap: float
    default_allow: bool


class Responder:
    def __init__(self, catalogue: Catalogue, fan: FanotifyGroup, marks: Marks, book: RuleBook,
                 settings: ResponderSettings, sink: Sink, workers: ThreadPoolExecutor,
                 planner: Callable[[], MarkPlan], notify: Inotify | None = None,
                 proc_events: ProcEvents | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.catalogue = catalogue
        self.fan = fan
        self.marks = marks
        self.book = book
        self.settings = settings
        self.sink = sink
        self.workers = workers
        self.notify = notify
        self.proc_events = proc_events
        self.clock = clock  # every deadline is on this clock (tests inject one)
        self.mode = settings.mode
        self.own_pid = os.getpid()
        self.errors = 0
        self.last_error = ""
        self.passed = 0  # opens in marked directories that are not credentials
        self.overflows = 0  # queue overflow events (the kernel dropped events)
        self.overloaded = 0  # opens denied because too many requests were waiting
        self.max_pending = pending_cap()
        self._loop = EventLoop("fluxtui-guard-responder", clock, self._error, self._shutdown)
        self._timers = self._loop.timers
        self._answers = Answers(fan, sink, clock, lambda: self.mode, self._error)
        self._procs = ProcessCache(proc_events, catalogue.system_dirs)
        self._waiting = Waiting(self._loop, self._answers, settings, sink, book, workers,
                                catalogue.system_dirs, self._decide, self._procs.forget,
                                self._error, self._proceed)
        self._replanner = Replanner(marks, fan, notify, workers, planner, self._loop.post,
                                    self._timers)
        self._folds = Folds()
        self._next_id = 1
        self._next_sweep = 0.0
        self._proc_ready = select.poll()  # readiness of the process events socket alone
        loop = self._loop
        loop.add_hot_fd(fan.fd, self._on_fanotify)
        if notify is not None:
            loop.add_fd(notify.fd, lambda: self._replanner.on_inotify(self.clock()))
        if proc_events is not None:
            self._proc_ready.register(proc_events.fileno(), select.POLLIN)
            loop.add_fd(proc_events.fileno(), self._procs.apply_events)
        loop.on_message("mode", self._on_mode)
        loop.on_message("plan", self._on_plan)
        loop.on_message("rules", self._on_rules)
        loop.on_timer("record", lambda _now: self.sink.record_folds(self._folds.take(),
                                                                    self.mode))
        loop.on_timer(REPLAN_TIMER, lambda _now: self._replanner.request())
        loop.on_timer("housekeeping", self._housekeeping)
        self._timers.set("housekeeping", clock())

    # --- thread-safe API ------------------------------------------------------------------

    def start(self) -> None:
        self._loop.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._loop.stop(timeout)

    @property
    def running(self) -> bool:
        return self._loop.running

    def answer(self, prompt_id: int, allow: bool, scope: Scope, label: str) -> None:
        self._loop.post(("answer", prompt_id, allow, scope, label))

    def hold(self, prompt_id: int) -> None:
        """The user is interacting with this prompt: pause its countdown (up to the cap)."""
        self._loop.post(("hold", prompt_id))

    def set_mode(self, mode: str) -> None:
        self._loop.post(("mode", mode))

    def rules_changed(self) -> None:
        self._loop.post(("rules",))

    # Figures for the header and the benchmark.
    @property
    def allowed(self) -> int:
        return self._answers.allowed

    @property
    def denied(self) -> int:
        return self._answers.denied

    @property
    def late(self) -> int:
        return self._answers.late

    @property
    def max_lateness(self) -> float:
        return self._answers.max_lateness

    def _error(self, message: str) -> None:
        self.errors += 1
        self.last_error = message

    @property
    def views(self) -> tuple[PromptView, ...]:
        """The prompts waiting now (replaced as a whole on every change)."""
        return self._waiting.views

    # --- fanotify events --------------------------------------------------------------------

    def _on_fanotify(self) -> None:
        for _ in range(16):  # then let the other fds have a turn
            unreadable = self.fan.unreadable
            events = self.fan.read_events()
            if self.fan.unreadable != unreadable:
                self._answers.denied += 1
                self._error(f"{self.fan.unreadable} open(s) denied by the kernel: "
                            "fluxtui is out of file descriptors")
            if not events:
                return
            if self.proc_events is not None and self._proc_ready.poll(0):
                # Changes that could have caused these opens were queued before them.
                self._procs.apply_events()
            now_wall = time.time()
            for event in events:
                self._handle(event, now_wall)
            # A stream of opens must not delay the answers that are due.
            self._waiting.expire_due()
            if len(events) < READ_BATCH:
                return  # the queue was drained; poll() says when more arrive

    def _handle(self, event: FanEvent, now_wall: float) -> None:
        t0 = time.monotonic_ns()
        fd = event.fd
        if fd < 0:
            if event.mask & FAN_Q_OVERFLOW:
                self.overflows += 1
                self.errors += 1
                self.last_error = (f"fanotify queue overflowed {self.overflows} time(s): "
                                   "events were lost")
            return
        if not event.mask & FAN_OPEN_PERM or event.pid == self.own_pid:
            self._answers.write(fd, True)
            return
        protected: ProtectedFile | None = None
        request: Request | None = None
        answered = False
        try:
            st = os.fstat(fd)
            protected, named = self._protected(fd, st)
            if protected is None:
                self.passed += 1
                answered = True
                self._answers.write(fd, True)
                return
            proc = self._procs.get(event.pid) or self._procs.lookup(event.pid)
            if proc is not None and self._cached_allow(proc, protected, fd, st, named, t0,
                                                       now_wall):
                return
            if not named:
                protected = self._named(protected, fd)
            if proc is None:  # gone while asking: nobody is waiting for this answer any more
                answered = True
                self._answers.write(fd, False)
                return
            if self.mode == "monitor":
                # Allowed at once; recorded once the reader is verified (off this thread), so
                # that an unverified reader is a finding in monitor mode too.
                answered = True
                self._answers.write(fd, True)
                request = Request(self._new_id(), -1, event.pid, proc, protected.path,
                                  protected.group, t0,
                                  self.clock() + self.settings.decision_timeout,
                                  protected.credential)
                request.released = True
                self._proceed(request)
                return
            if self._pending() >= self.max_pending and not self._decided_at_once(proc,
                                                                                  protected):
                answered = True
                self._answers.write(fd, False)
                self.overloaded += 1
                self.last_error = (f"{self.overloaded} open(s) denied: more than "
                                   f"{self.max_pending} requests were waiting")
                self._answers.record(proc.info, proc.verification, proc.flags, protected.path,
                             protected.group, False, "overload",
                             f"denied: {self.max_pending} requests already waiting", t0)
                return
            request = Request(self._new_id(), fd, event.pid, proc, protected.path,
                              protected.group, t0,
                              self.clock() + self.settings.decision_timeout,
                              protected.credential)
            self._proceed(request)
        except Exception as exc:
            log.exception("guard: error while handling an open")
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            reason = f"failed closed after an error: {exc}"
            if request is not None:
                self._waiting.finish(request, False, "error", reason)
            elif not answered:
                self._answers.write(fd, False)
                if protected is not None:
                    self._answers.record(None, None, (), protected.path, protected.group, False,
                                 "error", reason, t0)

    def _protected(self, fd: int, st: os.stat_result) -> tuple[ProtectedFile | None, bool]:
        """The credential open on `fd`, by inode first (whatever name it has now), else by its
        name in a marked directory (a file no plan listed yet: protected by inode at once).
        Also whether the path is already the one the open came through: a file found by inode
        is not named yet (a readlink per open, the cached allowance names it after answering);
        see `_named`."""
        protected = self.marks.inodes.get((st.st_dev, st.st_ino))
        if protected is not None:
            return protected, False
        seen = os.readlink(f"/proc/self/fd/{fd}")
        protected = self.marks.lookup(st.st_dev, st.st_ino, seen)
        if protected is not None:
            self.marks.protected.track_fd(fd, protected, self.fan)
            self._save_state()
        elif self.marks.ignorable(seen):
            # Not a credential, by name or by inode: its next opens never reach us.
            self.marks.ignores.ignore_fd(fd, (st.st_dev, st.st_ino), seen, self.fan)
        return protected, True

    @staticmethod
    def _named(protected: ProtectedFile, fd: int) -> ProtectedFile:
        """`protected` with the name the open on `fd` came through (a link, a new name)."""
        return protected.seen_as(os.readlink(f"/proc/self/fd/{fd}"))

    def _save_state(self) -> None:
        """Hand the protected inodes to a worker to write (never on this thread)."""
        protected = self.marks.protected
        if protected.dirty:
            self.workers.submit(protected.save, protected.state())

    def _cached_allow(self, proc: CachedProcess, protected: ProtectedFile, fd: int,
                      st: os.stat_result, named: bool, t0: int, now_wall: float) -> bool:
        """The common case, kept short: this process was already allowed to read this group
        and nothing it depends on changed (rules, flags, time limit). Repeats are folded in
        memory per (process, inode) and handed to the recorder every RECORD_INTERVAL; the
        name an open came through is read once per fold (after the answer), and for every
        open of a file with several links (one fold per name)."""
        cached = proc.verdicts.get(protected.group.name)
        if cached is None or self.mode != "enforce":
            return False
        version, flags, verdict = cached
        if verdict.allow is not True or version != self.book.version \
                or flags is not proc.flags or verdict.valid_until <= self.clock():
            return False
        inode = (st.st_dev, st.st_ino)
        linked = st.st_nlink > 1
        fold = None if linked else self._folds.get(proc, inode)
        if fold is not None:
            self._answers.write(fd, True)
            self._answers.allowed += 1
            fold.add(now_wall, (time.monotonic_ns() - t0) / 1000.0)
            return True
        # Answer first, then name the file for the record.
        seen = self._answers.write(fd, True, name=not named)
        self._answers.allowed += 1
        latency_us = (time.monotonic_ns() - t0) / 1000.0
        if isinstance(seen, str) and seen:
            protected = protected.seen_as(seen)
        if self._folds.add(proc, inode, protected.path if linked else None, protected, flags,
                           verdict, now_wall, latency_us):
            self._timers.set_once("record", self.clock() + RECORD_INTERVAL)
        return True

    def _proceed(self, request: Request) -> None:
        """Check the namespaces of a process outside init's (once per process), verify its
        executable (once per file), then decide."""
        proc = request.proc
        if proc.ns_flags is None:
            self._waiting.check_namespaces(request)
            return
        verification = self._waiting.known(proc.info.exe_key)
        if verification is None:
            self._waiting.verify(request)
            return
        request.verification = proc.verification = verification
        self._decide(request)

    def _pending(self) -> int:
        return self._waiting.count()

    def _decided_at_once(self, proc: CachedProcess, protected: ProtectedFile) -> bool:
        """Whether this open would be decided without waiting (namespaces checked, executable
        verified, a verdict or headless): then a full queue need not refuse it, and a flood of
        waiting readers does not lock out ssh."""
        if proc.ns_flags is None:
            return False
        verification = self._waiting.known(proc.info.exe_key)
        if verification is None:
            return False
        if not self.settings.interactive:
            return True
        verdict = evaluate(protected.group, proc.info, verification, proc.flags, self.book,
                           self.clock())
        return verdict.allow is not None

    def _decide(self, request: Request) -> None:
        proc = request.proc
        verification = request.verification
        assert verification is not None
        flags = proc.flags
        cached = proc.verdicts.get(request.group.name)
        now = self.clock()
        version = self.book.version
        if cached is not None and cached[0] == version and cached[1] == flags \
                and cached[2].valid_until > now:
            verdict = cached[2]
        else:
            verdict = evaluate(request.group, proc.info, verification, flags, self.book, now)
            proc.verdicts[request.group.name] = (version, flags, verdict)
        request.vetted = verdict.allow is True
        # A request that came in under enforce mode is decided under it, even when the mode
        # changed while it waited for its verification; only released ones were monitor's.
        if request.released:
            self._waiting.finish(request, True, "monitor", "monitor mode: every access is allowed "
                         f"and logged (enforce: {verdict.reason})", flags)
        elif verdict.allow is not None:
            self._waiting.finish(request, verdict.allow, verdict.decided_by, verdict.reason, flags)
        elif self.settings.interactive:
            self._waiting.prompt(request)
        else:
            allow = self.settings.default_allow
            self._waiting.finish(request, allow, "headless",
                         f"{verdict.reason}; no prompt in headless mode: default action "
                         f"{'allow' if allow else 'deny'}", flags)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- inbox, mode, housekeeping ---------------------------------------------------------------

    def _on_plan(self, future: Any) -> None:
        error = self._replanner.on_plan(future)
        if error:
            self._error(error)
        self._save_state()

    def _on_rules(self) -> None:
        for proc in self._procs.entries.values():
            proc.verdicts.clear()

    def _on_mode(self, mode: str) -> None:
        """New opens follow the new mode. Requests already waiting keep waiting for their
        answer or their deadline: a mode switch never answers one by itself (issue 8)."""
        self.mode = mode

    def _housekeeping(self, now: float) -> None:
        self._timers.set("housekeeping", now + HOUSEKEEPING_INTERVAL)
        alive = set()
        for rule in self.book.temporary():
            if rule.key is not None and read_start_ticks(rule.key.pid) == rule.key.start_ticks:
                alive.add(rule.key)
        self.book.expire(now, alive)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._procs.sweep()
            self.marks.protected.prune()
            self._save_state()

    def _shutdown(self) -> None:
        """Answer everything still waiting (default action), then release what we hold."""
        try:
            self._waiting.release_all()
            self.sink.record_folds(self._folds.take(), self.mode)
            self._procs.close()
        finally:
            # Without us nobody answers: closing the group makes the kernel allow every
            # waiting open and drop the marks, so no process stays blocked.
            self.fan.close()
