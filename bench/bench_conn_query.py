"""CPU of the connections thread's query loop at N idle processes (issue 13), in isolation.

Starts N `sleep 600` processes, then runs ConnectionsComponent._query as the thread would
(every poll_interval of simulated time: the owner index's clock is a counter advanced by
poll_interval per query, so the sweep runs once per simulated second) for --seconds of simulated
time, handing it the pid listing the engine would (refreshed once per simulated second), and
prints the thread CPU (time.thread_time) per simulated second. The floor is the same loop doing
only the four sock_diag dumps (the kernel work no implementation can skip).

Run as root: .venv/bin/python bench/bench_conn_query.py [--processes 2000] [--seconds 30]
             [--profile]
Bounded: the sleeps are killed on exit.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fluxtui.capabilities.connection_tracker import ConnectionsComponent
from fluxtui.collectors.procstat import list_pids
from fluxtui.collectors.sock_diag import SockDiag
from fluxtui.config import NetworkConfig

GOAL_MS_PER_S = 10.0  # 1% of a core


def run(component: ConnectionsComponent, seconds: float, only_dump: bool) -> float:
    config = component.config
    per_second = round(1 / config.poll_interval)
    simulated = [0.0]
    component._owners._clock = lambda: simulated[0]
    diag = component._diag
    assert diag is not None
    total = 0.0
    for second in range(int(seconds)):
        component._tick_pids = tuple(list_pids())  # what on_tick hands the thread
        for _ in range(per_second):
            started = time.thread_time()
            if only_dump:
                diag.dump_all()
            else:
                component._query()
            total += time.thread_time() - started
            simulated[0] += config.poll_interval
        del second
    return total / int(seconds) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    children: list[subprocess.Popen[bytes]] = []
    component = ConnectionsComponent(NetworkConfig(connect_trace=False))
    component._diag = SockDiag()
    try:
        for _ in range(args.processes):
            children.append(subprocess.Popen(["sleep", "600"]))
        run(component, 3, only_dump=False)  # start-up: the first sweeps read every process
        floor = run(component, args.seconds, only_dump=True)
        profiler = cProfile.Profile() if args.profile else None
        if profiler is not None:
            profiler.enable()
        figure = run(component, args.seconds, only_dump=False)
        if profiler is not None:
            profiler.disable()
        ratio = figure / floor if floor else float("inf")
        ok = figure <= GOAL_MS_PER_S
        print(f"connections query CPU at {len(list_pids())} processes: {figure:.2f} ms/s | "
              f"floor (dumps only) {floor:.2f} ms/s | ratio {ratio:.2f} | "
              f"goal <= {GOAL_MS_PER_S:.0f} ms/s (1% of a core) | {'PASS' if ok else 'MISS'}")
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0 if ok else 1
    finally:
        component._diag.close()
        component._owners.close()
        for child in children:
            child.kill()
        for child in children:
            child.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
