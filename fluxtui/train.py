"""`fluxtui train [--duration S] [--append]`: record this machine's real behaviour into the
feature store, then fit the anomaly model in a child process.

Recording drives the same engine the dashboard uses, with the syscall capture and the anomaly
component only (its recorder receives every window). Windows reach the store from this thread,
in batches, while a progress bar shows the time left and what was recorded.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

from fluxtui.capabilities.anomaly import AnomalyComponent
from fluxtui.capabilities.syscall_risk import SyscallCapture
from fluxtui.config import Config
from fluxtui.detection.anomaly.features import FeatureWindow
from fluxtui.detection.anomaly.fitjob import command as fit_command
from fluxtui.detection.anomaly.store import FeatureStore, StoreError
from fluxtui.engine import Engine
from fluxtui.events import ComponentState

START_TIMEOUT_S = 120.0  # the BPF compile takes seconds on a busy machine


def run_train(config: Config, duration: float | None, append: bool,
              out: TextIO = sys.stdout) -> int:
    settings = config.anomaly
    seconds = settings.train_duration if duration is None else duration
    if seconds <= 0:
        print("fluxtui train: --duration: expected a positive number of seconds", file=out)
        return 2
    if os.geteuid() != 0:
        print("fluxtui train: needs root (the syscall capture is eBPF)", file=out)
        return 1
    store_path = Path(settings.store_path)
    try:
        store = FeatureStore(store_path, replace=not append,
                             max_windows=settings.max_store_windows)
    except (StoreError, OSError) as exc:
        print(f"fluxtui train: {exc}", file=out)
        return 1
    with store:
        before = len(store)
        code = _record(config, store, seconds, out)
        if code:
            return code
        print(f"store {store_path}: {len(store):,} windows ({len(store) - before:,} new"
              f"{', appended' if append else ''})", file=out, flush=True)
    cmd = fit_command(store_path, Path(settings.model_path),
                      false_alarm_rate=settings.false_alarm_rate,
                      holdout_fraction=settings.holdout_fraction,
                      min_profile_windows=settings.min_profile_windows)
    # A child process: the fit holds its own interpreter lock, never the dashboard's.
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as child:
        assert child.stdout is not None
        for line in child.stdout:
            out.write(line)
            out.flush()
    return 0 if child.returncode == 0 else 1


def _record(config: Config, store: FeatureStore, seconds: float, out: TextIO) -> int:
    windows: queue.SimpleQueue[FeatureWindow] = queue.SimpleQueue()
    capture = SyscallCapture(config)
    recorder = AnomalyComponent(config, recorder=windows.put, load=False)
    engine = Engine(config, [capture, recorder])
    engine.start()
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while capture.status().state is ComponentState.STOPPED and time.monotonic() < deadline:
            time.sleep(0.1)
        while not recorder.ready and time.monotonic() < deadline:
            time.sleep(0.1)
        problem = (capture.status() if capture.status().state is not ComponentState.RUNNING
                   else None if recorder.ready else recorder.status())
        if problem is not None:
            print(f"fluxtui train: {problem.name} unavailable: "
                  f"{problem.reason or problem.state.value}", file=out)
            return 1
        processes: set[tuple[int, int]] = set()
        executables: set[str] = set()
        recorded = 0
        console = Console(file=out)
        columns = (TextColumn("recording"), BarColumn(), TextColumn("{task.description}"),
                   TimeRemainingColumn())
        with Progress(*columns, console=console) as progress:
            task = progress.add_task("", total=seconds)
            started = time.monotonic()
            while (elapsed := time.monotonic() - started) < seconds:
                time.sleep(min(0.5, seconds - elapsed))
                batch = _drain(windows)
                store.append(batch)
                recorded += len(batch)
                processes.update((w.key.pid, w.key.start_ticks) for w in batch)
                executables.update(w.exe for w in batch if w.exe)
                progress.update(task, completed=min(seconds, time.monotonic() - started),
                                description=f"{recorded:,} windows · {len(processes):,} "
                                            f"processes · {len(executables):,} executables")
    finally:
        engine.stop()
    batch = _drain(windows)
    store.append(batch)
    recorded += len(batch)
    print(f"recorded {recorded:,} windows of {len(processes):,} processes "
          f"({len(executables):,} executables) in {seconds:g} s", file=out, flush=True)
    return 0


def _drain(windows: queue.SimpleQueue[FeatureWindow]) -> list[FeatureWindow]:
    out = []
    while True:
        try:
            out.append(windows.get_nowait())
        except queue.Empty:
            return out
