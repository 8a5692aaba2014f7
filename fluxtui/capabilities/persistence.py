"""The persistence and tampering watch, plugged into the engine as the "persistence" component.

Its reader (persistence_reader.py) reads two fanotify notification groups on its own thread
(nothing ever waits for fluxtui). The tick judges the changes it read
(detection/persistence_rules.py), raises alerts and risk, publishes a `FileChange` per change,
summarises bursts, and feeds the kernel's per-process rename/unlink/write counts (the syscall
view) to the ransomware detector. It puts a `PersistenceView` in `Snapshot.views["persistence"]`.
Nothing here imports textual.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fluxtui.bus import EventBus
from fluxtui.capabilities.lineage import ExeVerifier
from fluxtui.capabilities.persistence_reader import QUEUE_LIMIT, Burst, ChangeReader, Rename
from fluxtui.capabilities.persistence_writers import WriterIdentifier
from fluxtui.capabilities.syscall_view import SYSCALLS
from fluxtui.component import RISK_INPUTS, Channel, TickContext
from fluxtui.config import Config
from fluxtui.detection.persistence_rules import (
    RULE_BURST,
    Change,
    Writer,
    expected_writer,
    judge,
    technique_name,
)
from fluxtui.detection.ransomware import RansomwareDetector
from fluxtui.detection.syscall_rules import Finding, RuleFilter, Subject
from fluxtui.events import (
    Alert,
    ComponentState,
    ComponentStatus,
    FileChange,
    ProcessKey,
    Severity,
)
from fluxtui.untrusted_text import visible

log = logging.getLogger(__name__)

RECENT = 200  # changes kept for the view
RECORDS_KEPT = 8192  # exited processes remembered (pid -> key, exe, uid) for late writers
LATE_TICKS = 3  # ticks a change whose writer exited unidentified waits for the kernel's records


@dataclass(frozen=True)
class PersistenceView:
    """Snapshot.views["persistence"]: the latest changes, newest last, and what is watched."""

    recent: tuple[FileChange, ...]
    directories: int
    waiting: int  # directories waited for (not created yet)
    drops: dict[str, int] = field(default_factory=dict)


class PersistenceWatch:
    name = "persistence"
    produces: ClassVar[tuple[Channel[Any], ...]] = (RISK_INPUTS,)
    consumes: ClassVar[tuple[Channel[Any], ...]] = (SYSCALLS,)

    def __init__(self, config: Config, verifier: ExeVerifier | None = None,
                 homes: list[str] | None = None, proc: str = "/proc",
                 clock: Any = time.time) -> None:
        self.config = config
        self.cfg = config.persistence
        self.verifier = verifier or ExeVerifier(config.guard.system_dirs)
        self.identifier = WriterIdentifier(self.verifier.verified, self.cfg.package_managers,
                                           proc)
        self.filter = RuleFilter(config.rules)
        self.ransomware = RansomwareDetector(self.cfg.ransomware)
        self._clock = clock
        self.reader = ChangeReader(self.cfg, self.identifier, homes, clock)
        self._state = ComponentState.STOPPED
        self._reason = ""
        self._bus: EventBus | None = None
        self._late: list[tuple[int, Change]] = []  # (ticks waited, change)
        self._late_renames: list[tuple[int, Rename]] = []
        self._recent: deque[FileChange] = deque(maxlen=RECENT)
        self._alerted: set[tuple[ProcessKey, str, str]] = set()
        self._records: OrderedDict[int, tuple[ProcessKey, str, int | None]] = OrderedDict()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        self._bus = bus
        if not self.cfg.enabled:
            self._unavailable("disabled in the configuration (persistence.enabled: false)")
            return
        reason = self.reader.open()
        if reason:
            self._unavailable(reason)
            return
        self._state = ComponentState.RUNNING

    def _unavailable(self, reason: str) -> None:
        self._state = ComponentState.UNAVAILABLE
        self._reason = reason
        log.info("persistence watch unavailable: %s", reason)

    def stop(self) -> None:
        self.reader.close()
        if self._state is ComponentState.RUNNING:
            self._state = ComponentState.STOPPED

    def status(self) -> ComponentStatus:
        if self._state is not ComponentState.RUNNING:
            return ComponentStatus(self.name, self._state, self._reason)
        drops = self.reader.drops()
        detail = (f"{self.reader.directories} directories watched · "
                  f"{self.reader.changes_seen} changes"
                  + "".join(f" · {note}" for note in self.reader.notes))
        if drops:
            detail += " · lost: " + ", ".join(f"{k} {v}" for k, v in sorted(drops.items()))
        return ComponentStatus(self.name, self._state, "", visible(detail), drops)

    # --- the tick ----------------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        if self._state is not ComponentState.RUNNING:
            return
        view = tick.read(SYSCALLS)
        self._remember_records(view)
        taken = self.reader.take()
        waiting: list[tuple[int, Change]] = []
        for waited, change in [*self._late, *((0, c) for c in taken.changes)]:
            change = self._late_writer(change, tick)
            if change.writer.key is None and change.writer.pid > 0 and waited < LATE_TICKS:
                waiting.append((waited + 1, change))
                continue
            self._judge(change, tick)
        self._late = waiting
        self._summarise_bursts(tick, taken.bursts)
        self._check_ransomware(tick, view, taken.renames)
        tick.set_view(self.name, PersistenceView(tuple(self._recent), self.reader.directories,
                                                 self.reader.waiting, self.reader.drops()))

    def _remember_records(self, view: Any) -> None:
        final = getattr(view, "final", None) or {}
        for key, life in final.items():
            self._records[key.pid] = (key, life.exe, life.uid)
            self._records.move_to_end(key.pid)
        lineage = getattr(view, "lineage", None)
        for event_key in getattr(view, "exited", ()):
            if lineage is not None and event_key.pid not in self._records:
                node = lineage.node(event_key)
                if node is not None:
                    self._records[event_key.pid] = (event_key, node.exe, node.uid)
        while len(self._records) > RECORDS_KEPT:
            self._records.popitem(last=False)

    def _key_of(self, pid: int, tick: TickContext) -> ProcessKey | None:
        for key in tick.processes:
            if key.pid == pid:
                return key
        record = self._records.get(pid)
        return record[0] if record is not None else None

    def _late_writer(self, change: Change, tick: TickContext) -> Change:
        writer = change.writer
        if writer.key is not None or writer.pid <= 0:
            return change
        record = self._records.get(writer.pid)
        if record is None:
            return change
        key, exe, uid = record
        late = self.identifier.from_record(writer.pid, key, exe or writer.exe, uid)
        return Change(change.timestamp, change.path, change.place, change.actions, late,
                      change.diff, change.note)

    def _judge(self, change: Change, tick: TickContext) -> None:
        writer = change.writer
        expected = expected_writer(change.place, writer)
        event = FileChange(change.timestamp, visible(change.path), change.place.path,
                           change.place.technique, change.actions, writer.pid,
                           visible(writer.exe or writer.comm), visible(writer.user),
                           writer.verified, expected, tuple(change.diff.lines()),
                           note=change.note)
        self._recent.append(event)
        if self._bus is not None:
            self._bus.publish(event)
        subject = Subject(writer.exe, writer.parent_exe, writer.uid, writer.user, writer.args)
        for finding in judge(change, self.cfg.entry_risk, self.cfg.expected_risk):
            if not self.filter.allows(finding.rule_id, subject):
                continue
            self._apply(finding, writer.key, writer, change.place.path, change.timestamp, tick)

    def _apply(self, finding: Finding, key: ProcessKey | None, writer: Writer, scope: str,
               when: float, tick: TickContext) -> None:
        if key is not None and finding.points > 0:
            tick.add_risk(key, finding.points, finding.reason, finding.technique,
                          group=f"{finding.rule_id}:{scope}")
        once = (key or ProcessKey(writer.pid, 0), finding.rule_id, scope)
        if finding.severity is None or once in self._alerted:
            return
        self._alerted.add(once)
        row = tick.processes.get(key) if key is not None else None
        tick.raise_alert(Alert(
            timestamp=when, rule_id=finding.rule_id, title=finding.title,
            severity=finding.severity, technique_id=finding.technique[0],
            technique_name=finding.technique[1], key=key,
            process_name=row.name if row is not None else visible(
                writer.comm or os.path.basename(writer.exe)),
            reasons=(finding.reason,),
            extra={**finding.extra, "points": finding.points,
                   "start_ticks": key.start_ticks if key is not None else None}))

    def _summarise_bursts(self, tick: TickContext, summaries: list[tuple[str, Burst]]) -> None:
        now = self._clock()
        for place_path, burst in summaries:
            technique = burst.place.technique
            note = visible(f"{burst.count} changes in {place_path} within "
                           f"{self.cfg.burst_window:g} s: {burst.summarised} past the first "
                           f"{self.cfg.burst_changes} counted, not examined one by one (e.g. "
                           f"{', '.join(burst.names)}; pids "
                           f"{', '.join(map(str, burst.writers))}); the place was compared "
                           "again afterwards")
            event = FileChange(now, visible(place_path), burst.place.path, technique,
                               ("burst",), next(iter(burst.writers), 0), "", "", False, "",
                               count=burst.summarised, note=note)
            self._recent.append(event)
            if self._bus is not None:
                self._bus.publish(event)
            if self.filter.disabled(RULE_BURST):
                continue
            tick.raise_alert(Alert(now, RULE_BURST, "Burst of changes in a persistence place "
                                   "(summarised)", Severity.LOW, technique,
                                   technique_name(technique), None, "", (note,),
                                   {"count": burst.summarised, "path": visible(place_path)}))

    def _check_ransomware(self, tick: TickContext, view: Any,
                          renames: list[Rename]) -> None:
        if not self.cfg.ransomware.enabled:
            return
        now = self._clock()
        counts = getattr(view, "counts", None) or {}
        for key, named in counts.items():
            self.ransomware.observe_counts(key, named, now)
        pids: dict[int, ProcessKey | None] = {}
        unresolved: list[tuple[int, Rename]] = []
        for waited, item in [*self._late_renames, *((0, r) for r in renames)]:
            pid = item[0]
            if pid not in pids:
                pids[pid] = self._key_of(pid, tick)
            key = pids[pid]
            if key is not None:
                self.ransomware.observe_rename(key, item[1], item[2], item[3])
            elif waited < LATE_TICKS and len(unresolved) < QUEUE_LIMIT:
                unresolved.append((waited + 1, item))  # its exit record may come next tick
        self._late_renames = unresolved
        bulk = frozenset(self.cfg.ransomware.bulk_renamers)
        for key in self.ransomware.active():
            exe = ""
            row = tick.processes.get(key)
            if row is not None:
                exe = row.exe
            elif key.pid in self._records and self._records[key.pid][0] == key:
                exe = self._records[key.pid][1]
            bulk_renamer = exe in bulk and self.verifier.verified(exe)
            for finding in self.ransomware.check(key, now, bulk_renamer,
                                                  self.reader.names_renames):
                uid = None
                subject = Subject(exe, "", uid, row.user if row is not None else "",
                                  row.cmdline[1:] if row is not None else ())
                if self.filter.allows(finding.rule_id, subject):
                    writer = Writer(key.pid, key, exe, row.name if row is not None else "")
                    self._apply(finding, key, writer, "", now, tick)
            if self.ransomware.idle(key, now):
                self.ransomware.forget(key)
