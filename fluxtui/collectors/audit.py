"""Syscall capture through the kernel's audit subsystem: the fallback where eBPF cannot run.

fluxtui adds its own audit rules (audit_rules.py) for the high-signal syscalls, keyed with its
instance, and reads the records over the audit netlink socket (audit_netlink.py):
- where an audit daemon (auditd) is registered, from the read-only multicast group
  AUDIT_NLGRP_READLOG: auditd keeps every record, and its log grows by fluxtui's;
- where none is, fluxtui registers itself as the audit daemon for its lifetime (so records never
  spill into the kernel log) and gives the role back at exit; the kernel also takes it back
  when it first fails to deliver a record to fluxtui's closed socket, whatever way fluxtui ended.
It never changes audit's failure mode, backlog limit or rate limit, nor the enabled flag unless
`syscalls.audit_enable` allows it (then it puts it back at exit). It refuses, with the reason,
when the rules are locked (enabled 2), when audit is off, or when the daemon role it would
need is held. Its rules go at exit; those a killed instance left are found by their key and
removed at the next start; other rules are never touched.

Records become the same `KernelEvent`s the eBPF collector sends (audit_events.py). What audit
cannot give is the count of every syscall of every process: `drain` counts only the audited
(high-signal) calls, which give the same base risk weights as with eBPF, and
`counts_syscalls` is False, so the syscalls/s column shows "—". Nothing here imports textual.
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import select
import threading
import time
from collections import deque
from pathlib import Path

from fluxtui.collectors.audit_events import EventBuilder
from fluxtui.collectors.audit_netlink import (
    AUDIT_NLGRP_READLOG,
    AUDIT_STATUS_ENABLED,
    AUDIT_STATUS_PID,
    RECV_BUFFER,
    AuditError,
    AuditSocket,
    parse_messages,
)
from fluxtui.collectors.audit_records import Assembler, Record, parse_record
from fluxtui.collectors.audit_rules import (
    AUDIT_ARCH_X86_64,
    ENABLED_MARK,
    arch_tables,
    build_rules,
    instance_key,
    is_stale,
    rule_key,
)
from fluxtui.collectors.audit_state import refusal_reason
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.collectors.syscalls import CollectorUnavailable, Drain, DropCounts
from fluxtui.events import ProcessKey

log = logging.getLogger(__name__)

DAEMON = "daemon"
MULTICAST = "multicast"
RULE_CHECK_EVERY = 5  # drains (ticks) between two checks that fluxtui's rules are still there
NO_COUNTS = "audit records only the high-signal calls, not every syscall of every process"


class AuditCollector:
    """Same interface as SyscallCollector (start, drain, close, table, self_pid), without
    per-process syscall counts."""

    kind = "audit"
    counts_syscalls = False
    group_dead = True  # no exit events: processes end when gone from /proc

    def __init__(self, event_queue_limit: int = 10_000, allow_enable: bool = False,
                 self_pid: int | None = None, proc: str = "/proc",
                 socket_factory: type[AuditSocket] = AuditSocket) -> None:
        self.event_queue_limit = event_queue_limit
        self.allow_enable = allow_enable
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.proc = proc
        self._socket = socket_factory
        self.table: SyscallTable | None = None
        self.mode = ""
        self.daemon_pid = 0  # the audit daemon whose multicast group is read
        self.enabled_by_us = False
        self.stale_removed = 0
        self.notes: list[str] = []  # said in the header
        self._start_ticks = read_start_ticks(self.self_pid, proc) or 0
        self.key = instance_key(self.self_pid, self._start_ticks)
        self._ctl: AuditSocket | None = None
        self._records: AuditSocket | None = None
        self._builder: EventBuilder | None = None
        self._assembler: Assembler | None = None
        self._wanted: set[tuple[int, int]] = set()
        self._rules: list[bytes] = []
        self._events: deque[KernelEvent] = deque()
        self._counts: dict[ProcessKey, dict[int, int]] = {}  # audited calls only
        self._lock = threading.Lock()
        self._overflow = 0
        self._malformed = 0
        self._lost_at_start = 0
        self._stop = threading.Event()
        self._reader: threading.Thread | None = None
        self._last_drain = time.monotonic()
        self._dropped_before = DropCounts()
        self._checks = 0
        self.tampered = ""
        self.rules_restored = 0

    # --- start -------------------------------------------------------------------------------

    def start(self) -> None:
        tables = arch_tables()
        if tables is None:
            raise CollectorUnavailable("audit fallback: no syscall numbers for "
                                       f"{os.uname().machine} (x86_64 only)")
        if os.geteuid() != 0:
            raise CollectorUnavailable("audit fallback: needs root (CAP_AUDIT_CONTROL)")
        try:
            self._ctl = self._socket()
        except OSError as exc:
            raise CollectorUnavailable(f"audit fallback: no audit netlink socket ({exc.strerror}):"
                                       " a kernel built without CONFIG_AUDIT") from None
        try:
            self._start(tables)
        except CollectorUnavailable:
            self.close()
            raise
        except OSError as exc:
            self.close()
            raise CollectorUnavailable(f"audit fallback: {exc}") from None
        atexit.register(self.close)

    def _start(self, tables: dict[int, dict[str, int]]) -> None:
        assert self._ctl is not None
        status = self._ctl.status()
        refusal = refusal_reason(status, self.allow_enable)
        if refusal:
            raise CollectorUnavailable(refusal)
        self._lost_at_start = status.lost
        will_enable = status.enabled == 0
        self.stale_removed, stale_enabled = self._remove_stale()
        if stale_enabled and status.enabled == 1 and not status.pid:
            # A killed instance turned audit on: it goes off again when this one exits (and
            # this one's key says so, should it be killed too). Not when an audit daemon has
            # started since: audit on is then its wish too.
            self.enabled_by_us = True
            self.notes.append("audit was turned on by a fluxtui that was killed: off at exit")
        self.key = instance_key(self.self_pid, self._start_ticks,
                                will_enable or self.enabled_by_us)
        if status.pid:
            self.mode, self.daemon_pid = MULTICAST, status.pid
            try:
                self._records = self._socket(groups=1 << (AUDIT_NLGRP_READLOG - 1),
                                             recv_buffer=RECV_BUFFER)
            except OSError as exc:
                raise CollectorUnavailable(
                    f"audit fallback: the audit daemon role is held by pid {status.pid}"
                    f"{_comm(status.pid, self.proc)} and its read-only multicast group cannot "
                    f"be joined ({exc.strerror})") from None
            self.notes.append(f"read beside auditd (pid {status.pid}): its log grows by "
                              "fluxtui's records")
        else:
            self.mode = DAEMON
            self._records = self._socket(recv_buffer=RECV_BUFFER)
            try:
                self._records.set_status(AUDIT_STATUS_PID, pid=self.self_pid)
            except AuditError as exc:
                holder = self._ctl.status().pid
                if exc.errno == errno.EEXIST and holder:
                    raise CollectorUnavailable(
                        f"audit fallback: the audit daemon role is held by pid {holder}"
                        f"{_comm(holder, self.proc)}") from None
                raise
            self.notes.append("fluxtui is the audit daemon until it exits")
        names = {arch: {nr: name for name, nr in table.items()} for arch, table in tables.items()}
        self._wanted = {(arch, nr) for arch, table in tables.items() for nr in table.values()}
        self.table = SyscallTable(names[AUDIT_ARCH_X86_64], names.get(0x40000003))
        self._builder = EventBuilder(names, AUDIT_ARCH_X86_64, self.proc)
        self._assembler = Assembler(self._is_wanted)
        for rule in build_rules(self.key, self.self_pid, tables):
            raw = rule.encode()
            self._ctl.add_rule(raw)
            self._rules.append(raw)
        if will_enable:
            self._ctl.set_status(AUDIT_STATUS_ENABLED, enabled=1)
            self.enabled_by_us = True
            self.notes.append("audit enabled by fluxtui (syscalls.audit_enable): processes "
                              "started before are not audited")
        elif "audit=1" not in _cmdline():
            self.notes.append("processes started before audit was enabled are not audited")
        self._last_drain = time.monotonic()
        self._reader = threading.Thread(target=self._read, name="fluxtui-audit", daemon=True)
        self._reader.start()

    def _remove_stale(self) -> tuple[int, bool]:
        """Rules of a fluxtui instance that no longer runs (killed before its exit): how many,
        and whether that instance had turned audit on."""
        assert self._ctl is not None
        removed = 0
        enabled = False
        for raw in self._ctl.list_rules():
            key = rule_key(raw)
            if key is not None and is_stale(key, (self.key,)):
                self._ctl.delete_rule(raw)
                removed += 1
                enabled = enabled or key.endswith(ENABLED_MARK)
        if removed:
            log.info("removed %d audit rules left by a fluxtui that was killed", removed)
        return removed, enabled

    def _is_wanted(self, record: Record) -> bool:
        """A syscall of ours, whichever rule logged it (the first rule that matches gives the
        key: another tool's rule for the same call comes first when it was added first); never
        fluxtui's own calls, as with eBPF."""
        try:
            arch = int(record.fields.get("arch", ""), 16)
            nr = int(record.fields.get("syscall", ""))
            pid = int(record.fields.get("pid", ""))
        except ValueError:
            return False
        return (arch, nr) in self._wanted and pid != self.self_pid

    # --- reading -----------------------------------------------------------------------------

    def _read(self) -> None:
        sock = self._records
        assert sock is not None
        for kind, body in sock.pending:
            self._on_record(kind, body)
        sock.pending.clear()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([sock], [], [], 0.2)
                if not ready:
                    continue
                data = sock.sock.recv(1 << 16)
            except OSError as exc:
                if self._stop.is_set():
                    return
                if exc.errno == errno.ENOBUFS:  # the socket's buffer overflowed
                    with self._lock:
                        self._overflow += 1
                    continue
                log.exception("audit socket read failed")
                self._stop.wait(0.5)
                continue
            for kind, _flags, _seq, body in parse_messages(data):
                self._on_record(kind, body)

    def _on_record(self, kind: int, body: bytes) -> None:
        assert self._assembler is not None and self._builder is not None
        record = parse_record(kind, body)
        if record is None:
            return
        finished = self._assembler.add(record)
        if finished is None:
            return
        try:
            key, nr, events = self._builder.build(finished)
        except (ValueError, KeyError, IndexError):
            with self._lock:
                self._malformed += 1
            return
        with self._lock:
            if key is not None:
                by_nr = self._counts.setdefault(key, {})
                by_nr[nr] = by_nr.get(nr, 0) + 1
            for event in events:
                if len(self._events) >= self.event_queue_limit:
                    self._overflow += 1
                else:
                    self._events.append(event)

    # --- draining ----------------------------------------------------------------------------

    def drain(self) -> Drain:
        if self._records is None:
            raise RuntimeError("collector not started")
        with self._lock:
            events = list(self._events)
            self._events.clear()
            counts, self._counts = self._counts, {}
            overflow = self._overflow
        lost = self._watch()
        now = time.monotonic()
        window, self._last_drain = now - self._last_drain, now
        incomplete = self._assembler.incomplete if self._assembler is not None else 0
        total = DropCounts(events=lost + incomplete, queue=overflow)
        dropped, self._dropped_before = total - self._dropped_before, total
        return Drain(window, counts, {}, events, dropped, total, self._malformed)

    def _watch(self) -> int:
        """Records the kernel lost since start; and what someone with root may have done to
        blind fluxtui: audit turned off, fluxtui's rules deleted (put back, and said)."""
        if self._ctl is None:
            return 0
        try:
            status = self._ctl.status()
        except OSError:
            return self._dropped_before.events
        self.tampered = "" if status.enabled else "audit turned off by someone: no events"
        self._checks += 1
        if self._checks % RULE_CHECK_EVERY == 0:
            try:
                present = sum(rule_key(raw) == self.key for raw in self._ctl.list_rules())
                if present < len(self._rules):
                    self.rules_restored += 1
                    for raw in self._rules:
                        try:
                            self._ctl.add_rule(raw)
                        except AuditError as exc:
                            if exc.errno != errno.EEXIST:
                                raise
            except OSError as exc:
                log.warning("audit rules not checked: %s", exc)
        return max(0, status.lost - self._lost_at_start)

    @property
    def running(self) -> bool:
        return self._records is not None

    def describe(self) -> str:
        """What the header says after "audit fallback"."""
        said = [*self.notes]
        if self.tampered:
            said.insert(0, self.tampered)
        if self.rules_restored:
            said.insert(0, f"fluxtui's audit rules deleted by someone, put back "
                           f"{self.rules_restored}×")
        return " · ".join([*said, f"syscall counts —: {NO_COUNTS}"])

    # --- stop --------------------------------------------------------------------------------

    def close(self) -> None:
        self._stop.set()
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.join(timeout=2.0)
        ctl = self._ctl
        if ctl is not None:
            for raw in self._rules:
                try:
                    ctl.delete_rule(raw)
                except OSError as exc:
                    if exc.errno != errno.ENOENT:
                        log.warning("audit rule not removed: %s", exc)
            self._rules.clear()
            if self.enabled_by_us:
                _quietly(lambda: ctl.set_status(AUDIT_STATUS_ENABLED, enabled=0))
                self.enabled_by_us = False
        records, self._records = self._records, None
        if records is not None:
            if self.mode == DAEMON and ctl is not None:
                _quietly(lambda: ctl.set_status(AUDIT_STATUS_PID, pid=0))
            records.close()
        self._ctl = None
        if ctl is not None:
            ctl.close()
        atexit.unregister(self.close)


def _quietly(action: object) -> None:
    try:
        action()  # type: ignore[operator]
    except OSError as exc:
        log.warning("audit: %s", exc)


def _comm(pid: int, proc: str) -> str:
    try:
        return f" ({Path(f'{proc}/{pid}/comm').read_text().strip()})"
    except OSError:
        return ""


def _cmdline() -> str:
    try:
        return Path("/proc/cmdline").read_text()
    except OSError:
        return ""
