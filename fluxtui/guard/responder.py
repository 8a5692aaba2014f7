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
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import select
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fluxtui.collectors.fanotify import (
    FAN_OPEN_PERM,
    FAN_Q_OVERFLOW,
    READ_BATCH,
    FanEvent,
    FanotifyGroup,
)
from fluxtui.collectors.inotify import IN_IGNORED, IN_ISDIR, IN_MOVE_SELF, Inotify
from fluxtui.collectors.proc_events import ProcEvents
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.guard.catalogue import Catalogue, Group
from fluxtui.guard.events import PromptView
from fluxtui.guard.identity import (
    ExeKey,
    ExeVerification,
    ProcessInfo,
    process_tree,
    verify_executable,
)
from fluxtui.guard.marks import MarkPlan, Marks, ProtectedFile
from fluxtui.guard.processes import CachedProcess, ProcessCache
from fluxtui.guard.requests import (
    Fold,
    Outcome,
    Prompt,
    Request,
    Sink,
    prompt_key,
    requester_of,
)
from fluxtui.guard.rules import (
    FIVE_MINUTES,
    RuleBook,
    SavedRule,
    Scope,
    TempRule,
    evaluate,
)

log = logging.getLogger(__name__)

REPLAN_DELAY = 0.25  # seconds: new files in marked directories are re-planned in batches
HOUSEKEEPING_INTERVAL = 1.0
SWEEP_INTERVAL = 10.0
RECORD_INTERVAL = 0.1  # seconds between hand-overs of folded cached allowances
MAX_PENDING = 1000  # waiting requests at most; beyond, opens are denied at once (reported)
FDS_PER_WAITER = 4  # event fd, pidfd, and what identifying and verifying it may hold open
FD_RESERVE = 64  # fds kept free for everything else (audit database, journal, /proc reads)
MAX_VERIFY_ATTEMPTS = 3  # an executable that changes on every attempt fails closed
MAX_CONSECUTIVE_ERRORS = 100  # then the loop gives up and closes the group (releasing all)
LATE_TOLERANCE = 0.010  # seconds: an answer later than deadline + this counts as late
PRIORITY_BOOST = -4  # nice value of the responder thread (auditd's default boost is 4)


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
                 proc_events: ProcEvents | None = None) -> None:
        self.catalogue = catalogue
        self.fan = fan
        self.marks = marks
        self.book = book
        self.settings = settings
        self.sink = sink
        self.workers = workers
        self.planner = planner
        self.notify = notify
        self.proc_events = proc_events
        self.mode = settings.mode
        self.own_pid = os.getpid()
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._inbox: list[tuple[Any, ...]] = []
        self._inbox_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._procs = ProcessCache(proc_events, catalogue.system_dirs)
        self._verified: dict[ExeKey, ExeVerification] = {}
        self._verifying: dict[ExeKey, list[Request]] = {}
        self._prompts: dict[int, Prompt] = {}
        self._pidfds: dict[int, int] = {}  # pid -> pidfd of processes with waiting requests
        self._pidfd_pids: dict[int, int] = {}
        # Two levels of epoll: the thread waits on the fanotify fd and on one "control" epoll
        # (wake-ups, inotify, process events, pidfds), so the common wait watches two fds.
        self._poller = select.epoll()  # control fds
        self._main = select.epoll()
        self._proc_ready = select.poll()  # readiness of the process events socket alone
        if proc_events is not None:
            self._proc_ready.register(proc_events.fileno(), select.POLLIN)
        self._next_id = 1
        self._replan_running = False
        self._replan_again = False
        self._replan_at: float | None = None
        self._next_housekeeping = 0.0
        self._next_sweep = 0.0
        self._due: float | None = None  # the nearest deadline of any waiting request
        self._folds: dict[tuple[CachedProcess, str], Fold] = {}
        self._next_record = 0.0
        self._next_timer = 0.0
        # Figures for the header and the benchmark (written by this thread only).
        self.allowed = 0
        self.denied = 0
        self.passed = 0  # opens in marked directories that are not credentials
        self.errors = 0
        self.late = 0  # answers written after their deadline + LATE_TOLERANCE
        self.max_lateness = 0.0
        self.overflows = 0  # queue overflow events (the kernel dropped events)
        self.overloaded = 0  # opens denied because too many requests were waiting
        self.last_error = ""
        self.max_pending = pending_cap()
        self.views: tuple[PromptView, ...] = ()

    # --- thread-safe API ------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fluxtui-guard-responder",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._post(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        os.close(self._wake_fd)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def answer(self, prompt_id: int, allow: bool, scope: Scope, label: str) -> None:
        self._post(("answer", prompt_id, allow, scope, label))

    def hold(self, prompt_id: int) -> None:
        """The user is interacting with this prompt: pause its countdown (up to the cap)."""
        self._post(("hold", prompt_id))

    def set_mode(self, mode: str) -> None:
        self._post(("mode", mode))

    def rules_changed(self) -> None:
        self._post(("rules",))

    def _post(self, message: tuple[Any, ...]) -> None:
        with self._inbox_lock:
            self._inbox.append(message)
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake_fd, 1)

    # --- the loop ---------------------------------------------------------------------------

    def _run(self) -> None:
        # Like auditd's priority_boost: waiting opens are blocked processes, answer them first.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRIORITY_BOOST)
        poll_in = select.EPOLLIN
        self._poller.register(self._wake_fd, poll_in)
        if self.notify is not None:
            self._poller.register(self.notify.fd, poll_in)
        if self.proc_events is not None:
            self._poller.register(self.proc_events.fileno(), poll_in)
        fan_fd = self.fan.fd
        self._main.register(fan_fd, poll_in)
        self._main.register(self._poller.fileno(), poll_in)
        failures = 0
        try:
            while not self._stopping:
                try:
                    timeout = self._on_timers()
                    for ready, _ in self._main.poll(timeout / 1000.0):
                        if ready == fan_fd:
                            self._on_fanotify()
                        else:
                            self._on_control()
                    failures = 0
                except Exception as exc:  # keep answering: the kernel waits on us
                    log.exception("guard responder: error in its loop")
                    self.errors += 1
                    failures += 1
                    self.last_error = f"responder error: {type(exc).__name__}: {exc}"
                    if failures >= MAX_CONSECUTIVE_ERRORS:
                        self.last_error = f"responder stopped after repeated errors: {exc}"
                        break
        finally:
            try:
                self._shutdown()
            finally:
                # Without us nobody answers: closing the group makes the kernel allow every
                # waiting open and drop the marks, so no process stays blocked.
                self.fan.close()

    def _on_control(self) -> None:
        for fd, _mask in self._poller.poll(0):
            if fd == self._wake_fd:
                self._on_inbox()
            elif self.notify is not None and fd == self.notify.fd:
                self._on_inotify()
            elif self.proc_events is not None and fd == self.proc_events.fileno():
                self._procs.apply_events()
            elif fd in self._pidfd_pids:
                self._on_exit(self._pidfd_pids[fd])

    def _hand_over_folds(self) -> None:
        if self._folds:
            folds, self._folds = self._folds, {}
            self.sink.record_folds(list(folds.values()), self.mode)

    def _update_due(self) -> None:
        deadlines = [r.deadline for p in self._prompts.values() for r in p.requests]
        deadlines += [r.deadline for rs in self._verifying.values() for r in rs]
        self._due = min(deadlines) if deadlines else None
        if self._due is not None:
            self._schedule(self._due)

    def _on_timers(self) -> int:
        """Run what is due (deadlines, folded records, a delayed re-plan, housekeeping) and
        return the poll timeout in milliseconds until the next of them. `_next_timer` is the
        earliest of them, so the common pass (nothing due) is one comparison."""
        now = time.monotonic()
        if now >= self._next_timer:
            if self._due is not None and now >= self._due:
                self._expire(now)
            if now >= self._next_record:
                self._next_record = now + RECORD_INTERVAL
                self._hand_over_folds()
            if self._replan_at is not None and now >= self._replan_at:
                self._replan_at = None
                self._request_replan()
            if now >= self._next_housekeeping:
                self._next_housekeeping = now + HOUSEKEEPING_INTERVAL
                self._housekeeping(now)
            wake = self._next_housekeeping
            for t in (self._next_record if self._folds else None, self._due, self._replan_at):
                if t is not None and t < wake:
                    wake = t
            self._next_timer = wake
        return max(0, math.ceil((self._next_timer - now) * 1000))

    def _schedule(self, when: float) -> None:
        if when < self._next_timer:
            self._next_timer = when

    # --- fanotify events --------------------------------------------------------------------

    def _on_fanotify(self) -> None:
        for _ in range(16):  # then let the other fds have a turn
            unreadable = self.fan.unreadable
            events = self.fan.read_events()
            if self.fan.unreadable != unreadable:
                self.denied += 1
                self.errors += 1
                self.last_error = (f"{self.fan.unreadable} open(s) denied by the kernel: "
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
            if self._due is not None and time.monotonic() >= self._due:
                self._expire(time.monotonic())
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
            self._write(fd, True)
            return
        protected: ProtectedFile | None = None
        request: Request | None = None
        answered = False
        try:
            st = os.fstat(fd)
            protected = self.marks.inodes.get((st.st_dev, st.st_ino))
            if protected is None:
                protected = self.marks.lookup(st.st_dev, st.st_ino,
                                              os.readlink(f"/proc/self/fd/{fd}"))
                if protected is None:
                    self.passed += 1
                    answered = True
                    self._write(fd, True)
                    return
            proc = self._procs.get(event.pid) or self._procs.lookup(event.pid)
            if proc is not None and self._cached_allow(proc, protected, fd, t0, now_wall):
                return
            if proc is None:  # gone while asking: nobody is waiting for this answer any more
                answered = True
                self._write(fd, False)
                return
            if self.mode == "monitor":
                answered = True
                self._write(fd, True)
                self._record(proc.info, proc.verification, proc.flags, protected.path,
                             protected.group, True, "monitor",
                             "monitor mode: every access is allowed and logged", t0)
                return
            if self._pending() >= self.max_pending:
                answered = True
                self._write(fd, False)
                self.overloaded += 1
                self.last_error = (f"{self.overloaded} open(s) denied: more than "
                                   f"{self.max_pending} requests were waiting")
                self._record(proc.info, proc.verification, proc.flags, protected.path,
                             protected.group, False, "overload",
                             f"denied: {self.max_pending} requests already waiting", t0)
                return
            request = Request(self._new_id(), fd, event.pid, proc, protected.path,
                               protected.group, t0,
                               time.monotonic() + self.settings.decision_timeout)
            key = proc.info.exe_key
            verification = self._verified.get(key) if key is not None else None
            if verification is None:
                self._await_verification(request)
                return
            request.verification = proc.verification = verification
            self._decide(request)
        except Exception as exc:
            log.exception("guard: error while handling an open")
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            reason = f"failed closed after an error: {exc}"
            if request is not None:
                self._finish(request, False, "error", reason)
            elif not answered:
                self._write(fd, False)
                if protected is not None:
                    self._record(None, None, (), protected.path, protected.group, False,
                                 "error", reason, t0)

    def _cached_allow(self, proc: CachedProcess, protected: ProtectedFile, fd: int, t0: int,
                      now_wall: float) -> bool:
        """The common case, kept short: this process was already allowed to read this group
        and nothing it depends on changed (rules, flags, time limit). Repeats are folded in
        memory and handed to the recorder every RECORD_INTERVAL."""
        cached = proc.verdicts.get(protected.group.name)
        if cached is None or self.mode != "enforce":
            return False
        version, flags, verdict = cached
        if verdict.allow is not True or version != self.book.version \
                or flags is not proc.flags or verdict.valid_until <= time.monotonic():
            return False
        self._write(fd, True)
        self.allowed += 1
        latency_us = (time.monotonic_ns() - t0) / 1000.0
        key = (proc, protected.path)
        fold = self._folds.get(key)
        if fold is None:
            self._folds[key] = Fold(proc.info, proc.verification, flags, protected, verdict,
                                    now_wall, latency_us)
            self._schedule(self._next_record)
        else:
            fold.add(now_wall, latency_us)
        return True

    def _pending(self) -> int:
        return sum(len(p.requests) for p in self._prompts.values()) + \
            sum(len(rs) for rs in self._verifying.values())

    def _decide(self, request: Request) -> None:
        proc = request.proc
        verification = request.verification
        assert verification is not None
        flags = proc.flags
        cached = proc.verdicts.get(request.group.name)
        now = time.monotonic()
        version = self.book.version
        if cached is not None and cached[0] == version and cached[1] == flags \
                and cached[2].valid_until > now:
            verdict = cached[2]
        else:
            verdict = evaluate(request.group, proc.info, verification, flags, self.book, now)
            proc.verdicts[request.group.name] = (version, flags, verdict)
        if self.mode == "monitor":
            self._finish(request, True, "monitor", "monitor mode: every access is allowed "
                         f"and logged (enforce: {verdict.reason})", flags)
        elif verdict.allow is not None:
            self._finish(request, verdict.allow, verdict.decided_by, verdict.reason, flags)
        elif self.settings.interactive:
            self._enqueue_prompt(request)
        else:
            allow = self.settings.default_allow
            self._finish(request, allow, "headless",
                         f"{verdict.reason}; no prompt in headless mode: default action "
                         f"{'allow' if allow else 'deny'}", flags)

    # --- answers ----------------------------------------------------------------------------

    def _write(self, fd: int, allow: bool) -> bool:
        try:
            return self.fan.respond(fd, allow)
        except OSError as exc:
            self.errors += 1
            self.last_error = f"cannot answer the kernel: {exc}"
            log.error("guard: cannot answer the kernel: %s", exc)
            return False
        finally:
            os.close(fd)

    def _finish(self, request: Request, allow: bool, decided_by: str, reason: str,
                flags: tuple[str, ...] | None = None, urgent: bool = False) -> None:
        if request.answered:
            return
        request.answered = True
        self._write(request.fd, allow)
        request.proc.release()
        now = time.monotonic()
        if now > request.deadline + LATE_TOLERANCE:
            self.late += 1
        if decided_by == "timeout":
            self.max_lateness = max(self.max_lateness, now - request.deadline)
        self._record(request.proc.info, request.verification,
                     request.proc.flags if flags is None else flags, request.file,
                     request.group, allow, decided_by, reason, request.t0, urgent)

    def _record(self, info: ProcessInfo | None, verification: ExeVerification | None,
                flags: tuple[str, ...], path: str, group: Group, allow: bool, decided_by: str,
                reason: str, t0: int, urgent: bool = False) -> None:
        if allow:
            self.allowed += 1
        else:
            self.denied += 1
        latency_us = (time.monotonic_ns() - t0) / 1000.0
        self.sink.record(Outcome(time.time(), info, verification, flags, path, group, allow,
                                 decided_by, reason, latency_us, self.mode), urgent)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # --- verification -------------------------------------------------------------------------

    def _await_verification(self, request: Request) -> None:
        key = request.proc.info.exe_key
        if key is None:
            self._finish(request, False, "error", "the executable cannot be read")
            return
        waiting = self._verifying.setdefault(key, [])
        waiting.append(request)
        self._watch_pid(request.pid)
        if len(waiting) == 1:
            self._submit_verification(key, request, 1)
        self._update_due()

    def _submit_verification(self, key: ExeKey, request: Request, attempt: int) -> None:
        future = self.workers.submit(verify_executable, request.pid, request.proc.info.exe,
                                     self.catalogue.system_dirs)

        def done(f: Future[ExeVerification]) -> None:
            self._post(("verified", key, f, attempt))

        future.add_done_callback(done)

    def _on_verified(self, key: ExeKey, future: Future[ExeVerification], attempt: int) -> None:
        waiting = self._verifying.pop(key, [])
        try:
            verification = future.result()
        except Exception as exc:
            for request in waiting:
                self._unwatch_if_idle(request.pid, request)
                self._finish(request, False, "error",
                             f"failed closed: the executable could not be verified: {exc}")
            self._update_due()
            return
        if verification.key == key:
            self._verified[key] = verification
        else:
            # What was hashed is not the file these processes were identified with (it changed
            # meanwhile): apply it only to those that run exactly that file now, verify again
            # for the others.
            self._verified[verification.key] = verification  # right for that file
            others = [r for r in waiting if current_exe_key(r.pid) != verification.key]
            waiting = [r for r in waiting if r not in others]
            if others and attempt < MAX_VERIFY_ATTEMPTS:
                self._verifying[key] = others
                self._submit_verification(key, others[0], attempt + 1)
            else:
                for request in others:
                    self._unwatch_if_idle(request.pid, request)
                    self._finish(request, False, "error", "failed closed: the executable "
                                 "kept changing while it was verified")
        for request in waiting:
            request.verification = request.proc.verification = verification
            self._unwatch_if_idle(request.pid, request)
            try:
                self._decide(request)
            except Exception as exc:
                log.exception("guard: error while deciding")
                self.errors += 1
                self._finish(request, False, "error", f"failed closed after an error: {exc}")
        self._update_due()

    # --- prompts ------------------------------------------------------------------------------

    def _enqueue_prompt(self, request: Request) -> None:
        key = prompt_key(request)
        for prompt in self._prompts.values():
            if prompt.key == key:
                prompt.requests.append(request)
                break
        else:
            prompt = Prompt(request.id, request, process_tree(request.pid))
            self._prompts[prompt.id] = prompt
        self._watch_pid(request.pid)
        self._publish_prompts()
        self._update_due()

    def _publish_prompts(self) -> None:
        views = []
        for prompt in self._prompts.values():
            front = prompt.requests[0]
            soonest = min(prompt.requests, key=lambda r: r.deadline)
            views.append(PromptView(
                id=prompt.id, group=front.group.name, technique=front.group.technique,
                requester=requester_of(front.proc.info, front.verification, front.proc.flags),
                tree=prompt.tree,
                files=tuple(dict.fromkeys(r.file for r in prompt.requests)),
                requests=len(prompt.requests),
                pids=tuple(dict.fromkeys(r.pid for r in prompt.requests)),
                deadline=soonest.deadline, paused_until=soonest.paused_until,
                pause_left=max(0.0, self.settings.interaction_cap - soonest.paused_total),
                created=prompt.created,
                default_action="allow" if self.settings.default_allow else "deny"))
        self.views = tuple(views)
        self.sink.prompts_changed(self.views)

    def _on_answer(self, prompt_id: int, allow: bool, scope: Scope, label: str) -> None:
        prompt = self._prompts.pop(prompt_id, None)
        if prompt is None:
            return  # expired or cancelled meanwhile
        front = prompt.requests[0]
        verification = front.verification
        reason = label
        if verification is not None and scope != "once":
            info = front.proc.info
            group = front.group.name
            if scope == "always":
                rule = SavedRule(
                    id=SavedRule.make_id(verification.path, verification.sha256, group),
                    action="allow" if allow else "deny", group=group,
                    executable=verification.path, sha256=verification.sha256,
                    created=datetime.now(UTC).isoformat(timespec="seconds"), decided_by=label)
                self.book.add_saved(rule)
                self.workers.submit(self.book.persist)
                reason = f"{label} (rule {rule.id})"
            elif allow:
                expires = time.monotonic() + FIVE_MINUTES if scope == "5min" else math.inf
                self.book.add_temp(TempRule(scope, group, verification.path,
                                            verification.sha256,
                                            info.key if scope == "process" else None, expires))
        for request in prompt.requests:
            self._finish(request, allow, "keypress", reason, urgent=True)
        for request in prompt.requests:
            self._unwatch_if_idle(request.pid)
        self._publish_prompts()
        self._update_due()

    def _on_hold(self, prompt_id: int) -> None:
        prompt = self._prompts.get(prompt_id)
        if prompt is None:
            return
        now = time.monotonic()
        pause = self.settings.interaction_pause
        for r in prompt.requests:
            target = now + pause
            extension = target - max(now, r.paused_until)
            extension = min(extension, self.settings.interaction_cap - r.paused_total)
            if extension <= 0:
                continue
            r.paused_until = max(now, r.paused_until) + extension
            r.deadline += extension
            r.paused_total += extension
        self._publish_prompts()
        self._update_due()

    def _expire(self, now: float) -> None:
        changed = False
        default = self.settings.default_allow
        action = "allow" if default else "deny"
        for prompt_id, prompt in list(self._prompts.items()):
            expired = [r for r in prompt.requests if r.deadline <= now]
            if not expired:
                continue
            prompt.requests = [r for r in prompt.requests if r.deadline > now]
            for r in expired:
                self._finish(r, default, "timeout",
                             f"no answer within the deadline: default action {action}",
                             urgent=True)
                self._unwatch_if_idle(r.pid)
            if not prompt.requests:
                del self._prompts[prompt_id]
            changed = True
        for key, waiting in list(self._verifying.items()):
            expired = [r for r in waiting if r.deadline <= now]
            if expired:
                self._verifying[key] = [r for r in waiting if r.deadline > now]
                for r in expired:
                    self._finish(r, default, "timeout",
                                 f"verification did not finish in time: default action {action}")
                    self._unwatch_if_idle(r.pid)
        if changed:
            self._publish_prompts()
        self._update_due()

    # --- waiting processes that exit ------------------------------------------------------------

    def _watch_pid(self, pid: int) -> None:
        if pid in self._pidfds:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # already gone: its requests are cancelled by the kernel and expire here
        self._pidfds[pid] = fd
        self._pidfd_pids[fd] = pid
        self._poller.register(fd, select.EPOLLIN)

    def _unwatch_if_idle(self, pid: int, leaving: Request | None = None) -> None:
        for prompt in self._prompts.values():
            if any(r.pid == pid and r is not leaving for r in prompt.requests):
                return
        for waiting in self._verifying.values():
            if any(r.pid == pid and r is not leaving for r in waiting):
                return
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            del self._pidfd_pids[fd]
            self._poller.unregister(fd)
            os.close(fd)

    def _on_exit(self, pid: int) -> None:
        """The process behind waiting requests exited (killed while blocked): answer them (the
        kernel has already dropped them) and take its prompt away."""
        changed = False
        for prompt_id, prompt in list(self._prompts.items()):
            gone = [r for r in prompt.requests if r.pid == pid]
            if not gone:
                continue
            prompt.requests = [r for r in prompt.requests if r.pid != pid]
            for r in gone:
                self._finish(r, False, "process-exit", "the process exited while waiting",
                             urgent=True)
            if not prompt.requests:
                del self._prompts[prompt_id]
            changed = True
        for key, waiting in list(self._verifying.items()):
            gone = [r for r in waiting if r.pid == pid]
            if gone:
                self._verifying[key] = [r for r in waiting if r.pid != pid]
                for r in gone:
                    self._finish(r, False, "process-exit", "the process exited while waiting")
        fd = self._pidfds.pop(pid, None)
        if fd is not None:
            del self._pidfd_pids[fd]
            self._poller.unregister(fd)
            os.close(fd)
        self._procs.forget(pid)
        if changed:
            self._publish_prompts()
        self._update_due()

    # --- inbox, marks, housekeeping ---------------------------------------------------------------

    def _on_inbox(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        with self._inbox_lock:
            messages, self._inbox = self._inbox, []
        for message in messages:
            kind = message[0]
            if kind == "stop":
                self._stopping = True
            elif kind == "verified":
                self._on_verified(message[1], message[2], message[3])
            elif kind == "answer":
                self._on_answer(*message[1:])
            elif kind == "hold":
                self._on_hold(message[1])
            elif kind == "mode":
                self._on_mode(message[1])
            elif kind == "plan":
                self._on_plan(message[1])
            elif kind == "rules":
                for proc in self._procs.entries.values():
                    proc.verdicts.clear()

    def _on_mode(self, mode: str) -> None:
        self.mode = mode
        if mode != "monitor":
            return
        for prompt in list(self._prompts.values()):
            for r in prompt.requests:
                self._finish(r, True, "monitor", "switched to monitor mode", urgent=True)
                self._unwatch_if_idle(r.pid)
        self._prompts.clear()
        self._publish_prompts()
        self._update_due()

    def _on_inotify(self) -> None:
        assert self.notify is not None
        now_dir = False
        later = False
        for event in self.notify.read_events():
            if self.marks.needs_replan(event):
                if event.mask & IN_ISDIR or event.wd not in self.marks.watches:
                    now_dir = True  # a directory came or went: re-plan at once
                else:
                    later = True
            if event.mask & IN_IGNORED:  # the watch is gone
                self.marks.forget_watch(event.wd)
            elif event.mask & IN_MOVE_SELF:
                # The watch follows the directory to its new name: drop it, so the re-plan
                # watches whatever is at the planned path now.
                with contextlib.suppress(OSError):
                    self.notify.rm_watch(event.wd)
                self.marks.forget_watch(event.wd)
        if now_dir:
            self._replan_at = None
            self._request_replan()
        elif later and self._replan_at is None:
            self._replan_at = time.monotonic() + REPLAN_DELAY
            self._schedule(self._replan_at)

    def _request_replan(self) -> None:
        if self._replan_running:
            self._replan_again = True
            return
        self._replan_running = True
        future = self.workers.submit(self.planner)
        future.add_done_callback(lambda f: self._post(("plan", f)))

    def _on_plan(self, future: Future[MarkPlan]) -> None:
        self._replan_running = False
        try:
            plan = future.result()
        except Exception as exc:
            self.errors += 1
            self.last_error = f"cannot re-plan marks: {exc}"
        else:
            if self.marks.apply(plan, self.fan, self.notify):
                self._replan_again = True  # see Marks.apply: a new watch may have missed events
        if self._replan_again:
            self._replan_again = False
            self._request_replan()

    def _housekeeping(self, now: float) -> None:
        alive = set()
        for rule in self.book.temporary():
            if rule.key is not None and read_start_ticks(rule.key.pid) == rule.key.start_ticks:
                alive.add(rule.key)
        self.book.expire(now, alive)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_INTERVAL
            self._procs.sweep()

    def _shutdown(self) -> None:
        """Answer everything still waiting (default action), then release what we hold."""
        default = self.settings.default_allow
        for prompt in self._prompts.values():
            for r in prompt.requests:
                self._finish(r, default, "shutdown", "fluxtui stopped: default action")
        for waiting in self._verifying.values():
            for r in waiting:
                self._finish(r, default, "shutdown", "fluxtui stopped: default action")
        self._prompts.clear()
        self._verifying.clear()
        self._hand_over_folds()
        self.views = ()
        for fd in self._pidfds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pidfds.clear()
        self._pidfd_pids.clear()
        self._procs.close()
        self._poller.close()
        self._main.close()


def pending_cap() -> int:
    """How many requests may wait at once: each holds fds, and running out of them would make
    the kernel deny every open it cannot hand over (see FanotifyGroup.read_events)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_PENDING
    return max(1, min(MAX_PENDING, (soft - FD_RESERVE) // FDS_PER_WAITER))


def raise_fd_limit() -> str:
    """Raise the soft RLIMIT_NOFILE to the hard limit (waiting opens each hold fds). Returns a
    problem to report, or ""."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        try:
            with open("/proc/sys/fs/nr_open") as f:
                hard = int(f.read())
        except (OSError, ValueError) as exc:
            return f"cannot read /proc/sys/fs/nr_open: {exc}"
    if soft != resource.RLIM_INFINITY and soft >= hard:
        return ""
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, resource.getrlimit(
            resource.RLIMIT_NOFILE)[1]))
    except (OSError, ValueError) as exc:
        return f"cannot raise the open file limit to {hard}: {exc}"
    return ""


def current_exe_key(pid: int) -> ExeKey | None:
    try:
        return ExeKey.of(os.stat(f"/proc/{pid}/exe"))
    except OSError:
        return None
