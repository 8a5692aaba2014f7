"""The audit fallback without the kernel: rule encoding and keys, record parsing (with the
netlink length quirk and hex-encoded values), records -> the same KernelEvents and findings as
eBPF, refusals from fake netlink answers (locked rules, audit off, daemon role held), the
collector choice, and the header's status. Real-kernel tests: test_audit_kernel.py.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.syscall_risk import SyscallCapture
from fluxtui.collectors import audit as audit_mod
from fluxtui.collectors.audit import AuditCollector, refusal_reason
from fluxtui.collectors.audit_events import EventBuilder
from fluxtui.collectors.audit_netlink import AuditError, AuditStatus, parse_messages
from fluxtui.collectors.audit_records import Assembler, parse_record, untrusted
from fluxtui.collectors.audit_rules import (
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    ENABLED_MARK,
    I386,
    KEY_PREFIX,
    RULE_SIZE,
    X86_64,
    build_rules,
    instance_key,
    is_stale,
    rule_key,
)
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.collectors.syscall_source import AutoCollector, make_collector
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.collectors.syscalls import CollectorUnavailable, Drain, DropCounts, SyscallCollector
from fluxtui.component import TickContext
from fluxtui.config import Config
from fluxtui.detection.syscall_rules import evaluate
from fluxtui.events import ComponentState, ProcessKey
from tests.fakes import metrics, row

TABLES = {AUDIT_ARCH_X86_64: X86_64, AUDIT_ARCH_I386: I386}
NAMES = {arch: {nr: name for name, nr in t.items()} for arch, t in TABLES.items()}
SHMEM = frozenset({(0, 1)})

# --- rules -------------------------------------------------------------------------------------


def test_rules_carry_their_key_and_syscalls() -> None:
    key = instance_key(4242, 99)
    rules = build_rules(key, 4242, TABLES)
    # per arch: one plain rule, 9 ptrace requests, 4 bpf commands
    assert len(rules) == 2 * (1 + 9 + 4)
    for rule in rules:
        raw = rule.encode()
        assert len(raw) == RULE_SIZE + len(key) and rule_key(raw) == key
    plain = rules[0].encode()
    mask = struct.unpack_from("=64I", plain, 12)
    assert mask[59 // 32] >> (59 % 32) & 1  # execve
    assert not mask[101 // 32] >> (101 % 32) & 1  # ptrace only in its filtered rules


def test_only_keys_of_dead_fluxtui_instances_are_stale() -> None:
    me = os.getpid()
    ticks = read_start_ticks(me)
    assert ticks is not None
    assert not is_stale(instance_key(me, ticks))  # alive
    assert is_stale(instance_key(me, ticks + 1))  # same pid, another process: it was reused
    assert is_stale(instance_key(me, ticks + 1, True))
    assert (instance_key(me, ticks, True)).endswith(ENABLED_MARK)
    for foreign in ("exec", "fluxtui", f"{KEY_PREFIX}x:y", "", "fluxtui:1"):
        assert not is_stale(foreign)


# --- records -----------------------------------------------------------------------------------

MEMFD_EXEC = [
    (1300, 'audit(1796128060.235:1121): arch=c000003e syscall=322 success=yes exit=0 a0=3 '
     'a1=7ff7e11b4dd5 a2=7ff7e0ec46e0 a3=7ff7e0ec4710 items=2 ppid=1 pid={pid} auid=4294967295 '
     'uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 '
     'tty=(none) ses=4294967295 comm="memfd:payload" '
     'exe=2F6D656D66643A7061796C6F6164202864656C6574656429 key="fluxtui:7511:977787"'),
    (1309, 'audit(1796128060.235:1121): argc=3 a0="payload" a1=2D2D7820792022 a2_len=6 '
     'a2[0]="abc" a2[1]=646566'),
    (1307, 'audit(1796128060.235:1121): cwd="/work"'),
    (1302, 'audit(1796128060.235:1121): item=0 name="" inode=135 dev=00:01 mode=0100777 '
     'ouid=0 ogid=0 rdev=00:00 nametype=NORMAL'),
    (1320, 'audit(1796128060.235:1121): '),
]


def records(lines: list[tuple[int, str]], pid: int) -> list[Any]:
    return [parse_record(kind, text.replace("{pid}", str(pid))) for kind, text in lines]


def test_a_record_is_the_rest_of_its_datagram_whatever_nlmsg_len_says() -> None:
    text = b"audit(1.002:3): arch=c000003e syscall=101 key=\"k\""
    header = struct.pack("=IHHII", len(text), 1300, 0, 0, 0)  # the text's length only
    [(kind, _flags, _seq, body)] = list(parse_messages(header + text + b"\0"))
    assert (kind, body) == (1300, text)
    ack = struct.pack("=IHHII", 36, 2, 0, 7, 0) + struct.pack("=i", -errno.EEXIST) + bytes(16)
    assert [(k, s) for k, _f, s, _b in parse_messages(ack)] == [(2, 7)]


def test_untrusted_values_are_decoded() -> None:
    assert untrusted('"plain"') == "plain"
    assert untrusted("2F746D702F6120622022") == '/tmp/a b "'
    assert untrusted("(null)") == ""
    assert untrusted("C3") == "\ufffd"  # invalid UTF-8 shown, not dropped
    record = parse_record(1300, 'audit(1796128060.235:1121): a=1 b="x y"')
    assert record is not None and record.serial == 1121 and record.fields == {"a": "1",
                                                                               "b": '"x y"'}
    assert abs(record.timestamp - 1796128060.235) < 1e-6
    assert parse_record(1300, "garbage") is None


def test_records_of_one_syscall_are_gathered_until_eoe() -> None:
    assembler = Assembler(lambda r: r.fields.get("syscall") == "322")
    done = [assembler.add(r) for r in records(MEMFD_EXEC, 1)]
    assert done[:-1] == [None] * 4 and done[-1] is not None
    event = done[-1]
    assert event.argv() == ("payload", '--x y "', "abcdef") and event.cwd == "/work"
    # A syscall that is not wanted gathers nothing.
    other = Assembler(lambda r: False)
    assert [other.add(r) for r in records(MEMFD_EXEC, 1)] == [None] * 5


def _event(lines: list[tuple[int, str]], pid: int) -> Any:
    assembler = Assembler(lambda r: True)
    return next(e for e in (assembler.add(r) for r in records(lines, pid)) if e is not None)


def test_a_memfd_exec_becomes_the_same_exec_event_and_finding_as_with_ebpf(
        tmp_path: Path) -> None:
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    key, nr, events = builder.build(_event(MEMFD_EXEC, 31337))
    assert key == ProcessKey(31337, 0) and nr == 322  # gone from /proc: start time unknown
    [ev] = events
    assert ev.kind == "exec" and ev.exe == "/memfd:payload" and ev.flags == ("anonymous file",)
    assert ev.uid == 1000 and ev.euid == 1000 and ev.comm == "memfd:payload"
    assert [f.rule_id for f in evaluate(ev)] == ["syscalls.exec_memfd"]
    assert evaluate(ev)[0].reason == ("exec of /memfd:payload (an anonymous file: no place in "
                                      "any directory)")


def test_a_deleted_file_on_a_real_filesystem_is_not_a_memfd(tmp_path: Path) -> None:
    lines = [(k, t.replace("dev=00:01", "dev=fe:00")) for k, t in MEMFD_EXEC]
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    [ev] = builder.build(_event(lines, 31337))[2]
    assert "anonymous file" not in ev.flags


def _syscall(nr: int, args: str, pid: int = 31337, arch: str = "c000003e", uid: int = 1000,
             success: str = "yes", serial: int = 5) -> list[tuple[int, str]]:
    return [(1300, f"audit(1.000:{serial}): arch={arch} syscall={nr} success={success} exit=0 "
             f"{args} items=0 ppid=1 pid={pid} uid={uid} gid={uid} euid={uid} comm=\"x\" "
             'exe="/usr/bin/x" key=(null)'),
            (1320, f"audit(1.000:{serial}): ")]


@pytest.mark.parametrize("nr,arch,args,rule,reason", [
    (101, "c000003e", "a0=10 a1=1a4 a2=0 a3=0", "syscalls.ptrace_attach",
     "PTRACE_ATTACH of pid 420"),
    (101, "c000003e", "a0=4206 a1=1a4 a2=0 a3=0", "syscalls.ptrace_attach",
     "PTRACE_SEIZE of pid 420"),
    (313, "c000003e", "a0=ffffffffffffffff a1=0 a2=0 a3=0", "syscalls.module_load",
     "finit_module"),
    (175, "c000003e", "a0=1000 a1=c8 a2=2000 a3=0", "syscalls.module_load", "init_module"),
    (26, "40000003", "a0=10 a1=1a4 a2=0 a3=0", "syscalls.compat_syscall",
     "32-bit syscall interface used: ptrace (int 0x80 or a 32-bit program)"),
])
def test_syscall_records_give_the_rules_findings(tmp_path: Path, nr: int, arch: str, args: str,
                                                 rule: str, reason: str) -> None:
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    [ev] = builder.build(_event(_syscall(nr, args, arch=arch), 31337))[2]
    assert any((f.rule_id, f.reason) == (rule, reason) for f in evaluate(ev))


def test_a_change_of_user_to_root_is_a_cred_event_after_a_known_uid(tmp_path: Path) -> None:
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    # A set*id call of a process never seen: the ids before it are unknown, no cred event.
    unknown = builder.build(_event(_syscall(117, "a0=0 a1=0 a2=0 a3=0", pid=7, uid=0), 7))[2]
    assert [e.kind for e in unknown] == ["syscall"] and builder.unknown_cred == 1
    exec_lines = [(k, t.replace("syscall=322", "syscall=59")) for k, t in MEMFD_EXEC]
    builder.build(_event(exec_lines, 8))  # uid 1000 at exec
    events = builder.build(_event(_syscall(117, "a0=0 a1=0 a2=0 a3=0", pid=8, uid=0,
                                           serial=9), 8))[2]
    cred = [e for e in events if e.kind == "cred"]
    assert len(cred) == 1 and cred[0].args == (1000, 1000, 0, 0)
    assert [f.rule_id for f in evaluate(cred[0])] == ["syscalls.uid_root"]


def test_a_failed_exec_is_counted_but_no_event(tmp_path: Path) -> None:
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    key, nr, events = builder.build(_event(_syscall(59, "a0=0 a1=0 a2=0 a3=0",
                                                    success="no"), 31337))
    assert key is not None and nr == 59 and events == []


# --- refusals, from fake netlink answers -------------------------------------------------------


class FakeSocket:
    """Answers as the kernel would, from a given status; records what was asked."""

    status_now = AuditStatus(enabled=1, failure=1, pid=0, rate_limit=0, backlog_limit=64,
                             lost=0, backlog=0)
    set_error: int = 0
    join_error: int = 0
    asked: list[str] = []

    def __init__(self, groups: int = 0, recv_buffer: int = 0) -> None:
        if groups and self.join_error:
            raise OSError(self.join_error, os.strerror(self.join_error))
        self.pending: list[tuple[int, bytes]] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)  # never readable

    def fileno(self) -> int:
        return self.sock.fileno()

    def status(self) -> AuditStatus:
        return self.status_now

    def list_rules(self) -> list[bytes]:
        return []

    def set_status(self, mask: int, **values: int) -> None:
        self.asked.append(f"set {mask} {values}")
        if self.set_error:
            raise AuditError(self.set_error, os.strerror(self.set_error))

    def add_rule(self, rule: bytes) -> None:
        self.asked.append("add")

    def delete_rule(self, rule: bytes) -> None:
        self.asked.append("delete")

    def close(self) -> None:
        self.sock.close()


def fake(**changes: Any) -> type[FakeSocket]:
    status = dataclasses.replace(FakeSocket.status_now, **changes.pop("status", {}))
    return type("Fake", (FakeSocket,), {"status_now": status, "asked": [], **changes})


@pytest.fixture(autouse=True)
def as_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_mod.os, "geteuid", lambda: 0)


@pytest.mark.parametrize("status,allow,why", [
    ({"enabled": 2}, True, "locked (enabled 2"),
    ({"enabled": 0}, False, "audit is disabled (enabled 0)"),
])
def test_refused_with_the_reason_and_nothing_changed(status: dict[str, int], allow: bool,
                                                     why: str) -> None:
    sock = fake(status=status)
    collector = AuditCollector(allow_enable=allow, socket_factory=sock)  # type: ignore[arg-type]
    with pytest.raises(CollectorUnavailable, match=re.escape(why)):
        collector.start()
    assert sock.asked == []


def test_refused_when_another_process_holds_the_daemon_role() -> None:
    # No daemon at the first look, one registered before fluxtui's request: EEXIST.
    sock = fake(set_error=errno.EEXIST)
    calls = iter([FakeSocket.status_now, dataclasses.replace(FakeSocket.status_now, pid=1)])
    sock.status = lambda self: next(calls)  # type: ignore[method-assign]
    collector = AuditCollector(socket_factory=sock)  # type: ignore[arg-type]
    with pytest.raises(CollectorUnavailable, match="daemon role is held by pid 1"):
        collector.start()
    assert "add" not in sock.asked


def test_refused_when_the_daemon_runs_and_its_multicast_group_is_closed() -> None:
    sock = fake(status={"pid": 1}, join_error=errno.EPERM)
    collector = AuditCollector(socket_factory=sock)  # type: ignore[arg-type]
    with pytest.raises(CollectorUnavailable, match="multicast group cannot be joined"):
        collector.start()
    assert sock.asked == []


def test_audit_turned_on_only_when_allowed_and_off_again_at_exit() -> None:
    sock = fake(status={"enabled": 0})
    collector = AuditCollector(allow_enable=True, socket_factory=sock)  # type: ignore[arg-type]
    collector.start()
    try:
        assert collector.key.endswith(ENABLED_MARK)
        assert "processes started before are not audited" in collector.describe()
        assert "fluxtui is the audit daemon" in collector.describe()
    finally:
        collector.close()
    assert sock.asked[0] == f"set 4 {{'pid': {os.getpid()}}}"
    assert sock.asked.count("add") == sock.asked.count("delete") == 28
    assert "set 1 {'enabled': 1}" in sock.asked and sock.asked[-2:] == [
        "set 1 {'enabled': 0}", "set 4 {'pid': 0}"]


def test_refusal_reasons() -> None:
    on = FakeSocket.status_now
    assert refusal_reason(on, False) is None
    assert refusal_reason(dataclasses.replace(on, enabled=0), True) is None


# --- the choice of collector and the header ----------------------------------------------------


def test_the_configured_collector_is_built() -> None:
    sc = Config().syscalls
    assert isinstance(make_collector(dataclasses.replace(sc, collector="audit")),
                      AuditCollector)
    assert isinstance(make_collector(dataclasses.replace(sc, collector="ebpf")),
                      SyscallCollector)
    assert isinstance(make_collector(sc), AutoCollector)  # the default: auto


class _NoEbpf(SyscallCollector):
    def start(self) -> None:
        raise CollectorUnavailable("kernel has no BTF")


class _Audit(AuditCollector):
    started = False

    def start(self) -> None:
        self.started = True
        self.notes.append("fluxtui is the audit daemon until it exits")
        self.table = SyscallTable({101: "ptrace"})

    def drain(self) -> Drain:
        key = ProcessKey(os.getpid(), read_start_ticks(os.getpid()) or 0)
        return Drain(1.0, {key: {101: 1}}, {}, [], DropCounts(), DropCounts())


def test_auto_falls_back_to_audit_and_the_header_says_so() -> None:
    audit = _Audit()
    auto = AutoCollector(_NoEbpf(), audit)
    capture = SyscallCapture(Config(), collector=auto)
    capture.start(EventBus())
    assert audit.started and auto.active is audit
    status = capture.status()
    assert status.state is ComponentState.RUNNING
    assert status.detail.startswith("audit fallback · eBPF: kernel has no BTF · fluxtui is "
                                    "the audit daemon until it exits · syscall counts —: ")
    # Per-process syscall counts are not measured: the column stays empty ("—").
    me = row(os.getpid(), "python")
    key = me.key
    tick = TickContext(1.0, 1.0, metrics(), {key: me}, EventBus())
    capture.on_tick(tick)
    assert "syscalls_per_s" not in tick.annotations.get(key, {})
    capture.stop()


def test_auto_says_why_neither_runs() -> None:
    class _Refused(_Audit):
        def start(self) -> None:
            raise CollectorUnavailable("audit fallback refused: audit is disabled (enabled 0)")

    auto = AutoCollector(_NoEbpf(), _Refused())
    with pytest.raises(CollectorUnavailable, match="eBPF: kernel has no BTF; audit fallback "
                                                   "refused: audit is disabled"):
        auto.start()


# --- fluxtui doctor ----------------------------------------------------------------------------


def _doctor(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], collector: str,
            ebpf: str | None, audit: str | None) -> tuple[int, str]:
    from fluxtui import doctor
    from fluxtui.collectors import audit_state, syscalls

    monkeypatch.setattr(syscalls, "unavailable_reason", lambda: ebpf)
    monkeypatch.setattr(audit_state, "plan", lambda allow: (
        audit, "" if audit else "as the audit daemon (no other runs), until fluxtui exits"))
    monkeypatch.setattr(doctor, "CHECKS", [doctor.check_syscall_capture,
                                           doctor.check_syscall_collector])
    config = Config(syscalls=dataclasses.replace(Config().syscalls,
                                                 collector=collector))  # type: ignore[arg-type]
    code = doctor.run_doctor(config)
    return code, " ".join(capsys.readouterr().out.split())  # columns as single spaces


def test_doctor_says_the_audit_fallback_runs_where_ebpf_cannot(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _doctor(monkeypatch, capsys, "auto", "kernel has no BTF", None)
    assert code == 0, out  # eBPF missing is not fatal: the fallback stands in
    assert "absent syscall capture eBPF: kernel has no BTF" in out
    assert ("ok syscall collector audit fallback (syscalls.collector: auto; eBPF cannot "
            "run: kernel has no BTF): reads as the audit daemon") in out


def test_doctor_says_why_no_collector_can_run_and_the_fix(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    refused = "audit fallback refused: audit is disabled (enabled 0); enable it (auditctl -e 1)"
    code, out = _doctor(monkeypatch, capsys, "auto", "kernel has no BTF", refused)
    assert code == 1
    assert f"MISSING syscall collector none: eBPF: kernel has no BTF; {refused}" in out
    assert "fix: auditctl -e 1, or let fluxtui turn audit on: syscalls.audit_enable: true" in out
    code, out = _doctor(monkeypatch, capsys, "ebpf", "kernel has no BTF", None)
    assert code == 1 and "MISSING syscall capture" in out
    assert "fix: see the checks above, or syscalls.collector: auto" in out
    code, out = _doctor(monkeypatch, capsys, "auto", None, None)
    assert code == 0 and "eBPF, syscalls.collector: auto" in out


def test_exit_group_is_the_exit_event_and_not_a_counted_call(tmp_path: Path) -> None:
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    key, _nr, events = builder.build(_event(_syscall(231, "a0=0 a1=0 a2=0 a3=0"), 31337))
    assert key is None and [e.kind for e in events] == ["exit"]
    assert events[0].key == ProcessKey(31337, 0)


def test_a_memfd_whose_fd_is_gone_does_not_get_an_invented_name(tmp_path: Path) -> None:
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path), memfd_devs=SHMEM)
    [ev] = builder.build(_event(_syscall(319, "a0=7f00 a1=1 a2=0 a3=0"), 31337))[2]
    assert ev.strings[0] == "(name not logged by audit, fd already closed)"


def test_a_hugetlb_memfd_is_anonymous_too(tmp_path: Path) -> None:
    lines = [(k, t.replace("dev=00:01", "dev=00:11")) for k, t in MEMFD_EXEC]
    builder = EventBuilder(NAMES, AUDIT_ARCH_X86_64, proc=str(tmp_path),
                           memfd_devs=frozenset({(0, 1), (0, 0x11)}))
    [ev] = builder.build(_event(lines, 31337))[2]
    assert "anonymous file" in ev.flags
