"""CPU of the connections thread's query loop at N idle processes (issue 13), in isolation.

Starts N `sleep 600` processes, then runs ConnectionsComponent._query as the thread would
(every poll_interval of simulated time: the owner index's clock is a counter advanced by
poll_interval per query, so the sweep runs once per simulated second) for --seconds of simulated
time, handing it the pid listing the engine would (refreshed once per simulated second), and
prints the thread CPU (time.thread_time) per simulated second. The floor is the same loop doing
only the four per-family sock_diag dump requests, each reply received and not decoded (the
kernel work and system calls of a listing as main did it, with no Python work per socket).

Run as root: .venv/bin/python bench/bench_conn_query.py [--processes 2000] [--seconds 30]
             [--profile]
Bounded: the sleeps are killed on exit.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fluxtui.capabilities.connection_tracker import ConnectionsComponent
from fluxtui.collectors.procstat import list_pids
from fluxtui.collectors.sock_diag import (
    NETLINK_SOCK_DIAG,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    QUERIES,
    SockDiag,
    build_request,
)
from fluxtui.config import NetworkConfig

GOAL_MS_PER_S = 10.0  # 1% of a core


def raw_dumps(sock: socket.socket, buffer: bytearray) -> None:
    """The four per-family dumps, replies read up to NLMSG_DONE, nothing decoded."""
    for family, protocol in QUERIES:
        sock.send(build_request(family, protocol, 1))
        done = False
        while not done:
            size = sock.recv_into(buffer)
            offset = 0
            while offset + NLMSGHDR.size <= size:
                length, kind = NLMSGHDR.unpack_from(buffer, offset)[:2]
                done = done or kind in (NLMSG_DONE, NLMSG_ERROR)
                offset += (length + 3) & ~3


def run(component: ConnectionsComponent, seconds: float, only_dump: bool) -> float:
    config = component.config
    per_second = round(1 / config.poll_interval)
    simulated = [0.0]
    component._owners._clock = lambda: simulated[0]
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    sock.bind((0, 0))
    buffer = bytearray(1 << 16)
    total = 0.0
    for second in range(int(seconds)):
        component._tick_pids = tuple(list_pids())  # what on_tick hands the thread
        for _ in range(per_second):
            started = time.thread_time()
            if only_dump:
                raw_dumps(sock, buffer)
            else:
                component._query()
            total += time.thread_time() - started
            simulated[0] += config.poll_interval
        del second
    sock.close()
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
        sockets = len(component._table)
        print(f"connections query CPU at {len(list_pids())} processes, {sockets} sockets: "
              f"{figure:.2f} ms/s | "
              f"floor (4 dumps, undecoded) {floor:.2f} ms/s | ratio {ratio:.2f} | "
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
