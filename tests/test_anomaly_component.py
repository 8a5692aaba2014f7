"""The anomaly component in the engine's tick: one window per process that made syscalls (its
executable from the exec event, so a process that already exited is still named), every window
to the recorder, verdicts to the risk scorer, the reason when there is no model, the lifetime
totals of exited processes when the capture provides them, and retraining in a child process."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

from fluxtui.bus import EventBus
from fluxtui.capabilities.anomaly import AnomalyComponent, AnomalyView
from fluxtui.capabilities.syscall_risk import SyscallView
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.syscalls import DropCounts
from fluxtui.component import TickContext
from fluxtui.config import AnomalyConfig, Config
from fluxtui.detection.anomaly import FeatureWindow
from fluxtui.detection.anomaly.modelfile import load_model
from fluxtui.detection.anomaly.models import ALARM
from fluxtui.detection.anomaly.store import FeatureStore
from fluxtui.detection.syscall_rules import Finding
from fluxtui.events import ComponentState, ProcessKey, ProcessRow, SystemMetrics
from tests.anomaly_support import recorded_model, recorded_windows, table

RUNNING = ProcessKey(4242, 1000)
GONE = ProcessKey(4243, 1001)


def _metrics() -> SystemMetrics:
    from fluxtui.events import MemoryUsage

    return SystemMetrics(0.0, None, None, (), MemoryUsage(0, 0, 0, 0.0, 0, 0, 0.0), (), (),
                         (0.0, 0.0, 0.0), 0.0, 0)


def _named(window: FeatureWindow) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    t = table()
    return ({t.name(nr): n for nr, n in window.counts.items()},
            {(t.name(a), t.name(b)): n for (a, b), n in window.bigrams.items()})


def _known_window() -> FeatureWindow:
    model = recorded_model()
    return next(w for w in recorded_windows() if w.exe == "/usr/bin/dpkg-query"
                and not model.profiles.new_syscalls(w) and model.score([w])[0].score < ALARM)


def _tick(bus: EventBus, view: object, processes: dict | None = None) -> TickContext:
    tick = TickContext(0.0, 1.0, _metrics(), processes or {}, bus)
    tick.set_view("syscalls", view)
    return tick


def _view(counts: dict, bigrams: dict, findings: tuple = ()) -> SyscallView:
    return SyscallView(window_s=1.0, counts=counts, bigrams=bigrams, findings=findings,
                       exited=(), events=0, total_syscalls=sum(map(sum, map(dict.values,
                                                                          counts.values()))),
                       dropped=DropCounts(), dropped_total=DropCounts())


def _exec(bus: EventBus, key: ProcessKey, exe: str) -> None:
    bus.publish(KernelEvent("exec", 0.0, key, key.pid, 0, 0, exe.rsplit("/", 1)[-1],
                            syscall="execve", exe=exe))


def test_windows_go_to_the_recorder_and_verdicts_to_the_risk_scorer() -> None:
    bus = EventBus()
    recorded: list[FeatureWindow] = []
    component = AnomalyComponent(Config(), model=recorded_model(), recorder=recorded.append,
                                 table=table(), wall=lambda: 1234.5)
    component.start(bus)
    normal = _known_window()
    counts, bigrams = _named(normal)
    attacked = {**counts, "ptrace": 2}
    finding = Finding(GONE, "syscalls.ptrace_attach", "t", "r", 40.0)
    # The exec event arrives on the bus during the capture's tick, before this component's:
    # GONE already exited, so its executable is known from the event alone.
    _exec(bus, GONE, "/usr/bin/dpkg-query")
    row = ProcessRow(RUNNING, 1, "root", "dpkg-query", "/usr/bin/dpkg-query", ("dpkg-query",),
                     None, 0, 1, "S")
    tick = _tick(bus, _view({RUNNING: counts, GONE: attacked, ProcessKey(9, 9): {"read": 0}},
                            {RUNNING: bigrams, GONE: bigrams}, (finding,)), {RUNNING: row})
    component.on_tick(tick)

    assert [(w.key, w.exe, w.recorded_at) for w in recorded] == [
        (RUNNING, "/usr/bin/dpkg-query", 1234.5), (GONE, "/usr/bin/dpkg-query", 1234.5)]
    assert recorded[0].counts == normal.counts and recorded[0].bigrams == normal.bigrams
    assert recorded[1].events == {"syscalls.ptrace_attach": 1}
    assert tick.anomaly_model == ""
    assert tick.anomalies[RUNNING].score < ALARM
    gone = tick.anomalies[GONE]
    assert gone.score >= 90
    windows = recorded_model().profiles.executables["/usr/bin/dpkg-query"].windows
    assert gone.reasons[0] == f"/usr/bin/dpkg-query called ptrace, never seen in training " \
                              f"({windows} windows)"
    view = tick.views["anomaly"]
    assert isinstance(view, AnomalyView) and set(view.verdicts) == {RUNNING, GONE}
    status = component.status()
    assert status.state is ComponentState.RUNNING
    assert status.detail.startswith("model trained ") and " on test · 1,912 windows" in \
        status.detail


def test_without_a_model_the_tick_says_why_and_windows_are_still_recorded(tmp_path: Path
                                                                          ) -> None:
    missing = tmp_path / "anomaly.model"
    config = Config(anomaly=AnomalyConfig(model_path=str(missing)))
    recorded: list[FeatureWindow] = []
    component = AnomalyComponent(config, recorder=recorded.append, table=table())
    bus = EventBus()
    component.start(bus)
    counts, bigrams = _named(_known_window())
    tick = _tick(bus, _view({RUNNING: counts}, {RUNNING: bigrams}))
    component.on_tick(tick)
    why = f"no model trained ({missing} does not exist; run fluxtui train)"
    assert tick.anomaly_model == why and not tick.anomalies
    assert len(recorded) == 1
    assert component.status().state is ComponentState.UNAVAILABLE
    assert component.status().reason == why


def test_without_the_syscall_capture_there_is_nothing_to_score() -> None:
    component = AnomalyComponent(Config(), model=recorded_model(), table=table())
    bus = EventBus()
    component.start(bus)
    tick = TickContext(0.0, 1.0, _metrics(), {}, bus)
    component.on_tick(tick)
    assert tick.anomaly_model == "no syscall capture (the model scores its windows)"


def test_lifetime_totals_of_exited_processes_are_scored_not_recorded() -> None:
    bus = EventBus()
    recorded: list[FeatureWindow] = []
    component = AnomalyComponent(Config(), model=recorded_model(), recorder=recorded.append,
                                 table=table())
    component.start(bus)
    counts, _ = _named(_known_window())
    _exec(bus, GONE, "/usr/bin/dpkg-query")
    # A capture that also reports lifetime totals of processes that exited (issue 10 part 1).
    view = dataclasses.replace(_view({}, {}), final={GONE: {**counts, "ptrace": 1}})
    tick = _tick(bus, view)
    component.on_tick(tick)
    assert not recorded
    assert tick.anomalies[GONE].score >= 90
    assert "called ptrace, never seen in training" in tick.anomalies[GONE].reasons[0]


def test_retraining_runs_in_a_child_and_swaps_the_model(tmp_path: Path) -> None:
    """Clean windows go to the store; when the interval has passed, a child process refits on
    the store and the component loads the new model (the clock is injected: no waiting)."""
    store_path, model_path = tmp_path / "windows.db", tmp_path / "anomaly.model"
    with FeatureStore(store_path) as store:
        store.append(recorded_windows())
    config = Config(anomaly=AnomalyConfig(model_path=str(model_path),
                                          store_path=str(store_path), retrain_interval=60.0))
    now = [0.0]
    first = recorded_model()
    component = AnomalyComponent(config, model=first, table=table(), clock=lambda: now[0],
                                 wall=lambda: 2e9)
    bus = EventBus()
    component.start(bus)
    counts, bigrams = _named(_known_window())
    component.on_tick(_tick(bus, _view({RUNNING: counts}, {RUNNING: bigrams})))
    assert component._retrainer is None  # not due yet
    now[0] = 61.0
    component.on_tick(_tick(bus, _view({RUNNING: counts}, {RUNNING: bigrams})))
    assert component._retrainer is not None
    component._retrainer.join(timeout=120)
    assert not component._retrainer.is_alive()
    assert component.model is not first, component.status()
    assert "retrained" in component.status().detail
    assert stat.S_IMODE(os.stat(model_path).st_mode) == 0o600
    with FeatureStore(store_path, create=False) as store:
        assert len(store) == 1912 + 2  # the two clean windows were added
    assert load_model(model_path).metadata["windows"] == 1912 + 2



def test_a_process_missing_from_the_sample_is_named_from_proc_when_still_the_same() -> None:
    from fluxtui.collectors.procstat import read_start_ticks

    me = ProcessKey(os.getpid(), read_start_ticks(os.getpid()) or 0)
    reused = ProcessKey(os.getpid(), me.start_ticks + 1)  # same pid, another process
    recorded: list[FeatureWindow] = []
    component = AnomalyComponent(Config(), model=recorded_model(), recorder=recorded.append,
                                 table=table())
    bus = EventBus()
    component.start(bus)
    component.on_tick(_tick(bus, _view({me: {"read": 1}, reused: {"read": 1}}, {})))
    assert {w.key: w.exe for w in recorded} == {me: os.readlink("/proc/self/exe"), reused: ""}


def test_a_strong_finding_raises_one_alert_of_the_models_own() -> None:
    bus = EventBus()
    component = AnomalyComponent(Config(), model=recorded_model(), table=table())
    component.start(bus)
    counts, bigrams = _named(_known_window())
    row = ProcessRow(RUNNING, 1, "root", "dpkg-query", "/usr/bin/dpkg-query", (), None, 0, 1,
                     "S")
    alerts = []
    for _ in range(2):  # the same finding on the next tick is not a second alert
        tick = _tick(bus, _view({RUNNING: {**counts, "ptrace": 1}}, {RUNNING: bigrams}),
                     {RUNNING: row})
        component.on_tick(tick)
        alerts += tick.alerts
    assert [(a.rule_id, a.severity.value, a.key, a.process_name) for a in alerts] == [
        ("anomaly.new_syscall", "medium", RUNNING, "dpkg-query")]
    assert alerts[0].title == "Syscall its executable never made in training"
    assert alerts[0].reasons[0].startswith("/usr/bin/dpkg-query called ptrace, never seen")
    assert alerts[0].extra["score"] == 90 and set(alerts[0].extra["models"]) == {
        "isolation_forest", "one_class_svm", "dbscan"}
    # A verdict under anomaly.alert_score (a normal window) raises nothing.
    tick = _tick(bus, _view({ProcessKey(77, 7): counts}, {ProcessKey(77, 7): bigrams}))
    component.on_tick(tick)
    assert tick.anomalies[ProcessKey(77, 7)].score < 70 and not tick.alerts
