"""Plays the story on the running engine, one step at a time, on a thread of its own.

Each scenario runs exactly as `fluxtui evaluate` runs it (evaluation.runner.run_scenario: its own
cgroups and directories, killed and removed when it ends), and what the engine caught of it is
read the same way (the evaluation's Observer: alerts of the processes in its cgroups). The UI
calls `next()`, `toggle_pause()`, `restart()`; everything it shows comes as `DemoNarration`.
"""

from __future__ import annotations

import io
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from fluxtui.demo_mode.narration import (
    DONE,
    FINISHED,
    PAUSED,
    PLAYING,
    STARTING,
    WAITING,
    DemoNarration,
)
from fluxtui.demo_mode.stage import DemoStage
from fluxtui.demo_mode.story import Step
from fluxtui.engine import Engine
from fluxtui.evaluation.manifest import technique_fits
from fluxtui.evaluation.observer import AlertRecord, Observer
from fluxtui.evaluation.runner import Options, run_scenario
from fluxtui.evaluation.sandbox import kill_cgroup
from fluxtui.evaluation.scoring import Result
from fluxtui.events import ComponentState
from fluxtui.untrusted_text import visible

log = logging.getLogger(__name__)

STARTUP_TIMEOUT = 300.0  # a BPF compile on a busy machine
KEYS = "n next · space pause · b restart"


class DemoPlayer:
    def __init__(self, engine: Engine, stage: DemoStage, steps: list[Step], demo_dir: Path,
                 auto: bool = False, step_delay: float = 8.0, loops: int | None = None,
                 publish: Callable[[object], None] | None = None) -> None:
        self.engine = engine
        self.stage = stage
        self.steps = steps
        self.auto = auto
        self.step_delay = step_delay
        self.loops = loops  # auto: stories played before stopping (None: until quit)
        self.publish = publish or engine.bus.publish
        self.options = Options(demo_dir, training_runs=0, settle_ticks=2,
                               progress=io.StringIO())
        self.observer = Observer(stage.run.cgroup_root)
        # The steps of the latest story played, in order (a kiosk runs for days: bounded).
        self.results: deque[tuple[Step, list[Result]]] = deque(maxlen=len(steps))
        self.narration = DemoNarration(0, len(steps), "starting the collectors…", "processes",
                                       STARTING, auto=auto)
        self._cond = threading.Condition()
        self._next = False
        self._restart = False
        self._paused = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self.played_stories = 0
        self._unsubscribe: Callable[[], None] = lambda: None

    # --- commands (any thread) ----------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fluxtui-demo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout=60)

    def next(self) -> None:
        """Go on: end the step now when it is still playing, else start the next one."""
        with self._cond:
            playing = self.narration.state == PLAYING
            self._next = True
            self._paused = False
            self._cond.notify_all()
        if playing:
            self._interrupt()

    def toggle_pause(self) -> None:
        with self._cond:
            self._paused = not self._paused
            self._cond.notify_all()
        n = self.narration
        if n.state in (DONE, WAITING, PAUSED):
            self._say(n.number, n.title, n.view, PAUSED if self._paused else WAITING,
                      n.outcome)

    def restart(self) -> None:
        with self._cond:
            self._restart = True
            self._paused = False
            self._cond.notify_all()
        self._interrupt()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the thread --------------------------------------------------------------------------

    def _interrupt(self) -> None:
        """Kill what the step runs: its script returns at once and the step ends."""
        for child in self.stage.run.cgroup.glob("*/"):
            kill_cgroup(child, timeout=5)

    def _say(self, number: int, title: str, view: str, state: str, outcome: str = "") -> None:
        self.narration = DemoNarration(number, len(self.steps), title, view, state,
                                       self._hint(state, view), outcome, self.auto)
        self.publish(self.narration)

    def _hint(self, state: str, view: str) -> str:
        if state == PLAYING:
            if view == "guard":
                deadline = self.engine.config.guard.decision_timeout
                return f"press d to deny (denied by itself after {deadline:g} s)"
            return {"connections": "see the Connections tab",
                    "processes": "see the risk column"}.get(view, "")
        if state == PAUSED:
            return "paused · space to go on"
        if state == FINISHED:
            return "the end · n plays it again" if not self.auto else ""
        if state in (DONE, WAITING):
            return f"next in {self.step_delay:g} s · {KEYS}" if self.auto else KEYS
        return ""

    def _run(self) -> None:
        try:
            self._unsubscribe = self.engine.bus.subscribe(self.observer)
            if not self._wait_started():
                return
            while not self._stop:
                self._restart = False
                self._play_story()
                if self._stop:
                    break
                if self._restart:
                    continue
                self.played_stories += 1
                if self.auto:
                    if self.loops is not None and self.played_stories >= self.loops:
                        self._say(len(self.steps), "the story is over", "processes", FINISHED)
                        break
                    continue
                self._say(len(self.steps), "the story is over", "processes", FINISHED)
                self._wait_next(None)
        except Exception:  # the demo goes on without its story; the log says why
            log.exception("demo player failed")
            self._say(self.narration.number, "the demo story stopped after an error",
                      "processes", FINISHED)
        finally:
            self._unsubscribe()

    def _wait_started(self) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        self._say(0, "starting the collectors (an eBPF compile takes a while)…", "processes",
                  STARTING)
        while any(s.state is ComponentState.STOPPED and s.reason == "starting…"
                  for s in self.engine.statuses()):
            with self._cond:
                if self._stop or time.monotonic() > deadline:
                    return not self._stop
                self._cond.wait(0.2)
            self.observer.drain()
        return True

    def _play_story(self) -> None:
        # A fresh observer per story: it remembers every host process it looked up.
        self._unsubscribe()
        self.observer = Observer(self.stage.run.cgroup_root)
        self._unsubscribe = self.engine.bus.subscribe(self.observer)
        for step in self.steps:
            if self._stop or self._restart:
                return
            self._play(step)
            if self._stop or self._restart:
                return
            # After the last step too: its outcome stays on screen before the end is said.
            self._wait_next(self.step_delay if self.auto else None)

    def _play(self, step: Step) -> None:
        with self._cond:
            self._next = False
        if not step.scenarios:
            self._say(step.number, step.title, step.view, DONE, step.missing)
            self.results.append((step, []))
            return
        self._say(step.number, step.title, step.view, PLAYING)
        results = []
        threshold = self.engine.config.risk.risk_threshold
        model = any(s.name == "anomaly" and s.state is ComponentState.RUNNING
                    for s in self.engine.statuses())
        for scenario in step.scenarios:
            if self._stop or self._restart or self._next:
                break
            results.append(run_scenario(scenario, self.stage.run, self.engine, self.observer,
                                        self.options, threshold, model))
        self.results.append((step, results))
        said = outcome(step, results)
        if self._next:  # the presenter ended it: the script was killed, not failing
            said = "ended early" + (f" · {said}" if said.startswith("caught") else "")
        self._say(step.number, step.title, step.view, DONE, said)

    def _wait_next(self, delay: float | None) -> None:
        """Until `next()` (or, with a delay, until it passed), held while paused."""
        deadline = None if delay is None else time.monotonic() + delay
        with self._cond:
            self._next = False
            while not (self._stop or self._restart or self._next):
                if self._paused:
                    self._cond.wait(0.5)
                    if deadline is not None:  # the delay starts again after a pause
                        deadline = time.monotonic() + delay  # type: ignore[operator]
                    continue
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    break
                self._cond.wait(0.5 if left is None else min(0.5, left))
            self._next = False


def fitting_alert(step: Step, result: Result) -> AlertRecord | None:
    for alert in result.observation.alerts:
        if alert.role != "actor" or not alert.medium_or_higher:
            continue
        if not result.scenario.attack or alert.source == "model" \
                or technique_fits(alert.technique, result.scenario.fits):
            return alert
    return None


def outcome(step: Step, results: list[Result]) -> str:
    """What the audience should have seen, in a few words, measured from the engine's alerts."""
    if not results:
        return "stopped"
    parts = []
    for result in results:
        if result.status == "skipped":
            parts.append(f"skipped: {result.detail or 'a tool is missing'}")
            continue
        if result.status != "ok":
            parts.append(f"{result.status}: {result.detail}")
            continue
        alert = fitting_alert(step, result)
        if not result.scenario.attack:
            parts.append(f"false alarm: {alert.title}" if alert else "no alarm")
        elif alert is not None:
            tag = f" [{alert.technique}]" if alert.technique else ""
            parts.append(f"caught: {alert.title}{tag}")
        else:
            parts.append("no alert")
        denied = [g for g in result.observation.guard if g.startswith("den")]
        if denied:
            parts.append(f"{len(denied)} read(s) denied")
    return visible(" · ".join(dict.fromkeys(parts)))
