"""CPU of the connections thread's query loop at N idle processes (issue 13), in isolation.

Starts N `sleep 600` processes, then runs ConnectionsComponent._query as the thread would
(every poll_interval of simulated time: the component's and the owner index's clocks are a
counter advanced by poll_interval per query, so the sweep runs once per simulated second and
an unchanged table is listed once per idle_listing_interval) for --seconds of simulated time,
with the close notifications read before each query as the thread does, handing it the pid
listing the engine would (refreshed once per simulated second), and prints the thread CPU
(time.thread_time) per simulated second. The floor is the same loop doing only the four
per-family sock_diag dump requests, each reply received and not decoded (the kernel work and
system calls of a listing as it was done before the one-walk TCP dump, with no Python work per
socket). Also printed: listings and quiet polls (the counters unchanged: no listing), and
/proc/PID/fd reads.

With --live, the real thread runs (ConnectionsComponent.start, the connect tracer included
when bcc is there) for --seconds of wall time after its first listing, and its CPU is read
from /proc/self/task/TID/schedstat: everything the thread does (the loop, the close
notifications, the tracer's drains), against the same floor.

Run as root: .venv/bin/python bench/bench_conn_query.py [--processes 2000] [--seconds 30]
             [--profile] [--live]
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

from fluxtui.bus import EventBus
from fluxtui.capabilities.connection_tracker import ConnectionsComponent
from fluxtui.collectors.procstat import list_pids
from fluxtui.collectors.sock_diag import (
    NETLINK_SOCK_DIAG,
    NLMSG_DONE,
    NLMSG_ERROR,
    NLMSGHDR,
    QUERIES,
    DestroyWatch,
    SockDiag,
    build_request,
)
from fluxtui.collectors.socket_counters import SocketCounters
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
    component._owners._clock = component._clock = lambda: simulated[0]
    destroy = component._destroy
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG)
    sock.bind((0, 0))
    buffer = bytearray(1 << 16)
    total = 0.0
    for second in range(int(seconds)):
        pids = list_pids()  # what on_tick hands the thread: a new list when processes changed
        if component._tick_pids is None or sorted(pids) != sorted(component._tick_pids):
            component._tick_pids = pids
        for _ in range(per_second):
            started = time.thread_time()
            if only_dump:
                raw_dumps(sock, buffer)
            else:
                if destroy is not None:
                    component._on_destroyed(destroy.read())
                component._query()
            total += time.thread_time() - started
            simulated[0] += config.poll_interval
        del second
    sock.close()
    return total / int(seconds) * 1000


def task_cpu(tid: int) -> float:
    """A thread's CPU time in seconds (nanoseconds in schedstat, not ticks)."""
    with open(f"/proc/self/task/{tid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


def live(component: ConnectionsComponent, seconds: float) -> float:
    """The running thread's CPU in ms per second of wall time, the engine's pids handed to it
    once a second as on_tick does."""
    component._tick_pids = list_pids()
    component.start(EventBus())
    if not component.ready.wait(300) or component._thread is None:
        raise RuntimeError("the connections thread did not list within 300 s")
    time.sleep(3.0)  # its first sweeps read every process: start-up, not the steady cost
    tid = component._thread.native_id
    assert tid is not None
    before, start = task_cpu(tid), time.monotonic()
    while time.monotonic() - start < seconds:
        pids = list_pids()
        if sorted(pids) != sorted(component._tick_pids or ()):
            component._tick_pids = pids
        time.sleep(1.0)
    return (task_cpu(tid) - before) / (time.monotonic() - start) * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--processes", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--live", action="store_true", help="the real thread, wall time")
    args = parser.parse_args()
    children: list[subprocess.Popen[bytes]] = []
    component = ConnectionsComponent(NetworkConfig(connect_trace=args.live))
    if not args.live:  # what start() opens, without the thread
        component._diag = SockDiag()
        component._destroy = DestroyWatch()
        component._net_counters = SocketCounters()
    try:
        for _ in range(args.processes):
            children.append(subprocess.Popen(["sleep", "600"]))
        if not args.live:
            run(component, 3, only_dump=False)  # start-up: the first sweeps read every process
        floor = run(ConnectionsComponent(NetworkConfig()), args.seconds, only_dump=True)
        profiler = cProfile.Profile(time.thread_time) if args.profile and not args.live else None
        if profiler is not None:
            profiler.enable()
        fd_reads, listings, quiet = (component._owners.fd_reads, component.listings,
                                     component.quiet_polls)
        if args.live:
            figure = live(component, args.seconds)
        else:
            figure = run(component, args.seconds, only_dump=False)
        if profiler is not None:
            profiler.disable()
        ratio = figure / floor if floor else float("inf")
        ok = figure <= GOAL_MS_PER_S
        sockets = len(component._table)
        what = "thread (live)" if args.live else "query"
        print(f"connections {what} CPU at {len(list_pids())} processes, {sockets} sockets: "
              f"{figure:.2f} ms/s | "
              f"floor (4 dumps, undecoded) {floor:.2f} ms/s | ratio {ratio:.2f} | "
              f"goal <= {GOAL_MS_PER_S:.0f} ms/s (1% of a core) | {'PASS' if ok else 'MISS'}")
        print(f"[{what}] over {args.seconds:.0f} s: {component.listings - listings} listings, "
              f"{component.quiet_polls - quiet} quiet polls (counters unchanged, not listed), "
              f"{component._owners.fd_reads - fd_reads} /proc/PID/fd reads")
        if profiler is not None:
            pstats.Stats(profiler).sort_stats("tottime").print_stats(15)
        return 0 if ok else 1
    finally:
        if args.live:
            component.stop()
        else:
            for resource in (component._diag, component._destroy, component._net_counters):
                if resource is not None:
                    resource.close()
            component._owners.close()
        for child in children:
            child.kill()
        for child in children:
            child.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
