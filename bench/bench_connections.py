"""Connections benchmark: one full refresh (sock_diag dump of TCP/UDP x IPv4/IPv6 + pid
attribution) with 10,000 sockets open on loopback, against `ss -tuanp` on the same sockets in the
same run (the floor).

Goal (issue 5): a full refresh including pid attribution <= 3x the time of `ss -tuanp`.
Also printed, for information: a warm (incremental) refresh, and pyroute2's DiagSocket decoding the
same dumps (why fluxtui has its own decoder).

Run: .venv/bin/python bench/bench_connections.py   (root, so that ss -p and fluxtui both see every
process's fds). Bounded: a few seconds of set-up and at most REPEATS runs of each measurement.
"""

from __future__ import annotations

import os
import resource
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fluxtui.collectors.sock_diag import QUERIES, SockDiag
from fluxtui.collectors.socket_owners import SocketOwners

TARGET = 10_000
REPEATS = 7
GOAL_RATIO = 3.0
DEADLINE_S = 90.0


def open_sockets(opened: list[socket.socket]) -> None:
    """TARGET sockets on loopback: TCP pairs over IPv4 and IPv6 plus UDP, all in this process."""
    listeners = []
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        listener = socket.socket(family, socket.SOCK_STREAM)
        opened.append(listener)
        listener.bind((addr, 0))
        listener.listen(128)
        listeners.append((listener, addr))
    udp_count = 2000
    pairs = (TARGET - len(listeners) - udp_count) // 2
    for i in range(pairs):
        listener, addr = listeners[i % 2]
        client = socket.socket(listener.family, socket.SOCK_STREAM)
        opened.append(client)
        client.connect((addr, listener.getsockname()[1]))
        server, _ = listener.accept()
        opened.append(server)
    while len(opened) < TARGET:
        family, addr = ((socket.AF_INET, "127.0.0.1") if len(opened) % 2
                        else (socket.AF_INET6, "::1"))
        udp = socket.socket(family, socket.SOCK_DGRAM)
        opened.append(udp)
        udp.bind((addr, 0))


def timed(fn: Callable[[], object], deadline: float) -> tuple[float, object]:
    """Median seconds over REPEATS runs (fewer if the deadline comes), and the last result."""
    times = []
    result = None
    for _ in range(REPEATS):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
        if time.monotonic() > deadline:
            break
    return statistics.median(times), result


def ss() -> int:
    out = subprocess.run(["ss", "-tuanp"], stdout=subprocess.PIPE, check=True, timeout=60).stdout
    return out.count(b"\n") - 1


def attributed(diag: SockDiag, owners: SocketOwners) -> tuple[int, int]:
    """One full refresh: dump, attribute, build the rows. Returns (sockets, ours)."""
    entries, errors = diag.dump_all()
    if errors:
        raise SystemExit(f"sock_diag errors: {errors}")
    owners.refresh(e.inode for e in entries)
    rows = [(e, owners.owners(e.inode) if e.inode else ()) for e in entries]
    me = os.getpid()
    return len(rows), sum(1 for _, o in rows if o and o[0].pid == me)


def cold_refresh() -> tuple[int, int]:
    """A fresh collector: nothing cached, every process's fds read."""
    diag = SockDiag()
    try:
        return attributed(diag, SocketOwners())
    finally:
        diag.close()


def dump_only() -> int:
    diag = SockDiag()
    try:
        return len(diag.dump_all()[0])
    finally:
        diag.close()


def pyroute2_dump() -> int:
    from pyroute2.netlink.diag import DiagSocket

    count = 0
    with DiagSocket() as ds:
        ds.bind()
        for family, protocol in QUERIES:
            ext = 1 << 1 if protocol == socket.IPPROTO_TCP else 0
            count += len(ds.get_sock_stats(family=family, protocol=protocol, extensions=ext))
    return count


def report(name: str, seconds: float, floor: float, goal: float | None) -> bool:
    ratio = seconds / floor
    verdict = "" if goal is None else ("  PASS" if ratio <= goal else "  MISS")
    goal_text = "info" if goal is None else f"<= {goal:.1f}x"
    print(f"{name:<46} {seconds * 1000:8.1f} ms   ratio {ratio:5.2f}x   goal {goal_text}"
          f"{verdict}")
    return goal is None or ratio <= goal


def main() -> int:
    deadline = time.monotonic() + DEADLINE_S
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = TARGET + 512
    if hard != resource.RLIM_INFINITY and hard < needed:
        print(f"RLIMIT_NOFILE hard limit {hard} < {needed}: cannot open {TARGET} sockets")
        return 2
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, needed), hard))
    opened: list[socket.socket] = []
    warm_diag, warm_owners = SockDiag(), SocketOwners()
    try:
        started = time.perf_counter()
        open_sockets(opened)
        print(f"opened {len(opened)} loopback sockets in {time.perf_counter() - started:.2f} s "
              f"(pid {os.getpid()}, {os.cpu_count()} cores, euid {os.geteuid()})")
        attributed(warm_diag, warm_owners)  # fill the warm cache once
        floor, ss_lines = timed(ss, deadline)
        print(f"{'floor: ss -tuanp':<46} {floor * 1000:8.1f} ms   ({ss_lines} sockets listed)")
        cold, (cold_rows, cold_mine) = timed(cold_refresh, deadline)
        warm, (warm_rows, warm_mine) = timed(lambda: attributed(warm_diag, warm_owners),
                                             deadline)
        dump, _ = timed(dump_only, deadline)
        p2, p2_rows = timed(pyroute2_dump, deadline)
        print(f"fluxtui listed {cold_rows} sockets, {cold_mine} attributed to this benchmark's "
              f"pid (expected {TARGET}); warm {warm_rows}/{warm_mine}; pyroute2 {p2_rows}")
        ok = cold_mine == TARGET and warm_mine == TARGET
        ok &= report("full refresh, cold cache (dump + every fd)", cold, floor, GOAL_RATIO)
        ok &= report("full refresh, warm cache (incremental)", warm, floor, GOAL_RATIO)
        report("fluxtui decoder, dump only (no owners)", dump, floor, None)
        report("pyroute2 DiagSocket, dump only (no owners)", p2, floor, None)
        print("PASS" if ok else "MISS")
        return 0
    finally:
        warm_diag.close()
        for s in opened:
            s.close()


if __name__ == "__main__":
    sys.exit(main())
