"""Socket ownership from /proc (collectors/socket_owners.py), on real processes: a process whose
main thread has not run is not re-read, and a socket opened by another thread while the main
one sleeps is still attributed (the unknown inode triggers the full pass)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import fluxtui.collectors.socket_owners as socket_owners
from fluxtui.collectors.socket_owners import ROTATION, SocketOwners, read_socket_inodes

THREAD_LISTENER = """
import socket, sys, threading
def listen():
    sys.stdin.readline()  # until the test has done its first refresh
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    print("listening", flush=True)
    threading.Event().wait(60)
threading.Thread(target=listen, daemon=True).start()
threading.Event().wait(60)  # the main thread sleeps from here on
"""


@pytest.fixture
def sleepers() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs = [subprocess.Popen(["sleep", "60"]) for _ in range(20)]
    try:
        yield procs
    finally:
        for p in procs:
            p.kill()
            p.wait()


def _wait_sleeping(pid: int) -> None:
    for _ in range(500):  # bounded: until exec is done and it sleeps
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        with open(f"/proc/{pid}/comm") as f:
            if fields[0] == "S" and f.read().strip() == "sleep":
                return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} never slept")


def _state(pid: int, tid: str) -> str:
    with open(f"/proc/{pid}/task/{tid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


def _schedstat(pid: int) -> str:
    with open(f"/proc/{pid}/schedstat") as f:
        return f.read()


def test_a_process_that_did_not_run_is_not_read_again(sleepers, monkeypatch) -> None:
    """Every process's /proc/PID/stat was read four times a second (16% of a core at 2,000
    processes): now only those whose main thread ran since the last refresh."""
    for p in sleepers:
        _wait_sleeping(p.pid)
    owners = SocketOwners()
    try:
        owners.refresh([])
        read: list[int] = []
        real = socket_owners.read_stat

        def counting(pid: int, *args, **kwargs):  # type: ignore[no-untyped-def]
            read.append(pid)
            return real(pid, *args, **kwargs)

        monkeypatch.setattr(socket_owners, "read_stat", counting)
        owners.refresh([])
        due = {p.pid for p in sleepers if (p.pid + 2) % ROTATION == 0}  # the slow rotation
        assert {p.pid for p in sleepers} & set(read) == due
        assert {p.pid for p in sleepers} <= {k.pid for k in owners.readable()}
    finally:
        owners.close()


def test_a_socket_of_another_thread_is_found_though_the_main_thread_slept() -> None:
    child = subprocess.Popen([sys.executable, "-c", THREAD_LISTENER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    owners = SocketOwners()
    try:
        for _ in range(500):  # bounded: until both threads wait (main on its event)
            if len(os.listdir(f"/proc/{child.pid}/task")) == 2 and all(
                    _state(child.pid, tid) == "S"
                    for tid in os.listdir(f"/proc/{child.pid}/task")):
                break
            time.sleep(0.01)
        inodes = read_socket_inodes(f"/proc/{child.pid}/fd")
        before = _schedstat(child.pid)
        owners.refresh([])
        assert child.stdin is not None and child.stdout is not None
        child.stdin.write(b"go\n")
        child.stdin.flush()
        assert child.stdout.readline() == b"listening\n"
        new = read_socket_inodes(f"/proc/{child.pid}/fd") or frozenset()
        assert new - (inodes or frozenset()), "the thread's socket"
        (inode,) = new - (inodes or frozenset())
        assert _schedstat(child.pid) == before  # the main thread did not run
        owners.refresh([inode])
        found = owners.owners(inode)
        assert found and found[0].pid == child.pid
    finally:
        owners.close()
        child.kill()
        child.wait()
