"""No kernel data lost under load (issue 13): three workloads with the engine (syscall capture and
risk) ticking every second as the dashboard does, each checked twice:

- the collector's own drop counters (ComponentStatus.drops: syscall counts, kernel events in the
  ring buffer, the event queue between ticks, argv), their growth during the workload;
- an independent truth from the workload itself: the processes it started (every one must have
  its exec and exit event and its counts), and for the exec load the getppid() calls its
  generator made (bench/exec_rate.c prints how many): the collector's count must be exact.

Workloads: a storm of `sleep 600` x N (default 2,000; bounded: killed right after), RATE execs/s
for SECONDS (default 5,000/s for 10 s; the rate reached on this machine is printed), and a
`make -j2` build of 200 C files. The map memory (kernel memory of the program's maps, from
fdinfo) is printed. Lines: `figure | floor | ratio | goal | PASS/MISS`; for a truth check the
floor is the truth. Needs root, bcc, gcc, make. x86_64 (bench/tiny_exit.c).

    .venv/bin/python bench/bench_lossless.py [--storm 2000] [--rate 5000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture  # noqa: E402
from fluxtui.capabilities.syscall_view import SyscallView  # noqa: E402
from fluxtui.collectors.kernel_event import KernelEvent  # noqa: E402
from fluxtui.collectors.syscalls import unavailable_reason  # noqa: E402
from fluxtui.config import Config  # noqa: E402
from fluxtui.engine import Engine  # noqa: E402
from fluxtui.events import ProcessKey, Snapshot  # noqa: E402

HERE = Path(__file__).parent
SETTLE_S = 60.0  # at most this long for the last exits of a workload to arrive
DROP_KINDS = ("syscall_counts", "kernel_events", "event_queue", "argv")


class Recorder:
    """What the engine published: exec events (pid -> exe), exits (the exit events, reported
    in the syscall view), counts per pid."""

    def __init__(self, engine: Engine) -> None:
        self.lock = threading.Lock()
        self.execs: dict[int, str] = {}
        self.parents: dict[int, int] = {}
        self.exits: set[int] = set()
        self.counts: dict[int, Counter[str]] = {}
        # The same by process key: the exec load starts more processes than pid_max (32,768
        # here), so pids are reused and a pid counts several processes.
        self.exec_keys: dict[ProcessKey, str] = {}
        self.exit_keys: set[ProcessKey] = set()
        self.key_counts: dict[ProcessKey, Counter[str]] = {}
        engine.bus.subscribe(self.on_bus)

    def on_bus(self, obj: object) -> None:
        with self.lock:
            if isinstance(obj, KernelEvent):
                if obj.kind == "exec":
                    self.execs[obj.key.pid] = obj.exe or obj.filename
                    self.exec_keys[obj.key] = obj.exe or obj.filename
                    self.parents[obj.key.pid] = obj.ppid
            elif isinstance(obj, Snapshot):
                view = obj.views.get("syscalls")
                if isinstance(view, SyscallView):
                    self.exits.update(key.pid for key in view.exited)
                    self.exit_keys.update(view.exited)
                    for key, named in view.counts.items():
                        self.counts.setdefault(key.pid, Counter()).update(named)
                        self.key_counts.setdefault(key, Counter()).update(named)

    def wait(self, done: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline:
            with self.lock:
                if done():
                    break
            time.sleep(0.2)
        time.sleep(2.5)  # two more ticks: counts flushed at the last exits
        with self.lock:
            return done()


def line(name: str, figure: float, floor: float, goal: str, ok: bool, fmt: str = ",.0f") -> bool:
    ratio = f"{figure / floor:.3f}" if floor else ("0" if not figure else "inf")
    print(f"  {name}: {figure:{fmt}} | floor {floor:{fmt}} | ratio {ratio} | goal {goal} | "
          f"{'PASS' if ok else 'MISS'}", flush=True)
    return ok


def drop_lines(before: dict[str, int], after: dict[str, int]) -> bool:
    ok = True
    for kind in DROP_KINDS:
        lost = after.get(kind, 0) - before.get(kind, 0)
        ok = line(f"{kind} lost (collector's counter)", lost, 0, "0", lost == 0) and ok
    return ok


def truth_lines(rec: Recorder, pids: set[int], what: str) -> bool:
    with rec.lock:
        execs = sum(1 for p in pids if p in rec.execs)
        exits = sum(1 for p in pids if p in rec.exits)
        counted = sum(1 for p in pids if rec.counts.get(p))
    n = len(pids)
    ok = line(f"{what}: exec events", execs, n, "= truth", execs == n)
    ok = line(f"{what}: exit events", exits, n, "= truth", exits == n) and ok
    return line(f"{what}: processes with counts", counted, n, "= truth", counted == n) and ok


def storm(engine: Engine, capture: SyscallCapture, rec: Recorder, n: int) -> bool:
    print(f"storm: {n:,} x `sleep 600` started at once, then killed", flush=True)
    before = dict(capture.status().drops)
    sleep = shutil.which("sleep") or "/bin/sleep"
    pids: set[int] = set()
    t0 = time.monotonic()
    try:
        for _ in range(n):  # posix_spawn: as fast as the machine starts processes
            pids.add(os.posix_spawn(sleep, [sleep, "600"], os.environ))
    finally:
        started = time.monotonic() - t0
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            os.waitpid(pid, 0)
    print(f"  started {len(pids):,} in {started:.1f} s", flush=True)
    rec.wait(lambda: pids <= rec.exits)
    ok = truth_lines(rec, pids, "sleep processes")
    return drop_lines(before, dict(capture.status().drops)) and ok


def exec_load(engine: Engine, capture: SyscallCapture, rec: Recorder, workdir: Path,
              rate: int, seconds: float) -> bool:
    gen, tiny = workdir / "exec_rate", workdir / "tiny_exit"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(gen), str(HERE / "exec_rate.c")], check=True)
    subprocess.run(["gcc", "-static", "-nostdlib", "-O2", "-o", str(tiny),
                    str(HERE / "tiny_exit.c")], check=True)
    print(f"exec load: {rate:,} execs/s asked for {seconds:g} s", flush=True)
    before = dict(capture.status().drops)
    proc = subprocess.run([str(gen), str(rate), str(seconds), str(tiny)], capture_output=True,
                          text=True, check=True, timeout=seconds * 3 + 180)
    started, calls, took = proc.stdout.split()
    n, calls_n = int(started), int(calls)
    print(f"  started {n:,} in {float(took):.1f} s: {n / float(took):,.0f} execs/s reached "
          f"(the machine's limit under the load it shares)", flush=True)

    def tiny_keys() -> set[ProcessKey]:
        return {k for k, exe in rec.exec_keys.items() if exe == str(tiny)}

    rec.wait(lambda: len(tiny_keys()) >= n and tiny_keys() <= rec.exit_keys)
    with rec.lock:
        keys = tiny_keys()
        execs, exits = len(keys), len(keys & rec.exit_keys)
        exit_groups = sum(rec.key_counts.get(k, Counter())["exit_group"] for k in keys)
        getppid = rec.counts.get(proc_pid(rec, gen), Counter())["getppid"]
    ok = line("exec events of the started programs", execs, n, "= truth", execs == n)
    ok = line("exit events of the started programs", exits, n, "= truth", exits == n) and ok
    ok = line("exit_group counted in the started programs", exit_groups, n, "= truth",
              exit_groups == n) and ok
    ok = line("getppid() counted in the generator", getppid, calls_n, "= truth",
              getppid == calls_n) and ok
    return drop_lines(before, dict(capture.status().drops)) and ok


def proc_pid(rec: Recorder, exe: Path) -> int:
    return next((p for p, e in rec.execs.items() if e == str(exe)), -1)


def build(engine: Engine, capture: SyscallCapture, rec: Recorder, workdir: Path,
          files: int = 200) -> bool:
    src = workdir / "build"
    src.mkdir()
    for i in range(files):
        (src / f"f{i}.c").write_text(f"int f{i}(int x) {{ return x * {i} + {i % 7}; }}\n")
    (src / "Makefile").write_text(
        "OBJS := $(patsubst %.c,%.o,$(wildcard *.c))\nall: $(OBJS)\n"
        "%.o: %.c\n\tgcc -O2 -c $< -o $@\n")
    print(f"build: make -j2 of {files} C files", flush=True)
    before = dict(capture.status().drops)
    make = subprocess.Popen(["make", "-s", "-j2", "-C", str(src)])
    if make.wait(timeout=900) != 0:
        raise RuntimeError("make failed")

    def compilers() -> set[int]:  # cc1 run by a gcc that this make started
        drivers = {p for p, parent in rec.parents.items() if parent == make.pid}
        return {p for p, exe in rec.execs.items()
                if exe.endswith("/cc1") and rec.parents.get(p) in drivers}

    rec.wait(lambda: len(compilers()) >= files and compilers() <= rec.exits)
    with rec.lock:
        cc1 = compilers()
        exits = len(cc1 & rec.exits)
        counted = sum(1 for p in cc1 if rec.counts.get(p))
    ok = line("cc1 exec events (one per file)", len(cc1), files, "= truth", len(cc1) == files)
    ok = line("cc1 exit events", exits, files, "= truth", exits == files) and ok
    ok = line("cc1 processes with counts", counted, files, "= truth", counted == files) and ok
    return drop_lines(before, dict(capture.status().drops)) and ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--storm", type=int, default=2000)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()
    reason = unavailable_reason()
    if reason:
        print(f"bench_lossless: cannot run: {reason}")
        return 1
    config = Config()
    capture = SyscallCapture(config)
    engine = Engine(config, [capture, RiskScorer(config)])
    rec = Recorder(engine)
    t0 = time.monotonic()
    engine.start()
    try:
        for _ in range(600):
            if capture.status().running or capture.status().reason:
                break
            time.sleep(0.1)
        if not capture.status().running:
            print(f"syscall capture unavailable: {capture.status().reason}")
            return 1
        collector = capture.collector
        print(f"map memory: {collector.map_memory_bytes / 2**20:.1f} MiB (count maps of "
              f"{collector.count_map_entries:,} entries x 2, ring buffer "
              f"{collector.ring_buffer_pages * 4} KiB, from fdinfo memlock); event queue "
              f"limit {collector.event_queue_limit:,}", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            ok = storm(engine, capture, rec, args.storm)
            ok = exec_load(engine, capture, rec, Path(tmp), args.rate, args.seconds) and ok
            ok = build(engine, capture, rec, Path(tmp)) and ok
        print(f"  count maps drained early (past the fill level): {collector.early_drains}")
        ring = collector.ring
        print(f"  ring buffer: {ring.records_read:,} records read, "
              f"{ring.bytes_read / max(ring.records_read, 1):,.0f} bytes each on average; "
              f"fullest {ring.peak_pending / 2**20:.2f} MiB of {ring.size / 2**20:.0f} MiB; "
              f"writes the kernel refused with room left and retried: {collector.ring_retries}, "
              f"records that went through the spare ring: {collector.spill_ring.records_read}")
    finally:
        engine.stop()
    print(f"bench_lossless: {time.monotonic() - t0:.0f} s, {'PASS' if ok else 'MISS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
