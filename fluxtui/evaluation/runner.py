"""Run the evaluation under the real engine: a benign training phase, then each scenario.

The engine is the one the dashboard runs (`build_components(config, privileged=True,
interactive=False)`), with a configuration whose guard protects only the run's decoy home.
When the anomaly model exists, a first engine records the feature windows of a benign phase
(every benign scenario, run for training only), the model is fitted on them, and a second
engine evaluates with it: the evaluated runs are never the training runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.evaluation.manifest import Scenario
from fluxtui.evaluation.observer import Observer
from fluxtui.evaluation.report import Context
from fluxtui.evaluation.restore import restore_stale
from fluxtui.evaluation.sandbox import DecoyHome, RunSandbox, ScenarioSandbox
from fluxtui.evaluation.scoring import Result, verdicts
from fluxtui.events import ComponentState
from fluxtui.untrusted_text import visible

STD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SKIPPED_RC = 77
CGROUP_RC = 97
STARTUP_TIMEOUT = 180.0  # a BPF compile on a busy machine
# The launcher runs in the scenario's "launch" cgroup and starts the script in a subshell that
# first moves itself into the "actor" cgroup: the script's parent is a shell, as when a person
# runs it, and nothing of the harness is in the actor's cgroup.
LAUNCHER = ('echo $$ > "$1/launch/cgroup.procs" || exit 97\n'
            '( echo $BASHPID > "$1/actor/cgroup.procs" || exit 97; exec "$2" )\n')


@dataclass
class Options:
    demo_dir: Path
    # Benign rounds recorded to train the model; 0: no model. Two: the fit holds out the most
    # recent part of the recording (anomaly.holdout_fraction, 30%) to set and check its
    # thresholds, so with one round the last benign scenarios would never reach the detectors'
    # training part; with two, every one of them is in it at least once.
    training_runs: int = 2
    settle_ticks: int = 3  # engine ticks waited after a scenario ends, for late verdicts
    progress: TextIO = sys.stderr


class AnomalyPlugin:
    """The anomaly model, imported lazily: until it exists the model is reported unavailable."""

    def __init__(self) -> None:
        self.reason = ""
        self.component_class: Any = None
        self.fit: Callable[[list[Any]], Any] | None = None
        try:
            from fluxtui.capabilities.anomaly import AnomalyComponent
            from fluxtui.detection.anomaly import fit_models
        except ModuleNotFoundError as exc:
            if exc.name in ("fluxtui.capabilities.anomaly", "fluxtui.detection.anomaly"):
                self.reason = "no anomaly module"
            else:
                self.reason = f"the anomaly module failed to import: {exc}"
            return
        except ImportError as exc:
            self.reason = f"the anomaly module failed to import: {exc}"
            return
        self.component_class = AnomalyComponent
        self.fit = fit_models

    def fit_windows(self, windows: list[Any]) -> Any:
        """Fit on recorded windows, with the syscall names for the model's reasons when the
        module offers them (else its reasons name syscall numbers)."""
        assert self.fit is not None
        try:
            from fluxtui.detection.anomaly.fitjob import syscall_names
        except ImportError:
            return self.fit(windows)
        try:
            names = syscall_names()
        except Exception:  # no bcc table here: numbers it is
            return self.fit(windows)
        return self.fit(windows, names=names)  # type: ignore[call-arg]

    @property
    def available(self) -> bool:
        return not self.reason


def evaluation_config(config: Config, decoy: DecoyHome) -> Config:
    """The user's configuration, with the guard on the decoy home only (never a real home or
    /etc) and its rules and audit trail in the run's temporary directory."""
    guard = dataclasses.replace(
        config.guard, homes=[str(decoy.home)], system_files=[],
        rules_file=str(decoy.state / "rules.yml"), audit_db=str(decoy.state / "audit.db"),
        journal=False)
    config = dataclasses.replace(config, guard=guard)
    # The persistence watch looks at the decoy home (and the system places): the scenarios
    # plant keys, units and rc lines there, never in a real home.
    config = dataclasses.replace(config, persistence=dataclasses.replace(
        config.persistence, homes=[str(decoy.home)]))
    # Retraining during the evaluation would learn from the attacks being measured.
    config = dataclasses.replace(config, anomaly=dataclasses.replace(config.anomaly,
                                                                     retrain_interval=0))
    return config


def build_engine(config: Config, plugin: AnomalyPlugin, model: Any = None,
                 recorder: Callable[[Any], None] | None = None) -> Engine:
    from fluxtui.capabilities.assembly import build_components

    components = build_components(config, privileged=True, interactive=False)
    if plugin.available:
        try:  # load=False: never the model on disk, only the one trained here (or none)
            mine = plugin.component_class(config, model=model, recorder=recorder, load=False)
        except TypeError:
            mine = plugin.component_class(config, model=model, recorder=recorder)
        # The product's own anomaly component (it would load the model on disk) is replaced:
        # found by its component name, whatever class provides it.
        at = next((i for i, c in enumerate(components)
                   if isinstance(c, plugin.component_class) or c.name == mine.name), None)
        if at is not None:  # the product's own (with the model on disk) is replaced
            components[at] = mine
        else:  # before the risk scorer, which folds the model's verdicts in
            at = next((i for i, c in enumerate(components) if c.name == "risk"),
                      len(components))
            components.insert(at, mine)
    return Engine(config, components)


@contextlib.contextmanager
def running(engine: Engine, observer: Observer) -> Iterator[tuple[str, ...]]:
    """Start the engine, wait until every component has started (or failed), yield the
    collectors' status lines; stop it whatever happens."""
    unsubscribe = engine.bus.subscribe(observer)
    try:
        engine.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while any(s.state is ComponentState.STOPPED and s.reason == "starting…"
                  for s in engine.statuses()):
            if time.monotonic() > deadline:
                raise RuntimeError("the engine's components did not start within "
                                   f"{STARTUP_TIMEOUT:g} s")
            observer.drain()
            time.sleep(0.1)
        _wait_ticks(engine, observer, 1)
        yield tuple(visible(f"{s.name}: {s.state}" + (f" ({s.reason})" if s.reason else ""))
                    for s in engine.statuses())
    finally:
        unsubscribe()
        engine.stop()


def _wait_ticks(engine: Engine, observer: Observer, ticks: int) -> None:
    target = observer.sequence + ticks
    limit = time.monotonic() + (ticks + 2) * engine.config.general.refresh_interval * 3 + 10
    while observer.sequence < target and time.monotonic() < limit:
        time.sleep(0.05)
        observer.drain()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scenario_env(sandbox: ScenarioSandbox, decoy: DecoyHome) -> dict[str, str]:
    return {"HOME": str(decoy.home), "PATH": STD_PATH, "LC_ALL": "C", "TERM": "dumb",
            "USER": "root", "LOGNAME": "root", "FLUX_WORK": str(sandbox.work),
            "FLUX_SHM": str(sandbox.shm), "FLUX_VARTMP": str(sandbox.vartmp),
            "FLUX_PORT": str(free_port()), "FLUX_SUPPORT_PROCS": str(sandbox.procs("support")),
            "FLUX_PYTHON": sys.executable}


def _last_line(log: Path) -> str:
    try:
        text = log.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return visible(text[-1][:200]) if text else ""


def run_scenario(scenario: Scenario, run: RunSandbox, engine: Engine, observer: Observer,
                 options: Options, threshold: float, model_available: bool) -> Result:
    started = time.monotonic()
    sandbox = run.scenario(scenario.name)
    log = run.temp / "logs" / f"{sandbox.cgroup.name}.log"
    status, detail = "ok", ""
    try:
        observer.begin(sandbox.ids, sandbox.relative_paths(run.cgroup_root))
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                ["/bin/bash", "-c", LAUNCHER, "fluxtui-launch", str(sandbox.cgroup),
                 str(scenario.script)],
                env=scenario_env(sandbox, run.decoy), cwd=sandbox.work,
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = started + scenario.timeout
        while proc.poll() is None and time.monotonic() < deadline:
            observer.drain()
            time.sleep(0.05)
        if proc.poll() is None:
            status, detail = "timeout", f"killed after {scenario.timeout:g} s"
        elif proc.returncode == SKIPPED_RC:
            status, detail = "skipped", _last_line(log)
        elif proc.returncode == CGROUP_RC:
            status, detail = "error", "could not move into the scenario's cgroup"
        elif proc.returncode != 0:
            status, detail = "failed", f"exit {proc.returncode}: {_last_line(log)}"
        sandbox.kill()  # listeners and victims the script left, at the latest now
        restore_stale()  # system files, users, packages of a script killed before its trap
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        _wait_ticks(engine, observer, options.settle_ticks)
        observation = observer.end()
    finally:
        clean = sandbox.close()
    return Result(scenario, status, detail, observation, clean, time.monotonic() - started,
                  verdicts(scenario, observation, threshold, model_available))


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """SIGTERM ends the run like Ctrl-C: through every `finally`, so nothing is left."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(*_: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_evaluation(config: Config, scenarios: list[Scenario], benign_pool: list[Scenario],
                   options: Options) -> tuple[list[Result], Context]:
    """`scenarios` are evaluated; `benign_pool` are run for training first (when a model can
    be trained)."""
    began = time.monotonic()
    plugin = AnomalyPlugin()
    results: list[Result] = []
    with _interruptible():
        restore_stale()  # what a killed run left
        run = RunSandbox()
        try:
            cfg = evaluation_config(config, run.decoy)
            threshold = cfg.risk.risk_threshold
            observer = Observer(run.cgroup_root)
            model, model_reason, training = _train(cfg, plugin, run, observer, benign_pool,
                                                   options, threshold)
            engine = build_engine(cfg, plugin, model=model)
            with running(engine, observer) as statuses:
                for i, scenario in enumerate(scenarios, 1):
                    print(f"[{i}/{len(scenarios)}] {scenario.name}", file=options.progress,
                          flush=True)
                    results.append(run_scenario(scenario, run, engine, observer, options,
                                                threshold, not model_reason))
        finally:
            run.close()
    context = Context(threshold, model_reason, training, statuses,
                      time.monotonic() - began)
    return results, context


def _train(cfg: Config, plugin: AnomalyPlugin, run: RunSandbox, observer: Observer,
           benign: list[Scenario], options: Options, threshold: float
           ) -> tuple[Any, str, str]:
    """(model or None, why there is none or "", a line about training)."""
    if not plugin.available:
        return None, plugin.reason, "no training phase"
    if options.training_runs <= 0:
        return None, "not trained (--training-runs 0)", "no training phase"
    windows: list[Any] = []
    engine = build_engine(cfg, plugin, model=None, recorder=windows.append)
    ran = 0
    with running(engine, observer):
        for round_ in range(options.training_runs):
            for scenario in benign:
                print(f"[training {round_ + 1}/{options.training_runs}] {scenario.name}",
                      file=options.progress, flush=True)
                result = run_scenario(scenario, run, engine, observer, options, threshold,
                                      False)
                ran += result.ran
    line = (f"trained on {len(windows)} windows recorded on this host during "
            f"{ran} benign runs")
    try:
        model = plugin.fit_windows(list(windows))
    except Exception as exc:  # a model that cannot be fitted is reported, not fatal
        return None, f"training failed: {exc}", line
    return model, "", line
