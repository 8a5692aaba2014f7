"""Socket ownership from /proc (collectors/socket_owners.py), on real processes: nothing is read
while every listed socket is known and the last sweep is recent; a sweep reads only new
processes, holders and those whose turn it is; a socket opened by another thread while the main
one sleeps is still attributed (the unknown inode triggers the hunt); a holder that closes a
shared socket stops naming it at the next sweep. The clock is injected: no test waits."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

import fluxtui.collectors.socket_owners as socket_owners
from fluxtui.collectors.socket_owners import ROTATION, SWEEP_S, SocketOwners, read_socket_inodes

HOLDER = """
import socket, sys
sys.stdin.readline()  # until the test says: after its first refresh
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen()
print(s.fileno(), flush=True)
sys.stdin.readline()
"""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

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


def _socket_of(proc: subprocess.Popen[bytes], ask: bool = True) -> int:
    """The inode of the socket a HOLDER-like child reports (asked to open it first)."""
    assert proc.stdout is not None and proc.stdin is not None
    if ask:
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
    fd = int(proc.stdout.readline())
    return int(os.readlink(f"/proc/{proc.pid}/fd/{fd}")[8:-1])


def test_a_sweep_reads_only_new_processes_holders_and_the_rotation(sleepers, monkeypatch) -> None:
    """Every process's schedstat was read four times a second (and its stat when it ran): now a
    sweep looks at new processes, socket holders and the slow rotation's share only."""
    for p in sleepers:
        _wait_sleeping(p.pid)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    try:
        owners.refresh([])
        read: list[int] = []
        real = socket_owners.read_stat

        def counting(pid: int, *args, **kwargs):  # type: ignore[no-untyped-def]
            read.append(pid)
            return real(pid, *args, **kwargs)

        monkeypatch.setattr(socket_owners, "read_stat", counting)
        clock.now += SWEEP_S
        owners.refresh([])
        # Those whose turn it is (second sweep) have one thread and did not run since the
        # first: their turn comes to nothing either (a turn reads one that ran or has threads)
        assert {p.pid for p in sleepers} & set(read) == set()
        assert {p.pid for p in sleepers} <= {k.pid for k in owners.readable()}
    finally:
        owners.close()


def test_nothing_is_read_between_sweeps_while_every_socket_is_known(sleepers,
                                                                      monkeypatch) -> None:
    """The listing runs four times a second; /proc is read only when it shows an unknown socket
    or a sweep is due."""
    clock = Clock()
    owners = SocketOwners(clock=clock)
    try:
        owners.refresh([])
        calls: list[str] = []
        monkeypatch.setattr(socket_owners, "list_pids",
                            lambda *a: calls.append("list") or [])  # type: ignore[func-returns-value]
        monkeypatch.setattr(socket_owners, "read_stat",
                            lambda *a, **k: calls.append("stat"))  # type: ignore[func-returns-value]
        clock.now += SWEEP_S / 2
        owners.refresh([0])
        assert calls == []
        clock.now += SWEEP_S
        owners.refresh([])
        assert calls == ["list"]  # the sweep lists /proc (nothing there: the stub)
    finally:
        owners.close()


def test_a_new_socket_of_another_process_is_attributed_at_once() -> None:
    """Between sweeps, an unknown inode triggers the hunt in the same refresh."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    try:
        owners.refresh([])  # before the child's socket exists
        inode = _socket_of(child)
        owners.refresh([inode])  # no time passed: not a sweep, a hunt
        found = owners.owners(inode)
        assert found and [o.pid for o in found] == [child.pid]
    finally:
        owners.close()
        child.kill()
        child.wait()


def test_a_holder_that_closes_a_shared_socket_is_dropped_at_the_next_sweep() -> None:
    """A socket two processes hold: the one that closes it stops being named at the next sweep
    (its recorded fd no longer points at it), the other stays."""
    import socket
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    inode = os.fstat(listener.fileno()).st_ino
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.readline()"],
                             stdin=subprocess.PIPE, pass_fds=(listener.fileno(),))
    clock = Clock()
    owners = SocketOwners(clock=clock)
    try:
        for _ in range(500):  # bounded: until the child runs Python (its fds are settled)
            with open(f"/proc/{child.pid}/cmdline", "rb") as f:
                if b"readline" in f.read():
                    break
            time.sleep(0.01)
        owners.refresh([inode])  # a hunt: stops at the first holder found
        clock.now += SWEEP_S
        owners.refresh([inode])  # a sweep: the new child of a holder is read
        assert {o.pid for o in owners.owners(inode) or ()} == {os.getpid(), child.pid}
        before = _schedstat(os.getpid())
        listener.close()
        # The sweep re-checks holders that ran, known by their schedstat, which the kernel
        # updates at a tick or a switch: with the clock injected, the two refreshes can fall
        # within one tick of each other, so wait (bounded) until this process's has moved.
        for _ in range(1000):
            if _schedstat(os.getpid()) != before:
                break
            time.sleep(0.001)
        clock.now += SWEEP_S
        owners.refresh([inode])
        assert [o.pid for o in owners.owners(inode) or ()] == [child.pid]
    finally:
        listener.close()
        owners.close()
        child.kill()
        child.wait()


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


def test_a_hinted_process_holding_the_new_socket_ends_the_hunt(monkeypatch) -> None:
    """The connect tracer's pid (or a listener's holder) is read first; when it holds every
    unknown inode, /proc is not listed; a wrong hint still ends in the full hunt."""
    child = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    listed: list[int] = []
    real = socket_owners.list_pids

    def counting(*args):  # type: ignore[no-untyped-def]
        listed.append(1)
        return real(*args)

    try:
        owners.refresh([])  # before the child's socket exists
        inode = _socket_of(child)
        monkeypatch.setattr(socket_owners, "list_pids", counting)
        assert owners.unknown([inode, 0]) == {inode}
        owners.refresh([inode], hints=[child.pid])
        assert listed == [] and owners.hinted == 1
        assert [o.pid for o in owners.owners(inode) or ()] == [child.pid]

        second = subprocess.Popen([sys.executable, "-c", HOLDER], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        try:
            inode2 = _socket_of(second)
            owners.refresh([inode, inode2], hints=[child.pid])  # the wrong process
            assert listed == [1]  # the full hunt
            assert [o.pid for o in owners.owners(inode2) or ()] == [second.pid]
        finally:
            second.kill()
            second.wait()
    finally:
        owners.close()
        child.kill()
        child.wait()


FORKER = """
import socket, subprocess, sys
held = ()
if sys.argv[1] == "hold":
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(); held = (s.fileno(),)
    print(s.fileno(), flush=True)
sys.stdin.readline()
child = subprocess.Popen(["sleep", "60"], pass_fds=held)
print(child.pid, flush=True)
sys.stdin.readline()
child.kill()
"""


def test_a_new_child_is_read_only_when_its_parent_holds_a_socket(monkeypatch) -> None:
    """A child inherits its parent's sockets: the new child of a holder has its fds read at the
    next sweep (and is named with its parent); that of a process holding none is taken to hold
    none, unread (a socket it opens later is unknown to the index, which starts a hunt)."""
    holder = subprocess.Popen([sys.executable, "-c", FORKER, "hold"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    plain = subprocess.Popen([sys.executable, "-c", FORKER, "none"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    forked: list[int] = []
    try:
        assert holder.stdout is not None and holder.stdin is not None
        assert plain.stdout is not None and plain.stdin is not None
        inode = _socket_of(holder, ask=False)
        owners.refresh([inode])  # a hunt: until the holder is found
        clock.now += SWEEP_S
        owners.refresh([inode])  # a sweep: every process new to it read (started before it)
        assert plain.pid in {k.pid for k in owners.readable()}
        for proc in (holder, plain):
            assert proc.stdin is not None
            proc.stdin.write(b"fork\n")
            proc.stdin.flush()
        heir = int(holder.stdout.readline())
        other = int(plain.stdout.readline())
        forked += [heir, other]
        read = _count_fd_reads(monkeypatch)
        clock.now += SWEEP_S
        owners.refresh([inode])
        assert {o.pid for o in owners.owners(inode) or ()} == {holder.pid, heir}
        assert f"/proc/{heir}/fd" in read
        assert f"/proc/{other}/fd" not in read and owners.inferred >= 1
        assert other in {k.pid for k in owners.readable()}  # known to hold none
    finally:
        owners.close()
        for pid in forked:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in (holder, plain):
            proc.kill()
            proc.wait()


def _count_fd_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The /proc/PID/fd directories the owners read from now on."""
    read: list[str] = []
    real = socket_owners.socket_fds

    def counting(fd_dir: str):  # type: ignore[no-untyped-def]
        read.append(fd_dir)
        return real(fd_dir)

    monkeypatch.setattr(socket_owners, "socket_fds", counting)
    return read


def _start_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[19])


def test_the_readable_set_is_kept_with_the_processes_not_rebuilt_per_query(sleepers) -> None:
    """A query hands on the readable processes four times a second: the same frozenset while
    none is added or dropped (it was a dict rebuilt from every process, a ProcessKey each, per
    query), and one that follows exits and new processes exactly."""
    from fluxtui.events import ProcessKey

    for p in sleepers:
        _wait_sleeping(p.pid)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    pids = [p.pid for p in sleepers]
    keys = {ProcessKey(pid, _start_ticks(pid)) for pid in pids}
    try:
        owners.refresh([], pids=pids)
        first = owners.readable()
        assert isinstance(first, frozenset) and first == keys
        clock.now += SWEEP_S / 2
        owners.refresh([], pids=pids)  # no sweep
        assert owners.readable() is first
        for _ in range(3):  # sweeps (the rotation may re-read some): nobody added or dropped
            clock.now += SWEEP_S
            owners.refresh([], pids=pids)
            assert owners.readable() is first
        gone = sleepers[0]
        gone.kill()
        gone.wait()
        newcomer = subprocess.Popen(["sleep", "60"])
        try:
            _wait_sleeping(newcomer.pid)
            pids = [*pids[1:], newcomer.pid]
            clock.now += SWEEP_S
            owners.refresh([], pids=pids)
            gone_key = next(k for k in keys if k.pid == gone.pid)
            new_key = ProcessKey(newcomer.pid, _start_ticks(newcomer.pid))
            assert owners.readable() == (keys - {gone_key}) | {new_key}
            assert owners.denied == 0
        finally:
            newcomer.kill()
            newcomer.wait()
    finally:
        owners.close()


TWO_THREADS = """
import threading
threading.Thread(target=threading.Event().wait, args=(60,), daemon=True).start()
print("ready", flush=True)
threading.Event().wait(60)
"""


def _turn(owners: SocketOwners, pid: int) -> None:
    """Make the next sweep the one whose rotation turn is pid's."""
    owners._round = (pid % ROTATION - 1) % ROTATION


def test_a_single_threaded_process_that_slept_is_not_reread_on_its_turn(sleepers,
                                                                       monkeypatch) -> None:
    """Every process had its fds read on its rotation turn (a few a second at 2,000): one with
    a single thread whose schedstat has not moved since cannot have received a socket, and costs
    one pread; one with two threads is read (the other thread may have run)."""
    sleeper = sleepers[0]
    _wait_sleeping(sleeper.pid)
    threaded = subprocess.Popen([sys.executable, "-c", TWO_THREADS], stdout=subprocess.PIPE)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    try:
        assert threaded.stdout is not None and threaded.stdout.readline() == b"ready\n"
        for _ in range(500):  # bounded: until both threads wait
            tasks = os.listdir(f"/proc/{threaded.pid}/task")
            if len(tasks) == 2 and all(_state(threaded.pid, t) == "S" for t in tasks):
                break
            time.sleep(0.01)
        owners.refresh([])
        read = _count_fd_reads(monkeypatch)
        for pid in (sleeper.pid, threaded.pid):
            _turn(owners, pid)
            clock.now += SWEEP_S
            owners.refresh([])
        assert f"/proc/{sleeper.pid}/fd" not in read
        assert f"/proc/{threaded.pid}/fd" in read
        assert {sleeper.pid, threaded.pid} <= {k.pid for k in owners.readable()}
    finally:
        owners.close()
        threaded.kill()
        threaded.wait()


RECEIVER = """
import socket, sys
channel = socket.socket(fileno=int(sys.argv[1]))
print("ready", flush=True)
_msg, fds, _flags, _addr = socket.recv_fds(channel, 1, 1)
print(len(fds), flush=True)
sys.stdin.readline()
"""


def test_a_socket_received_by_fd_passing_names_its_receiver_at_its_turn() -> None:
    """SCM_RIGHTS: a process that held no socket receives one its sender keeps. No new inode,
    so no hunt; the receiver ran (recvmsg), so its turn reads it, and the socket names both.
    Before its turn it is not named: the documented delay of a second holder (ROTATION)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    inode = os.fstat(listener.fileno()).st_ino
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    child = subprocess.Popen([sys.executable, "-c", RECEIVER, str(theirs.fileno())],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             pass_fds=(theirs.fileno(),))
    theirs.close()
    clock = Clock()
    owners = SocketOwners(clock=clock)
    try:
        assert child.stdout is not None and child.stdout.readline() == b"ready\n"
        owners.refresh([inode])  # the hunt: this process holds it
        clock.now += SWEEP_S
        owners.refresh([inode])  # a sweep: the child, new, read (holding none)
        assert child.pid in {k.pid for k in owners.readable()}
        assert [o.pid for o in owners.owners(inode) or ()] == [os.getpid()]
        socket.send_fds(mine, [b"x"], [listener.fileno()])
        assert child.stdout.readline() == b"1\n"
        _turn(owners, child.pid + 1)  # not its turn
        clock.now += SWEEP_S
        owners.refresh([inode])
        assert [o.pid for o in owners.owners(inode) or ()] == [os.getpid()]
        _turn(owners, child.pid)
        clock.now += SWEEP_S
        owners.refresh([inode])
        assert {o.pid for o in owners.owners(inode) or ()} == {os.getpid(), child.pid}
    finally:
        owners.close()
        listener.close()
        mine.close()
        child.kill()
        child.wait()


def test_a_process_the_last_sweep_could_not_record_is_tried_again_with_the_same_list(
        sleepers, monkeypatch) -> None:
    """Handed the same pid list object as at the last sweep (the engine's, unchanged), a sweep
    does not compare it with its table again, but still tries those it could not record."""
    for p in sleepers:
        _wait_sleeping(p.pid)
    clock = Clock()
    owners = SocketOwners(clock=clock)
    pids = [p.pid for p in sleepers]
    missed = pids[0]
    real = socket_owners.read_stat
    try:
        monkeypatch.setattr(socket_owners, "read_stat",
                            lambda pid, *a, **k: None if pid == missed else real(pid, *a, **k))
        owners.refresh([], pids=pids)
        assert missed not in {k.pid for k in owners.readable()}
        monkeypatch.setattr(socket_owners, "read_stat", real)
        clock.now += SWEEP_S
        owners.refresh([], pids=pids)
        assert {k.pid for k in owners.readable()} == set(pids)
    finally:
        owners.close()
