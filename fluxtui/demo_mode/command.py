"""`fluxtui demo`: checks, the stage, the engine, the story, the dashboard; everything removed
on the way out (quit, Ctrl-C, SIGTERM, SIGHUP; SIGKILL: the watchdog, else the next start)."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TextIO

from fluxtui.config import Config
from fluxtui.demo_mode.player import DemoPlayer, outcome
from fluxtui.demo_mode.recording import RecordingError, start_recording
from fluxtui.demo_mode.stage import DemoStage
from fluxtui.demo_mode.story import build_story
from fluxtui.engine import Engine
from fluxtui.evaluation.manifest import ManifestError, default_demo_dir, load_manifest
from fluxtui.evaluation.sandbox import SandboxError


class DemoUI(Protocol):
    """The dashboard the demo runs in (tui.demo_narration.DemoApp)."""

    def run(self) -> Any: ...

    def exit(self, result: Any = None) -> None: ...


HARD_EXIT_AFTER = 30.0  # seconds after a signal

AppFactory = Callable[[Engine, DemoPlayer, "str | None"], DemoUI]


@contextmanager
def _exits_on_signals(app: DemoUI) -> Iterator[None]:
    """SIGTERM, SIGHUP and SIGINT end the app like `q` does, so every `finally` runs."""
    def stop(*_: object) -> None:
        app.exit(130)
        # Should the UI not wind down (a terminal gone with SIGHUP can leave Textual's output
        # thread waiting for good), the process ends anyway: the watchdog then removes the
        # actors and the tree, and the kernel the guard's marks.
        deadline = threading.Timer(HARD_EXIT_AFTER, os._exit, (130,))
        deadline.daemon = True
        deadline.start()

    previous = {sig: signal.signal(sig, stop)
                for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_demo(config: Config, app_factory: AppFactory, theme: str | None = None,
             auto: bool = False, step_delay: float = 8.0, loops: int | None = None,
             record: str | None = None, demo_dir: str | None = None,
             err: TextIO = sys.stderr, out: TextIO = sys.stdout) -> int:
    if os.geteuid() != 0:
        print("fluxtui demo: needs root (it runs the real collectors and a guard on a decoy "
              "home)", file=err)
        return 2
    directory = Path(demo_dir) if demo_dir else default_demo_dir()
    if directory is None:
        print("fluxtui demo: no demo/ directory with scenarios.yml found", file=err)
        return 2
    try:
        steps = build_story(load_manifest(directory))
    except ManifestError as exc:
        print(f"fluxtui demo: {exc}", file=err)
        return 2
    try:
        stage = DemoStage()
    except SandboxError as exc:
        print(f"fluxtui demo: {exc}", file=err)
        return 2
    finish_recording: Callable[[], None] | None = None
    player: DemoPlayer | None = None
    try:
        for path in stage.stale:
            print(f"fluxtui demo: removed {path}, left by a demo or evaluation that was killed",
                  file=err)
        from fluxtui.capabilities.assembly import build_components

        cfg = stage.config(config)
        engine = Engine(cfg, build_components(cfg, privileged=True, interactive=True))
        if record is not None:
            finish_recording = start_recording(engine, record)
        player = DemoPlayer(engine, stage, steps, directory, auto=auto, step_delay=step_delay,
                            loops=loops)
        app = app_factory(engine, player, theme)
        sys.setswitchinterval(0.001)  # as the dashboard: the guard's answers are not delayed
        player.start()
        with _exits_on_signals(app):
            result = app.run()
    except RecordingError as exc:
        print(f"fluxtui demo: {exc}", file=err)
        return 2
    finally:
        if player is not None:
            player.stop()
        if finish_recording is not None:
            finish_recording()
        stage.close()
    if player is not None:
        for step, results in player.results:
            line = f"step {step.number}/{step.total} {step.title}"
            print(line + ": " + (step.missing or outcome(step, results)), file=out)
    return 0 if result is None else int(result)


