"""The credential guard as an engine component (name "guard").

`start` opens a fanotify permission group, marks the credential catalogue, and starts the
responder (answers) and recorder (audit trail) threads. Without root, without fanotify permission
events or with a bad catalogue it reports UNAVAILABLE with the reason and everything else keeps
working. Each tick it puts a `GuardView` (fluxtui/views.py) in `Snapshot.views["guard"]`:
its figures, the prompts waiting, the rules and the latest decisions (read from the audit
database on the guard's worker thread when something new was recorded).

The UI reads that view only and acts through `fluxtui.commands` (the engine's dispatch calls
`answer()`, `hold()`, `set_mode()`, `delete_rule()` here); every call is thread-safe and never
blocks on the kernel.

Published on the bus: a `PromptView` when a prompt appears (fluxtui.ecs), `PromptsChanged` whenever
the pending set changes (UI only), and a `GuardDecision` per answer (fluxtui.ecs). Each tick, every
read of a credential by a reader the policy does not allow (unverified, unlisted or flagged; in
monitor mode as in enforce mode) adds `unverified_reader_risk` to the reader's risk and raises
one `guard.unverified_credential_read` alert per process and group (ATT&CK T1552 / T1555).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from fluxtui.audit_trail import AuditStore, AuditStoreError
from fluxtui.bus import EventBus
from fluxtui.collectors.fanotify import FanotifyError, FanotifyGroup
from fluxtui.collectors.inotify import Inotify
from fluxtui.collectors.proc_events import ProcEvents
from fluxtui.component import RISK_INPUTS, Channel, TickContext
from fluxtui.config import GuardConfig
from fluxtui.events import Alert, ComponentState, ComponentStatus, ProcessKey, Severity
from fluxtui.guard.access_rules import SCOPES, RuleBook, RulesFile, SavedRule
from fluxtui.guard.catalogue import Catalogue, CatalogueError, build_catalogue
from fluxtui.guard.events import TECHNIQUE_NAMES, GuardDecision, PromptView
from fluxtui.guard.exposure import ptrace_exposure
from fluxtui.guard.limits import raise_fd_limit
from fluxtui.guard.marks import Marks, plan_marks
from fluxtui.guard.namespaces import reference
from fluxtui.guard.recorder import Recorder
from fluxtui.guard.responder import Responder, ResponderSettings
from fluxtui.guard.set_lock import GuardSetLock, protected_roots
from fluxtui.journal import JournalUnavailable, JournalWriter
from fluxtui.views import GuardHistoryItem, GuardView

log = logging.getLogger(__name__)

RELEASED_REASON = "released unanswered when fluxtui stopped"
MAX_ALERTED = 4096  # (process, group) pairs alerted on, remembered at most
HISTORY_LIMIT = 200  # decisions in the view (the Guard tab), newest first

__all__ = ["GuardComponent", "GuardView"]  # GuardView lives in fluxtui/views.py


def _fanotify_reason(exc: OSError) -> str:
    if exc.errno == errno.EPERM:
        return "needs root (fanotify permission events need CAP_SYS_ADMIN)"
    if exc.errno == errno.EINVAL:
        return ("this kernel has no fanotify permission events "
                "(CONFIG_FANOTIFY_ACCESS_PERMISSIONS)")
    if exc.errno == errno.ENOSYS:
        return "this kernel has no fanotify (CONFIG_FANOTIFY)"
    return f"fanotify unavailable: {exc.strerror or exc}"


class GuardComponent:
    name = "guard"
    produces: ClassVar[tuple[Channel[Any], ...]] = (RISK_INPUTS,)
    consumes: ClassVar[tuple[Channel[Any], ...]] = ()

    def __init__(self, config: GuardConfig, interactive: bool) -> None:
        self.config = config
        self.interactive = interactive
        self._state = ComponentState.STOPPED
        self._reason = "not started"
        self._fan: FanotifyGroup | None = None
        self._notify: Inotify | None = None
        self._proc_events: ProcEvents | None = None
        self._workers: ThreadPoolExecutor | None = None
        self._responder: Responder | None = None
        self._recorder: Recorder | None = None
        self._store: AuditStore | None = None
        self._journal: JournalWriter | None = None
        self._catalogue: Catalogue | None = None
        self._marks: Marks | None = None
        self._book = RuleBook(RulesFile(config.rules_file))
        self._notes: dict[str, str] = {}
        self._alerted: set[tuple[ProcessKey, str]] = set()
        self._history: tuple[GuardHistoryItem, ...] = ()
        self._history_error = ""
        self._history_of: int | None = None  # `recorded` count the history was read at
        self._history_loading = threading.Lock()
        self._set_lock: GuardSetLock | None = None

    # --- Component ------------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        if not self.config.enabled:
            self._unavailable("disabled in config (guard.enabled: false)")
            return
        try:
            self._catalogue = build_catalogue(self.config)
        except CatalogueError as exc:
            self._unavailable(f"config: {exc}")
            return
        self._set_lock = GuardSetLock(protected_roots(
            self._catalogue.homes, any(g.absolute for g in self._catalogue.groups)))
        taken = self._set_lock.acquire()
        if taken is not None:  # another fluxtui guards these files
            self._unavailable(taken)
            return
        if self._set_lock.note:
            self._notes["lock"] = self._set_lock.note
        try:
            self._fan = FanotifyGroup.for_permissions()
        except FanotifyError as exc:
            self._set_lock.release()
            self._unavailable(_fanotify_reason(exc))
            return
        try:
            self._start_rest(bus)
        except Exception as exc:
            log.exception("guard failed to start")
            self.stop()
            self._unavailable(f"failed to start: {exc}")

    def _start_rest(self, bus: EventBus) -> None:
        assert self._fan is not None and self._catalogue is not None
        catalogue = self._catalogue
        try:
            self._notify = Inotify()
        except OSError as exc:
            self._notes["watch"] = f"new credential directories need a restart: {exc}"
        try:
            self._proc_events = ProcEvents()
            self._notes["process_events"] = "kernel process events"
        except OSError as exc:
            self._notes["process_events"] = (f"unavailable ({exc.strerror or exc}): each open "
                                             "re-reads /proc")
        if reference().note:
            self._notes["namespaces"] = reference().note
        if ptrace_exposure():
            self._notes["ptrace"] = ptrace_exposure()
        limit_problem = raise_fd_limit()
        if limit_problem:
            self._notes["fd_limit"] = limit_problem
        self._marks = Marks(catalogue, self.config.state_file)
        self._marks.protected.restore(self._fan)
        for _ in range(10):  # again while new watches appear (see Marks.apply); bounded
            if not self._marks.apply(plan_marks(catalogue), self._fan, self._notify):
                break
        protected = self._marks.protected
        protected.save(protected.state())
        self._book.load()
        if self._book.error:
            log.warning("%s", self._book.error)
        try:
            self._store = AuditStore(self.config.audit_db)
            self._notes["audit"] = self.config.audit_db
        except AuditStoreError as exc:
            self._notes["audit"] = f"unavailable: {exc}"
        if self._store is not None:
            try:
                released = self._store.release_pending(RELEASED_REASON)
            except AuditStoreError as exc:
                self._notes["audit"] += f" (pending requests of the last run not read: {exc})"
            else:
                if released:
                    self._notes["audit"] += (f" ({released} request(s) released unanswered "
                                             "when fluxtui last stopped)")
        if self.config.journal:
            try:
                self._journal = JournalWriter()
                self._notes["journal"] = f"journald ({self._journal.via})"
            except JournalUnavailable as exc:
                self._notes["journal"] = f"unavailable: {exc}"
        else:
            self._notes["journal"] = "off (guard.journal: false)"
        self._recorder = Recorder(bus.publish, self._store, self._journal)
        self._workers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fluxtui-guard")
        settings = ResponderSettings(
            mode=self.config.mode, interactive=self.interactive,
            decision_timeout=self.config.decision_timeout,
            interaction_pause=self.config.interaction_pause,
            interaction_cap=self.config.interaction_cap,
            default_allow=self.config.default_action == "allow")
        self._responder = Responder(catalogue, self._fan, self._marks, self._book, settings,
                                    self._recorder, self._workers,
                                    lambda: plan_marks(catalogue), self._notify,
                                    self._proc_events)
        self._recorder.start()
        self._responder.start()
        self._state = ComponentState.RUNNING
        self._reason = ""

    def _unavailable(self, reason: str) -> None:
        self._state = ComponentState.UNAVAILABLE
        self._reason = reason

    def stop(self) -> None:
        """Answer what is waiting (default action), release the kernel, flush the trail."""
        if self._responder is not None:
            self._responder.stop()
            self._responder = None
        if self._fan is not None:
            self._fan.close()  # the kernel allows anything still waiting
            self._fan = None
        if self._marks is not None:
            self._marks.close()
        for closable in (self._notify, self._proc_events):
            if closable is not None:
                with contextlib.suppress(OSError):
                    closable.close()
        self._notify = None
        self._proc_events = None
        if self._workers is not None:
            self._workers.shutdown(wait=True, cancel_futures=True)
            self._workers = None
        if self._recorder is not None:
            self._recorder.stop()
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self._set_lock is not None:
            self._set_lock.release()  # after the fanotify group: the files are free now
        if self._state is ComponentState.RUNNING:
            self._state = ComponentState.STOPPED
            self._reason = "stopped"

    def status(self) -> ComponentStatus:
        if self._state is not ComponentState.RUNNING:
            return ComponentStatus(self.name, self._state, self._reason)
        view = self.view()
        detail = f"{view.mode} · {view.pending} pending · {view.allowed} allowed · " \
                 f"{view.denied} denied"
        if view.rules_error:
            detail += " · rules file refused"
        if self._responder is not None and not self._responder.running:
            return ComponentStatus(self.name, ComponentState.UNAVAILABLE,
                                   self._responder.last_error or "responder stopped")
        return ComponentStatus(self.name, self._state, "", detail)

    def on_tick(self, tick: TickContext) -> None:
        if self._state is ComponentState.RUNNING:
            self._refresh_history()
            tick.set_view(self.name, self.view())
        if self._recorder is not None:
            findings = self._recorder.findings
            while findings:
                self._finding(tick, findings.popleft())

    def _finding(self, tick: TickContext, d: GuardDecision) -> None:
        """A credential read by a reader the policy does not allow (unverified, unlisted or
        flagged): risk for the reader, and one alert per process and group."""
        r = d.requester
        verb = "read" if d.allowed else "tried to read"
        why = r.verification if not r.verified else (
            "flagged: " + ", ".join(r.flags) if r.flags else "verified, but not listed for it")
        reason = f"{verb} {d.group} credential {d.file} ({why})"
        tick.add_risk(r.key, self.config.unverified_reader_risk, reason)
        seen = (r.key, d.group)
        if seen in self._alerted:
            return
        if len(self._alerted) >= MAX_ALERTED:
            self._alerted.clear()
        self._alerted.add(seen)
        tick.raise_alert(Alert(
            timestamp=d.timestamp, rule_id="guard.unverified_credential_read",
            title="Credential read by a program not allowed to read it" if d.allowed
            else "Credential read attempted by a program not allowed to read it",
            severity=Severity.HIGH if r.flags else Severity.MEDIUM,
            technique_id=d.technique,
            technique_name=TECHNIQUE_NAMES.get(d.technique, d.technique),
            key=r.key, process_name=r.exe.rsplit("/", 1)[-1] or "?",
            reasons=(reason, f"decided by {d.decided_by}: {d.reason}"),
            extra={"file": d.file, "group": d.group, "mode": d.mode,
                   "credential": d.credential or d.file}))

    # --- for the UI -------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._state is ComponentState.RUNNING

    @property
    def reason(self) -> str:
        return self._reason

    def view(self) -> GuardView:
        r = self._responder
        rec = self._recorder
        marks = self._marks
        pending = r.views if r else ()
        problems = tuple(marks.problems) if marks else ()
        if r is not None and r.last_error:
            problems = (*problems, r.last_error)
        if rec is not None and rec.store_error:
            problems = (*problems, rec.store_error)
        if rec is not None and rec.journal_error:
            problems = (*problems, rec.journal_error)
        if marks is not None and marks.protected.save_error:
            problems = (*problems, marks.protected.save_error)
        if "namespaces" in self._notes:
            problems = (*problems, self._notes["namespaces"])
        if "watch" in self._notes:
            problems = (*problems, self._notes["watch"])
        if "fd_limit" in self._notes:
            problems = (*problems, self._notes["fd_limit"])
        if "ptrace" in self._notes:
            problems = (*problems, self._notes["ptrace"])
        if "lock" in self._notes:
            problems = (*problems, self._notes["lock"])
        return GuardView(
            mode=r.mode if r else self.config.mode, pending=len(pending),
            waiting_opens=sum(p.requests for p in pending),
            allowed=r.allowed if r else 0, denied=r.denied if r else 0,
            errors=r.errors if r else 0, late=r.late if r else 0,
            protected_files=len(marks.plan.files) if marks else 0,
            marked_dirs=len(marks.marked_dirs) if marks else 0, problems=problems,
            rules=len(self._book.saved()), rules_error=self._book.error,
            audit=self._notes.get("audit", "not started"),
            journal=self._notes.get("journal", "not started"),
            process_events=self._notes.get("process_events", "not started"),
            decisions_recorded=rec.recorded if rec else 0, prompts=pending,
            rule_list=tuple(self._book.saved()), rules_path=self.rules_path,
            history=self._history, history_error=self._history_error)

    def _refresh_history(self) -> None:
        """Read the latest decisions again when something new was recorded: on the worker
        thread (SQLite), one read at a time; the view carries the last one read."""
        recorded = self._recorder.recorded if self._recorder is not None else 0
        workers = self._workers
        if recorded == self._history_of or workers is None:
            return
        if not self._history_loading.acquire(blocking=False):
            return  # a read is under way; the next tick asks again
        self._history_of = recorded

        def load() -> None:
            try:
                items = self.history(HISTORY_LIMIT)
                self._history = tuple(GuardHistoryItem.from_record(item, index)
                                      for index, item in enumerate(items))
                self._history_error = ""
            except Exception as exc:  # reported in the view; the last history stays
                log.warning("guard history: %s", exc)
                self._history_error = f"history not read: {exc}"
            finally:
                self._history_loading.release()

        try:
            workers.submit(load)
        except RuntimeError:  # shutting down
            self._history_loading.release()

    def pending(self) -> tuple[PromptView, ...]:
        return self._responder.views if self._responder else ()

    def answer(self, prompt_id: int, action: str, scope: str, label: str = "") -> None:
        if action not in ("allow", "deny"):
            raise ValueError(f"action must be allow or deny, not {action!r}")
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}, not {scope!r}")
        if action == "deny" and scope not in ("once", "always"):
            raise ValueError("a deny is given once or always")
        if self._responder is not None:
            self._responder.answer(prompt_id, action == "allow", scope,
                                   label or f"{action} {scope}")

    def hold(self, prompt_id: int) -> None:
        if self._responder is not None:
            self._responder.hold(prompt_id)

    @property
    def mode(self) -> str:
        return self._responder.mode if self._responder else self.config.mode

    def set_mode(self, mode: str) -> None:
        if mode not in ("enforce", "monitor"):
            raise ValueError(f"mode must be enforce or monitor, not {mode!r}")
        if self._responder is not None:
            self._responder.set_mode(mode)

    def toggle_mode(self) -> str:
        """Switch enforce <-> monitor; returns the mode asked for (applied by the responder)."""
        mode = "monitor" if self.mode == "enforce" else "enforce"
        self.set_mode(mode)
        return mode

    def rules(self) -> list[SavedRule]:
        return self._book.saved()

    @property
    def rules_error(self) -> str | None:
        return self._book.error

    @property
    def rules_path(self) -> str:
        return str(self._book.file.path)

    def delete_rule(self, rule_id: str) -> bool:
        """Forget an "always" rule now and rewrite the rules file in the background."""
        if not self._book.delete(rule_id):
            return False
        if self._responder is not None:
            self._responder.rules_changed()
        if self._workers is not None:
            self._workers.submit(self._book.persist)
        else:
            self._book.persist()
        return True

    def history(self, limit: int = 200) -> list[dict[str, Any]]:
        """Newest first: from the audit database, else from memory (this session)."""
        if self._store is not None:
            try:
                return self._store.recent(limit, kind="file-access")
            except AuditStoreError:
                pass
        if self._recorder is None:
            return []
        out = []
        for d in reversed(self._recorder.recent):
            r = d.requester
            out.append({"ts": d.timestamp, "last_ts": d.last_timestamp or d.timestamp,
                        "count": d.count, "outcome": d.outcome, "pid": r.pid, "user": r.user,
                        "executable": r.exe, "target": d.file, "category": d.group,
                        "decided_by": d.decided_by, "reason": d.reason,
                        "latency_us": d.latency_us, "detail": {"technique": d.technique}})
            if len(out) >= limit:
                break
        return out

    # for tests and the benchmark
    @property
    def responder(self) -> Responder | None:
        return self._responder

    @property
    def recorder(self) -> Recorder | None:
        return self._recorder

    @property
    def marks(self) -> Marks | None:
        return self._marks

    def flush(self) -> None:
        """Write out what the recorder holds now (tests)."""
        if self._recorder is not None:
            self._recorder.flush()
