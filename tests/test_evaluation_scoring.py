"""How the evaluation attributes what the engine says to a scenario, and how it scores it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fluxtui.capabilities.syscall_risk import RiskView
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.detection.risk import RiskScore
from fluxtui.evaluation.manifest import Scenario
from fluxtui.evaluation.observer import AlertRecord, Observation, Observer, ProcessRecord
from fluxtui.evaluation.report import Context, json_report, text_report
from fluxtui.evaluation.scoring import Result, rates, verdicts
from fluxtui.events import Alert, ProcessKey, Severity
from fluxtui.guard.events import GuardDecision, Requester
from tests import fakes

ACTOR_ID, SUPPORT_ID, HOST_ID = 9001, 9002, 1
ATTACK = Scenario("ptrace-gdb", "attack", Path("/x.sh"), "t", "processes", 30.0, "T1055.008",
                  ("T1055.008",))
BENIGN = Scenario("gcc-build", "benign", Path("/y.sh"), "t", "processes", 30.0)


def exec_event(key: ProcessKey, cgroup_id: int, exe: str = "/usr/bin/python3") -> KernelEvent:
    return KernelEvent(kind="exec", timestamp=0.0, key=key, tid=key.pid, uid=0, gid=0,
                       comm="python3", cgroup_id=cgroup_id, exe=exe, filename=exe)


def alert(key: ProcessKey | None, rule: str = "syscalls.ptrace_attach",
          severity: Severity = Severity.HIGH, technique: str = "T1055.008", **extra: object
          ) -> Alert:
    return Alert(0.0, rule, "title", severity, technique, "", key, "python3", (), dict(extra))


def observer(tmp_path: Path) -> Observer:
    obs = Observer(tmp_path, proc=str(tmp_path / "no-proc"))  # /proc knows none of them
    obs.begin({ACTOR_ID: "actor", SUPPORT_ID: "support"}, {})
    return obs


def test_processes_belong_to_a_scenario_by_cgroup_never_by_name(tmp_path: Path) -> None:
    obs = observer(tmp_path)
    actor, host = ProcessKey(10, 1), ProcessKey(11, 1)
    for event in (exec_event(actor, ACTOR_ID), exec_event(host, HOST_ID),
                  alert(actor), alert(host)):
        obs(event)
    seen = obs.end()
    assert [(a.pid, a.role) for a in seen.alerts] == [(10, "actor")]
    assert set(seen.processes) == {actor}


def test_a_guard_decision_before_the_exec_event_is_attributed_when_the_scenario_ends(
        tmp_path: Path) -> None:
    obs = observer(tmp_path)
    key = ProcessKey(20, 5)
    requester = Requester(key, "/usr/bin/python3", ("python3",), 0, 0, "root", 1, "/bin/bash",
                          None, None, False, "not checked", ())
    obs(GuardDecision(0.0, "/h/.aws/credentials", "aws", "T1552.001", False, "headless",
                      "default action deny", requester, 10.0, "enforce"))
    obs.drain()  # the decision comes first: nothing known about pid 20 yet
    obs(exec_event(key, ACTOR_ID))
    seen = obs.end()
    assert len(seen.guard) == 1 and seen.guard[0].startswith("denied /usr/bin/python3")


def test_an_alert_on_no_process_is_kept_apart(tmp_path: Path) -> None:
    obs = observer(tmp_path)
    obs(alert(None, "network.port_scan", technique="T1046"))
    seen = obs.end()
    assert seen.alerts == [] and [a.rule_id for a in seen.unattributed] == ["network.port_scan"]


def test_the_highest_score_and_its_parts_are_kept(tmp_path: Path) -> None:
    obs = observer(tmp_path)
    key = ProcessKey(30, 7)
    obs(exec_event(key, ACTOR_ID))
    for sequence, (score, syscalls, events, anomaly) in enumerate(
            [(20, 5, 10, 0), (64, 10, 30, 80), (30, 10, 20, 0)], 1):
        risk = RiskView(50.0, {key: RiskScore(score, (f"r{score}",), syscalls, events, anomaly,
                                              "odd")})
        obs(dataclasses.replace(fakes.snapshot(sequence=sequence), views={"risk": risk}))
    record = obs.end().processes[key]
    assert (record.final, record.rules, record.model) == (64, 40, 80)
    assert record.reasons == ("r64",)
    assert obs.sequence == 3


def _observation(alerts: list[AlertRecord], **risk: float) -> Observation:
    record = ProcessRecord(ProcessKey(1, 1), risk.pop("role", "actor"),  # type: ignore[arg-type]
                           "p", risk.get("final", 0), risk.get("rules", 0), risk.get("model", 0))
    return Observation({record.key: record}, alerts)


def _record(rule: str = "syscalls.ptrace_attach", severity: str = "high",
            technique: str = "T1055.008", role: str = "actor", source: str = "rules",
            **parts: float) -> AlertRecord:
    return AlertRecord(rule, severity, technique, "p", 1, role, source, "t", **parts)


def test_an_attack_needs_a_fitting_alert_and_the_threshold() -> None:
    fitting = [_record()]
    assert verdicts(ATTACK, _observation(fitting, final=60, rules=60), 50, False) == {
        "rules": True, "model": None, "both": True}
    # The alert without the risk, the risk without a fitting alert: both are misses.
    assert verdicts(ATTACK, _observation(fitting, final=40, rules=40), 50, False)["both"] is False
    other = [_record(technique="T1059")]
    assert verdicts(ATTACK, _observation(other, final=90, rules=90), 50, False)["rules"] is False
    low = [_record(severity="low")]
    assert verdicts(ATTACK, _observation(low, final=90, rules=90), 50, False)["rules"] is False
    # An alert on a listener or victim the scenario set up is not the actor's.
    support = [_record(role="support")]
    assert verdicts(ATTACK, _observation(support, final=90, rules=90), 50, False)["rules"] is False


def test_rules_and_model_are_told_apart_in_one_run() -> None:
    # The model alone pushed the score over; the rules' part stayed below.
    crossing = [_record("risk.threshold", source="risk", rules_part=20.0, model_part=90.0)]
    seen = _observation(crossing, final=62, rules=20, model=90)
    assert verdicts(ATTACK, seen, 50, True) == {"rules": False, "model": True, "both": True}
    # A rule alone: the model part is 0.
    seen = _observation([_record()], final=55, rules=55, model=0)
    assert verdicts(ATTACK, seen, 50, True) == {"rules": True, "model": False, "both": True}


def test_a_benign_scenario_alarms_on_any_medium_alert_or_any_process_over_threshold() -> None:
    quiet = _observation([_record("syscalls.shell_spawn", "low", "T1059.004")], final=30, rules=30)
    assert verdicts(BENIGN, quiet, 50, True) == {"rules": False, "model": False, "both": False}
    support = _observation([_record("network.connection_burst", "medium", "T1499",
                                    role="support")])
    assert verdicts(BENIGN, support, 50, False) == {"rules": True, "model": None, "both": True}
    model = _observation([], final=40, rules=10, model=70, role="support")
    assert verdicts(BENIGN, model, 50, True) == {"rules": False, "model": True, "both": False}


def _result(scenario: Scenario, status: str, verdict: bool | None) -> Result:
    return Result(scenario, status, "", Observation(), True, 1.0,
                  {"rules": verdict, "model": None, "both": verdict})


def test_rates_count_only_scenarios_that_ran_and_say_when_unmeasurable() -> None:
    results = [_result(ATTACK, "ok", True), _result(ATTACK, "ok", False),
               _result(ATTACK, "failed", True), _result(BENIGN, "ok", False)]
    detection = rates(results, True, "rules")
    assert detection is not None and (detection.hits, detection.total) == (1, 2)
    assert rates(results, True, "model") is None
    alarms = rates(results, False, "both")
    assert alarms is not None and (alarms.hits, alarms.total) == (0, 1)


def test_the_table_and_the_json_say_the_same() -> None:
    results = [_result(ATTACK, "ok", True), _result(BENIGN, "skipped", None)]
    ctx = Context(50.0, "no anomaly module", "no training phase", ("syscalls: running",), 3.0)
    table = text_report(results, ctx)
    assert "1/1 (100%)" in table and "model columns unavailable: no anomaly module" in table
    assert "gcc-build (skipped)" in table
    doc = json_report(results, ctx)
    assert doc["summary"]["detection"]["rules"]["hits"] == 1
    assert doc["summary"]["detection"]["model"] == {"unavailable": "no anomaly module"}
    assert doc["scenarios"][1]["verdict"] == {"rules": None, "model": None, "both": None}


@dataclasses.dataclass(frozen=True)
class _Lifetime:
    key: ProcessKey
    name: str


@dataclasses.dataclass(frozen=True)
class ProcessExit:  # the shape of the engine's final record of an exited process
    lifetime: _Lifetime
    risk: float
    reasons: tuple[str, ...]
    anomaly: float
    anomaly_reason: str


def test_a_final_record_scores_a_process_that_never_lived_through_a_tick(
        tmp_path: Path) -> None:
    obs = observer(tmp_path)
    quick, modelled = ProcessKey(40, 1), ProcessKey(41, 1)
    obs(exec_event(quick, ACTOR_ID))
    obs(exec_event(modelled, ACTOR_ID))
    obs(ProcessExit(_Lifetime(quick, "gdb"), 62.0, ("ptrace attach (+40)",), 0.0, ""))
    obs(ProcessExit(_Lifetime(modelled, "python3"), 30.0, (), 70.0, "ptrace never seen"))
    seen = obs.end().processes
    assert (seen[quick].final, seen[quick].rules, seen[quick].model) == (62.0, 62.0, 0.0)
    # With an anomaly part the record does not say what the rules alone made: not guessed.
    assert (seen[modelled].final, seen[modelled].rules, seen[modelled].model) == (30.0, 0.0, 70.0)
    assert seen[modelled].model_reason == "ptrace never seen"


def test_a_threshold_alert_gives_the_parts_of_the_score_that_crossed(tmp_path: Path) -> None:
    obs = observer(tmp_path)
    key = ProcessKey(50, 1)
    obs(exec_event(key, ACTOR_ID))
    obs(alert(key, "risk.threshold", Severity.MEDIUM, "T1055.008", score=58.0,
              syscall_points=10.0, event_points=40.0, anomaly=26.0))
    record = obs.end().processes[key]
    assert (record.final, record.rules, record.model) == (58.0, 50.0, 26.0)


def test_the_default_benign_phase_puts_every_benign_scenario_in_the_training_part() -> None:
    """Even split by time (the fit's fallback when too few processes were recorded), the
    default rounds give every benign scenario (equal-length runs, in manifest order) a run in
    the part the detectors are fitted on."""
    from fluxtui.config import AnomalyConfig
    from fluxtui.detection.anomaly.models import split_by_time
    from fluxtui.evaluation.runner import Options

    rounds = Options(Path(".")).training_runs
    benign, per_run = 10, 40
    order = [i for _ in range(rounds) for i in range(benign) for _ in range(per_run)]
    train, _, _ = split_by_time(len(order), AnomalyConfig().holdout_fraction)
    assert set(order[train]) == set(range(benign))
