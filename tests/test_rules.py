"""Detection rules on synthetic kernel events: each rule fires on its case, with its MITRE
technique, and stays quiet on the look-alike cases."""

from __future__ import annotations

from typing import Any

import pytest

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.detection.containers import ContainerInfo
from fluxtui.detection.rules import EventContext, Finding, evaluate
from fluxtui.events import ProcessKey, Severity

KEY = ProcessKey(4242, 123456)
CONTAINER = ContainerInfo("docker", "ab" * 32)


def event(kind: str = "syscall", **fields: Any) -> KernelEvent:
    base: dict[str, Any] = dict(kind=kind, timestamp=1_800_000_000.0, key=KEY, tid=KEY.pid,
                                uid=1000, gid=1000, comm="prog")
    base.update(fields)
    return KernelEvent(**base)


def ptrace(request: int, target: int) -> KernelEvent:
    return event(syscall="ptrace", nr=101, args=(request, target, 0, 0, 0, 0))


def exec_event(exe: str, parent: str = "python", uid: int = 1000, euid: int = 1000,
               filename: str | None = None, argv0: str | None = None,
               flags: tuple[str, ...] = ()) -> KernelEvent:
    return event("exec", syscall="execve", nr=59, filename=exe if filename is None else filename,
                 exe=exe, argv=(exe if argv0 is None else argv0,), ppid=1, parent_comm=parent,
                 uid=uid, euid=euid, flags=flags)


def parent(exe: str) -> EventContext:
    return EventContext(parent_exe=exe)


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


def test_ptrace_attach_and_seize_of_another_process() -> None:
    for request in (16, 0x4206):
        found = only(evaluate(ptrace(request, 777)))
        assert found.rule_id == "syscalls.ptrace_attach"
        assert found.technique[0] == "T1055.008"
        assert found.severity is Severity.HIGH
        assert "pid 777" in found.reason
        assert found.key == KEY


def test_ptrace_write_into_another_process_is_critical() -> None:
    found = only(evaluate(ptrace(5, 777)))  # PTRACE_POKEDATA
    assert (found.rule_id, found.severity, found.technique[0]) == (
        "syscalls.ptrace_write", Severity.CRITICAL, "T1055.008")


def test_ptrace_of_itself_or_reads_raise_nothing() -> None:
    assert evaluate(ptrace(16, KEY.pid)) == []
    assert evaluate(ptrace(2, 777)) == []  # PTRACE_PEEKDATA: covered by the syscall's weight


def test_traceme_adds_risk_without_alert() -> None:
    found = only(evaluate(ptrace(0, 0)))
    assert not found.raises_alert and found.points > 0


@pytest.mark.parametrize("path", ["/tmp/x/true", "/var/tmp/a", "/dev/shm/b", "/run/shm/c"])
def test_exec_from_world_writable_directories(path: str) -> None:
    found = only(evaluate(exec_event(path)))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.exec_tmp", "T1059", Severity.MEDIUM)
    assert path in found.reason


@pytest.mark.parametrize("path", ["/usr/bin/true", "/tmpfoo/x", "/home/u/tmp/x", "/opt/tmp"])
def test_exec_elsewhere_is_quiet(path: str) -> None:
    assert evaluate(exec_event(path)) == []


def test_exec_from_memfd() -> None:
    found = only(evaluate(exec_event("/memfd:payload")))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.exec_memfd", "T1620", Severity.HIGH)


def test_a_file_named_like_a_memfd_in_a_directory_is_not_one() -> None:
    assert evaluate(exec_event("/usr/local/bin/memfd:x")) == []


def test_shell_spawned_by_a_non_shell() -> None:
    found = only(evaluate(exec_event("/usr/bin/dash", parent="nginx"), parent("/usr/sbin/nginx")))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.shell_spawn", "T1059.004", Severity.LOW)
    assert "/usr/sbin/nginx" in found.reason


def test_shell_spawned_by_a_shell_is_quiet() -> None:
    assert evaluate(exec_event("/usr/bin/bash", parent="bash"), parent("/usr/bin/bash")) == []


def test_a_parent_that_renamed_itself_bash_is_not_a_shell() -> None:
    """The parent's comm is settable (prctl PR_SET_NAME): only its executable counts."""
    found = only(evaluate(exec_event("/usr/bin/sh", parent="bash"), parent("/usr/bin/python3")))
    assert found.rule_id == "syscalls.shell_spawn" and "/usr/bin/python3" in found.reason


def test_a_parent_of_unknown_executable_is_not_trusted_as_a_shell() -> None:
    found = only(evaluate(exec_event("/usr/bin/sh", parent="bash")))
    assert found.rule_id == "syscalls.shell_spawn" and "unknown executable" in found.reason


def test_a_shell_is_recognised_by_filename_or_argv0_too() -> None:
    """busybox run as "sh": the executable is busybox, argv[0] says what it is."""
    by_argv = only(evaluate(exec_event("/usr/bin/busybox", argv0="sh"), parent("/usr/bin/nc")))
    by_link = only(evaluate(exec_event("/usr/bin/busybox", filename="/bin/ash"),
                            parent("/usr/bin/nc")))
    assert by_argv.rule_id == by_link.rule_id == "syscalls.shell_spawn"


def test_a_program_named_like_a_shell_is_still_watched() -> None:
    """Names decide what a program is, never whether it is checked: a binary called bash in /tmp
    is both a shell and an exec from /tmp."""
    rules = {f.rule_id for f in evaluate(exec_event("/tmp/bash", parent="bash"),
                                         parent("/usr/bin/bash"))}
    assert rules == {"syscalls.exec_tmp"}


DEEP = "/tmp/" + "d/" * 30 + "x"


def test_a_truncated_path_is_suspicious_and_filename_still_names_tmp() -> None:
    """A path deeper than the kernel side walks reads "…/d/x"; the absolute filename passed to
    exec still shows it came from /tmp, and the cut itself is reported."""
    ev = exec_event("\u2026/" + "d/" * 23 + "x", filename=DEEP, flags=("path truncated",))
    found = {f.rule_id: f for f in evaluate(ev)}
    assert set(found) == {"syscalls.exec_tmp", "syscalls.exec_deep_path"}
    assert found["syscalls.exec_tmp"].reason == f"exec of {DEEP}"
    deep = found["syscalls.exec_deep_path"]
    assert deep.reason.startswith("path truncated:") and deep.severity is Severity.MEDIUM


def test_a_truncated_path_with_a_relative_filename_is_still_reported() -> None:
    ev = exec_event("\u2026/d/x", filename="./x", flags=("path truncated",))
    assert [f.rule_id for f in evaluate(ev)] == ["syscalls.exec_deep_path"]


def test_process_vm_writev_into_another_process_is_critical() -> None:
    found = only(evaluate(event(syscall="process_vm_writev", nr=311, args=(777, 0, 1, 0, 1, 0))))
    assert (found.rule_id, found.severity, found.technique[0]) == (
        "syscalls.process_vm_write", Severity.CRITICAL, "T1055")
    assert "pid 777" in found.reason
    own = event(syscall="process_vm_writev", nr=311, args=(KEY.pid, 0, 1, 0, 1, 0))
    assert evaluate(own) == []


def test_setuid_root_exec_adds_risk_only() -> None:
    found = only(evaluate(exec_event("/usr/bin/sudo", uid=1000, euid=0)))
    assert found.rule_id == "syscalls.exec_setuid_root" and not found.raises_alert


def test_uid_changing_to_root() -> None:
    cred = event("cred", syscall="setresuid", nr=117, args=(1000, 1000, 0, 1000, 0, 0))
    found = only(evaluate(cred))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.uid_root", "T1548.001", Severity.MEDIUM)


def test_uid_dropping_from_root_is_quiet() -> None:
    cred = event("cred", syscall="setresuid", nr=117, args=(0, 0, 65534, 0, 0, 0))
    assert evaluate(cred) == []


@pytest.mark.parametrize("name,strings", [("init_module", ("", "", "debug=1")),
                                          ("finit_module", ("", "debug=1", ""))])
def test_module_loads(name: str, strings: tuple[str, str, str]) -> None:
    found = only(evaluate(event(syscall=name, nr=175, args=(0,) * 6, strings=strings)))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.module_load", "T1547.006", Severity.HIGH)
    assert "debug=1" in found.reason


@pytest.mark.parametrize("name", ["mount", "umount2", "pivot_root", "chroot", "setns",
                                  "unshare", "fsopen", "fsmount", "move_mount", "open_tree",
                                  "mount_setattr", "open_by_handle_at"])
def test_namespace_and_mount_changes_inside_a_container(name: str) -> None:
    ev = event(syscall=name, nr=165, args=(0,) * 6, strings=("/dev/sda1", "/mnt", "ext4"))
    found = only(evaluate(ev, EventContext(CONTAINER)))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.container_escape", "T1611", Severity.HIGH)
    assert CONTAINER.label in found.reason
    assert evaluate(ev, EventContext(None)) == []  # on the host: the syscall weight only


def test_memfd_create_and_bpf_load_add_risk_without_alert() -> None:
    memfd = only(evaluate(event(syscall="memfd_create", nr=319, args=(0,) * 6,
                                strings=("payload", "", ""))))
    bpf = only(evaluate(event(syscall="bpf", nr=321, args=(5, 0, 0, 0, 0, 0))))
    assert not memfd.raises_alert and not bpf.raises_alert
    assert "payload" in memfd.reason
    assert evaluate(event(syscall="bpf", nr=321, args=(1, 0, 0, 0, 0, 0))) == []  # map lookup


def test_a_32_bit_high_signal_syscall_is_reported() -> None:
    found = only(evaluate(event(syscall="compat:setuid32", nr=1024 + 213, args=(0,) * 6)))
    assert (found.rule_id, found.severity) == ("syscalls.compat_syscall", Severity.MEDIUM)
    assert found.reason.startswith("32-bit syscall interface used: setuid32")


def test_idle_process_events_raise_nothing() -> None:
    assert evaluate(event("exit")) == []
    assert evaluate(exec_event("/usr/bin/sleep")) == []


def test_control_characters_in_reasons_are_made_visible() -> None:
    found = only(evaluate(exec_event("/tmp/\x1b[31mred\x07")))
    assert "\x1b" not in found.reason and "\\x1b" in found.reason


def test_alert_ecs_carries_the_technique() -> None:
    from fluxtui.capabilities.syscall_risk import SyscallCapture
    from fluxtui.pipeline import EventBus, TickContext
    from tests.fakes import metrics

    ev = ptrace(16, 777)
    tick = TickContext(ev.timestamp, 1.0, metrics(), {}, EventBus())
    alert = SyscallCapture._alert(only(evaluate(ev)), ev, tick)
    doc = alert.to_ecs()
    assert doc["event"]["kind"] == "alert"
    assert doc["threat"]["technique"]["id"] == "T1055.008"
    assert doc["process"]["pid"] == KEY.pid
