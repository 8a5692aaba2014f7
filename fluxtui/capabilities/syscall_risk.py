"""Syscall capture, plugged into the engine as the "syscalls" component; the risk scorer that
follows it lives in fluxtui/capabilities/risk_scorer.py (re-exported here).

`SyscallCapture` drains the BPF collector each tick: it fills the syscalls/s and syscall-count
columns, runs the detection rules on high-signal events, raises their alerts, publishes the
events on the bus and keeps a short history per process for the detail view. Every process is
followed its whole life: its counts are totalled whether or not it was ever in the process table
(a process that lives 50 ms between two ticks included), and when its exit event arrives its
final record (`ProcessLifetime`) goes into the view's `final` for the scorer. Shells started in
the last STDIO_CHECKS ticks are checked for a network connection on their standard streams
(reverse and bind shells). It puts a `SyscallView` in `Snapshot.views["syscalls"]`.
Nothing here imports textual.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any, ClassVar

from fluxtui.bus import EventBus
from fluxtui.capabilities.container_watch import ContainerWatch
from fluxtui.capabilities.lineage import ExeVerifier, Lineage
from fluxtui.capabilities.risk_scorer import REARM_FRACTION, RiskScorer, RiskView
from fluxtui.capabilities.stdio_watch import STDIO_CHECKS, StdioWatch
from fluxtui.capabilities.syscall_view import SYSCALLS, SyscallView
from fluxtui.collectors.bpf_structs import FX_MAX_NR
from fluxtui.collectors.kernel_event import KernelEvent, boot_to_wall
from fluxtui.collectors.procstat import CLOCK_TICKS, read_start_ticks
from fluxtui.collectors.stdio_sockets import stdio_sockets
from fluxtui.collectors.syscall_source import make_collector
from fluxtui.collectors.syscalls import CollectorUnavailable, DropCounts, SyscallCollector
from fluxtui.component import Channel, TickContext
from fluxtui.config import Config
from fluxtui.detection.container_index import ContainerResolver
from fluxtui.detection.runtime_setup import SETUP_SYSCALLS
from fluxtui.detection.syscall_rules import (
    SHELLS,
    EventContext,
    Finding,
    RuleFilter,
    Subject,
    evaluate,
    stdio_socket_finding,
)
from fluxtui.events import (
    HOST,
    UNKNOWN,
    Alert,
    ComponentState,
    ComponentStatus,
    ContainerIdentity,
    ProcessKey,
    ProcessLifetime,
)

__all__ = ["REARM_FRACTION", "STDIO_CHECKS", "RiskScorer", "RiskView", "SyscallCapture",
           "SyscallView"]

log = logging.getLogger(__name__)

REVERSE_SHELL = "syscalls.reverse_shell"
RECENT_EVENTS = 50  # per process, for the detail view
MISSING_TICKS = 3  # a process gone from /proc without an exit event is closed after this many
FINISHED_KEPT = 65536  # processes already closed, remembered so late counts do not re-open them


def _sorted_counts(named: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(named.items(), key=lambda kv: (-kv[1], kv[0])))


def ticks_to_wall(start_ticks: int) -> float:
    return boot_to_wall(start_ticks * 1_000_000_000 // CLOCK_TICKS)


@dataclass(slots=True)
class _Life:
    """What is known of one process since fluxtui first saw it."""

    totals: dict[str, int] = field(default_factory=dict)
    events: int = 0
    rules: set[str] = field(default_factory=set)
    uid: int | None = None
    missing: int = 0  # ticks absent from the table without an exit event
    container: ContainerIdentity = UNKNOWN  # as its latest event's cgroup said


class SyscallCapture:
    name = "syscalls"
    produces: ClassVar[tuple[Channel[Any], ...]] = (SYSCALLS,)
    consumes: ClassVar[tuple[Channel[Any], ...]] = ()

    def __init__(self, config: Config, collector: SyscallCollector | Any = None,
                 proc: str = "/proc", verifier: ExeVerifier | None = None,
                 containers: ContainerResolver | None = None) -> None:
        self.config = config
        sc = config.syscalls
        # syscalls.collector: eBPF, the audit fallback, or auto (syscall_source.py)
        self.collector: Any = collector or make_collector(sc)
        self._state = ComponentState.STOPPED
        self._reason = ""
        self._warning = ""
        self._bus: EventBus | None = None
        self._lock = threading.Lock()  # guards what the UI thread reads
        self._recent: dict[ProcessKey, deque[KernelEvent]] = {}
        self._lives: dict[ProcessKey, _Life] = {}
        self._last: dict[ProcessKey, tuple[tuple[str, int], ...]] = {}
        self._names: dict[int, str] = {}  # syscall number -> name (see on_tick)
        self._names_table: object = None  # the table they come from
        self._alerted: set[tuple[ProcessKey, str]] = set()
        self._proc = proc
        rules = config.rules
        self.verifier = verifier or ExeVerifier(config.guard.system_dirs)
        # The one container cache (the risk scorer reads it too) and the kernel's feed of
        # cgroups and runtime set-ups.
        self.containers = containers or ContainerResolver(proc)
        self.watch = ContainerWatch(self.containers, self.verifier, rules.container_runtimes)
        self.lineage = Lineage(self.verifier.verified, rules.wrappers, proc)
        self.filter = RuleFilter(rules)
        # A container runtime starts the entrypoint (often a shell): its job, when verified.
        self._shell_parents = frozenset(rules.shell_parents) | frozenset(
            rules.container_runtimes)
        self._sandboxes = frozenset(rules.sandboxes)
        self._stdio = StdioWatch(proc)
        # Processes whose latest exec gave them root through the set-user-ID bit of a verified
        # program (sudo, su, pkexec): their change of uid to 0 is that program's job.
        self._setuid_verified: set[ProcessKey] = set()
        self._rate = 0.0
        self._dropped = DropCounts()
        self._finished: OrderedDict[ProcessKey, None] = OrderedDict()
        self._late = 0  # syscalls counted after their process's final record

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        self._bus = bus
        pages = self.config.syscalls.ring_buffer_pages
        if not self.config.syscalls.enabled:
            self._unavailable("disabled in the configuration (syscalls.enabled: false)")
            return
        if pages & (pages - 1):
            self._unavailable(f"syscalls.ring_buffer_pages must be a power of two, not {pages}")
            return
        # The container feed and the runtimes' marks first: the syscall source must never
        # see a container's set-up that the kernel did not mark (container_watch.py).
        self.watch.start()
        try:
            self.collector.start()
        except CollectorUnavailable as exc:
            self.watch.stop()
            self._unavailable(str(exc))
            return
        self._state = ComponentState.RUNNING
        table = self.collector.table
        if table is not None:
            unknown = sorted(n for n in self.config.risk.base_risk_scores if n not in table.numbers)
            if unknown:
                self._warning = ("risk.base_risk_scores names no syscall of this machine: "
                                 + ", ".join(unknown))
                log.warning("%s", self._warning)
        # Verify the executables the rules trust before the first exec needs them (a package
        # database query each, cached), on a thread of its own: the other components' start
        # does not wait for it.
        rules = self.config.rules
        paths = sorted(p for p in {*rules.shell_parents, *rules.wrappers, *rules.sandboxes}
                       if os.path.exists(p))
        threading.Thread(target=lambda: [self.verifier.verified(p) for p in paths],
                         name="fluxtui-verify", daemon=True).start()

    def _unavailable(self, reason: str) -> None:
        self._state = ComponentState.UNAVAILABLE
        self._reason = reason
        log.info("syscall capture unavailable: %s", reason)

    def stop(self) -> None:
        self.watch.stop()
        self.collector.close()
        if self._state is ComponentState.RUNNING:
            self._state = ComponentState.STOPPED

    def status(self) -> ComponentStatus:
        if self._state is not ComponentState.RUNNING:
            return ComponentStatus(self.name, self._state, self._reason)
        d = self._dropped
        if not getattr(self.collector, "counts_syscalls", True):  # the audit fallback
            detail = (f"audit fallback · {self.collector.describe()} · lost {d.events_lost} "
                      f"events · own pid {self.collector.self_pid} untraced")
            return ComponentStatus(self.name, self._state, "", detail, drops=d.by_kind())
        detail = (f"{self._rate:,.0f} syscalls/s · dropped {d.syscalls_lost} calls, "
                  f"{d.events_lost} events · own pid {self.collector.self_pid} untraced")
        if self.collector.early_drains:
            detail += f" · count maps drained early {self.collector.early_drains}"
        if self._late:
            detail += f" · {self._late} calls after a final record"
        if self._warning:
            detail += f" · {self._warning}"
        detail += f" · containers: {self.watch.note()}"
        return ComponentStatus(self.name, self._state, "", detail,
                               drops={**d.by_kind(), "container_events": self.watch.dropped})

    # --- for the detail view (UI thread) -----------------------------------------------------

    def recent_events(self, key: ProcessKey) -> tuple[KernelEvent, ...]:
        """The process's last high-signal events, oldest first."""
        with self._lock:
            return tuple(self._recent.get(key, ()))

    def top_syscalls(self, key: ProcessKey) -> tuple[tuple[str, int], ...]:
        """Calls by syscall since fluxtui first saw the process, most frequent first."""
        with self._lock:
            life = self._lives.get(key)
            return _sorted_counts(life.totals) if life is not None else ()

    def last_tick_syscalls(self, key: ProcessKey) -> tuple[tuple[str, int], ...]:
        with self._lock:
            return self._last.get(key, ())

    # --- the tick ----------------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        tick.container_of = self.containers.of_process
        if self._state is not ComponentState.RUNNING:
            return
        drain = self.collector.drain()
        table = self.collector.table
        assert table is not None
        window = drain.window_s if drain.window_s > 0 else (tick.interval or 1.0)

        names = self._names  # number -> name, filled as numbers are met
        if self._names_table is not table or len(names) > 2 * FX_MAX_NR + 2:
            names.clear()
            self._names_table = table

        def name_of(nr: int) -> str:
            name = names.get(nr)
            if name is None:
                name = names[nr] = table.name(nr)
            return name

        counts: dict[ProcessKey, dict[str, int]] = {}
        for key, by_nr in drain.counts.items():
            named: dict[str, int] = {}
            for nr, n in by_nr.items():
                name = names.get(nr) or name_of(nr)
                named[name] = named.get(name, 0) + n
            counts[key] = named
        bigrams = {key: {(names.get(a) or name_of(a), names.get(b) or name_of(b)): n
                         for (a, b), n in pairs.items()}
                   for key, pairs in drain.bigrams.items()}
        total = sum(sum(named.values()) for named in counts.values())
        self._rate = total / window
        self._dropped = drain.dropped_total

        # Columns persist (TickContext.annotate): set for the processes that made calls this
        # tick, back to none for those that made some last tick and none now, and none for the
        # new ones; the rest of the table, thousands of sleeping processes, is not touched.
        last: dict[ProcessKey, tuple[tuple[str, int], ...]] = {}
        if getattr(self.collector, "counts_syscalls", True):
            annotate, processes = tick.annotate_columns, tick.processes
            for key, made in counts.items():
                if made and key in processes:
                    last[key] = top = _sorted_counts(made)
                    annotate(key, {"syscalls_per_s": sum(made.values()) / window,
                                   "syscall_counts": top})
            idle = {"syscalls_per_s": 0.0, "syscall_counts": ()}
            for key in tick.appeared - last.keys():
                annotate(key, idle)
            for key in self._last.keys() - last.keys():
                if key in processes:
                    annotate(key, idle)
        self.lineage.record_rows(tick.processes, tick.appeared)

        with self._lock:
            self._last = last
            for key, named in counts.items():
                if key in self._finished:
                    # Counts of a process already closed: a thread that was still exiting
                    # when the last one sent the exit event. Counted, not re-opened.
                    self._late += sum(named.values())
                    continue
                totals = self._lives.setdefault(key, _Life()).totals
                for name, n in named.items():
                    totals[name] = totals.get(name, 0) + n

        findings, exited = self._handle_events(drain.events, tick)
        findings += self._check_stdio(tick)
        final = self._finalize(tick, exited, {e.key: e.timestamp for e in drain.events
                                              if e.kind == "exit"})
        # The runtime's set-up adds no risk: a process in set-up all tick long is left out of
        # the mix the scorer reads; one that exec'd its container's entrypoint this tick loses
        # the set-up's calls (the totals and the detail view keep everything).
        for key in self.watch.setup.new_tick():
            if key not in counts:
                continue
            if self.watch.setup.active(key):
                counts[key] = {}
            else:
                counts[key] = {n: c for n, c in counts[key].items() if n not in SETUP_SYSCALLS}

        tick.publish(SYSCALLS, SyscallView(
            window_s=window, counts=counts, bigrams=bigrams, findings=tuple(findings),
            exited=tuple(exited), events=len(drain.events), total_syscalls=total,
            dropped=drain.dropped, dropped_total=drain.dropped_total, final=final,
            lineage=self.lineage))

    def _finalize(self, tick: TickContext, exited: list[ProcessKey],
                  exit_times: dict[ProcessKey, float]) -> dict[ProcessKey, ProcessLifetime]:
        """Final records: of processes whose exit event came (with group_dead, even when /proc
        still lists them), and of those gone from /proc for MISSING_TICKS ticks without one."""
        group_dead = getattr(self.collector, "group_dead", True)
        done: dict[ProcessKey, tuple[float, bool]] = {}
        for key in exited:
            if group_dead or key not in tick.processes:
                done[key] = (exit_times.get(key, tick.now), True)
        for key, life in self._lives.items():
            if key in tick.processes or key in done or key in exit_times:
                life.missing = 0
                continue
            life.missing += 1
            if life.missing >= MISSING_TICKS:
                done[key] = (tick.now, False)
        final: dict[ProcessKey, ProcessLifetime] = {}
        with self._lock:
            for key, (when, seen) in done.items():
                life = self._lives.pop(key, _Life())
                self._recent.pop(key, None)
                node = self.lineage.node(key)
                row = tick.processes.get(key)
                final[key] = ProcessLifetime(
                    key=key,
                    name=(node.name if node else "") or (row.name if row else ""),
                    exe=(node.exe if node else "") or (row.exe if row else ""),
                    args=node.args if node else (row.cmdline[1:] if row else ()),
                    uid=life.uid if life.uid is not None else (node.uid if node else None),
                    parent=node.parent if node else None,
                    started=ticks_to_wall(key.start_ticks), exited=when,
                    syscalls=dict(life.totals), events=life.events,
                    rules=tuple(sorted(life.rules)), exit_seen=seen,
                    container=self._container_at_exit(key, life))
        self._alerted = {(k, r) for k, r in self._alerted if k not in done}
        for key in done:
            self._stdio.forget(key)
            self._setuid_verified.discard(key)
            self._finished[key] = None
        while len(self._finished) > FINISHED_KEPT:
            self._finished.popitem(last=False)
        return final

    def _handle_events(self, events: list[KernelEvent], tick: TickContext
                       ) -> tuple[list[Finding], list[ProcessKey]]:
        findings: list[Finding] = []
        exited: list[ProcessKey] = []
        self.watch.before_events()  # every cgroup and set-up change up to these events
        for event in events:
            if event.key in self._finished:
                continue
            life = self._lives.setdefault(event.key, _Life())
            life.uid = event.uid
            where = self.watch.container_of(event)
            if where.state != "unknown":
                life.container = where
            if event.kind == "exit":
                self.watch.setup.exited(event.key)
                exited.append(event.key)
                continue
            life.events += 1
            if event.kind in ("exec", "cred"):
                tick.identity_changed(event.key)  # the User column follows setuid at once
            if event.kind == "exec":
                self.watch.setup.on_exec(event.key, "anonymous file" in event.flags)
            ctx = self._context(event, where)
            event = dataclasses.replace(event, container=where)
            with self._lock:
                self._recent.setdefault(event.key, deque(maxlen=RECENT_EVENTS)).append(event)
            if self._bus is not None:
                self._bus.publish(event)
            subject = self._subject(event.key, event.uid)
            for finding in evaluate(event, ctx):
                if not self.filter.allows(finding.rule_id, subject):
                    continue
                if finding.rule_id == REVERSE_SHELL and not finding.extra.get("relay"):
                    finding = self._with_remote(finding, event)
                findings.append(finding)
                life.rules.add(finding.rule_id)
                self._maybe_alert(finding, event.timestamp, event.name, tick, where)
        return findings, exited

    def _context(self, event: KernelEvent, where: ContainerIdentity = HOST) -> EventContext:
        setup = self.watch.setup.active(event.key)
        if setup:
            if event.kind == "exec":
                self.lineage.record_exec(event)
            return EventContext(container=where, runtime_setup=True)
        if event.kind == "exec":
            self.lineage.record_exec(event)
            exe = event.exe or event.filename
            if event.euid == 0 and event.uid != 0 and self.verifier.verified(exe):
                self._setuid_verified.add(event.key)
            else:
                self._setuid_verified.discard(event.key)
            if any(_base(p) in SHELLS for p in (event.exe, event.filename) if p):
                self._stdio.watch(event.key, event.name, event.exe)
            parent, wrappers = self.lineage.real_parent(event.key)
            parent_exe = self.lineage.exe(parent) if parent is not None else ""
            node = self.lineage.node(parent) if parent is not None else None
            return EventContext(
                container=where,
                parent_exe=parent_exe,
                parent_verified=bool(parent_exe) and parent_exe in self._shell_parents
                and self.verifier.verified(parent_exe),
                parent_args=node.args if node is not None else (),
                wrappers=wrappers, shell_parents=self._shell_parents)
        if event.kind == "cred":
            return EventContext(container=where,
                                setuid_verified=event.key in self._setuid_verified)
        sandbox = False
        if event.kind == "syscall" and event.syscall in ("unshare", "setns"):
            exe = self._exe_of(event.key)
            sandbox = exe in self._sandboxes and self.verifier.verified(exe)
        target = self.watch.target_of(event) if where.is_container else None
        return EventContext(container=where, sandbox=sandbox, target_container=target)

    def _with_remote(self, finding: Finding, event: KernelEvent) -> Finding:
        """The kernel saw the shell's standard stream on a socket at its exec; while it still
        runs, /proc names the connection (remote address, direction)."""
        key = event.key
        if read_start_ticks(key.pid, self._proc) != key.start_ticks:
            return finding  # already gone: the kernel's fact stands alone
        sockets = stdio_sockets(key.pid, self._proc)
        if not sockets:
            return finding
        self._stdio.forget(key)
        sock = sockets[0]
        return stdio_socket_finding(key, event.name, event.exe, sock.fds, sock.remote,
                                    sock.inbound)

    def _exe_of(self, key: ProcessKey) -> str:
        exe = self.lineage.exe(key)
        if exe:
            return exe
        try:
            exe = os.readlink(f"{self._proc}/{key.pid}/exe").removesuffix(" (deleted)")
        except OSError:
            return ""
        return exe if read_start_ticks(key.pid, self._proc) == key.start_ticks else ""

    def _subject(self, key: ProcessKey, uid: int | None) -> Subject:
        node = self.lineage.node(key)
        parent = node.parent if node is not None else None
        return Subject(executable=self._exe_of(key),
                       parent=self.lineage.exe(parent) if parent is not None else "",
                       uid=uid, user=_user(uid), args=node.args if node is not None else ())

    def _check_stdio(self, tick: TickContext) -> list[Finding]:
        found: list[Finding] = []
        for key, name, exe, sock in self._stdio.check():
            finding = stdio_socket_finding(key, name, exe, sock.fds, sock.remote, sock.inbound)
            life = self._lives.get(key)
            if not self.filter.allows(finding.rule_id, self._subject(
                    key, life.uid if life is not None else None)):
                continue
            found.append(finding)
            if life is not None:
                life.rules.add(finding.rule_id)
            self._maybe_alert(finding, time.time(), name, tick)
        return found

    def _maybe_alert(self, finding: Finding, when: float, name: str, tick: TickContext,
                     where: ContainerIdentity | None = None) -> None:
        once = (finding.key, finding.rule_id)
        if finding.raises_alert and once not in self._alerted:
            self._alerted.add(once)
            if where is None:
                life = self._lives.get(finding.key)
                where = life.container if life is not None else UNKNOWN
            tick.raise_alert(self._alert(finding, when, name, tick, where))

    def _container_at_exit(self, key: ProcessKey, life: _Life) -> ContainerIdentity:
        if life.container.state != "unknown":
            return life.container
        return self.containers.of_process(key)  # gone already: UNKNOWN

    @staticmethod
    def _alert(finding: Finding, when: float, name: str, tick: TickContext,
               where: ContainerIdentity = UNKNOWN) -> Alert:
        row = tick.processes.get(finding.key)
        assert finding.severity is not None
        return Alert(
            timestamp=when,
            rule_id=finding.rule_id,
            title=finding.title,
            severity=finding.severity,
            technique_id=finding.technique[0],
            technique_name=finding.technique[1],
            key=finding.key,
            process_name=row.name if row is not None else name,
            reasons=(finding.reason,),
            extra={**finding.extra, "points": finding.points,
                   "start_ticks": finding.key.start_ticks},
            container=where,
        )


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _user(uid: int | None) -> str:
    if uid is None:
        return ""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
