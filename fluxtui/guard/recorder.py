"""The audit side of the guard: a thread that takes the responder's answers after they were
written to the kernel and sends them to the SQLite audit trail, the event bus (headless JSON
stream, TUI) and the systemd journal.

The responder only appends to a deque (cheap, never blocks). `interval` seconds after the first
answer of a batch, or at once for answers a person is waiting to see (prompts), the recorder
drains it; with nothing to record it sleeps (a wake-up costs ~0.1 ms of CPU on a VM). Identical
answers in one batch (same process, file, outcome and reason: a program re-opening its key in a
loop) are folded into one record with a count, the first and last time and the longest latency,
so a busy reader cannot flood the disk, the journal or the UI; every open is still counted.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fluxtui.audit_trail import AuditRecord, AuditStore, AuditStoreError
from fluxtui.guard.events import GuardDecision, PromptsChanged, PromptView
from fluxtui.guard.requests import Fold, Outcome, PendingNote, Sink, requester_of
from fluxtui.journal import JournalWriter

log = logging.getLogger(__name__)

HISTORY_IN_MEMORY = 1000
FINDINGS_KEPT = 1000  # findings waiting for the next tick at most
CHUNK = 256  # outcomes folded between two GIL hand-overs
IDLE_WAIT_S = 5.0  # a safety net: every path that leaves work sets `_work`


class Recorder(Sink):
    def __init__(self, publish: Callable[[object], None], store: AuditStore | None,
                 journal: JournalWriter | None, interval: float = 0.2) -> None:
        self.publish = publish
        self.store = store
        self.journal = journal
        self.interval = interval
        self._items: deque[Outcome] = deque()
        self._folds: deque[tuple[list[Fold], str]] = deque()
        self._views: tuple[PromptView, ...] | None = None
        # The responder sets the newest pending set while this thread takes it: without the
        # lock a set made between the take's read and its reset was lost, and the UI, which
        # takes PromptsChanged as the pending set, kept showing a prompt already answered.
        self._views_lock = threading.Lock()
        self._announced: set[int] = set()
        self._wake = threading.Event()  # flush now
        self._work = threading.Event()  # something to flush (a batch starts)
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.recent: deque[GuardDecision] = deque(maxlen=HISTORY_IN_MEMORY)
        self.recorded = 0  # decisions written out (folded ones count once)
        self.opens = 0  # opens those decisions cover
        self.store_error: str | None = None
        self.journal_error: str | None = None
        # Reads (allowed or refused) by a reader that is not verified or is flagged: findings
        # for the risk score (T1552), taken by the component at each tick.
        self.findings: deque[GuardDecision] = deque(maxlen=FINDINGS_KEPT)
        # Pending requests: noted by the responder, written here; ids written and not yet
        # answered (their rows are deleted when the answer is recorded).
        self._notes: deque[PendingNote] = deque()
        self._written: set[int] = set()
        self.session = f"{os.getpid()}-{time.time_ns()}"

    # --- Sink (called on the responder thread; must not block) ---------------------------------

    def record(self, outcome: Outcome, urgent: bool = False) -> None:
        self._items.append(outcome)
        if urgent:
            self._flush_now()
        elif not self._work.is_set():
            self._work.set()

    def record_folds(self, folds: list[Fold], mode: str) -> None:
        self._folds.append((folds, mode))
        if not self._work.is_set():
            self._work.set()

    def pending(self, note: PendingNote) -> None:
        self._notes.append(note)
        self._flush_now()  # written at once: a kill -9 may come any time

    def prompts_changed(self, views: tuple[PromptView, ...]) -> None:
        with self._views_lock:
            self._views = views
        self._flush_now()

    def _flush_now(self) -> None:
        self._wake.set()
        self._work.set()

    # --- thread -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fluxtui-guard-recorder",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._flush_now()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._work.wait(IDLE_WAIT_S)
            if not self._wake.is_set():
                self._wake.wait(self.interval)  # what comes meanwhile joins the batch
            self._work.clear()
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # keep recording what comes next
                log.exception("guard recorder failed")

    def flush(self) -> None:
        with self._flush_lock:
            self._flush()

    def _flush(self) -> None:
        with self._views_lock:
            views, self._views = self._views, None
        if views is not None:
            for view in views:
                if view.id not in self._announced:
                    self._announced.add(view.id)
                    self.publish(view)  # a new prompt: in the stream, and for the UI
            self._announced &= {v.id for v in views}
            self.publish(PromptsChanged(views))
        count = len(self._items)
        # Taken after the count: the note of every outcome counted is in by now.
        notes = [self._notes.popleft() for _ in range(len(self._notes))]
        folded = [self._folds.popleft() for _ in range(len(self._folds))]
        if not count and not folded and not notes:
            return
        groups: dict[tuple[Any, ...], list[Outcome]] = {}
        answered: set[int] = set()
        while count > 0:
            chunk = [self._items.popleft() for _ in range(min(count, CHUNK))]
            answered.update(o.request_id for o in chunk if o.request_id)
            group_outcomes(chunk, groups)
            count -= len(chunk)
            if count:
                time.sleep(0)  # let the responder take the GIL between chunks
        self._write_pending([n for n in notes if n.request_id not in answered],
                            answered & self._written)
        decisions = decisions_of(groups)
        decisions += [decision_of_fold(f, mode) for folds, mode in folded for f in folds]
        decisions.sort(key=lambda d: d.timestamp)
        if self.store is not None:
            try:
                self.store.record(audit_record(d) for d in decisions)
                self.store_error = None
            except AuditStoreError as exc:
                self.store_error = str(exc)
            except Exception as exc:  # a record the store refuses: the rest still goes out
                log.exception("guard: audit records not stored")
                self.store_error = f"audit records not stored: {type(exc).__name__}: {exc}"
        for decision in decisions:
            self.publish(decision)
            self._journal(decision)
            if is_finding(decision):
                self.findings.append(decision)
        self.recent.extend(decisions)
        self.recorded += len(decisions)
        self.opens += sum(d.count for d in decisions)

    def _write_pending(self, notes: list[PendingNote], resolved: set[int]) -> None:
        if self.store is None or not (notes or resolved):
            return
        try:
            self.store.record(pending_record(n, self.session) for n in notes)
            self.store.resolve_pending(self.session, resolved)
        except AuditStoreError as exc:
            self.store_error = str(exc)
            return
        self._written.update(n.request_id for n in notes)
        self._written -= resolved

    def _journal(self, d: GuardDecision) -> None:
        if self.journal is None:
            return
        r = d.requester
        try:
            self.journal.send(
                f"fluxtui guard: {d.outcome} {r.exe or '?'} (pid {r.pid}) to read {d.file} "
                f"[{d.group}]: {d.reason}" + (f" ({d.count} opens)" if d.count > 1 else ""),
                priority=6 if d.allowed else 4,
                OBJECT_PID=r.pid or None, FLUXTUI_OUTCOME=d.outcome, FLUXTUI_FILE=d.file,
                FLUXTUI_GROUP=d.group, FLUXTUI_EXE=r.exe, FLUXTUI_DECIDED_BY=d.decided_by,
                FLUXTUI_TECHNIQUE=d.technique, FLUXTUI_COUNT=d.count)
            self.journal_error = None
        except Exception as exc:  # OSError, JournalUnavailable, python-systemd errors
            self.journal_error = f"journal write failed: {exc}"


def is_finding(d: GuardDecision) -> bool:
    """A credential read by a program the policy does not allow (not a verified listed
    program, no rule, no answer allowing it), whatever the answer: in monitor mode the read
    went through, in enforce mode the attempt is the finding."""
    return bool(d.requester.key.pid) and not d.vetted


def group_outcomes(outcomes: list[Outcome], groups: dict[tuple[Any, ...], list[Outcome]]
                   ) -> None:
    for o in outcomes:
        key = (o.info.key if o.info else None, o.path, o.allowed, o.decided_by, o.reason,
               o.flags, o.credential, o.vetted)
        groups.setdefault(key, []).append(o)


def decisions_of(groups: dict[tuple[Any, ...], list[Outcome]]) -> list[GuardDecision]:
    decisions = []
    for same in groups.values():
        first = same[0]
        decisions.append(GuardDecision(
            timestamp=first.ts, file=first.path, group=first.group.name,
            technique=first.group.technique, allowed=first.allowed,
            decided_by=first.decided_by, reason=first.reason,
            requester=requester_of(first.info, _verification(same), first.flags),
            latency_us=max(o.latency_us for o in same), mode=first.mode, count=len(same),
            last_timestamp=same[-1].ts if len(same) > 1 else None,
            credential=first.credential, vetted=first.vetted))
    decisions.sort(key=lambda d: d.timestamp)
    return decisions


def decision_of_fold(fold: Fold, mode: str) -> GuardDecision:
    group = fold.protected.group
    return GuardDecision(
        timestamp=fold.first, file=fold.protected.path, group=group.name,
        technique=group.technique, allowed=True, decided_by=fold.verdict.decided_by,
        reason=fold.verdict.reason,
        requester=requester_of(fold.info, fold.verification, fold.flags),
        latency_us=fold.max_latency_us, mode=mode, count=fold.count,
        last_timestamp=fold.last if fold.count > 1 else None,
        credential=fold.protected.credential, vetted=True)


def _verification(outcomes: list[Outcome]) -> Any:
    return next((o.verification for o in outcomes if o.verification is not None), None)


def pending_record(n: PendingNote, session: str) -> AuditRecord:
    info = n.info
    return AuditRecord(
        ts=n.ts, kind=AuditStore.PENDING, outcome="pending", pid=info.pid,
        start_ticks=info.key.start_ticks, user=info.user, executable=info.exe, target=n.path,
        category=n.group.name, decided_by="", reason="waiting for an answer",
        detail={"session": session, "request": n.request_id, "technique": n.group.technique,
                "mode": n.mode, "uid": info.uid, "cmdline": list(info.cmdline),
                "ppid": info.ppid, "parent_exe": info.parent_exe,
                "credential": n.credential or n.path})


def audit_record(d: GuardDecision) -> AuditRecord:
    r = d.requester
    return AuditRecord(
        ts=d.timestamp, last_ts=d.last_timestamp, count=d.count, kind="file-access",
        outcome=d.outcome, pid=r.pid or None, start_ticks=r.key.start_ticks or None,
        user=r.user, executable=r.exe, target=d.file, category=d.group,
        decided_by=d.decided_by, reason=d.reason, latency_us=round(d.latency_us, 1),
        detail={"technique": d.technique, "mode": d.mode, "uid": r.uid, "euid": r.euid,
                "cmdline": list(r.cmdline), "ppid": r.ppid, "parent_exe": r.parent_exe,
                "sha256": r.sha256, "package": r.package, "verified": r.verified,
                "verification": r.verification, "flags": list(r.flags),
                "credential": d.credential or d.file, "vetted": d.vetted})
