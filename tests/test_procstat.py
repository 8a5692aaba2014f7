from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from fluxtui.collectors.processes import ProcessCollector
from fluxtui.collectors.procstat import parse_stat, read_start_ticks, read_stat

SAMPLE = (b"4242 (we(ird) )name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 "
          b"123456 10000000 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n")


def test_parse_stat_handles_parentheses_and_spaces_in_comm() -> None:
    stat = parse_stat(4242, SAMPLE, b"700 600 100 5 0 90 0\n")
    assert stat.comm == "we(ird) )name"
    assert stat.state == "S"
    assert stat.ppid == 1
    assert stat.threads == 3
    assert stat.start_ticks == 123456
    assert stat.cpu_seconds == pytest.approx(300 / os.sysconf("SC_CLK_TCK"))
    assert stat.rss_bytes == 600 * os.sysconf("SC_PAGE_SIZE")
    assert parse_stat(4242, SAMPLE).rss_bytes == 512 * os.sysconf("SC_PAGE_SIZE")


def wait_sleeping(pid: int) -> None:
    """Until the child has exec'd and sleeps (bounded): its memory is settled then."""
    for _ in range(500):
        stat = read_stat(pid)
        if stat is not None and stat.comm == "sleep" and stat.state == "S":
            return
        time.sleep(0.01)
    raise AssertionError("child never went to sleep")


def test_fields_match_psutil_for_a_live_child() -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        wait_sleeping(child.pid)
        ps = psutil.Process(child.pid)
        stat = read_stat(child.pid)
        assert stat is not None
        assert stat.ppid == ps.ppid() == os.getpid()
        assert stat.comm == ps.name() == "sleep"
        assert stat.threads == ps.num_threads()
        assert stat.rss_bytes == ps.memory_info().rss
        boot = psutil.boot_time()
        assert stat.start_ticks == round((ps.create_time() - boot) * os.sysconf("SC_CLK_TCK"))
        assert read_start_ticks(child.pid) == stat.start_ticks
    finally:
        child.kill()
        child.wait(timeout=10)


def test_gone_process_reads_as_none() -> None:
    child = subprocess.Popen(["true"])
    child.wait(timeout=10)
    assert read_stat(child.pid) is None or read_stat(child.pid).state in ("Z", "X")
    assert read_stat(2**22 + 7) is None


def test_collector_cpu_percent_from_deltas_and_identity(tmp_path: Path) -> None:
    # The interpreter itself, not a `python3` found on PATH that may be a wrapper script
    # (pyenv's shim execs a chain of shells first): the identity read must be the burner's.
    burner = subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\n"
                               "while time.time()-t<5: pass"])
    try:
        collector = ProcessCollector()
        first = collector.sample()
        mine = next(r for r in first.values() if r.pid == burner.pid)
        assert mine.cpu_percent is None  # one sample cannot give a rate
        time.sleep(0.5)
        second = collector.sample()
        mine = next(r for r in second.values() if r.pid == burner.pid)
        assert mine.cpu_percent is not None and mine.cpu_percent > 0.0
        assert mine.user == psutil.Process(burner.pid).username()
        assert mine.exe == psutil.Process(burner.pid).exe()
        assert mine.cmdline[0] == sys.executable and "time.time()" in mine.cmdline[-1]
    finally:
        burner.kill()
        burner.wait(timeout=10)


def test_exited_processes_leave_the_table_and_the_caches() -> None:
    child = subprocess.Popen(["sleep", "30"])
    collector = ProcessCollector()
    assert any(r.pid == child.pid for r in collector.sample().values())
    child.kill()
    child.wait(timeout=10)
    rows = collector.sample()
    assert all(r.pid != child.pid for r in rows.values())
    assert child.pid not in collector._tracked


def test_long_names_use_the_executable_name(tmp_path: Path) -> None:
    long_name = tmp_path / "a-very-long-program-name"
    shutil.copy("/bin/sleep", long_name)
    child = subprocess.Popen([str(long_name), "30"])
    try:
        rows = ProcessCollector().sample()
        mine = next(r for r in rows.values() if r.pid == child.pid)
        assert mine.name == "a-very-long-program-name"
    finally:
        child.kill()
        child.wait(timeout=10)


def test_identity_only_reads_need_stat_alone(tmp_path: Path) -> None:
    """Socket ownership and start ticks read /proc/PID/stat only (one read, not two)."""
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_bytes(SAMPLE)
    assert read_stat(4242, str(tmp_path)) is None  # no statm: the full read fails
    stat = read_stat(4242, str(tmp_path), memory=False)
    assert stat is not None and stat.comm == "we(ird) )name" and stat.start_ticks == 123456
    assert read_start_ticks(4242, str(tmp_path)) == 123456
