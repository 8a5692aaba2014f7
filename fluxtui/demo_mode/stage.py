"""The demo's stage: the evaluation's sandbox (a cgroup of its own, a temporary tree with a
decoy home and an owner marker), the configuration pointed at it, and a watchdog that cleans up
when the demo dies without doing it itself.

What a demo killed with SIGKILL leaves despite the watchdog (the watchdog killed too) is removed
by the next `fluxtui demo` (or `fluxtui evaluate`): `RunSandbox` cleans every cgroup and marked
directory whose owner process is gone before it makes its own.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import IO

from fluxtui.config import Config
from fluxtui.evaluation.runner import evaluation_config
from fluxtui.evaluation.sandbox import RunSandbox

# The guard's deadline in the demo: the story goes on when nobody answers a prompt.
PROMPT_DEADLINE = 20.0


class DemoStage:
    """`close()` kills every actor and removes the tree; safe to call twice."""

    def __init__(self) -> None:
        self.run = RunSandbox()  # raises SandboxError, phrased for the user
        self._watch: subprocess.Popen[bytes] | None = None
        self._watch_pipe: IO[bytes] | None = None
        try:
            self._watch = subprocess.Popen(
                [sys.executable, "-m", "fluxtui.demo_mode.watchdog", str(self.run.cgroup),
                 str(self.run.temp)],
                stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                start_new_session=True)  # not in the terminal's process group: Ctrl-C spares it
            self._watch_pipe = self._watch.stdin
        except OSError:
            self.run.close()
            raise

    @property
    def stale(self) -> list[str]:
        """What earlier runs killed with SIGKILL had left, removed at start."""
        return self.run.stale

    def config(self, config: Config) -> Config:
        """The user's configuration with the guard on the decoy home only, its rules, audit
        trail and protected-inode state inside the temporary tree, deciding by itself (deny)
        when nobody answers within the demo's deadline."""
        cfg = evaluation_config(config, self.run.decoy)
        state = self.run.decoy.state
        guard = dataclasses.replace(
            cfg.guard, enabled=True, mode="enforce", default_action="deny",
            state_file=str(state / "protected-inodes.json"),
            decision_timeout=min(cfg.guard.decision_timeout, PROMPT_DEADLINE))
        return dataclasses.replace(cfg, guard=guard)

    def close(self) -> None:
        self.run.close()
        if self._watch_pipe is not None:
            self._watch_pipe.close()  # the watchdog finds nothing left and exits
            self._watch_pipe = None
        if self._watch is not None:
            try:
                self._watch.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._watch.kill()
                self._watch.wait(timeout=10)
            self._watch = None
