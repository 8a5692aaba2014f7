"""The anomaly model plugged into the engine ("anomaly"): after the syscall capture, before the
risk scorer.

Each tick it turns `tick.views["syscalls"]` into one `FeatureWindow` per process that made
syscalls, hands every window to `recorder` (fluxtui train, the evaluation's benign phase), and,
with a model, scores them all and reports each verdict with `tick.set_anomaly`; without one it
sets `tick.anomaly_model` to why. Scoring runs here, on the engine thread (never the UI thread):
one vectorised pass over the tick's windows (bench/bench_anomaly.py measures it).

With `anomaly.retrain_interval`, windows that raised nothing (score under the alarm line, no
finding) are added to the feature store, and every interval a child process refits the model on
the store; the new model replaces the old one when it has been saved and loaded.
Puts an `AnomalyView` in `Snapshot.views["anomaly"]`. Nothing here imports textual.

Without a model, a recorder or retraining, no window is built, and numpy (with the model's
modules) is imported only once a model loads: about 16 MB resident saved (bench/bench_memory.py).
"""

from __future__ import annotations

import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from fluxtui.bus import EventBus
from fluxtui.capabilities.syscall_view import SYSCALLS
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.component import ANOMALIES, Channel, TickContext
from fluxtui.config import Config
from fluxtui.detection.anomaly.features import FeatureWindow, SyscallNumbers, window_from_names
from fluxtui.detection.anomaly.fitjob import command as fit_command
from fluxtui.detection.anomaly.modelfile import ModelRefused, load_model
from fluxtui.detection.anomaly.store import FeatureStore, StoreError
from fluxtui.events import (
    Alert,
    AnomalyInput,
    ComponentState,
    ComponentStatus,
    ProcessKey,
    ProcessLifetime,
    Severity,
)

if TYPE_CHECKING:
    from fluxtui.detection.anomaly.models import AnomalyModel, AnomalyVerdict

log = logging.getLogger(__name__)

# numpy's OpenBLAS starts a thread per core that spins while it waits for work. The model's
# matrix products are small; on a loaded machine those threads fought the engine's for the
# cores: 4,000 windows scored in 2.6 s instead of 1.0 s at load 28, and ticks of 111-140 s in a
# storm of 4,000 processes (bench/bench_memory.py: the engine's state grows with a tick's
# length). Read by OpenBLAS when numpy is first imported (after this: see modelfile.py); the
# model's child processes (retraining) inherit it. A value set by the user is kept.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

Recorder = Callable[[FeatureWindow], None]
RETRAIN_FLUSH_TICKS = 10  # clean windows are written to the store in batches
RETRAIN_TIMEOUT_S = 3600.0
ALERTS = {  # rule id -> title
    "anomaly.new_syscall": "Syscall its executable never made in training",
    "anomaly.unlike_training": "Behaviour unlike this machine's training",
    "anomaly.rate": "Syscall rate far above its executable's training",
}


@dataclass(frozen=True)
class AnomalyView:
    """Snapshot.views["anomaly"]: the verdicts of this tick and the model's state."""

    model: str  # what the status line says
    verdicts: dict[ProcessKey, AnomalyVerdict] = field(default_factory=dict)
    score_ms: float = 0.0  # time to build and score this tick's windows


class AnomalyComponent:
    quick_start = True  # scores the capture's final records from its first tick
    name = "anomaly"
    produces: ClassVar[tuple[Channel[Any], ...]] = (ANOMALIES,)
    consumes: ClassVar[tuple[Channel[Any], ...]] = (SYSCALLS,)

    def __init__(self, config: Config, model: AnomalyModel | None = None,
                 recorder: Recorder | None = None, *, load: bool = True,
                 table: SyscallTable | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, proc: str = "/proc") -> None:
        """`model` overrides loading from `anomaly.model_path`; `load=False` scores nothing
        unless `model` is given (recording for fluxtui train); `table` overrides bcc's."""
        self.config = config
        self.settings = config.anomaly
        self.recorder = recorder
        self._model = model
        self._load = load and model is None and config.anomaly.enabled
        self._table = table
        self._numbers: SyscallNumbers | None = None
        self._clock, self._wall = clock, wall
        self._proc = proc
        self._state = ComponentState.STOPPED
        self._why = "" if model is not None else (
            "no model trained" if load else "recording only (no model loaded)")
        self._exe: dict[ProcessKey, str] = {}  # from exec events: the newest executable
        self._exe_lock = threading.Lock()
        self._alerted: set[tuple[ProcessKey, str]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self._score_ms = 0.0
        self._clean: list[FeatureWindow] = []
        self._ticks = 0
        self._last_retrain = clock()
        self._retrainer: threading.Thread | None = None
        self._retrain_note = ""
        self._stopping = threading.Event()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self, bus: EventBus) -> None:
        self._unsubscribe = bus.subscribe(self._on_event)
        if self._table is None:
            try:
                self._table = SyscallTable.load()
            except Exception as exc:  # no bcc, or no table for this architecture
                self._state = ComponentState.UNAVAILABLE
                self._why = f"no syscall table ({exc})"
                return
        self._numbers = SyscallNumbers(self._table)
        self._state = ComponentState.RUNNING
        if not self.settings.enabled and self._model is None:
            self._why = "disabled in the configuration (anomaly.enabled: false)"
        elif self._load:
            self._try_load()

    def _try_load(self) -> None:
        try:
            self._model = load_model(Path(self.settings.model_path))
            self._why = ""
        except ModelRefused as exc:
            self._model = None
            self._why = str(exc)
            log.info("anomaly model not used: %s", exc)  # the header says it

    def stop(self) -> None:
        self._stopping.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._state is ComponentState.RUNNING:
            self._state = ComponentState.STOPPED

    def status(self) -> ComponentStatus:
        if self._state is not ComponentState.RUNNING:
            return ComponentStatus(self.name, self._state, self._why)
        model = self._model
        if model is None:
            detail = self._why or "not loaded"
            return ComponentStatus(self.name, ComponentState.UNAVAILABLE, detail)
        return ComponentStatus(self.name, self._state, "", self.describe(model))

    def describe(self, model: AnomalyModel) -> str:
        meta = model.metadata
        trained = meta.get("trained_at")
        when = (datetime.fromtimestamp(trained, UTC).strftime("%Y-%m-%d %H:%M UTC")
                if isinstance(trained, (int, float)) else "unknown time")
        text = (f"model trained {when} on {meta.get('host', '?')} · "
                f"{meta.get('windows', 0):,} windows · scoring {self._score_ms:.1f} ms/tick")
        if self._retrain_note:
            text += f" · {self._retrain_note}"
        return text

    @property
    def ready(self) -> bool:
        """Started, with a syscall table: windows are being built (and recorded)."""
        return self._numbers is not None and self._state is ComponentState.RUNNING

    @property
    def model(self) -> AnomalyModel | None:
        return self._model

    def use_model(self, model: AnomalyModel | None) -> None:
        """Score with `model` from the next tick on (None: stop scoring). For a caller that
        trains on windows this component recorded, in the same engine (fluxtui evaluate)."""
        self._model = model
        self._why = "" if model is not None else "no model trained"

    def _on_event(self, event: object) -> None:
        # Exec events come from the syscall capture during its on_tick, on the engine thread,
        # before this component's on_tick: the newest executable of a process that already
        # exited is known here, not in /proc.
        if isinstance(event, KernelEvent) and event.kind == "exec" and event.exe:
            with self._exe_lock:
                self._exe[event.key] = event.exe

    # --- the tick ----------------------------------------------------------------------------

    def on_tick(self, tick: TickContext) -> None:
        if self._state is not ComponentState.RUNNING or self._numbers is None:
            tick.anomaly_model = self._why or "anomaly model not running"
            return
        view = tick.read(SYSCALLS)
        if view is None:
            tick.anomaly_model = "no syscall capture (the model scores its windows)"
            return
        started = time.perf_counter()
        model = self._model
        verdicts: dict[ProcessKey, AnomalyVerdict] = {}
        if model is None:
            tick.anomaly_model = self._why or "no model trained"
            if self.recorder is not None:  # windows are built only for a reader
                for w in self._windows(view, tick):
                    self.recorder(w)
        else:
            self._score(model, view, tick, verdicts)
            self._alert(verdicts, tick)
        self._score_ms = (time.perf_counter() - started) * 1000
        self._forget(view, tick)
        if model is not None and self.settings.retrain_interval > 0:
            self._maybe_retrain()
        tick.set_view(self.name, AnomalyView(
            self.describe(model) if model is not None else tick.anomaly_model, verdicts,
            self._score_ms))

    def _alert(self, verdicts: dict[ProcessKey, AnomalyVerdict], tick: TickContext) -> None:
        """An alert of the model's own for a verdict at or above `anomaly.alert_score`, once per
        process and kind: the risk score takes only `risk.anomaly_weight` of the verdict."""
        from fluxtui.detection.anomaly.profile import NEW_SYSCALL_SCORE

        bar = self.settings.alert_score
        for key, v in verdicts.items():
            if v.score < bar:
                continue
            ensemble = sorted(v.model_scores)[len(v.model_scores) // 2]
            if v.profile_score >= bar:
                rule = ("anomaly.new_syscall" if v.profile_score == NEW_SYSCALL_SCORE
                        else "anomaly.rate")
            elif ensemble >= bar:
                rule = "anomaly.unlike_training"
            else:
                continue
            if (key, rule) in self._alerted:
                continue
            self._alerted.add((key, rule))
            row = tick.processes.get(key)
            with self._exe_lock:
                exe = self._exe.get(key, "")
            name = row.name if row is not None else exe.rsplit("/", 1)[-1] or str(key.pid)
            tick.raise_alert(Alert(
                timestamp=tick.now, rule_id=rule, title=ALERTS[rule], severity=Severity.MEDIUM,
                technique_id="", technique_name="", key=key, process_name=name,
                reasons=v.reasons,
                extra={"score": v.score, "profile": v.profile_score,
                       "models": dict(zip(("isolation_forest", "one_class_svm", "dbscan"),
                                          v.model_scores, strict=True)),
                       "start_ticks": key.start_ticks}))

    def _score(self, model: AnomalyModel, view: Any, tick: TickContext,
               verdicts: dict[ProcessKey, AnomalyVerdict]) -> None:
        """Scores the tick's windows, then the exited processes' lifetimes, SCORE_ROWS at a
        time as they are built: however many processes a tick saw (tens of thousands in a
        storm of short-lived processes), only one batch of windows is alive at once."""
        from fluxtui.detection.anomaly.models import ALARM, SCORE_ROWS

        retrain = self.settings.retrain_interval > 0
        flagged = {f.key for f in getattr(view, "findings", ())} if retrain else set()
        for source, live in ((self._windows(view, tick), True),
                             (self._final_windows(view, tick), False)):
            while batch := list(islice(source, SCORE_ROWS)):
                if live and self.recorder is not None:
                    for w in batch:
                        self.recorder(w)
                for verdict in model.score(batch):
                    verdicts[verdict.key] = verdict
                    tick.set_anomaly(AnomalyInput(verdict.key, verdict.score, verdict.reasons))
                if live and retrain:
                    self._clean.extend(w for w in batch if w.key not in flagged
                                       and verdicts[w.key].score < ALARM)

    def _windows(self, view: Any, tick: TickContext) -> Iterator[FeatureWindow]:
        assert self._numbers is not None
        events: dict[ProcessKey, dict[str, int]] = {}
        for f in getattr(view, "findings", ()):
            per = events.setdefault(f.key, {})
            per[f.rule_id] = per.get(f.rule_id, 0) + 1
        now = self._wall()
        bigrams = getattr(view, "bigrams", {})
        with self._exe_lock:
            exec_exe = dict(self._exe)
        processes = tick.processes
        for key, named in view.counts.items():
            if not any(named.values()):
                continue
            exe = exec_exe.get(key) or (processes[key].exe if key in processes
                                        else self._exe_of(key, tick))
            yield window_from_names(key, exe, view.window_s, named, bigrams.get(key, {}),
                                    events.get(key, {}), self._numbers, now)

    def _final_windows(self, view: Any, tick: TickContext) -> Iterator[FeatureWindow]:
        """Lifetime totals of processes that exited this tick (`SyscallView.final`, their
        `ProcessLifetime`s): scored, not recorded (their calls are in the tick windows)."""
        final: Mapping[ProcessKey, ProcessLifetime] = getattr(view, "final", {})
        if self._numbers is None:
            return
        now = self._wall()
        for key, record in final.items():
            if not any(record.syscalls.values()):
                continue
            window_s = record.lifetime_s if record.lifetime_s > 0 else view.window_s
            exe = record.exe or self._exe_of(key, tick)
            yield window_from_names(key, exe, window_s, record.syscalls, {}, {},
                                    self._numbers, now)

    def _exe_of(self, key: ProcessKey, tick: TickContext) -> str:
        with self._exe_lock:
            exe = self._exe.get(key)
        if exe:
            return exe
        row = tick.processes.get(key)
        if row is not None:
            return row.exe
        # Started after this tick's process sample, or a fork that never exec'd: /proc still
        # names it while it runs (the start time proves the pid was not reused).
        if read_start_ticks(key.pid, self._proc) != key.start_ticks:
            return ""
        try:
            return os.readlink(f"{self._proc}/{key.pid}/exe").removesuffix(" (deleted)")
        except OSError:
            return ""

    def _forget(self, view: Any, tick: TickContext) -> None:
        keep = set(tick.processes) | set(view.counts)
        with self._exe_lock:
            for key in [k for k in self._exe if k not in keep]:
                del self._exe[key]
        self._alerted = {(k, r) for k, r in self._alerted if k in keep}

    # --- background retraining ---------------------------------------------------------------

    def _maybe_retrain(self) -> None:
        self._ticks += 1
        if self._ticks % RETRAIN_FLUSH_TICKS == 0 and self._clean:
            self._flush_clean()
        due = self._clock() - self._last_retrain >= self.settings.retrain_interval
        if due and (self._retrainer is None or not self._retrainer.is_alive()):
            self._flush_clean()
            self._last_retrain = self._clock()
            self._retrainer = threading.Thread(target=self._retrain, daemon=True,
                                               name="fluxtui-anomaly-retrain")
            self._retrainer.start()

    def _flush_clean(self) -> None:
        batch, self._clean = self._clean, []
        try:
            with FeatureStore(Path(self.settings.store_path),
                              max_windows=self.settings.max_store_windows) as store:
                store.append(batch)
        except (StoreError, OSError) as exc:
            self._retrain_note = f"retraining store unusable: {exc}"

    def _retrain(self) -> None:
        """On its own thread, which only waits: the fit runs in a child process."""
        s = self.settings
        cmd = fit_command(Path(s.store_path), Path(s.model_path),
                          false_alarm_rate=s.false_alarm_rate,
                          holdout_fraction=s.holdout_fraction,
                          min_profile_windows=s.min_profile_windows)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True,
                                  timeout=RETRAIN_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            self._retrain_note = f"retraining failed: {exc}"
            return
        if done.returncode != 0:
            last = (done.stdout.strip().splitlines() or ["no output"])[-1]
            self._retrain_note = f"retraining failed: {last}"
            return
        if self._stopping.is_set():
            return
        try:
            self._model = load_model(Path(s.model_path))
            stamp = datetime.fromtimestamp(self._wall(), UTC).strftime("%H:%M UTC")
            self._retrain_note = f"retrained {stamp}"
        except ModelRefused as exc:
            self._retrain_note = f"retrained model refused: {exc}"
