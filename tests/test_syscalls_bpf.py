"""Syscall capture on the real kernel: exact counts (checked against strace), the tagged alerts
of the ptrace, /tmp, memfd, uid and module workloads, an idle sleep that stays quiet, state freed
on exit, and drops that are counted instead of lost. Also, without root: the ctypes mirrors of
bpf_programs/fluxtui_events.h against gcc's layout, event decoding, and the BTF reader.

The BPF program is compiled once for the module (an engine with the two components, ticked by
the tests). Workloads are C programs under tests/workloads, compiled with gcc into a tmp dir.
"""

from __future__ import annotations

import ctypes as ct
import json
import os
import platform
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture, SyscallView
from fluxtui.collectors import bpf_structs as bs
from fluxtui.collectors import btf as kbtf
from fluxtui.collectors import event_decoder as dec
from fluxtui.collectors import kernel_event as ke
from fluxtui.collectors import syscall_table as st
from fluxtui.collectors import syscalls as sc
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.config import Config
from fluxtui.ecs import document
from fluxtui.engine import Engine
from fluxtui.events import Alert, ProcessExit, ProcessKey, Severity, Snapshot
from tests.kernel import require, require_bcc

HERE = Path(__file__).parent
WORKLOADS = HERE / "workloads"
HEADER = HERE.parent / "fluxtui" / "collectors" / "bpf_programs" / "fluxtui_events.h"
N_GETPPID, M_SCHED_YIELD = 5000, 321
MAX_TICKS = 60  # every wait below is bounded by this many ticks (0.05 s apart)

# --- layout and decoding (gcc, no root) ------------------------------------------------------

MIRRORS = {"fx_config": bs.Config, "fx_count_key": bs.CountKey, "fx_header": bs.Header,
           "fx_syscall_event": bs.SyscallEventC, "fx_exec_event": bs.ExecEventC,
           "fx_connect_event": bs.ConnectEventC, "fx_connect_process": bs.ConnectProcessC}
DEFINES = ["FX_MAX_NR", "FX_NR_OTHER", "FX_NR_START", "FX_COMM_LEN", "FX_STR_LEN",
           "FX_FILENAME_LEN", "FX_MAX_ARGS", "FX_ARG_LEN", "FX_PATH_PARTS", "FX_PART_LEN",
           "FX_EXEC_DATA_LEN",
           "FX_EV_SYSCALL", "FX_EV_EXEC", "FX_EV_EXIT", "FX_EV_CRED", "FX_CAP_EVENT",
           "FX_CAP_EXEC", "FX_CAP_CRED", "FX_CAP_CAPSET", "FX_CAP_PTRACE", "FX_CAP_BPF",
           "FX_CAP_OPEN_PROC",
           "FX_DROP_SLOTS", "FX_RETRIED", "FX_EXEC_NO_ARGV",
           "FX_EXEC_ARGV_TRUNCATED", "FX_EXEC_PATH_TRUNCATED", "FX_EXEC_NAME_TRUNCATED",
           "FX_EXEC_ANON_FILE", "FX_EXEC_STDIO_INET", "FX_CONN_ATTEMPT", "FX_CONN_ESTABLISHED",
           "FX_CONN_FAILED",
           "FX_CONN_PROCESS"]


def test_header_layout_matches_the_ctypes_mirrors(tmp_path: Path) -> None:
    require(shutil.which("gcc") is not None, "gcc not installed")
    lines = ["#include <stdio.h>", "#include <stddef.h>", f'#include "{HEADER}"',
             "int main(void) {"]
    expected = []
    for cname, mirror in MIRRORS.items():
        lines.append(f'printf("{cname} %zu\\n", sizeof(struct {cname}));')
        expected.append(f"{cname} {ct.sizeof(mirror)}")
        for field, _type in mirror._fields_:
            lines.append(f'printf("{cname}.{field} %zu %zu\\n", offsetof(struct {cname}, {field}),'
                         f" sizeof(((struct {cname} *)0)->{field}));")
            desc = getattr(mirror, field)
            expected.append(f"{cname}.{field} {desc.offset} {desc.size}")
    for name in DEFINES:
        lines.append(f'printf("{name} %lld\\n", (long long)({name}));')
        expected.append(f"{name} {getattr(bs, name)}")
    lines.append("return 0; }")
    source = tmp_path / "layout.c"
    source.write_text("\n".join(lines))
    subprocess.run(["gcc", "-o", str(tmp_path / "layout"), str(source)], check=True)
    out = subprocess.run([str(tmp_path / "layout")], check=True, capture_output=True, text=True)
    assert out.stdout.splitlines() == expected


def _table() -> st.SyscallTable:
    return st.SyscallTable({59: "execve", 101: "ptrace", 117: "setresuid", 165: "mount"})


def exec_record(fixed: bs.ExecFixedC, filename: bytes, argv: list[bytes], exe: list[bytes],
                parent_exe: tuple[bytes, ...] | list[bytes] = ()) -> bytes:
    """An exec record as the kernel sends it: the fixed part, argv rows, path rows, filename."""
    fixed.h.kind = bs.FX_EV_EXEC
    fixed.argc, fixed.exe_parts, fixed.parent_exe_parts = len(argv), len(exe), len(parent_exe)
    data = b"".join(arg.ljust(bs.FX_ARG_LEN, b"\0") for arg in argv)
    data += b"".join(part.ljust(bs.FX_PART_LEN, b"\0") for part in [*exe, *parent_exe])
    data += filename + b"\0"
    fixed.data_len = len(data)
    return bytes(fixed) + data


def test_the_exec_record_is_its_fixed_part_then_its_data() -> None:
    assert ct.sizeof(bs.ExecFixedC) == bs.ExecEventC.data.offset
    assert bs.ExecEventC.data.size == bs.FX_EXEC_DATA_LEN


def test_decode_exec_event() -> None:
    ev = bs.ExecFixedC()
    ev.h.boot_ns, ev.h.start_ticks, ev.h.tgid, ev.h.tid = 5_000_000_000, 777, 42, 43
    ev.h.uid, ev.h.gid, ev.h.nr, ev.h.comm = 1000, 100, -1, b"true"
    ev.ppid, ev.old_tid, ev.euid, ev.exec_nr = 41, 43, 0, 59
    ev.flags = bs.FX_EXEC_ARGV_TRUNCATED
    ev.parent_comm = b"bash"
    # leaf first; "" marks the crossing into the tmpfs mounted on /tmp
    raw = exec_record(ev, b"./true", [b"./true", b"--\x1b[31m"], [b"true", b"x", b"", b"tmp"],
                      [b"bash", b"bin", b"usr"])
    decoded = dec.decode_event(raw, _table(), to_wall=lambda ns: ns / 1e9)
    assert decoded == ke.KernelEvent(
        kind="exec", timestamp=5.0, key=ProcessKey(42, 777), tid=43, uid=1000, gid=100,
        comm="true", syscall="execve", nr=59, filename="./true", argv=("./true", "--\x1b[31m"),
        exe="/tmp/x/true", ppid=41, parent_comm="bash", euid=0, flags=("argv truncated",),
        parent_exe="/usr/bin/bash")
    assert decoded.name == "true"
    doc = json.loads(json.dumps(document(decoded)))
    assert doc["process"]["executable"] == "/tmp/x/true"
    assert doc["process"]["parent"] == {"pid": 41, "name": "bash", "executable": "/usr/bin/bash"}
    assert doc["process"]["user"] == {"id": "0"} and doc["process"]["real_user"] == {"id": "1000"}
    assert doc["event"]["action"] == "exec" and doc["event"]["type"] == ["start"]


def test_decode_a_truncated_path_never_invents_an_absolute_one() -> None:
    ev = bs.ExecFixedC()
    ev.h.tgid = 42
    long_name = b"n" * (bs.FX_PART_LEN - 1)  # what the kernel side keeps of a longer name
    parts = [long_name] + [b"d"] * (bs.FX_PATH_PARTS - 1)
    ev.flags = bs.FX_EXEC_PATH_TRUNCATED | bs.FX_EXEC_NAME_TRUNCATED
    ev.cut_parts = 1
    decoded = dec.decode_event(exec_record(ev, b"x", [], parts), _table(), to_wall=lambda ns: 0.0)
    assert decoded is not None
    leaf = long_name.decode() + "\u2026"
    assert decoded.exe == "\u2026/" + "d/" * (bs.FX_PATH_PARTS - 1) + leaf
    assert decoded.flags == ("path truncated", "name truncated")
    assert decoded.name == leaf
    ev.flags, ev.cut_parts = 0, 0  # a name of exactly 47 bytes is not cut
    assert dec.decode_event(exec_record(ev, b"x", [], parts[:2]), _table()).exe \
        == "/d/" + long_name.decode()


class _FakeProgram:
    def __init__(self) -> None:
        self.closed = False

    def close(self) -> None:
        self.closed = True


def test_close_does_not_unmap_the_program_under_a_running_pump() -> None:
    collector = sc.SyscallCollector(self_pid=1)
    collector.join_timeout_s = 0.01
    fake = _FakeProgram()
    release = threading.Event()
    poller = threading.Thread(target=release.wait, args=(10,), daemon=True)
    poller.start()
    collector._program, collector._poller = fake, poller  # type: ignore[assignment]
    try:
        collector.close()
        assert not fake.closed and not collector.running
        with pytest.raises(RuntimeError):
            collector.drain()
    finally:
        release.set()
        poller.join(timeout=10)
    stopped = sc.SyscallCollector(self_pid=1)
    stopped._program = fake  # type: ignore[assignment]
    stopped.close()
    assert fake.closed


def test_drop_counters_by_kind_are_numbers() -> None:
    drops = sc.DropCounts(counts=3, thread_state=1, events=5, queue=7, argv=2, malformed=1)
    assert drops.by_kind() == {"syscall_counts": 4, "kernel_events": 5, "event_queue": 7,
                               "argv": 2, "malformed_events": 1}


def test_compat_numbers_are_named_apart() -> None:
    table = st.SyscallTable({20: "writev"}, {20: "getpid"})
    assert table.name(20) == "writev"
    assert table.name(bs.FX_MAX_NR + 20) == "compat:getpid"
    assert table.name(bs.FX_MAX_NR + 999) == "compat:syscall_999"
    assert table.numbers == {"writev": 20} and table.compat_numbers == {"getpid": 20}


def test_decode_syscall_cred_and_exit_events() -> None:
    ev = bs.SyscallEventC()
    ev.h.tgid, ev.h.tid, ev.h.start_ticks, ev.h.kind, ev.h.nr = 42, 42, 777, bs.FX_EV_SYSCALL, 165
    ev.args[:] = [1, 2, 3, 0x20, 0, 0]
    ev.str[0].value, ev.str[1].value, ev.str[2].value = b"/dev/sda1", b"/mnt", b"ext4"
    decoded = dec.decode_event(bytes(ev), _table(), to_wall=lambda ns: 0.0)
    assert decoded is not None
    assert (decoded.kind, decoded.syscall) == ("syscall", "mount")
    assert decoded.args == (1, 2, 3, 32, 0, 0)
    assert decoded.strings == ("/dev/sda1", "/mnt", "ext4")
    assert decoded.describe() == "mount('/dev/sda1', '/mnt', type 'ext4', flags 0x20)"

    ev.h.kind, ev.h.nr = bs.FX_EV_CRED, 117
    ev.args[:] = [1000, 1000, 0, 1000, 0, 0]
    cred = dec.decode_event(bytes(ev), _table(), to_wall=lambda ns: 0.0)
    assert cred is not None and cred.kind == "cred"
    assert cred.describe() == "setresuid: uid 1000→0, gid 1000→1000"

    ev.h.kind = bs.FX_EV_EXIT  # an exit is its header only
    exit_event = dec.decode_event(bytes(ev.h), _table(), to_wall=lambda ns: 0.0)
    assert exit_event is not None and exit_event.kind == "exit" and exit_event.args == ()


def test_decode_rejects_short_or_unknown_records() -> None:
    raw = exec_record(bs.ExecFixedC(), b"/bin/true", [b"true"], [b"true", b"bin"])
    assert dec.decode_event(raw, _table()) is not None
    assert dec.decode_event(raw[:-1], _table()) is None  # its last string cut
    assert dec.decode_event(raw[:ct.sizeof(bs.ExecFixedC) - 1], _table()) is None
    fixed = bs.ExecFixedC.from_buffer_copy(raw)
    fixed.argc = 5  # more rows counted than sent
    assert dec.decode_event(bytes(fixed) + raw[ct.sizeof(fixed):], _table()) is None
    assert dec.decode_event(b"\0" * 8, _table()) is None
    other = bs.SyscallEventC()
    other.h.kind = 99
    assert dec.decode_event(bytes(other), _table()) is None


def _btf_blob() -> bytes:
    """int; enum e {X, Y}; typedef union {int b; struct {int pad; int d;} ;} u_t;
    struct outer {int a; u_t; }; struct bits {int e:3 at bit 64;} (kind_flag encoding)."""
    strings = b"\0int\0e\0X\0Y\0u_t\0outer\0a\0b\0d\0bits\0e2\0pad\0"

    def s(name: str) -> int:
        return strings.index(name.encode() + b"\0")

    def t(name_off: int, kind: int, vlen: int, size: int, kind_flag: int = 0) -> bytes:
        return struct.pack("<III", name_off, kind_flag << 31 | kind << 24 | vlen, size)

    def m(name_off: int, type_id: int, bits: int) -> bytes:
        return struct.pack("<III", name_off, type_id, bits)

    types = b"".join([
        t(s("int"), 1, 0, 4) + struct.pack("<I", 32),  # 1: int
        t(s("e"), 6, 2, 4) + struct.pack("<iIiI", s("X"), 0, s("Y"), 1),  # 2: enum
        t(0, 4, 2, 8) + m(s("pad"), 1, 0) + m(s("d"), 1, 32),  # 3: anonymous struct
        t(0, 5, 2, 8) + m(s("b"), 1, 0) + m(0, 3, 0),  # 4: anonymous union
        t(s("u_t"), 8, 0, 4),  # 5: typedef u_t -> 4
        t(s("outer"), 4, 2, 16) + m(s("a"), 1, 0) + m(0, 5, 64),  # 6: struct outer
        t(s("bits"), 4, 1, 16, kind_flag=1) + m(s("e2"), 1, 3 << 24 | 64),  # 7: struct bits
    ])
    header = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings))
    return header + types + strings


def test_btf_reader_finds_members_through_anonymous_unions_and_typedefs() -> None:
    btf = kbtf.Btf(_btf_blob())
    assert btf.member_offset("outer", "a") == 0
    assert btf.member_offset("outer", "b") == 8
    assert btf.member_offset("outer", "d") == 12
    assert btf.member_offset("bits", "e2") == 8
    with pytest.raises(KeyError):
        btf.member_offset("outer", "missing")
    with pytest.raises(KeyError):
        btf.struct_id("absent")
    with pytest.raises(ValueError):
        kbtf.Btf(b"\0" * 24)


def test_running_kernel_btf_has_every_member_the_program_reads() -> None:
    require(kbtf.BTF_PATH.exists(), f"no kernel BTF at {kbtf.BTF_PATH}")
    offsets = kbtf.kernel_offsets(kbtf.Btf.load())
    assert set(offsets) == set(kbtf.BTF_MEMBERS) | {"task_thread_status", "compat_mask",
                                                    "sock_family"}
    if platform.machine() == "x86_64":  # thread_info is the first member of task_struct
        assert offsets["compat_mask"] == kbtf.TS_COMPAT and offsets["task_thread_status"] > 0
    assert offsets["path_mnt"] == 0 and offsets["path_dentry"] == 8  # struct path {mnt; dentry}


# --- the real kernel -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require(shutil.which("gcc") is not None, "gcc not installed")
    out = tmp_path_factory.mktemp("workloads")
    built = {}
    for source in sorted(WORKLOADS.glob("*.c")):
        binary = out / source.stem
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(source)], check=True)
        built[source.stem] = str(binary)
    return built


@pytest.fixture(scope="module")
def engine() -> Iterator[Engine]:
    require_bcc()
    config = Config()
    engine = Engine(config, [SyscallCapture(config), RiskScorer(config)])
    try:
        snapshot = engine.start_sync()
        status = next(s for s in snapshot.statuses if s.name == "syscalls")
        require(status.running, f"syscall capture unavailable: {status.reason}")
        yield engine
    finally:
        engine.stop()


class Ticker:
    """Ticks the engine and keeps what the tests look at: counts per process summed over the
    ticks, events from the bus, exits, the last snapshot."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: dict[ProcessKey, dict[str, int]] = {}
        self.bigrams: dict[ProcessKey, dict[tuple[str, str], int]] = {}
        self.events: list[ke.KernelEvent] = []
        self.exited: set[ProcessKey] = set()
        self.snapshot: Snapshot | None = None
        engine.bus.subscribe(self._on_bus)

    def _on_bus(self, obj: object) -> None:
        if isinstance(obj, ke.KernelEvent):
            self.events.append(obj)

    def tick(self) -> Snapshot:
        snapshot = self.engine.tick()
        view = snapshot.views.get("syscalls")
        assert isinstance(view, SyscallView)
        for key, named in view.counts.items():
            mine = self.counts.setdefault(key, {})
            for name, n in named.items():
                mine[name] = mine.get(name, 0) + n
        for key, pairs in view.bigrams.items():
            mine2 = self.bigrams.setdefault(key, {})
            for pair, n in pairs.items():
                mine2[pair] = mine2.get(pair, 0) + n
        self.exited.update(view.exited)
        self.snapshot = snapshot
        return snapshot

    def until(self, condition: Callable[[Snapshot], bool]) -> Snapshot:
        for _ in range(MAX_TICKS):
            snapshot = self.tick()
            if condition(snapshot):
                return snapshot
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {MAX_TICKS} ticks")

    def until_exited(self, key: ProcessKey) -> None:
        self.until(lambda _: key in self.exited)
        self.tick()  # a run flushed at exit may land in the map drained by the next tick

    def alerts(self, pid: int, technique: str) -> list[Alert]:
        assert self.snapshot is not None
        return [a for a in self.snapshot.alerts
                if a.key is not None and a.key.pid == pid and a.technique_id == technique]


def _capture(engine: Engine) -> SyscallCapture:
    component = engine.component("syscalls")
    assert isinstance(component, SyscallCapture)
    return component


def _scorer(engine: Engine) -> RiskScorer:
    component = engine.component("risk")
    assert isinstance(component, RiskScorer)
    return component


def _strace_counts(argv: list[str], stdin: bytes, tmp_path: Path) -> dict[str, int]:
    out = tmp_path / "strace.txt"
    subprocess.run(["strace", "-f", "-c", "-o", str(out), "--", *argv], input=stdin, check=True,
                   timeout=60)
    counts: dict[str, int] = {}
    for line in out.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 5 and fields[0][0].isdigit() and fields[-1] != "total":
            counts[fields[-1]] = int(fields[3])
    return counts


def test_counts_are_exact_and_match_strace(engine: Engine, binaries: dict[str, str],
                                           tmp_path: Path) -> None:
    require(shutil.which("strace") is not None, "strace not installed")
    ticker = Ticker(engine)
    argv = [binaries["count_syscalls"], str(N_GETPPID), str(M_SCHED_YIELD)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE)
    try:
        start = read_start_ticks(proc.pid)  # the workload waits on stdin: still alive
        assert start is not None
        key = ProcessKey(proc.pid, start)
        assert proc.stdin is not None
        proc.stdin.write(b"x")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    ticker.until_exited(key)

    # BPF's identity for the process equals /proc's (pid + start time in clock ticks).
    assert [k for k in ticker.counts if k.pid == proc.pid] == [key]
    counts = ticker.counts[key]
    assert counts["getppid"] == N_GETPPID
    assert counts["sched_yield"] == M_SCHED_YIELD
    assert counts["exit_group"] == 1
    pairs = ticker.bigrams[key]
    assert pairs[("getppid", "getppid")] == N_GETPPID - 1
    assert pairs[("getppid", "sched_yield")] == 1
    assert pairs[("sched_yield", "sched_yield")] == M_SCHED_YIELD - 1
    assert pairs[("sched_yield", "exit_group")] == 1
    assert sum(n for (_, b), n in pairs.items() if b == "getppid") == N_GETPPID

    traced = _strace_counts(argv, b"x", tmp_path)
    assert traced["getppid"] == counts["getppid"]
    assert traced["sched_yield"] == counts["sched_yield"]
    assert os.getpid() not in {k.pid for k in ticker.counts}  # fluxtui does not trace itself

    # strace made thousands of ptrace calls: all counted, but only the attach is an event.
    def strace_ptrace() -> list[ke.KernelEvent]:
        return [e for e in ticker.events if e.comm == "strace" and e.syscall == "ptrace"]
    ticker.until(lambda _: bool(strace_ptrace()))
    assert {e.args[0] for e in strace_ptrace()} <= {0x4206, 16, 0}  # SEIZE, ATTACH, TRACEME
    strace_calls = sum(named.get("ptrace", 0) for k, named in ticker.counts.items()
                       if k.pid != proc.pid and k in {e.key for e in strace_ptrace()})
    assert strace_calls > 2 * (N_GETPPID + M_SCHED_YIELD)


def test_ptrace_attach_raises_the_tagged_alert_and_state_goes_with_exit(
        engine: Engine, binaries: dict[str, str]) -> None:
    ticker = Ticker(engine)
    tracer = subprocess.Popen([binaries["ptrace_attach"]], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE)
    try:
        assert tracer.stdout is not None and tracer.stdin is not None
        line = tracer.stdout.readline().decode()
        assert line.startswith("attached "), line
        target = int(line.split()[1])
        key = ProcessKey(tracer.pid, read_start_ticks(tracer.pid) or -1)
        snapshot = ticker.until(lambda s: bool(ticker.alerts(tracer.pid, "T1055.008")))
        alert = ticker.alerts(tracer.pid, "T1055.008")[0]
        assert alert.key == key and alert.rule_id == "syscalls.ptrace_attach"
        assert alert.reasons == (f"PTRACE_ATTACH of pid {target}",)
        doc = json.loads(json.dumps(document(alert)))
        assert doc["event"]["kind"] == "alert"
        assert doc["threat"]["technique"]["id"] == ["T1055.008"]

        row = ticker.until(lambda s: key in s.processes).processes[key]
        assert row.risk is not None and row.risk >= 40
        assert any(r.startswith(f"PTRACE_ATTACH of pid {target}") for r in row.risk_reasons)
        assert row.syscalls_per_s is not None
        events = _capture(engine).recent_events(key)
        assert any(e.syscall == "ptrace" and e.args[:2] == (16, target) for e in events)
        assert any(e.kind == "exec" and e.key == key for e in events)  # BPF key == /proc key
        assert snapshot.processes.get(ProcessKey(target, read_start_ticks(target) or -1))
        published = [e for e in ticker.events if e.key == key]
        assert {document(e)["event"]["kind"] for e in published} == {"event"}
    finally:
        if tracer.stdin is not None:
            tracer.stdin.close()
        tracer.wait(timeout=10)
    ticker.until_exited(key)
    assert _capture(engine).recent_events(key) == ()
    assert key not in _scorer(engine).model


def test_exec_tmp_judges_every_directory_of_the_path(engine: Engine) -> None:
    """Must alert: a file directly in /tmp, and one in a directory of another user below it
    (run by root: a planted binary); both were written just before they ran (their ctime), so
    high: dropped and run. Must not: root's fresh build in a root-owned 0700 directory under
    /tmp (mkdtemp's)."""
    ticker = Ticker(engine)
    workdir = tempfile.mkdtemp(prefix="fluxtui-exec-", dir="/tmp")  # root, 0700
    direct = os.path.join("/tmp", f"fluxtui-direct-{os.getpid()}")
    planted = tempfile.mkdtemp(prefix="fluxtui-planted-", dir="/tmp")
    try:
        copied = os.path.realpath(shutil.copy("/bin/true", os.path.join(workdir, "true")))
        shutil.copy("/bin/true", direct)
        foreign = shutil.copy("/bin/true", os.path.join(planted, "true"))
        os.chown(planted, 65534, 65534)
        os.chown(foreign, 65534, 65534)
        runs = {name: subprocess.Popen(argv, cwd=cwd) for name, argv, cwd in (
            ("root_build", [copied], None), ("root_build_relative", ["./true"], workdir),
            ("direct", [direct], None), ("planted", [foreign], None))}
        for run in runs.values():
            assert run.wait(timeout=10) == 0
        for name in ("direct", "planted"):
            pid = runs[name].pid
            ticker.until(lambda s, pid=pid: bool(ticker.alerts(pid, "T1059")))
            alert = ticker.alerts(pid, "T1059")[0]
            assert alert.rule_id == "syscalls.exec_tmp" and alert.severity.value == "high"
            assert "s before it ran" in alert.reasons[0]
        assert "directly in world-writable /tmp" in ticker.alerts(runs["direct"].pid,
                                                                  "T1059")[0].reasons[0]
        assert "owned by uid 65534" in ticker.alerts(runs["planted"].pid, "T1059")[0].reasons[0]
        quiet = {runs["root_build"].pid, runs["root_build_relative"].pid}
        ticker.until(lambda s: all(any(e.kind == "exec" and e.key.pid == pid
                                       for e in ticker.events) for pid in quiet))
        ticker.tick()
        assert [a for a in ticker.snapshot.alerts if a.key is not None and a.key.pid in quiet
                and a.rule_id == "syscalls.exec_tmp"] == []
        execs = [e for e in ticker.events
                 if e.kind == "exec" and e.key.pid == runs["root_build_relative"].pid]
        assert execs[0].exe == copied and execs[0].filename == "./true"
    finally:
        shutil.rmtree(workdir)
        shutil.rmtree(planted)
        os.unlink(direct)


def test_idle_sleep_raises_nothing(engine: Engine) -> None:
    ticker = Ticker(engine)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        key = ProcessKey(sleeper.pid, read_start_ticks(sleeper.pid) or -1)
        for _ in range(5):
            snapshot = ticker.tick()
            assert [a for a in snapshot.alerts if a.key == key] == []
            time.sleep(0.1)
        ticker.until(lambda s: any(e.key == key and e.kind == "exec" for e in ticker.events))
        snapshot = ticker.until(lambda s: key in s.processes)
        assert [a for a in snapshot.alerts if a.key == key] == []
        risk = snapshot.processes[key].risk
        assert risk is not None and risk < engine.config.risk.risk_threshold
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.parametrize("workload,technique,rule", [
    ("memfd_exec", "T1620", "syscalls.exec_memfd"),
    ("uid_change", "T1548.001", "syscalls.uid_root"),
    ("module_attempt", "T1547.006", "syscalls.module_load"),
    ("vm_write", "T1055", "syscalls.process_vm_write"),
])
def test_workload_raises_its_tagged_alert(engine: Engine, binaries: dict[str, str],
                                          workload: str, technique: str, rule: str) -> None:
    ticker = Ticker(engine)
    proc = subprocess.run([binaries[workload]], timeout=30)
    assert proc.returncode == 0
    # subprocess.run hides the pid: find the workload's own exec event.
    ticker.until(lambda s: any(e.kind == "exec" and e.exe == binaries[workload]
                               for e in ticker.events))
    pid = next(e.key.pid for e in ticker.events
               if e.kind == "exec" and e.exe == binaries[workload])
    ticker.until(lambda s: bool(ticker.alerts(pid, technique)))
    assert ticker.alerts(pid, technique)[0].rule_id == rule


RENAMED_PARENT = """
import ctypes, subprocess, sys
ctypes.CDLL(None).prctl(15, b"bash", 0, 0, 0)  # PR_SET_NAME: comm is now "bash"
sys.exit(subprocess.run(["/bin/sh", "-c", "exit 0"]).returncode)
"""


def test_a_parent_renamed_bash_does_not_hide_a_shell_spawn(engine: Engine) -> None:
    ticker = Ticker(engine)
    parent = subprocess.Popen([sys.executable, "-c", RENAMED_PARENT])
    assert parent.wait(timeout=30) == 0

    def shell_alerts() -> list[Alert]:
        assert ticker.snapshot is not None
        return [a for a in ticker.snapshot.alerts if a.rule_id == "syscalls.shell_spawn"
                and a.extra.get("parent_pid") == parent.pid]
    ticker.until(lambda s: bool(shell_alerts()))
    found = shell_alerts()[0]
    assert found.extra["parent_name"] == "bash"
    assert found.extra["parent_executable"] == os.path.realpath(sys.executable)


def test_new_mount_api_is_captured(engine: Engine, binaries: dict[str, str]) -> None:
    ticker = Ticker(engine)
    assert subprocess.run([binaries["vm_write"]], timeout=30).returncode == 0
    ticker.until(lambda s: any(e.syscall == "fsopen" and e.strings[0] == "tmpfs"
                               for e in ticker.events))


def test_deep_path_exec_from_tmp_is_caught_and_never_shown_as_absolute(engine: Engine) -> None:
    """Deeper than the kernel side walks, with a leaf name longer than it keeps: the exec is
    still an exec from /tmp (by its filename), the cut is reported, and the path reads "…/"."""
    ticker = Ticker(engine)
    workdir = tempfile.mkdtemp(prefix="fluxtui-deep-", dir="/tmp")
    try:
        deep = os.path.join(os.path.realpath(workdir), *["d"] * (bs.FX_PATH_PARTS + 4))
        os.makedirs(deep)
        leaf = "t" * (bs.FX_PART_LEN + 10)
        binary = shutil.copy("/bin/true", os.path.join(deep, leaf))
        proc = subprocess.Popen([binary])
        assert proc.wait(timeout=10) == 0
    finally:
        shutil.rmtree(workdir)
    ticker.until(lambda s: bool(ticker.alerts(proc.pid, "T1564"))
                 and bool(ticker.alerts(proc.pid, "T1059")))
    # Removed before the event was handled: judged by what is left of the path.
    assert ticker.alerts(proc.pid, "T1059")[0].reasons == (
        f"exec of {binary}: below world-writable /tmp (removed since)",)
    assert ticker.alerts(proc.pid, "T1564")[0].reasons[0].startswith("path truncated:")
    ev = next(e for e in ticker.events if e.kind == "exec" and e.key.pid == proc.pid)
    assert ev.exe.startswith("\u2026/d/") and not ev.exe.startswith("/")
    assert ev.exe.endswith("/" + "t" * (bs.FX_PART_LEN - 1) + "\u2026")
    assert set(ev.flags) >= {"path truncated", "name truncated"}


N_COMPAT, M_NATIVE = 700, 300


def test_32_bit_syscalls_are_counted_apart_and_reported(engine: Engine,
                                                        binaries: dict[str, str]) -> None:
    """int 0x80 from a 64-bit program: 32-bit getpid (20) is counted as compat:getpid, never
    as the 64-bit syscall 20 (writev); a 32-bit ptrace is reported as such."""
    require(platform.machine() == "x86_64", "the 32-bit interface test is for x86_64")
    ticker = Ticker(engine)
    proc = subprocess.run([binaries["compat_syscalls"], str(N_COMPAT), str(M_NATIVE)],
                          timeout=30)
    require(proc.returncode != 3, "this kernel has no 32-bit syscall interface (IA32 emulation)")
    assert proc.returncode == 0
    ticker.until(lambda s: any(e.kind == "exec" and e.exe == binaries["compat_syscalls"]
                               for e in ticker.events))
    key = next(e.key for e in ticker.events
               if e.kind == "exec" and e.exe == binaries["compat_syscalls"])
    ticker.until_exited(key)
    counts = ticker.counts[key]
    assert counts["compat:getpid"] == N_COMPAT
    assert counts["getppid"] == M_NATIVE
    assert counts["compat:ptrace"] == 1
    assert "writev" not in counts and "msync" not in counts  # 20 and 26 in the 64-bit table
    ptrace = [e for e in ticker.events if e.key == key and e.kind == "syscall"]
    assert [(e.syscall, e.args[:2]) for e in ptrace] == [("compat:ptrace", (2, 0x3FFFFFFF))]
    ticker.until(lambda s: any(a.key == key and a.rule_id == "syscalls.compat_syscall"
                               for a in s.alerts))


def test_status_tells_drops_and_own_pid(engine: Engine) -> None:
    status = _capture(engine).status()
    assert status.running
    assert "dropped" in status.detail and f"own pid {os.getpid()} untraced" in status.detail
    assert set(status.drops) >= {"syscall_counts", "kernel_events", "event_queue", "argv"}
    assert all(isinstance(n, int) and n >= 0 for n in status.drops.values())


_NO_BCC_PROBE = """
import json, subprocess, sys, time
from pathlib import Path
from fluxtui.collectors.syscalls import SyscallCollector
c = SyscallCollector(count_map_entries=1024, ring_buffer_pages=16)
c.start()
try:
    child = subprocess.Popen(["true"])
    child.wait()
    counted = 0
    for _ in range(60):
        counted += sum(sum(v.values()) for k, v in c.drain().counts.items()
                       if k.pid == child.pid)
        if counted:
            break
        time.sleep(0.05)
    print(json.dumps({"bcc": "bcc" in sys.modules,
                      "libbcc": "libbcc" in Path("/proc/self/maps").read_text(),
                      "map_memory": c.map_memory_bytes, "helper_kb": c.helper_maxrss_kb,
                      "counted": counted}))
finally:
    c.close()
"""


def test_the_dashboard_process_never_loads_bcc() -> None:
    """A helper process compiles the program: the process that reads it has no bcc module and
    no libbcc (with its LLVM) mapped, and still counts syscalls."""
    require_bcc()
    out = subprocess.run([sys.executable, "-c", _NO_BCC_PROBE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["bcc"] is False and got["libbcc"] is False
    assert got["map_memory"] > 0 and got["helper_kb"] > 0 and got["counted"] > 0


def test_a_storm_of_process_starts_loses_nothing(binaries: dict[str, str]) -> None:
    """500 `sleep 600` started at once with count maps of 4096 entries (every start brings
    dozens of new syscall pairs: far more keys than a map holds): the pump drains a map when
    it is half full, so no count, event or argv is lost, and every start and end is reported
    (the starts counted by this test are the truth)."""
    require_bcc()
    starts = 500
    collector = sc.SyscallCollector(count_map_entries=4096, ring_buffer_pages=256)
    try:
        collector.start()
    except sc.CollectorUnavailable as exc:
        require(False, str(exc))
    sleeps: list[subprocess.Popen[bytes]] = []
    drains: list[sc.Drain] = []
    try:
        drains.append(collector.drain())
        try:
            sleeps = [subprocess.Popen(["sleep", "600"]) for _ in range(starts)]
        finally:
            for proc in sleeps:
                proc.kill()
            for proc in sleeps:
                proc.wait(timeout=60)
        pids = {p.pid for p in sleeps}
        for _ in range(MAX_TICKS):
            drains.append(collector.drain())
            exits = {e.key.pid for d in drains for e in d.events if e.kind == "exit"}
            if pids <= exits:
                break
            time.sleep(0.05)
        drains.append(collector.drain())  # counts flushed at the last exits
    finally:
        collector.close()
    events = [e for d in drains for e in d.events if e.key.pid in pids]
    execs = {e.key.pid for e in events if e.kind == "exec" and e.filename.endswith("sleep")}
    exits = {e.key.pid for e in events if e.kind == "exit"}
    counted = {key.pid for d in drains for key in d.counts if key.pid in pids}
    total = drains[-1].dropped_total
    assert collector.early_drains > 0  # the maps did pass the fill level
    assert (total.syscalls_lost, total.events, total.queue) == (0, 0, 0)
    assert execs == pids and exits == pids and counted == pids
    assert not any("no argv" in e.flags for e in events if e.kind == "exec")


# Forks `n` children (argv[1]) that make a few syscalls each and stay, without exec or exit:
# new count map keys and no ring buffer event. Prints "forked", then waits for stdin to close.
FORKER = """
import os, sys
r, w = os.pipe()
kids = []
for _ in range(int(sys.argv[1])):
    pid = os.fork()
    if pid == 0:
        os.close(w)
        os.getppid(); os.getuid(); os.getgid(); os.geteuid()
        os.read(r, 1)
        os._exit(0)
    kids.append(pid)
os.close(r)
print("forked", flush=True)
sys.stdin.read()
os.close(w)
for pid in kids:
    os.waitpid(pid, 0)
"""


def test_new_keys_without_events_wake_the_pump_before_the_map_fills() -> None:
    """The pump does not poll: a storm of forks (no exec, no exit: no ring buffer record) must
    wake it through the program's fill wake-ups, and the map is flipped early, with no tick."""
    require_bcc()
    collector = sc.SyscallCollector(count_map_entries=4096, fill_level=0.25,
                                    watch_interval_s=3600)
    try:
        collector.start()
    except sc.CollectorUnavailable as exc:
        require(False, str(exc))
    forker = None
    try:
        collector.drain()
        forker = subprocess.Popen([sys.executable, "-c", FORKER, "600"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        assert forker.stdout is not None and forker.stdout.readline() == "forked\n"
        for _ in range(20 * MAX_TICKS):
            if collector.early_drains:
                break
            time.sleep(0.05)
        assert collector.early_drains >= 1
        drain = collector.drain()
        assert drain.dropped_total.syscalls_lost == 0
    finally:
        if forker is not None:
            forker.communicate(timeout=60)
        collector.close()


def test_close_wakes_a_waiting_pump() -> None:
    """Waits of an hour are only a safety net: close returns as soon as the pump sees it."""
    require_bcc()
    collector = sc.SyscallCollector(watch_interval_s=3600)
    collector.join_timeout_s = 60
    try:
        collector.start()
    except sc.CollectorUnavailable as exc:
        require(False, str(exc))
    poller = collector._poller
    assert poller is not None
    collector.close()
    assert not poller.is_alive() and not collector.running


def test_nothing_is_lost_silently(binaries: dict[str, str]) -> None:
    """A tiny count map and a one-page ring buffer, overloaded: every syscall and event is
    either delivered (through the spare ring buffer too) or counted as dropped."""
    require_bcc()
    children, unshares = 1500, 2000
    collector = sc.SyscallCollector(ring_buffer_pages=1, count_map_entries=1024,
                                    fill_level=2.0)  # only the drains below empty the maps
    try:
        collector.start()
    except sc.CollectorUnavailable as exc:
        require(False, str(exc))
    try:
        collector.drain()
        proc = subprocess.Popen([binaries["burst"], str(children), str(unshares)])
        assert proc.wait(timeout=60) == 0
        drains = [collector.drain()]
        for _ in range(MAX_TICKS):  # until the exit event (or its drop) is accounted for
            time.sleep(0.05)
            drains.append(collector.drain())
            if any(e.kind == "exit" and e.key.pid == proc.pid for d in drains for e in d.events):
                break
    finally:
        collector.close()
    lost_calls = sum(d.dropped.syscalls_lost for d in drains)
    lost_events = sum(d.dropped.events_lost for d in drains)
    child_exits = sum(counts.get(231, 0) for d in drains for key, counts in d.counts.items()
                      if key.pid != proc.pid)  # 231: exit_group on x86_64
    unshare_events = sum(1 for d in drains for e in d.events
                         if e.key.pid == proc.pid and e.syscall == "unshare")
    assert lost_calls > 0 and lost_events > 0
    assert collector.spill_ring.records_read > 0  # the spare ring took what the full one refused
    assert child_exits < children and child_exits + lost_calls >= children
    assert unshare_events < unshares and unshare_events + lost_events >= unshares


# --- whole lives (issue 10, part 1) ------------------------------------------------------------

N_LIFETIME = 100_000


@pytest.fixture(scope="module")
def frozen_engine() -> Iterator[tuple[Engine, list[object]]]:
    """An engine whose risk clock stands still, so a score is exactly the sum of its parts;
    with everything the bus carries."""
    require_bcc()
    config = Config()
    engine = Engine(config, [SyscallCapture(config), RiskScorer(config, clock=lambda: 0.0)])
    published: list[object] = []
    engine.bus.subscribe(published.append)
    try:
        snapshot = engine.start_sync()
        status = next(s for s in snapshot.statuses if s.name == "syscalls")
        require(status.running, f"syscall capture unavailable: {status.reason}")
        yield engine, published
    finally:
        engine.stop()


def _exit_of(engine: Engine, published: list[object], pid: int) -> ProcessExit:
    for _ in range(MAX_TICKS):
        engine.tick()
        found = [e for e in published if isinstance(e, ProcessExit)
                 and e.lifetime.key.pid == pid]
        if found:
            assert len(found) == 1
            return found[0]
        time.sleep(0.05)
    raise AssertionError(f"no exit record for pid {pid} within {MAX_TICKS} ticks")


def test_a_200_ms_process_between_two_ticks_has_its_exact_counts_and_score_in_the_stream(
        frozen_engine: tuple[Engine, list[object]], binaries: dict[str, str]) -> None:
    """Started and gone between two ticks: never in the process table, still counted to its
    exit_group, scored on its whole life, and written to the stream as one ECS document."""
    engine, published = frozen_engine
    engine.tick()
    proc = subprocess.Popen([binaries["lifetime"], "200", "5000"])
    assert proc.wait(timeout=30) == 0  # no tick while it lives
    exit_ = _exit_of(engine, published, proc.pid)
    life = exit_.lifetime
    assert life.exit_seen and life.exe == binaries["lifetime"]
    assert life.syscalls["getppid"] == 5000
    assert life.syscalls["nanosleep"] == 1
    assert life.syscalls["exit_group"] == 1
    assert life.syscalls["execve"] == 1
    assert life.lifetime_s >= 0.2
    weights = Config().risk
    expected = min(100.0, sum(weights.base_risk_scores.get(n, weights.default_risk_score)
                              for n in life.syscalls))
    assert exit_.risk == round(expected, 1) and exit_.risk > 0
    doc = json.loads(json.dumps(document(exit_)))
    assert (doc["event"]["kind"], doc["event"]["category"], doc["event"]["type"]) == (
        "event", ["process"], ["end"])
    assert doc["process"]["pid"] == proc.pid
    assert {"name": "getppid", "count": 5000} in doc["fluxtui"]["process"]["syscalls"]["by_name"]
    assert doc["fluxtui"]["process"]["syscalls"]["total"] == sum(life.syscalls.values())
    assert doc["fluxtui"]["process"]["risk"]["score"] == exit_.risk
    snapshot = engine.snapshot
    assert snapshot is not None
    row = snapshot.processes[life.key]  # kept in the table, marked exited
    assert row.state == "exited" and row.exited_at == life.exited and row.risk == exit_.risk


def test_calls_after_the_last_tick_are_all_counted(
        frozen_engine: tuple[Engine, list[object]], binaries: dict[str, str]) -> None:
    """Sleeps (seen alive by the ticks), makes 100,000 getppid() and exits between two ticks:
    all of them are in its counts and its final record."""
    engine, published = frozen_engine
    proc = subprocess.Popen([binaries["lifetime"], "1500", str(N_LIFETIME)])
    key = ProcessKey(proc.pid, read_start_ticks(proc.pid) or -1)
    seen = []
    for _ in range(MAX_TICKS):
        if key in engine.tick().processes:
            seen.append(key)
            break
        time.sleep(0.05)
    assert seen, "the workload was never in the table"
    assert proc.wait(timeout=30) == 0
    exit_ = _exit_of(engine, published, proc.pid)
    assert exit_.lifetime.key == key
    assert exit_.lifetime.syscalls["getppid"] == N_LIFETIME
    assert exit_.lifetime.syscalls["exit_group"] == 1


def test_a_memfd_is_caught_whatever_its_name(engine: Engine, binaries: dict[str, str]) -> None:
    ticker = Ticker(engine)
    proc = subprocess.Popen([binaries["memfd_exec"], "lib/x86_64/libc.so.6"])
    assert proc.wait(timeout=10) == 0
    ticker.until(lambda s: bool(ticker.alerts(proc.pid, "T1620")))
    alert = ticker.alerts(proc.pid, "T1620")[0]
    assert alert.rule_id == "syscalls.exec_memfd"
    ev = next(e for e in ticker.events if e.kind == "exec" and e.key.pid == proc.pid
              and "memfd:" in e.exe)
    assert "anonymous file" in ev.flags and ev.exe == "/memfd:lib/x86_64/libc.so.6"


def _copy_of(path: str, directory: str) -> str:
    target = os.path.join(directory, os.path.basename(path))
    shutil.copy(path, target)
    return target


def test_a_childs_finding_reaches_its_parent_unless_a_verified_session_leader(
        engine: Engine) -> None:
    """`unshare -r true` (a new user namespace: a finding) run by a script. The script, an
    unverified copy of dash leading its own session, is blamed with the chain; the same script
    run by the package's dash leading its session is a stop (a log-in shell's role)."""
    require(shutil.which("unshare") is not None, "util-linux unshare not installed")
    ticker = Ticker(engine)
    workdir = tempfile.mkdtemp(prefix="fluxtui-lineage-")
    try:
        copied = _copy_of(os.path.realpath("/bin/dash"), workdir)
        script = "unshare -r true; read x"
        runs = {}
        for name, shell in (("copy", copied), ("verified", os.path.realpath("/bin/dash"))):
            runs[name] = subprocess.Popen([shell, "-c", script], stdin=subprocess.PIPE,
                                          start_new_session=True)
        keys = {name: ProcessKey(p.pid, read_start_ticks(p.pid) or -1)
                for name, p in runs.items()}

        def child_reason(key: ProcessKey) -> str | None:
            score = _scorer(engine).explain(key)
            return next((r for r in (score.reasons if score else ())
                         if "new user namespace" in r and "started" in r), None)

        ticker.until(lambda s: child_reason(keys["copy"]) is not None)
        reason = child_reason(keys["copy"])
        # "started <child's executable> <pid>: <the child's finding>"
        assert reason is not None and reason.startswith("started ")
        # The same finding reached the verified leader's child too, but not the leader.
        ticker.until(lambda s: sum(e.syscall == "unshare" for e in ticker.events) >= 2)
        ticker.tick()
        assert child_reason(keys["verified"]) is None
    finally:
        for run in runs.values():
            if run.stdin is not None:
                run.stdin.close()
            run.wait(timeout=10)
        shutil.rmtree(workdir)


def test_a_shell_on_a_tcp_connection_is_a_reverse_shell(engine: Engine) -> None:
    """A shell started with its stdin/stdout on a connection it made (nc -e, a Python
    one-liner): alerted with the remote address; a shell on pipes is not."""
    ticker = Ticker(engine)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    client.setblocking(True)  # the shell reads it: a timeout would make it non-blocking
    accepted, _ = server.accept()
    shell = subprocess.Popen(["/bin/sh", "-c", "read x"], stdin=client, stdout=client)
    piped = subprocess.Popen(["/bin/sh", "-c", "read x"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    try:
        def reverse() -> list[Alert]:
            return [a for a in ticker.alerts(shell.pid, "T1059.004")
                    if a.rule_id == "syscalls.reverse_shell"]
        ticker.until(lambda s: bool(reverse()))
        alert = reverse()[0]
        assert alert.extra["remote"] == f"127.0.0.1:{port}"
        assert alert.extra["direction"] == "outbound"
        for _ in range(sc_checks()):
            ticker.tick()
        assert not [a for a in ticker.snapshot.alerts if a.key is not None
                    and a.key.pid == piped.pid and a.rule_id == "syscalls.reverse_shell"]
    finally:
        accepted.sendall(b"x\n")
        assert piped.stdin is not None
        piped.stdin.write(b"x\n")
        piped.stdin.close()
        shell.wait(timeout=10)
        piped.wait(timeout=10)
        for s in (accepted, client, server):
            s.close()


def test_a_shell_that_exits_at_once_on_a_tcp_connection_is_caught_at_its_exec(
        engine: Engine) -> None:
    """The kernel reads the shell's standard streams at its exec: a reverse shell that lives a
    few milliseconds (gone before any /proc check) is still caught; one on pipes is not."""
    ticker = Ticker(engine)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    client = socket.create_connection(("127.0.0.1", server.getsockname()[1]))
    accepted, _ = server.accept()
    try:
        shell = subprocess.Popen(["/bin/sh", "-c", "exit 0"], stdin=client, stdout=client)
        piped = subprocess.Popen(["/bin/sh", "-c", "exit 0"], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE)
        assert shell.wait(timeout=10) == 0
        piped.communicate(timeout=10)

        def reverse(pid: int) -> list[Alert]:
            return [a for a in ticker.alerts(pid, "T1059.004")
                    if a.rule_id == "syscalls.reverse_shell"]
        ticker.until(lambda s: bool(reverse(shell.pid)))
        assert "network socket" in " ".join(reverse(shell.pid)[0].reasons)
        assert not reverse(piped.pid)
    finally:
        for s in (accepted, client, server):
            s.close()


def test_another_process_memory_written_through_proc_pid_mem_is_critical(
        engine: Engine) -> None:
    """dd-style injection without a special syscall: the kernel sends the open for writing of
    /proc/PID/mem; opening one's own, or for reading, raises nothing."""
    ticker = Ticker(engine)
    victim = subprocess.Popen(["sleep", "30"])
    try:
        writer = subprocess.Popen(
            [sys.executable, "-c", f"open('/proc/{victim.pid}/mem', 'r+b').close(); "
             "open('/proc/self/mem', 'r+b').close()"])
        assert writer.wait(timeout=30) == 0
        reader = subprocess.Popen(
            [sys.executable, "-c", f"open('/proc/{victim.pid}/mem', 'rb').close()"])
        assert reader.wait(timeout=30) == 0
        mine = {writer.pid, reader.pid}  # the module's engine also holds earlier tests' alerts

        def found() -> list[Alert]:
            return [a for a in ticker.snapshot.alerts if a.rule_id == "syscalls.proc_mem_write"
                    and a.key is not None and a.key.pid in mine] if ticker.snapshot else []
        ticker.until(lambda _: bool(found()))
        assert len(found()) == 1 and found()[0].severity is Severity.CRITICAL
        assert found()[0].key.pid == writer.pid  # type: ignore[union-attr]
        assert found()[0].extra.get("target_pid") == victim.pid
    finally:
        victim.kill()
        victim.wait(timeout=10)


OPENAT2 = """
import ctypes, os, sys
class OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]
libc = ctypes.CDLL(None, use_errno=True)
how = OpenHow(os.O_RDWR | os.O_CLOEXEC, 0, 0)
fd = libc.syscall(437, -100, sys.argv[1].encode(), ctypes.byref(how), ctypes.sizeof(how))
if fd < 0:
    sys.exit(f"openat2: {os.strerror(ctypes.get_errno())}")
os.close(fd)
"""


def test_openat2_of_another_process_memory_is_seen_as_well(engine: Engine) -> None:
    """openat2 (flags in its struct open_how) went unseen: the same write-open of /proc/PID/mem
    through it raised nothing."""
    ticker = Ticker(engine)
    victim = subprocess.Popen(["sleep", "30"])
    try:
        subprocess.run([sys.executable, "-c", OPENAT2, f"/proc/{victim.pid}/mem"], timeout=30,
                       check=True)

        def found() -> list[Alert]:
            return [a for a in ticker.snapshot.alerts if a.rule_id == "syscalls.proc_mem_write"
                    and a.extra.get("target_pid") == victim.pid] if ticker.snapshot else []
        ticker.until(lambda _: bool(found()))
        assert "openat2 of /proc/" in found()[0].reasons[0]
    finally:
        victim.kill()
        victim.wait(timeout=10)


def sc_checks() -> int:
    from fluxtui.capabilities.syscall_risk import STDIO_CHECKS

    return STDIO_CHECKS + 1


def test_wrappers_are_looked_through_to_the_real_parent(engine: Engine) -> None:
    """`timeout 5 dash` from the package's bash: bash asked for it, quiet. From a copy of
    python: the copy is named, through timeout."""
    ticker = Ticker(engine)
    quiet = subprocess.run(["/usr/bin/bash", "-c", "timeout 5 /usr/bin/dash -c 'echo $$'; true"],
                           capture_output=True, text=True, timeout=30)
    quiet_pid = int(quiet.stdout.strip())
    loud = subprocess.run([sys.executable, "-c",
                           "import subprocess; print(subprocess.run(['timeout', '5', "
                           "'/usr/bin/dash', '-c', 'echo $$'], capture_output=True, "
                           "text=True).stdout.strip())"],
                          capture_output=True, text=True, timeout=30)
    loud_pid = int(loud.stdout.strip())
    ticker.until(lambda s: bool(ticker.alerts(loud_pid, "T1059.004")))
    alert = ticker.alerts(loud_pid, "T1059.004")[0]
    assert alert.rule_id == "syscalls.shell_spawn"
    assert "via /usr/bin/timeout" in alert.reasons[0]
    assert os.path.realpath(sys.executable) in alert.reasons[0]
    assert not ticker.alerts(quiet_pid, "T1059.004")


# --- loading (issue 13 and 14) -------------------------------------------------------------------


def test_program_sources_are_package_data() -> None:
    """Found through importlib.resources inside the fluxtui package, so a wheel carries them."""
    from fluxtui.collectors import bpf_loader

    directory = bpf_loader.program_dir()
    assert directory.parent == Path(sc.__file__).parent
    for name in ("syscalls.bpf.c", "connect_trace.bpf.c", "fluxtui_events.h", "fluxtui_task.h"):
        assert (directory / name).is_file()


def test_a_program_that_fails_to_load_says_why() -> None:
    """The helper's compile error reaches the caller as one LoadError; nothing is left held."""
    require_bcc()
    from fluxtui.collectors import bpf_loader

    before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(bpf_loader.LoadError, match="FX_OFF_THREAD_STATUS"):
        bpf_loader.load_program("syscalls.bpf.c", [])  # the offsets it requires are missing
    with pytest.raises(bpf_loader.LoadError):
        bpf_loader.load_program("no_such_program.bpf.c", [])
    # Threads of earlier tests' components may hold an fd for a moment (a pipe to
    # dpkg-query): a leak stays, theirs go. Bounded wait for the set to settle.
    for _ in range(500):
        extra = set(os.listdir("/proc/self/fd")) - before - {"3"}  # (listdir's own fd)
        if not extra:
            break
        threading.Event().wait(0.01)
    assert not extra


def test_records_that_wrap_around_a_small_ring_buffer_read_whole() -> None:
    """One copy of the ring buffer is mapped (the kernel's second copy would double the resident
    size): in a 4 KiB ring, exec records with long argv entries (about 1 KiB) often wrap past
    the end and still yield whole, decodable records, or are counted lost. A record carries
    only the bytes it uses: well under the 3.3 KiB of a record with room for every string."""
    require_bcc()
    runs = 20
    collector = sc.SyscallCollector(ring_buffer_pages=1, count_map_entries=4096)
    try:
        collector.start()
    except sc.CollectorUnavailable as exc:
        require(False, str(exc))
    got: list[ke.KernelEvent] = []
    long_args = [c * 60 for c in "wxyz"]
    try:
        collector.drain()
        for i in range(runs):
            subprocess.run(["env", f"FX_RUN={i}", "true", f"run-{i}", *long_args], check=True)
            got += collector.drain().events
        last = collector.drain()
        got += last.events
    finally:
        collector.close()
    mine = [e for e in got if e.kind == "exec" and e.argv[:1] == ("true",)]
    assert all(e.argv[1].startswith("run-") and list(e.argv[2:]) == long_args
               and e.filename.endswith("/true") and e.exe.endswith("/true") for e in mine)
    assert last.dropped_total.malformed == 0
    assert len(mine) + last.dropped_total.events >= runs
    assert len(mine) > 0
    ring = collector.ring
    assert ring.bytes_read > 4 * ring.size  # around the ring several times: records wrapped
    assert ring.bytes_read / ring.records_read < 1536


def test_count_batches_are_parsed_as_the_kernel_packs_them() -> None:
    """The pump only copies a full count map out; the tick parses the packed keys (struct
    fx_count_key) and values, summing what several batches hold for one process."""
    assert sc._COUNT_KEY.size == ct.sizeof(bs.CountKey)

    def key(tgid: int, prev: int, nr: int, start: int) -> bytes:
        k = bs.CountKey(tgid=tgid, prev=prev, nr=nr, start_ticks=start)
        return bytes(k)

    first = (key(7, bs.FX_NR_START, 39, 100) + key(7, 39, 39, 100) + key(8, 0, 1, 5),
             (1).to_bytes(8, "little") + (4).to_bytes(8, "little") + (2).to_bytes(8, "little"))
    second = (key(7, 39, 39, 100), (10).to_bytes(8, "little"))
    counts, bigrams = sc._parse_counts([first, second])
    assert counts == {ProcessKey(7, 100): {39: 15}, ProcessKey(8, 5): {1: 2}}
    assert bigrams == {ProcessKey(7, 100): {(bs.FX_NR_START, 39): 1, (39, 39): 14},
                       ProcessKey(8, 5): {(0, 1): 2}}


@pytest.mark.parametrize("entries,fill,cpus", [(131072, 0.5, 2), (4096, 0.25, 2),
                                               (131072, 0.5, 64), (1024, 2.0, 1), (64, 0.05, 256)])
def test_the_fill_wake_step_lets_all_cpus_add_at_most_a_quarter_of_the_fill_level_unseen(
        entries: int, fill: float, cpus: int) -> None:
    mask = sc.wake_mask(entries, fill, cpus)
    step = mask + 1
    assert step & mask == 0  # a power of two: the program tests it with one AND
    assert step == 1 or cpus * step <= min(fill, 1.0) * entries / 4
    assert cpus * step * 2 > min(fill, 1.0) * entries / 4 or step == 1  # the largest such
