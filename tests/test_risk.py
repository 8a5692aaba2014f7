"""Risk scoring: the syscall mix, events, decay, the threshold alert, and scoring without BPF."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.lineage import Lineage, Node
from fluxtui.capabilities.syscall_risk import RiskScorer, RiskView, SyscallCapture, SyscallView
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.collectors.syscalls import DropCounts
from fluxtui.component import TickContext
from fluxtui.config import Config, RiskConfig
from fluxtui.detection.risk import NO_MODEL, NO_VERDICT, RiskModel, RiskScore
from fluxtui.detection.syscall_rules import Finding
from fluxtui.ecs import document
from fluxtui.engine import Engine
from fluxtui.events import (
    AnomalyInput,
    ComponentState,
    ComponentStatus,
    ProcessExit,
    ProcessKey,
    ProcessLifetime,
    ProcessRow,
    Severity,
)
from tests.fakes import metrics, row

KEY = ProcessKey(300, 1300)
CFG = RiskConfig(risk_threshold=50, decay_factor=0.9, decay_interval=10,
                 default_risk_score=0, base_risk_scores={"ptrace": 10, "execve": 5, "openat": 1})


def test_syscall_mix_counts_use_not_frequency() -> None:
    model = RiskModel(CFG)
    model.observe_syscalls(KEY, {"ptrace": 1, "read": 100_000}, now=0)
    other = ProcessKey(301, 1301)
    model.observe_syscalls(other, {"ptrace": 1_000_000}, now=0)
    assert model.score(KEY, 0).score == model.score(other, 0).score == 10
    assert model.score(KEY, 0).reasons == ("uses ptrace (+10)",)
    assert model.score(KEY, 0).syscall_points == 10


def test_default_weight_applies_to_unlisted_syscalls() -> None:
    model = RiskModel(dataclasses.replace(CFG, default_risk_score=2))
    model.observe_syscalls(KEY, {"read": 5, "write": 5, "execve": 1}, now=0)
    assert model.score(KEY, 0).score == 2 + 2 + 5


def test_decay_is_the_configured_factor_per_interval() -> None:
    model = RiskModel(CFG)
    model.add(KEY, 40, "ptrace attach", now=100)
    assert model.score(KEY, 100).score == 40
    assert model.score(KEY, 110).score == pytest.approx(36.0, abs=0.05)
    assert model.score(KEY, 120).score == pytest.approx(32.4, abs=0.05)
    later = RiskModel(CFG)
    later.add(KEY, 40, "ptrace attach", now=0)
    assert later.score(KEY, 5).score == pytest.approx(40 * 0.9**0.5, abs=0.05)


def test_syscall_use_decays_and_is_renewed_by_use() -> None:
    model = RiskModel(CFG)
    model.observe_syscalls(KEY, {"ptrace": 1}, now=0)
    assert model.score(KEY, 10).score == pytest.approx(9.0, abs=0.05)
    model.observe_syscalls(KEY, {"ptrace": 1}, now=10)
    assert model.score(KEY, 10).score == 10


def test_forgotten_when_negligible() -> None:
    model = RiskModel(CFG)
    model.add(KEY, 1, "small", now=0)
    assert KEY in model
    assert model.score(KEY, 10_000).score == 0
    assert KEY not in model and len(model) == 0


def test_a_repeated_reason_counts_once_and_the_total_caps_at_100() -> None:
    model = RiskModel(CFG)
    for _ in range(3):
        model.add(KEY, 30, "exec of /tmp/x", now=0, technique_id="T1059")
    model.add(KEY, 20, "PTRACE_ATTACH of pid 9", now=0, technique_id="T1055.008")
    score = model.score(KEY, 0)
    assert score.event_points == 50
    assert score.reasons[0] == "exec of /tmp/x (+30)"
    assert score.technique_id == "T1059"  # the largest tagged contribution
    for i in range(4):
        model.add(KEY, 30, f"reason {i}", now=0)
    assert model.score(KEY, 0).score == 100


def test_a_group_counts_once_at_its_largest_recent_value() -> None:
    """A busy normal program calling memfd_create with a new name each time stays at one
    memfd_create's points; a repeat after decay renews the value, it does not add to it."""
    model = RiskModel(CFG)
    for i in range(1000):
        model.add(KEY, 10, f"memfd_create('buf{i}')", now=0, group="syscalls.memfd_create")
    score = model.score(KEY, 0)
    assert score.score == 10 and score.reasons == ("memfd_create('buf999') (+10)",)
    model.add(KEY, 10, "memfd_create('late')", now=10, group="syscalls.memfd_create")
    assert model.score(KEY, 10).score == 10
    model.add(KEY, 40, "bigger", now=10, group="syscalls.memfd_create")
    assert model.score(KEY, 10).reasons == ("bigger (+40)",)


def test_reasons_are_the_top_five() -> None:
    model = RiskModel(CFG)
    for points in range(1, 9):
        model.add(KEY, points, f"reason {points}", now=0)
    assert model.score(KEY, 0).reasons == tuple(f"reason {p} (+{p})" for p in (8, 7, 6, 5, 4))


def test_anomaly_is_a_real_zero_without_a_model() -> None:
    model = RiskModel(CFG)
    model.add(KEY, 60, "x", now=0)
    score = model.score(KEY, 0)
    assert (score.anomaly, score.anomaly_reason) == (0.0, NO_MODEL)
    assert score.score == 60  # anomaly_weight is not applied to a missing model


def test_forget_and_retain() -> None:
    model = RiskModel(CFG)
    other = ProcessKey(301, 1301)
    model.add(KEY, 10, "a", now=0)
    model.add(other, 10, "b", now=0)
    model.retain([KEY])
    assert other not in model and KEY in model
    model.forget(KEY)
    assert len(model) == 0


def test_pid_reuse_does_not_inherit_risk() -> None:
    model = RiskModel(CFG)
    model.add(KEY, 80, "ptrace attach", now=0)
    reused = ProcessKey(KEY.pid, KEY.start_ticks + 500)
    assert model.score(reused, 0).score == 0


# --- the component ---------------------------------------------------------------------------


class _Clock:
    """The scorer's monotonic clock, set by `_tick` to the tick's time unless told otherwise."""

    value = 0.0

    def __call__(self) -> float:
        return self.value


CLOCK = _Clock()


def _tick(now: float, rows: list[ProcessRow], views: dict[str, object] | None = None,
          monotonic: float | None = None) -> TickContext:
    CLOCK.value = now if monotonic is None else monotonic
    tick = TickContext(now, 1.0, metrics(), {r.key: r for r in rows}, EventBus())
    tick.views.update(views or {})
    return tick


def _scorer(tmp_path: Path, threshold: float = 50) -> RiskScorer:
    config = Config(risk=dataclasses.replace(CFG, risk_threshold=threshold))
    scorer = RiskScorer(config, proc=str(tmp_path), clock=CLOCK)  # no /proc: no container reads
    scorer.start(EventBus())
    return scorer


def test_decay_follows_the_monotonic_clock_not_the_wall_clock(tmp_path: Path) -> None:
    """A wall-clock step (NTP, a suspended VM's catch-up) neither decays nor freezes scores;
    alerts still carry the wall-clock time."""
    scorer = _scorer(tmp_path)
    proc = row(300, "p")
    first = _tick(1_800_000_000.0, [proc], monotonic=50.0)
    first.add_risk(proc.key, 60, "x")
    scorer.on_tick(first)
    assert first.alerts[0].timestamp == 1_800_000_000.0
    jumped = _tick(1_800_000_000.0 + 86_400, [proc], monotonic=51.0)
    scorer.on_tick(jumped)
    assert jumped.annotations[proc.key]["risk"] == pytest.approx(60 * 0.9**0.1, abs=0.05)
    back = _tick(1_700_000_000.0, [proc], monotonic=61.0)
    scorer.on_tick(back)
    assert back.annotations[proc.key]["risk"] == pytest.approx(60 * 0.9**1.1, abs=0.05)


def test_repeated_findings_of_one_rule_count_once(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path, threshold=100)
    busy = row(300, "busy")
    findings = tuple(Finding(busy.key, "syscalls.memfd_create", "Anonymous memory file created",
                             f"memfd_create('buf{i}')", 10, ("T1620", "Reflective")) for i in
                     range(50))
    view = SyscallView(1.0, {}, {}, findings, (), 50, 0, DropCounts(), DropCounts())
    for t in range(3):
        tick = _tick(t, [busy], {SyscallCapture.name: view})
        scorer.on_tick(tick)
    score = scorer.explain(busy.key)
    assert score is not None and score.event_points == pytest.approx(10, abs=0.05)


def test_an_exit_of_a_process_still_in_the_table_keeps_its_state(tmp_path: Path) -> None:
    """Without group_dead the main thread's exit looks like the process's: the key is still in
    the table, so its risk stays until it leaves the table."""
    scorer = _scorer(tmp_path)
    proc = row(300, "threads")
    tick = _tick(0, [proc])
    tick.add_risk(proc.key, 30, "x")
    scorer.on_tick(tick)
    view = SyscallView(1.0, {}, {}, (), (proc.key,), 1, 0, DropCounts(), DropCounts())
    still = _tick(1, [proc], {SyscallCapture.name: view})
    scorer.on_tick(still)
    assert proc.key in scorer.model and still.annotations[proc.key]["risk"] > 29
    scorer.on_tick(_tick(2, []))
    assert proc.key not in scorer.model


def test_threshold_alert_once_per_crossing(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    bash = row(300, "bash")
    tick = _tick(0, [bash])
    tick.add_risk(bash.key, 60, "port scan of 200 ports")
    scorer.on_tick(tick)
    assert [a.rule_id for a in tick.alerts] == ["risk.threshold"]
    alert = tick.alerts[0]
    assert alert.key == bash.key and alert.severity is Severity.MEDIUM
    assert alert.reasons == ("port scan of 200 ports (+60)",)
    assert tick.annotations[bash.key]["risk"] == 60
    assert tick.annotations[bash.key]["risk_reasons"] == ("port scan of 200 ports (+60)",)
    assert isinstance(tick.views["risk"], RiskView)

    still = _tick(1, [bash])  # still above: no second alert
    scorer.on_tick(still)
    assert still.alerts == []
    # 60 * 0.9**(t/10) < 40 (0.8 x threshold) after ~38.5 s: re-armed, then a new crossing alerts.
    low = _tick(40, [bash])
    scorer.on_tick(low)
    assert low.alerts == [] and low.annotations[bash.key]["risk"] < 40
    again = _tick(41, [bash])
    again.add_risk(bash.key, 60, "port scan of 200 ports")  # renewed at its full value
    scorer.on_tick(again)
    assert [a.rule_id for a in again.alerts] == ["risk.threshold"]


def test_findings_and_counts_from_the_syscall_view(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    tracer = row(300, "tracer")
    finding = Finding(tracer.key, "syscalls.ptrace_attach", "Ptrace attach", "PTRACE_ATTACH of "
                      "pid 9", 40, ("T1055.008", "Ptrace"), Severity.HIGH)
    view = SyscallView(window_s=1.0, counts={tracer.key: {"ptrace": 2, "wait4": 1}},
                       bigrams={}, findings=(finding,), exited=(), events=1, total_syscalls=3,
                       dropped=DropCounts(), dropped_total=DropCounts())
    tick = _tick(0, [tracer], {SyscallCapture.name: view})
    scorer.on_tick(tick)
    score = scorer.explain(tracer.key)
    assert score is not None and score.score == 50
    assert score.reasons == ("PTRACE_ATTACH of pid 9 (+40)", "uses ptrace (+10)")
    assert tick.alerts[0].technique_id == "T1055.008"


def test_state_is_dropped_on_exit(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    short = row(300, "short")
    tick = _tick(0, [short])
    tick.add_risk(short.key, 10, "x")
    scorer.on_tick(tick)
    assert short.key in scorer.model
    view = SyscallView(1.0, {}, {}, (), (short.key,), 1, 0, DropCounts(), DropCounts())
    scorer.on_tick(_tick(1, [], {SyscallCapture.name: view}))  # exited, and gone from /proc
    assert short.key not in scorer.model


def test_processes_that_left_the_table_are_dropped(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    gone = row(300, "gone")
    tick = _tick(0, [gone])
    tick.add_risk(gone.key, 10, "x")
    scorer.on_tick(tick)
    scorer.on_tick(_tick(1, []))
    assert len(scorer.model) == 0


def test_risk_of_a_process_not_yet_in_the_table_is_kept(tmp_path: Path) -> None:
    """A process started between the table's sample and the drain keeps its findings."""
    scorer = _scorer(tmp_path)
    new = row(300, "new")
    tick = _tick(0, [])
    tick.add_risk(new.key, 45, "exec of /tmp/x")
    scorer.on_tick(tick)
    later = _tick(1, [new])
    scorer.on_tick(later)
    assert later.annotations[new.key]["risk"] == pytest.approx(45 * 0.9**0.1, abs=0.05)


class _Producer:
    """A capability that reports risk for one process, like the connections capability does."""

    name = "producer"

    def __init__(self, key: ProcessKey) -> None:
        self.key = key

    def start(self, bus: EventBus) -> None:
        pass

    def stop(self) -> None:
        pass

    def status(self) -> ComponentStatus:
        return ComponentStatus(self.name, ComponentState.RUNNING)

    def on_tick(self, tick: TickContext) -> None:
        tick.add_risk(self.key, 70, "connected to 300 hosts")


def test_scoring_works_without_bpf() -> None:
    config = Config(syscalls=dataclasses.replace(Config().syscalls, enabled=False))
    me = ProcessKey(os.getpid(), read_start_ticks(os.getpid()) or 0)
    engine = Engine(config, [SyscallCapture(config), _Producer(me), RiskScorer(config)])
    try:
        snapshot = engine.start_sync()
    finally:
        engine.stop()
    statuses = {s.name: s for s in snapshot.statuses}
    assert statuses["syscalls"].state is ComponentState.UNAVAILABLE
    assert "syscalls.enabled: false" in statuses["syscalls"].reason
    assert statuses["risk"].running
    mine = snapshot.processes[me]
    assert mine.risk == 70 and mine.risk_reasons == ("connected to 300 hosts (+70)",)
    assert mine.syscalls_per_s is None  # not measured: the column stays empty
    assert [a.rule_id for a in snapshot.alerts] == ["risk.threshold"]


def test_ring_buffer_pages_must_be_a_power_of_two() -> None:
    config = Config(syscalls=dataclasses.replace(Config().syscalls, ring_buffer_pages=48))
    capture = SyscallCapture(config)
    capture.start(EventBus())
    status = capture.status()
    assert status.state is ComponentState.UNAVAILABLE and "power of two" in status.reason


# --- whole lives, propagation, anomaly ---------------------------------------------------------


def _life(key: ProcessKey, parent: ProcessKey | None = None, exited: float = 10.0,
          syscalls: dict[str, int] | None = None) -> ProcessLifetime:
    return ProcessLifetime(key=key, name="payload", exe="/tmp/payload", args=("-x",), uid=1000,
                           parent=parent, started=exited - 0.2, exited=exited,
                           syscalls=syscalls or {"execve": 1, "getppid": 5},
                           events=1, rules=("syscalls.exec_tmp",))


def _view(findings: tuple[Finding, ...] = (), final: dict | None = None,
          counts: dict | None = None, lineage: Lineage | None = None) -> SyscallView:
    return SyscallView(1.0, counts or {}, {}, findings, tuple(final or {}), 0, 0, DropCounts(),
                       DropCounts(), final=final or {}, lineage=lineage)


def test_a_process_that_lived_between_two_ticks_is_scored_published_and_kept(
        tmp_path: Path) -> None:
    """Never in the table: scored on its whole life (its counts and findings, arriving with its
    final record), published once as a ProcessExit, and shown as an exited row for
    exited_retention_s."""
    config = Config(risk=dataclasses.replace(CFG, exited_retention_s=30))
    scorer = RiskScorer(config, proc=str(tmp_path), clock=CLOCK)
    bus = EventBus()
    published: list[object] = []
    bus.subscribe(published.append)
    short = ProcessKey(4000, 5000)
    finding = Finding(short, "syscalls.exec_tmp", "exec", "exec of /tmp/payload", 30,
                      ("T1059", "Command and Scripting Interpreter"), Severity.MEDIUM)
    life = _life(short)
    first = _tick(100.0, [], {SyscallCapture.name: _view(
        (finding,), {short: life}, {short: {"execve": 1, "getppid": 5}})})
    first.bus = bus
    scorer.on_tick(first)
    second = _tick(101.0, [], {SyscallCapture.name: _view()})
    second.bus = bus
    scorer.on_tick(second)
    exits = [e for e in published if isinstance(e, ProcessExit)]
    assert len(exits) == 1
    exit_ = exits[0]
    assert exit_.lifetime == life and exit_.risk == 35  # 30 (finding) + 5 (execve)
    assert exit_.technique_id == "T1059"
    assert "exec of /tmp/payload (+30)" in exit_.reasons
    doc = document(exit_)
    assert doc["event"] == {"kind": "event", "dataset":
                            "fluxtui.process_exit", "category": ["process"], "type": ["end"],
                            "action": "process-exited", "risk_score": 35}
    assert doc["process"]["pid"] == 4000 and doc["process"]["executable"] == "/tmp/payload"
    assert doc["fluxtui"]["process"]["syscalls"] == {"total": 6,
                                                     "by_name": [
        {"name": "getppid", "count": 5}, {"name": "execve", "count": 1}]}
    assert doc["fluxtui"]["process"]["lifetime_s"] == pytest.approx(0.2)
    row_ = second.processes[short]
    assert row_.state == "exited" and row_.exited_at == 10.0 and row_.risk == 35
    kept = _tick(120.0, [])
    scorer.on_tick(kept)
    assert short in kept.processes
    gone = _tick(131.5, [])
    scorer.on_tick(gone)
    assert short not in gone.processes and short not in scorer.model


def _lineage(tmp_path: Path, sessions: dict[ProcessKey, int], verified: set[str],
             nodes: dict[ProcessKey, tuple[ProcessKey | None, str]]) -> Lineage:
    """A lineage over a made-up /proc: `sessions` gives each live process's session id."""
    for key, sid in sessions.items():
        d = tmp_path / str(key.pid)
        d.mkdir(parents=True)
        fields = ["S", "1", str(key.pid), str(sid)] + ["0"] * 15 + [str(key.start_ticks)]
        (d / "stat").write_text(f"{key.pid} (x) {' '.join(fields)}\n")
    lineage = Lineage(lambda path: path in verified, proc=str(tmp_path))
    for key, (parent, exe) in nodes.items():
        lineage._put(key, Node(parent, exe))
    return lineage


def test_a_childs_finding_counts_decayed_toward_its_parents_with_the_chain(
        tmp_path: Path) -> None:
    login = ProcessKey(100, 1)  # a session leader running a verified shell: not blamed
    script = ProcessKey(200, 2)
    helper = ProcessKey(300, 3)
    gdb = ProcessKey(400, 4)
    lineage = _lineage(tmp_path / "proc", {login: 100, script: 100, helper: 100},
                       {"/usr/bin/bash"}, {
                           login: (ProcessKey(1, 0), "/usr/bin/bash"),
                           script: (login, "/tmp/run.sh"),
                           helper: (script, "/usr/bin/python3.11"),
                           gdb: (helper, "/usr/bin/gdb")})
    (tmp_path / "proc").mkdir(exist_ok=True)
    scorer = _scorer(tmp_path, threshold=100)
    finding = Finding(gdb, "syscalls.ptrace_attach", "Ptrace attach", "PTRACE_ATTACH of pid 9",
                      40, ("T1055.008", "Ptrace"), Severity.HIGH)
    rows = [dataclasses.replace(row(p.pid, "x"), key=p) for p in (login, script, helper)]
    tick = _tick(0, rows, {SyscallCapture.name: _view((finding,), lineage=lineage)})
    scorer.on_tick(tick)
    helper_score, script_score = scorer.explain(helper), scorer.explain(script)
    assert helper_score is not None and helper_score.score == 20  # 40 x 0.5
    assert script_score is not None and script_score.score == 10  # 40 x 0.25
    assert script_score.reasons == (
        "started python3.11 300 ← gdb 400: PTRACE_ATTACH of pid 9 (+10)",)
    assert script_score.technique_id == "T1055.008"
    login_score = scorer.explain(login)
    assert login_score is not None and login_score.score == 0  # the stop: a verified leader
    # An unverified session leader (an implant that called setsid) is blamed.
    lineage.verified = lambda path: False
    again = _tick(1, rows, {SyscallCapture.name: _view((finding,), lineage=lineage)})
    scorer.on_tick(again)
    assert scorer.explain(login).score > 0  # type: ignore[union-attr]


def test_wrappers_are_looked_through_when_verified(tmp_path: Path) -> None:
    shell, timeout, child = ProcessKey(10, 1), ProcessKey(11, 2), ProcessKey(12, 3)
    nodes = {shell: (None, "/usr/bin/bash"), timeout: (shell, "/usr/bin/timeout"),
             child: (timeout, "/usr/bin/dash")}
    lineage = _lineage(tmp_path, {}, {"/usr/bin/timeout"}, nodes)
    lineage.wrappers = frozenset({"/usr/bin/timeout"})
    assert lineage.real_parent(child) == (shell, ("/usr/bin/timeout",))
    lineage.verified = lambda path: False  # a /usr/bin/timeout that is not the package's
    assert lineage.real_parent(child) == (timeout, ())


def test_anomaly_verdicts_enter_with_their_weight_and_reasons(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path, threshold=100)
    proc = row(300, "ssh-keygen")
    tick = _tick(0, [proc])
    tick.add_risk(proc.key, 10, "x")
    tick.set_anomaly(AnomalyInput(proc.key, 80, ("ptrace never seen for /usr/bin/ssh-keygen",)))
    scorer.on_tick(tick)
    score = scorer.explain(proc.key)
    assert score is not None and score.score == 10 + 80 * CFG.anomaly_weight
    assert score.anomaly == 80 and "ptrace never seen" in score.anomaly_reason
    assert any(r.startswith("anomaly 80/100: ptrace never seen") for r in score.reasons)


def test_without_a_verdict_the_anomaly_is_a_real_zero_with_the_reason(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path, threshold=100)
    proc = row(300, "p")
    tick = _tick(0, [proc])
    tick.add_risk(proc.key, 10, "x")
    tick.anomaly_model = "model refused: /var/lib/fluxtui/model.skops is world-writable"
    scorer.on_tick(tick)
    score = scorer.explain(proc.key)
    assert score is not None and score.score == 10 and score.anomaly == 0
    assert score.anomaly_reason == tick.anomaly_model
    ran = _tick(1, [proc])  # a model ran, with no verdict on this process
    ran.set_anomaly(AnomalyInput(ProcessKey(999, 9), 5, ()))
    scorer.on_tick(ran)
    assert scorer.explain(proc.key).anomaly_reason == NO_VERDICT  # type: ignore[union-attr]


def test_risk_inputs_carry_their_technique_and_a_group_counts_once(tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    server = row(300, "server")
    tick = _tick(0, [server])
    for port in (9001, 9002, 9003):
        tick.add_risk(server.key, 15, f"new tcp listener on 0.0.0.0:{port}",
                      ("T1571", "Non-Standard Port"), group="network.new_listener")
    tick.add_risk(server.key, 40, "udp connections to 40 ports", ("T1046", "Network Service "
                                                                  "Discovery"))
    scorer.on_tick(tick)
    score = scorer.explain(server.key)
    assert score is not None and score.event_points == 55  # the listeners count once
    assert tick.alerts[0].technique_id == "T1046"  # the largest tagged contribution


def test_wrappers_are_passed_through_without_blame(tmp_path: Path) -> None:
    script, timeout, tool = ProcessKey(20, 1), ProcessKey(21, 2), ProcessKey(22, 3)
    lineage = _lineage(tmp_path, {}, {"/usr/bin/timeout"}, {
        script: (None, "/tmp/run.sh"), timeout: (script, "/usr/bin/timeout"),
        tool: (timeout, "/usr/bin/gdb")})
    lineage.wrappers = frozenset({"/usr/bin/timeout"})
    assert lineage.ancestors(tool, 3) == [script]


def test_a_process_that_crossed_the_threshold_alive_is_not_alerted_again_at_exit(
        tmp_path: Path) -> None:
    scorer = _scorer(tmp_path)
    proc = row(300, "gdb")
    alive = _tick(0, [proc], {SyscallCapture.name: _view()})
    alive.add_risk(proc.key, 60, "PTRACE_ATTACH of pid 9")
    scorer.on_tick(alive)
    assert [a.rule_id for a in alive.alerts] == ["risk.threshold"]
    alerts = []
    for t, final in ((1, {proc.key: _life(proc.key)}), (2, {}), (3, {})):
        tick = _tick(t, [], {SyscallCapture.name: _view(final=final)})
        scorer.on_tick(tick)
        alerts += tick.alerts
    assert alerts == []


def test_a_short_lived_process_keeps_its_anomaly_verdict_in_its_whole_life_score(
        tmp_path: Path) -> None:
    """The model judges a process's last window in the tick its final record arrives; the
    scorer closes it one tick later: the verdict (decayed) is still part of its final score."""
    config = Config(risk=dataclasses.replace(CFG, risk_threshold=20, exited_retention_s=0))
    scorer = RiskScorer(config, proc=str(tmp_path), clock=CLOCK)
    bus = EventBus()
    published: list[object] = []
    bus.subscribe(published.append)
    short = ProcessKey(4100, 5100)
    first = _tick(100.0, [], {SyscallCapture.name: _view(
        (), {short: _life(short)}, {short: {"execve": 1, "ptrace": 1}})})
    first.bus = bus
    first.set_anomaly(AnomalyInput(short, 90, ("/usr/bin/id called ptrace, never seen",)))
    scorer.on_tick(first)
    second = _tick(101.0, [], {SyscallCapture.name: _view()})
    second.bus = bus
    second.set_anomaly(AnomalyInput(ProcessKey(999, 9), 5, ()))  # a model ran, not on it
    scorer.on_tick(second)
    exit_ = next(e for e in published if isinstance(e, ProcessExit))
    assert exit_.anomaly == 90 and "called ptrace" in exit_.anomaly_reason
    assert exit_.risk == pytest.approx(15 + 90 * CFG.anomaly_weight)
    alerts = [a for a in [*first.alerts, *second.alerts] if a.rule_id == "risk.threshold"]
    assert len(alerts) == 1 and alerts[0].extra["anomaly"] == 90


def test_an_earlier_anomaly_verdict_decays_and_a_later_one_does_not_hide_it() -> None:
    model = RiskModel(CFG)
    model.set_anomalies({KEY: AnomalyInput(KEY, 80, ("new syscall",))}, "", now=0.0)
    assert model.score(KEY, 0.0).anomaly == 80
    model.set_anomalies({KEY: AnomalyInput(KEY, 10, ())}, "", now=10.0)
    score = model.score(KEY, 10.0)
    assert score.anomaly == pytest.approx(72) and score.anomaly_reason == "new syscall"
    model.set_anomalies({}, "", now=20.0)
    assert model.score(KEY, 20.0).anomaly == pytest.approx(64.8)
    model.forget(KEY)
    assert model.score(KEY, 20.0).anomaly == 0


class _Verifier:
    def __init__(self, *verified: str) -> None:
        self.paths = set(verified)

    def verified(self, path: str) -> bool:
        return path in self.paths


def test_a_verified_set_user_id_exec_makes_its_change_to_root_expected(tmp_path: Path) -> None:
    """sudo (verified, exec'd set-user-ID root) taking uid 0 is its job; the same change by an
    unverified set-user-ID copy, or by a process that was never given root, is not."""
    from fluxtui.collectors.kernel_event import KernelEvent

    capture = SyscallCapture(Config(), verifier=_Verifier("/usr/bin/sudo"),  # type: ignore[arg-type]
                             proc=str(tmp_path))

    def run(exe: str, pid: int, euid: int) -> bool:
        key = ProcessKey(pid, pid)
        capture._context(KernelEvent(kind="exec", timestamp=1.0, key=key, tid=pid, uid=1000,
                                     gid=1000, comm="x", exe=exe, filename=exe, euid=euid))
        cred = KernelEvent(kind="cred", timestamp=2.0, key=key, tid=pid, uid=0, gid=1000,
                           comm="x", syscall="setuid", args=(1000, 1000, 0, 1000, 0, 0))
        return capture._context(cred).setuid_verified
    assert run("/usr/bin/sudo", 500, euid=0)
    assert not run("/tmp/x/sudo", 501, euid=0)  # a set-user-ID copy nobody verified
    assert not run("/usr/bin/sudo", 502, euid=1000)  # not given root by its exec


def test_lineage_forgets_exited_processes_no_live_process_descends_from() -> None:
    """Every exited process stayed in the lineage until 65,536 (about 1 KB each): on a machine
    that starts many, tens of MB. Now an exited process is forgotten once a whole pruning pass
    went by without it being live or an ancestor of a live process."""
    from fluxtui.capabilities.lineage import PRUNE_EVERY

    lineage = Lineage(lambda path: False)
    shell, build, compiler, daemon = (row(10, "bash"), row(11, "make", ppid=10),
                                      row(12, "cc1", ppid=11), row(20, "sshd"))
    lineage.record_rows({r.key: r for r in (shell, build, compiler, daemon)})
    # make has exited; cc1, its child, runs on; bash has exited too; sshd runs
    still = {r.key: r for r in (compiler, daemon)}
    for _ in range(3 * PRUNE_EVERY):
        lineage.record_rows(still)
    assert build.key in lineage and shell.key in lineage  # ancestors of a live process
    assert lineage.ancestors(compiler.key, 3)[:1] == [build.key]
    # cc1 ends: nothing live descends from make or bash any more
    for _ in range(3 * PRUNE_EVERY):
        lineage.record_rows({daemon.key: daemon})
    assert daemon.key in lineage
    assert compiler.key not in lineage and build.key not in lineage and shell.key not in lineage
    assert len(lineage) == 1


def test_lineage_keeps_an_exited_process_for_a_whole_pass() -> None:
    """An exited process's final record and findings come a tick or more after its exit: it is
    kept until a whole pass went by without it."""
    from fluxtui.capabilities.lineage import PRUNE_EVERY

    lineage = Lineage(lambda path: False)
    daemon, short = row(20, "sshd"), row(30, "curl", ppid=20)
    lineage.record_rows({daemon.key: daemon})
    for _ in range(PRUNE_EVERY - 1):
        lineage.record_rows({daemon.key: daemon})
    lineage.record_rows({daemon.key: daemon, short.key: short})  # seen once, at a pass
    for _ in range(PRUNE_EVERY):
        lineage.record_rows({daemon.key: daemon})
    assert short.key in lineage  # one pass without it: still known
    for _ in range(PRUNE_EVERY):
        lineage.record_rows({daemon.key: daemon})
    assert short.key not in lineage


def test_only_processes_whose_score_can_change_are_scored(tmp_path: Path) -> None:
    """Issue 13: a process with nothing against it scores zero once; later ticks do not score
    it again (thousands sleep), and one that gets risk is scored and its columns set."""
    scorer = _scorer(tmp_path)
    quiet, busy = row(pid=100, name="quiet"), row(pid=101, name="busy")
    scored: list[ProcessKey] = []
    real = scorer.model.score

    def counting(key: ProcessKey, now: float) -> RiskScore:
        scored.append(key)
        return real(key, now)

    scorer.model.score = counting  # type: ignore[method-assign]
    first = _tick(1000.0, [quiet, busy])
    scorer.on_tick(first)
    assert set(scored) == {quiet.key, busy.key}
    assert first.annotations[quiet.key]["risk"] == 0.0
    scored.clear()

    def later(now: float) -> TickContext:
        CLOCK.value = now
        tick = TickContext(now, 1.0, metrics(), {quiet.key: quiet, busy.key: busy}, EventBus(),
                           appeared=frozenset())
        tick.first_tick = False
        return tick

    second = later(1001.0)
    scorer.on_tick(second)
    assert scored == [] and second.annotations == {}
    third = later(1002.0)
    third.add_risk(busy.key, 30.0, "port scan")
    scorer.on_tick(third)
    assert scored == [busy.key]
    assert set(third.annotations) == {busy.key} and third.annotations[busy.key]["risk"] == 30.0
    assert scorer.explain(quiet.key) is not None  # still in the view, unchanged
