"""Change detection of the process collector, with real processes: a process that ran is read
again, one that did not is not; an exec'd process gets its new command line; new processes
appear and exited ones leave (with their held fds)."""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from fluxtui.collectors import processes as processes_module
from fluxtui.collectors.proc_events import ProcEvent, ProcEventsLost
from fluxtui.collectors.proc_identity import Identity
from fluxtui.collectors.processes import (
    ProcessCollector,
    held_fd_budget,
    in_initial_pid_namespace,
)
from fluxtui.collectors.procstat import HeldReads, read_stat
from fluxtui.events import ProcessRow
from tests.kernel import require, require_root

LEADER_EXIT = Path(__file__).parent / "workloads" / "leader_exit.c"
NEVER = 10**9  # no rotation: only a change can cause a read

# Reads a line, then grows by 32 MiB and touches it (it runs: its schedstat and memory change),
# prints "grown" and blocks again.
GROWER = ("import sys\nheld = []\nfor line in sys.stdin:\n"
          "    held.append(b'x' * (32 << 20))\n    print('grown', flush=True)\n")
# Reads a line, then execs the same interpreter (same comm) with a new command line.
EXECER = ("import os, sys\nsys.stdin.readline()\n"
          "os.execv(sys.executable, [sys.executable, '-c', 'import sys; sys.stdin.read()', "
          "'after-exec-marker'])\n")


@contextmanager
def child(code: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(timeout=10)


def wait_blocked(pid: int) -> None:
    """Until the process sleeps and its schedstat holds still between two reads (bounded)."""
    reader = HeldReads("schedstat")
    try:
        last = None
        for _ in range(1000):
            stat = read_stat(pid)
            now = reader.read(pid, 1)
            if stat is not None and stat.state == "S" and now == last:
                return
            last = now
            time.sleep(0.01)
    finally:
        reader.close()
    raise AssertionError(f"process {pid} never settled")


class ReadSpy:
    """Records the pids whose stat the collector reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pids: list[int] = []
        real = processes_module.read_stat

        def spy(pid: int, proc: str = "/proc"):  # type: ignore[no-untyped-def]
            self.pids.append(pid)
            return real(pid, proc)

        monkeypatch.setattr(processes_module, "read_stat", spy)


def row_of(rows: dict, pid: int) -> ProcessRow | None:  # type: ignore[type-arg]
    return next((r for r in rows.values() if r.pid == pid), None)


def test_a_process_that_did_not_run_is_not_read_again_one_that_ran_is(
        monkeypatch: pytest.MonkeyPatch) -> None:
    spy = ReadSpy(monkeypatch)
    collector = ProcessCollector(stat_refresh_ticks=NEVER, identity_refresh_ticks=NEVER)
    try:
        with child(GROWER) as proc:
            wait_blocked(proc.pid)
            first = row_of(collector.sample(), proc.pid)
            assert first is not None and proc.pid in spy.pids
            spy.pids.clear()
            second = row_of(collector.sample(), proc.pid)
            assert proc.pid not in spy.pids  # asleep since: not read
            assert second is not None and second.cpu_percent == 0.0
            assert second.memory_rss == first.memory_rss
            third = row_of(collector.sample(), proc.pid)
            assert third is second  # the very same row: nothing downstream redoes it
            assert proc.pid not in spy.pids

            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("grow\n")
            proc.stdin.flush()
            assert proc.stdout.readline() == "grown\n"
            wait_blocked(proc.pid)
            grown = row_of(collector.sample(), proc.pid)
            assert proc.pid in spy.pids  # it ran: read again
            assert grown is not None and grown.memory_rss >= first.memory_rss + (30 << 20)
            assert grown.cpu_percent is not None
    finally:
        collector.close()


# Maps a 16 MiB file and reads every page (resident), prints the mapping's address, then
# blocks: its memory can now only change from outside.
MAPPER = ("import mmap, sys, tempfile\n"
          "f = tempfile.TemporaryFile()\nf.truncate(16 << 20)\n"
          "m = mmap.mmap(f.fileno(), 16 << 20, mmap.MAP_PRIVATE, mmap.PROT_READ)\n"
          "sum(m[i] for i in range(0, 16 << 20, 4096))\n"
          "print('ready', flush=True)\nsys.stdin.read()\n")
SYS_PROCESS_MADVISE = 440  # x86_64
MADV_PAGEOUT = 21


class ResidentSpy:
    """Records the pids whose statm alone the collector reads."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.pids: list[int] = []
        real = processes_module.read_resident

        def spy(pid: int, proc: str = "/proc") -> int | None:
            self.pids.append(pid)
            return real(pid, proc)

        monkeypatch.setattr(processes_module, "read_resident", spy)


def file_mapping(pid: int, size: int) -> int:
    """Start address of the process's mapping of `size` bytes of a deleted temporary file."""
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        span = line.split(maxsplit=1)[0]
        low, high = (int(x, 16) for x in span.split("-"))
        if high - low == size and line.endswith("(deleted)"):
            return low
    raise AssertionError("mapping not found")


def page_out(pid: int, address: int, size: int) -> None:
    """process_madvise(MADV_PAGEOUT): the kernel drops the pages of a process that sleeps."""
    libc = ctypes.CDLL(None, use_errno=True)
    iov = (ctypes.c_size_t * 2)(address, size)
    pidfd = os.pidfd_open(pid)
    try:
        done = libc.syscall(SYS_PROCESS_MADVISE, pidfd, ctypes.byref(iov), 1, MADV_PAGEOUT, 0)
        require(done == size, f"process_madvise: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pidfd)


@pytest.mark.kernel
def test_memory_that_shrinks_while_the_process_sleeps_shows_on_the_rotation(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory can change without the process running (here: the kernel pages its file pages out
    on another process's request): a sleeping process's statm is read at least every
    `stat_refresh_ticks` ticks, and its stat is not (nothing else of it can change)."""
    require_root()
    stats, residents = ReadSpy(monkeypatch), ResidentSpy(monkeypatch)
    collector = ProcessCollector(stat_refresh_ticks=3, identity_refresh_ticks=NEVER)
    size = 16 << 20
    try:
        with child(MAPPER) as proc:
            assert proc.stdout is not None and proc.stdout.readline()
            wait_blocked(proc.pid)
            before = row_of(collector.sample(), proc.pid)
            assert before is not None and before.memory_rss >= size
            page_out(proc.pid, file_mapping(proc.pid, size), size)
            stats.pids.clear()
            for _ in range(3):
                after = row_of(collector.sample(), proc.pid)
            assert residents.pids.count(proc.pid) == 1 and proc.pid not in stats.pids
            assert after is not None and after.memory_rss <= before.memory_rss - size // 2
            assert after.memory_rss == int(Path(f"/proc/{proc.pid}/statm").read_text()
                                            .split()[1]) * os.sysconf("SC_PAGE_SIZE")
    finally:
        collector.close()


# Forks a child that sleeps, prints the child's pid, then exits when told: the child is given
# to a reaper (ppid 1 or a subreaper) without running.
ORPHANER = ("import os, sys, time\npid = os.fork()\n"
            "if pid == 0:\n    os.close(0)\n    time.sleep(60)\n    os._exit(0)\n"
            "print(pid, flush=True)\nsys.stdin.readline()\n")


def test_a_sleeping_child_whose_parent_exits_gets_its_new_parent_at_the_next_tick() -> None:
    collector = ProcessCollector(stat_refresh_ticks=NEVER, identity_refresh_ticks=NEVER)
    try:
        with child(ORPHANER) as proc:
            assert proc.stdout is not None
            orphan = int(proc.stdout.readline())
            try:
                wait_blocked(orphan)
                row = row_of(collector.sample(), orphan)
                assert row is not None and row.ppid == proc.pid
                assert proc.stdin is not None
                proc.stdin.write("exit\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
                collector.sample()  # the parent is gone
                row = row_of(collector.sample(), orphan)
                stat = read_stat(orphan)
                assert stat is not None and stat.ppid != proc.pid
                assert row is not None and row.ppid == stat.ppid
            finally:
                os.kill(orphan, 9)
    finally:
        collector.close()


def test_a_new_process_appears_and_an_exited_one_leaves_with_its_fd() -> None:
    collector = ProcessCollector()
    try:
        collector.sample()
        proc = subprocess.Popen(["sleep", "30"])
        try:
            rows = collector.sample()
            assert row_of(rows, proc.pid) is not None
            # its schedstat is held open (room allowing: the limit left by FD_RESERVE)
            assert proc.pid in collector._sched or held_fd_budget() == 0
        finally:
            proc.kill()
            proc.wait(timeout=10)
        rows = collector.sample()
        assert row_of(rows, proc.pid) is None
        assert proc.pid not in collector._sched  # and closed
        assert proc.pid not in collector._tracked
    finally:
        collector.close()


def test_a_comm_change_by_exec_is_seen_without_process_events() -> None:
    collector = ProcessCollector(process_events=False, identity_refresh_ticks=NEVER)
    try:
        with child("import os, sys\nsys.stdin.readline()\n"
                   "os.execvp('sleep', ['sleep', '30'])\n") as proc:
            wait_blocked(proc.pid)
            before = row_of(collector.sample(), proc.pid)
            assert before is not None and before.cmdline[0] == sys.executable
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            for _ in range(500):
                after = row_of(collector.sample(), proc.pid)
                if after is not None and after.name == "sleep":
                    break
                time.sleep(0.01)
            assert after is not None and after.cmdline == ("sleep", "30")
            assert after.key == before.key  # exec keeps the process
    finally:
        collector.close()


@pytest.mark.kernel
def test_an_exec_keeping_the_name_gets_its_new_command_line_from_process_events() -> None:
    """Same comm before and after: only the kernel's exec event tells."""
    require_root()
    collector = ProcessCollector(stat_refresh_ticks=NEVER, identity_refresh_ticks=NEVER)
    try:
        assert collector.events_note() == ""
        with child(EXECER) as proc:
            wait_blocked(proc.pid)
            before = row_of(collector.sample(), proc.pid)
            assert before is not None and "after-exec-marker" not in before.cmdline
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            for _ in range(500):
                after = row_of(collector.sample(), proc.pid)
                if after is not None and "after-exec-marker" in after.cmdline:
                    break
                time.sleep(0.01)
            assert after is not None and after.cmdline[-1] == "after-exec-marker"
            assert after.name == before.name and after.key == before.key
    finally:
        collector.close()


def test_without_process_events_the_same_exec_shows_on_the_rotation() -> None:
    """The fallback when the connector is not there (no root): the identity of a process that
    ran is read again on the rotation."""
    collector = ProcessCollector(process_events=False, stat_refresh_ticks=NEVER,
                                 identity_refresh_ticks=2)
    try:
        with child(EXECER) as proc:
            wait_blocked(proc.pid)
            collector.sample()
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            seen = False
            for _ in range(500):
                row = row_of(collector.sample(), proc.pid)
                if row is not None and "after-exec-marker" in row.cmdline:
                    seen = True
                    break
                time.sleep(0.01)
            assert seen
    finally:
        collector.close()


def test_a_held_fd_of_an_exited_process_reads_nothing_then_the_path_afresh() -> None:
    reader = HeldReads("schedstat")
    try:
        proc = subprocess.Popen(["sleep", "30"])
        assert reader.read(proc.pid, 10) is not None and len(reader) == 1
        proc.kill()
        proc.wait(timeout=10)
        assert reader.read(proc.pid, 10) is None  # bound to the dead process, never the pid's
        assert len(reader) == 0
    finally:
        reader.close()


def test_held_fds_stay_within_the_limit() -> None:
    reader = HeldReads("schedstat")
    procs = [subprocess.Popen(["sleep", "30"]) for _ in range(3)]
    try:
        assert all(reader.read(p.pid, 2) is not None for p in procs)
        assert len(reader) == 2  # the third was read, then closed
    finally:
        reader.close()
        for p in procs:
            p.kill()
            p.wait(timeout=10)


def test_a_process_whose_main_thread_exited_is_read_every_tick(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """One thread left, but not the main one whose schedstat is watched: a worker burning CPU
    behind a dead main thread must not show 0% (the hole a program could hide in)."""
    require(shutil.which("gcc") is not None, "gcc not installed")
    binary = tmp_path / "leader_exit"
    subprocess.run(["gcc", "-O1", "-pthread", "-o", str(binary), str(LEADER_EXIT)], check=True)
    spy = ReadSpy(monkeypatch)
    collector = ProcessCollector(stat_refresh_ticks=NEVER, identity_refresh_ticks=NEVER)
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        collector.sample()  # main thread already a zombie: state Z, one thread
        collector.sample()
        spy.pids.clear()
        assert proc.stdin is not None
        proc.stdin.write("x")
        proc.stdin.flush()
        busy = None
        for _ in range(500):
            busy = row_of(collector.sample(), proc.pid)
            if busy is not None and busy.cpu_percent:
                break
            time.sleep(0.01)
        assert busy is not None and busy.cpu_percent and busy.cpu_percent > 0
        assert spy.pids.count(proc.pid) >= 1
    finally:
        proc.kill()
        proc.wait(timeout=10)
        collector.close()


class ListingSpy:
    """Counts the collector's listings of /proc."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = processes_module.list_pids

        def counting(proc: str = "/proc") -> list[int]:
            self.calls += 1
            return real(proc)

        monkeypatch.setattr(processes_module, "list_pids", counting)


@pytest.mark.kernel
def test_new_processes_come_from_fork_events_without_listing_proc(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As root, a tick walks the known pids and the ones the kernel reported forked: no
    getdents of 2,000 entries when nothing started."""
    require_root()
    listings = ListingSpy(monkeypatch)
    collector = ProcessCollector(stat_refresh_ticks=NEVER, identity_refresh_ticks=NEVER)
    try:
        collector.sample()
        assert listings.calls == 1 and collector.last.listing  # the first sample lists
        collector.sample()
        assert listings.calls == 1 and not collector.last.listing
        with child("import sys, threading\n"
                   "threading.Thread(target=sys.stdin.readline).start()\n"
                   "print('ready', flush=True)\nsys.stdin.readline()\n") as proc:
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            rows = collector.sample()
            found = row_of(rows, proc.pid)
            assert found is not None and found.threads == 2
            # the thread it started (a fork event too) is not a process of its own
            threads = thread_ids(proc.pid)
            assert len(threads) == 1 and not threads & {row.pid for row in rows.values()}
        rows = collector.sample()
        assert row_of(rows, proc.pid) is None  # exited: its held fd read ESRCH
        assert listings.calls == 1
    finally:
        collector.close()


def thread_ids(pid: int) -> set[int]:
    """The thread ids of a process but its main thread (empty once it is gone)."""
    try:
        return {int(t) for t in os.listdir(f"/proc/{pid}/task")} - {pid}
    except OSError:
        return set()


@pytest.mark.kernel
def test_lost_process_events_make_the_next_tick_list_proc(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A connector that overflowed (a fork storm filling its socket) may have lost a new
    process's event: /proc is listed, and the process is there."""
    require_root()
    listings = ListingSpy(monkeypatch)
    collector = ProcessCollector(stat_refresh_ticks=NEVER, identity_refresh_ticks=NEVER)
    try:
        collector.sample()
        assert collector._events is not None
        real_drain = collector._events.drain

        def overflowed(limit: int = 100_000) -> list[ProcEvent]:
            real_drain(limit)  # the events are gone, as in an overflow
            raise ProcEventsLost("process events were dropped")

        monkeypatch.setattr(collector._events, "drain", overflowed)
        proc = subprocess.Popen(["sleep", "30"])
        try:
            rows = collector.sample()
            assert collector.last.listing and listings.calls == 2
            assert row_of(rows, proc.pid) is not None
            assert collector.status().drops["process_events"] == 1
        finally:
            proc.kill()
            proc.wait(timeout=10)
    finally:
        collector.close()


def test_proc_is_listed_every_tick_without_process_events(
        monkeypatch: pytest.MonkeyPatch) -> None:
    listings = ListingSpy(monkeypatch)
    collector = ProcessCollector(process_events=False)
    try:
        for _ in range(3):
            collector.sample()
            assert collector.last.listing
        assert listings.calls == 3
    finally:
        collector.close()


def test_a_proc_without_the_initial_pid_namespace_is_not_taken_for_it(tmp_path: Path) -> None:
    """The connector's pids are the initial namespace's: only a /proc whose self/ns/pid is that
    namespace may be walked from its events (the collector lists any other every tick). Here:
    a directory with no ns/pid at all. The positive case is the fork-event test above, which
    lists nothing after the first sample on this machine's /proc."""
    assert not in_initial_pid_namespace(str(tmp_path))


def test_a_process_that_ran_gets_its_identity_on_its_turn_even_asleep_by_then() -> None:
    """It ran (an exec keeping its comm, no connector to tell) and fell asleep before its turn
    of the identity rotation: the turn still reads it."""
    collector = ProcessCollector(process_events=False, stat_refresh_ticks=NEVER,
                                 identity_refresh_ticks=3)
    try:
        with child(EXECER) as proc:
            wait_blocked(proc.pid)
            collector.sample()
            while (proc.pid + collector._tick + 1) % 3 == 0:
                collector.sample()  # the next sample is not its turn
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            for _ in range(1000):
                if b"after-exec-marker" in Path(f"/proc/{proc.pid}/cmdline").read_bytes():
                    break
                time.sleep(0.01)
            wait_blocked(proc.pid)
            row = row_of(collector.sample(), proc.pid)
            assert row is not None and "after-exec-marker" not in row.cmdline  # not its turn
            for _ in range(3):
                row = row_of(collector.sample(), proc.pid)
            assert row is not None and "after-exec-marker" in row.cmdline
    finally:
        collector.close()


def test_an_empty_command_line_is_read_once_more(monkeypatch: pytest.MonkeyPatch) -> None:
    """Read in the middle of an exec, a command line is empty (the new comm and executable come
    first): read again at the next tick, once (a process that emptied it stays empty)."""
    collector = ProcessCollector(process_events=False, stat_refresh_ticks=NEVER,
                                 identity_refresh_ticks=NEVER)
    real = processes_module.read_identity
    reads: dict[int, int] = {}
    with child("import sys\nsys.stdin.read()\n") as midway, \
            child("import sys\nsys.stdin.read()\n") as emptied:
        targets = {midway.pid, emptied.pid}

        def spy(pid: int, comm: str, proc: str = "/proc") -> Identity | None:
            identity = real(pid, comm, proc)
            if pid not in targets or identity is None:
                return identity
            reads[pid] = reads.get(pid, 0) + 1
            if pid == emptied.pid or reads[pid] == 1:
                return Identity(identity.comm, identity.user, identity.exe, ())
            return identity

        monkeypatch.setattr(processes_module, "read_identity", spy)
        try:
            wait_blocked(midway.pid)
            wait_blocked(emptied.pid)
            rows = collector.sample()
            assert row_of(rows, midway.pid).cmdline == ()  # type: ignore[union-attr]
            for _ in range(3):
                rows = collector.sample()
            assert row_of(rows, midway.pid).cmdline[1:] == (  # type: ignore[union-attr]
                "-c", "import sys\nsys.stdin.read()\n")
            assert row_of(rows, emptied.pid).cmdline == ()  # type: ignore[union-attr]
            assert reads == {midway.pid: 2, emptied.pid: 2}
        finally:
            collector.close()
