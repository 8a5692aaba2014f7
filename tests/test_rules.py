"""Detection rules on synthetic kernel events: each rule fires on its case, with its MITRE
technique, and stays quiet on the look-alike cases."""

from __future__ import annotations

import dataclasses
import os
import stat
from typing import Any

import pytest

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.detection.syscall_rules import EventContext, Finding, evaluate
from fluxtui.ecs import document
from fluxtui.events import HOST, ContainerIdentity, ProcessKey, Severity

KEY = ProcessKey(4242, 123456)
CONTAINER = ContainerIdentity("docker", "ab" * 32, name="web")


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


def parent(exe: str, verified: bool = True, args: tuple[str, ...] = ()) -> EventContext:
    return EventContext(parent_exe=exe, parent_verified=verified, parent_args=args,
                        stat=FS.stat)


class FakeFS:
    """lstat over made-up directories: path -> (mode, uid, device)."""

    def __init__(self, entries: dict[str, tuple[int, int, int]]) -> None:
        self.entries = entries

    def stat(self, path: str) -> os.stat_result:
        if path not in self.entries:
            raise FileNotFoundError(path)
        mode, uid, dev = self.entries[path]
        return os.stat_result((mode, 1, dev, 1, uid, uid, 0, 0, 0, 0))


D, F = stat.S_IFDIR, stat.S_IFREG
FS = FakeFS({
    "/": (D | 0o755, 0, 1), "/usr": (D | 0o755, 0, 1), "/usr/bin": (D | 0o755, 0, 1),
    "/usr/bin/true": (F | 0o755, 0, 1), "/usr/bin/sleep": (F | 0o755, 0, 1),
    "/tmp": (D | 0o1777, 0, 1), "/var": (D | 0o755, 0, 1), "/var/tmp": (D | 0o1777, 0, 1),
    "/dev": (D | 0o755, 0, 2), "/dev/shm": (D | 0o1777, 0, 3),
    "/tmp/payload": (F | 0o755, 1000, 1),
    "/dev/shm/x": (D | 0o755, 1000, 3), "/dev/shm/x/payload": (F | 0o755, 1000, 3),
    "/var/tmp/.hidden": (D | 0o755, 0, 1), "/var/tmp/.hidden/payload": (F | 0o755, 0, 1),
    "/srv": (D | 0o755, 0, 1), "/srv/drop": (D | 0o777, 1000, 1),
    "/srv/drop/tool": (F | 0o755, 1000, 1),
    "/tmp/x": (D | 0o755, 0, 1), "/tmp/x/.venv": (D | 0o755, 0, 1),
    "/tmp/x/.venv/bin": (D | 0o755, 0, 1), "/tmp/x/.venv/bin/pytest": (F | 0o755, 0, 1),
    "/tmp/rootbuild": (D | 0o700, 0, 1), "/tmp/rootbuild/a.out": (F | 0o755, 0, 1),
    "/tmp/build": (D | 0o755, 1000, 1), "/tmp/build/a.out": (F | 0o755, 1000, 1),
    "/tmp/bash": (F | 0o755, 1000, 1),
})


def run(ev: KernelEvent, ctx: EventContext | None = None) -> list[Finding]:
    return evaluate(ev, ctx or EventContext(stat=FS.stat))


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


@pytest.mark.parametrize(("path", "why"), [
    ("/tmp/payload", "directly in world-writable /tmp"),
    ("/dev/shm/x/payload", "shared-memory filesystem"),
    ("/var/tmp/.hidden/payload", "hidden directory /var/tmp/.hidden"),
    ("/srv/drop/tool", "directly in world-writable /srv/drop"),
])
def test_exec_from_a_world_writable_place_is_medium(path: str, why: str) -> None:
    found = only(run(exec_event(path)))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.exec_tmp", "T1059", Severity.MEDIUM)
    assert path in found.reason and why in found.reason


@pytest.mark.parametrize("path", ["/tmp/x/.venv/bin/pytest", "/tmp/rootbuild/a.out"])
def test_root_owned_places_under_tmp_are_quiet(path: str) -> None:
    """A root-owned virtualenv in /tmp/x/.venv, root's build in a root-owned 0700 directory:
    only root could have put the file there."""
    assert run(exec_event(path, uid=0, euid=0)) == []
    assert run(exec_event(path)) == []  # run by a user: still root's file


class FreshFS(FakeFS):
    """FakeFS whose files changed (ctime) at `changed`."""

    def __init__(self, changed: float) -> None:
        super().__init__(FS.entries)
        self.changed = changed

    def stat(self, path: str) -> os.stat_result:
        st = super().stat(path)
        return os.stat_result((*st[:7], self.changed, self.changed, self.changed))


@pytest.mark.parametrize("path", ["/tmp/payload", "/dev/shm/x/payload",
                                  "/var/tmp/.hidden/payload"])
def test_a_file_dropped_in_a_world_writable_place_and_run_at_once_is_high(path: str) -> None:
    """Must alert (high): written (ctime) seconds before the exec in a medium place. Must not
    escalate: the same place with an old file (medium), a fresh file only root controls
    (nothing), a user's own fresh build (low)."""
    now = event().timestamp
    fresh = EventContext(stat=FreshFS(now - 3).stat)
    found = only(evaluate(exec_event(path), fresh))
    assert (found.rule_id, found.severity) == ("syscalls.exec_tmp", Severity.HIGH)
    assert found.points >= 50 and "3 s before it ran" in found.reason
    old = EventContext(stat=FreshFS(now - 3600).stat)
    assert only(evaluate(exec_event(path), old)).severity is Severity.MEDIUM
    assert evaluate(exec_event("/tmp/rootbuild/a.out", uid=0, euid=0), fresh) == []
    own = only(evaluate(exec_event("/tmp/build/a.out", uid=1000), fresh))
    assert own.severity is Severity.LOW


def test_a_users_own_build_under_tmp_is_low_and_someone_elses_is_medium() -> None:
    own = only(run(exec_event("/tmp/build/a.out", uid=1000)))
    assert (own.rule_id, own.severity) == ("syscalls.exec_tmp", Severity.LOW)
    assert "own directory" in own.reason
    other = only(run(exec_event("/tmp/build/a.out", uid=0, euid=0)))
    assert other.severity is Severity.MEDIUM and "owned by uid 1000" in other.reason


def test_a_script_is_judged_by_its_own_path_too() -> None:
    """The interpreter is /usr/bin/...; the file passed to exec is the script in /tmp."""
    ev = exec_event("/usr/bin/true", filename="/tmp/payload")
    assert only(run(ev)).severity is Severity.MEDIUM


@pytest.mark.parametrize("path", ["/usr/bin/true", "/tmpfoo/x", "/home/u/tmp/x", "/opt/tmp"])
def test_exec_elsewhere_is_quiet(path: str) -> None:
    assert run(exec_event(path)) == []


@pytest.mark.parametrize("exe", ["/memfd:payload", "/memfd:a/b/c", "/x", "/"])
def test_every_memfd_exec_is_caught_whatever_its_name(exe: str) -> None:
    """The kernel flags a file that has no place in any directory tree; its name (which the
    program chose, slashes included) does not matter."""
    found = only(run(exec_event(exe, flags=("anonymous file",))))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.exec_memfd", "T1620", Severity.HIGH)


def test_a_file_named_like_a_memfd_in_a_directory_is_not_one() -> None:
    assert run(exec_event("/usr/local/bin/memfd:x")) == []


def test_shell_spawned_by_a_non_shell() -> None:
    found = only(run(exec_event("/usr/bin/dash", parent="nginx"), parent("/usr/sbin/nginx")))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.shell_spawn", "T1059.004", Severity.LOW)
    assert "/usr/sbin/nginx" in found.reason


def test_shell_spawned_by_a_verified_expected_parent_is_quiet() -> None:
    assert run(exec_event("/usr/bin/bash", parent="bash"), parent("/usr/bin/bash")) == []
    assert run(exec_event("/usr/bin/dash"), parent("/usr/bin/make")) == []


def test_an_expected_parent_that_is_not_verified_is_not_trusted() -> None:
    """A modified /usr/bin/make (or a copy passed off as it) is not a build tool."""
    found = only(run(exec_event("/usr/bin/dash"), parent("/usr/bin/make", verified=False)))
    assert found.rule_id == "syscalls.shell_spawn" and "not verified" in found.reason


def test_a_parent_that_renamed_itself_bash_is_not_a_shell() -> None:
    """The parent's comm is settable (prctl PR_SET_NAME): only its executable counts."""
    found = only(run(exec_event("/usr/bin/sh", parent="bash"), parent("/usr/bin/python3")))
    assert found.rule_id == "syscalls.shell_spawn" and "/usr/bin/python3" in found.reason


def test_a_parent_that_cannot_be_known_is_not_by_itself_a_reason() -> None:
    assert run(exec_event("/usr/bin/sh", parent="bash")) == []


@pytest.mark.parametrize(("exe", "args", "trick"), [
    ("/usr/bin/tar", ("-cf", "/dev/null", "/dev/null", "--checkpoint=1",
                      "--checkpoint-action=exec=/bin/sh"), "--checkpoint-action=exec=/bin/sh"),
    ("/usr/bin/git", ("-c", "core.pager=/bin/sh -c id", "log"), "core.pager=/bin/sh -c id"),
    ("/usr/bin/find", (".", "-exec", "/bin/sh", ";"), "-exec"),
])
def test_gtfobins_tricks_are_told_apart_by_their_arguments(exe: str, args: tuple[str, ...],
                                                           trick: str) -> None:
    """git is expected to start shells (hooks, aliases); tar and find are not listed. Either
    way, the argument that makes them run a command on request raises the alert to medium."""
    found = only(run(exec_event("/usr/bin/dash"), parent(exe, args=args)))
    assert (found.rule_id, found.severity) == ("syscalls.shell_spawn", Severity.MEDIUM)
    assert repr(trick) in found.reason and found.extra["trick"] == trick
    plain = run(exec_event("/usr/bin/dash"), parent("/usr/bin/git", args=("commit", "-m", "x")))
    assert plain == []  # a hook run by git commit


def test_wrappers_looked_through_are_named() -> None:
    ctx = EventContext(parent_exe="/usr/sbin/nginx", wrappers=("/usr/bin/timeout",),
                       stat=FS.stat)
    found = only(run(exec_event("/usr/bin/dash"), ctx))
    assert "via /usr/bin/timeout" in found.reason


def test_a_shell_is_recognised_by_filename_or_argv0_too() -> None:
    """busybox run as "sh": the executable is busybox, argv[0] says what it is."""
    by_argv = only(run(exec_event("/usr/bin/busybox", argv0="sh"), parent("/usr/bin/nc")))
    by_link = only(run(exec_event("/usr/bin/busybox", filename="/bin/ash"),
                       parent("/usr/bin/nc")))
    assert by_argv.rule_id == by_link.rule_id == "syscalls.shell_spawn"


def test_a_program_named_like_a_shell_is_still_watched() -> None:
    """Names decide what a program is, never whether it is checked: a binary called bash in /tmp
    is both a shell and an exec from /tmp."""
    rules = {f.rule_id for f in run(exec_event("/tmp/bash", parent="bash"),
                                    parent("/usr/bin/bash"))}
    assert rules == {"syscalls.exec_tmp"}


DEEP = "/tmp/" + "d/" * 30 + "x"


def test_a_truncated_path_is_suspicious_and_filename_still_names_tmp() -> None:
    """A path deeper than the kernel side walks reads "…/d/x"; the absolute filename passed to
    exec still shows it came from /tmp, and the cut itself is reported."""
    ev = exec_event("\u2026/" + "d/" * 23 + "x", filename=DEEP, flags=("path truncated",))
    found = {f.rule_id: f for f in run(ev)}
    assert set(found) == {"syscalls.exec_tmp", "syscalls.exec_deep_path"}
    assert found["syscalls.exec_tmp"].reason.startswith(f"exec of {DEEP}")
    deep = found["syscalls.exec_deep_path"]
    assert deep.reason.startswith("path truncated:") and deep.severity is Severity.MEDIUM


def test_a_truncated_path_with_a_relative_filename_is_still_reported() -> None:
    ev = exec_event("\u2026/d/x", filename="./x", flags=("path truncated",))
    assert [f.rule_id for f in run(ev)] == ["syscalls.exec_deep_path"]


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
    """Must alert (high): a process that takes root back (a saved uid 0, an unverified
    set-user-ID copy). Must not alert: a verified set-user-ID program (sudo) doing its job."""
    cred = event("cred", syscall="setresuid", nr=117, args=(1000, 1000, 0, 1000, 0, 0))
    found = only(evaluate(cred))
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.uid_root", "T1548.001", Severity.HIGH)
    assert found.points >= 45
    sudo = only(evaluate(cred, EventContext(setuid_verified=True)))
    assert not sudo.raises_alert and sudo.points < 10


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


CRITICAL_IN_CONTAINER = {"open_by_handle_at"}


@pytest.mark.parametrize("name", ["mount", "umount2", "pivot_root", "chroot", "setns",
                                  "unshare", "fsopen", "fsmount", "move_mount", "open_tree",
                                  "mount_setattr", "open_by_handle_at"])
def test_namespace_and_mount_changes_inside_a_container(name: str) -> None:
    ev = event(syscall=name, nr=165, args=(0x20000,) + (0,) * 5,
               strings=("none", "/mnt", "tmpfs"))
    found = only(evaluate(ev, EventContext(CONTAINER)))
    severity = Severity.CRITICAL if name in CRITICAL_IN_CONTAINER else Severity.HIGH
    assert (found.rule_id, found.technique[0], found.severity) == (
        "syscalls.container_escape", "T1611", severity)
    assert CONTAINER.label in found.reason and CONTAINER.id in found.reason
    assert found.extra["container_id"] == CONTAINER.id
    on_host = run(ev)
    if name in ("setns", "unshare"):  # on the host: the namespace rules (below)
        assert {f.rule_id for f in on_host} <= {"syscalls.namespace_enter",
                                                 "syscalls.namespace_unshare"}
    else:
        assert on_host == []  # on the host: the syscall weight only


@pytest.mark.parametrize(("strings", "flags", "severity"), [
    (("/dev/sda1", "/mnt", "ext4"), 0, Severity.CRITICAL),  # the host's disk
    (("cgroup", "/tmp/cg", "cgroup"), 0, Severity.CRITICAL),  # v1: its release_agent
    (("/dev/null", "/sys/firmware", ""), 0x1000, Severity.HIGH),  # a bind of a /dev file
    (("none", "/mnt", "tmpfs"), 0, Severity.HIGH),
])
def test_mounts_in_a_container_by_what_they_reach(strings: tuple[str, str, str], flags: int,
                                                   severity: Severity) -> None:
    ev = event(syscall="mount", nr=165, args=(0, 0, 0, flags, 0, 0), strings=strings)
    assert only(evaluate(ev, EventContext(CONTAINER))).severity is severity


def test_the_runtimes_set_up_is_no_finding_and_no_risk() -> None:
    """runc's unshare, mount, pivot_root, its memfd exec and credential changes before the
    entrypoint: nothing, whatever the rule."""
    setup = EventContext(CONTAINER, runtime_setup=True)
    for ev in (event(syscall="unshare", nr=272, args=(0x10020000,) + (0,) * 5),
               event(syscall="mount", nr=165, args=(0,) * 6, strings=("", "/", "")),
               exec_event("/memfd:runc_cloned", flags=("anonymous file",)),
               event("cred", syscall="setuid", args=(1000, 1000, 0, 0))):
        assert evaluate(ev, setup) == []
        assert evaluate(ev, dataclasses.replace(setup, runtime_setup=False)) != []


def test_escape_indicators_against_the_host() -> None:
    host_target = EventContext(CONTAINER, target_container=HOST)
    same = EventContext(CONTAINER, target_container=CONTAINER)
    attach = ptrace(16, 4321)
    escape = [f for f in evaluate(attach, host_target) if f.rule_id == "syscalls.container_escape"]
    assert only(escape).severity is Severity.CRITICAL and "4321" in escape[0].reason
    assert not [f for f in evaluate(attach, same) if f.rule_id == "syscalls.container_escape"]
    enter = event(syscall="setns", nr=308, args=(3, 0x20000, 0, 0, 0, 0))
    assert only(evaluate(enter, host_target)).severity is Severity.CRITICAL
    assert only(evaluate(enter, EventContext(CONTAINER))).severity is Severity.HIGH
    core = event(syscall="openat", nr=257, args=(0, 0, 1, 0, 0, 0),
                 strings=("", "/proc/sys/kernel/core_pattern", ""))
    found = only(evaluate(core, EventContext(CONTAINER)))
    assert found.severity is Severity.CRITICAL and "core_pattern" in found.reason
    other = dataclasses.replace(core, strings=("", "/proc/sys/net/ipv4/ip_forward", ""))
    assert only(evaluate(other, EventContext(CONTAINER))).severity is Severity.HIGH
    assert evaluate(core) == []  # from the host: not this rule's business
    module = event(syscall="finit_module", nr=313, args=(3, 0, 0, 0, 0, 0),
                   strings=("", "", ""))
    found = only(evaluate(module, EventContext(CONTAINER)))
    assert (found.rule_id, found.severity) == ("syscalls.container_escape", Severity.CRITICAL)


def test_namespace_changes_outside_containers_unless_a_sandbox() -> None:
    """Must alert (high): user + mount namespaces at once, setns from the host. Medium: a user
    namespace alone (a browser-style sandbox not listed). Must not alert: a verified sandbox."""
    newuser_mnt = event(syscall="unshare", nr=272, args=(0x10000000 | 0x20000, 0, 0, 0, 0, 0))
    found = only(run(newuser_mnt))
    assert (found.rule_id, found.severity) == ("syscalls.namespace_unshare", Severity.HIGH)
    assert "new user namespace with its own mounts" in found.reason and found.points >= 40
    newuser_net = event(syscall="unshare", nr=272, args=(0x10000000 | 0x40000000, 0, 0, 0, 0, 0))
    found = only(run(newuser_net))
    assert (found.rule_id, found.severity) == ("syscalls.namespace_unshare", Severity.MEDIUM)
    assert "new user namespace" in found.reason
    mount_only = only(run(event(syscall="unshare", nr=272, args=(0x20000, 0, 0, 0, 0, 0))))
    assert mount_only.severity is Severity.LOW
    enter = only(run(event(syscall="setns", nr=308, args=(3, 0, 0, 0, 0, 0))))
    assert (enter.rule_id, enter.technique[0], enter.severity) == (
        "syscalls.namespace_enter", "T1611", Severity.HIGH)
    sandbox = EventContext(sandbox=True)
    for ev in (newuser_mnt, newuser_net, event(syscall="setns", nr=308, args=(3,) + (0,) * 5)):
        assert evaluate(ev, sandbox) == []  # bwrap, a browser, systemd: their job


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
    assert run(exec_event("/usr/bin/sleep")) == []


def test_control_characters_in_reasons_are_made_visible() -> None:
    found = only(run(exec_event("/tmp/\x1b[31mred\x07")))
    assert "\x1b" not in found.reason and "\\x1b" in found.reason


def test_alert_ecs_carries_the_technique() -> None:
    from fluxtui.bus import EventBus
    from fluxtui.capabilities.syscall_risk import SyscallCapture
    from fluxtui.component import TickContext
    from tests.fakes import metrics

    ev = ptrace(16, 777)
    tick = TickContext(ev.timestamp, 1.0, metrics(), {}, EventBus())
    alert = SyscallCapture._alert(only(evaluate(ev)), ev.timestamp, ev.name, tick)
    doc = document(alert)
    assert doc["event"]["kind"] == "alert"
    assert doc["threat"]["technique"]["id"] == ["T1055.008"]
    assert doc["process"]["pid"] == KEY.pid


def test_rules_can_be_disabled_and_given_exceptions() -> None:
    from fluxtui.config import RuleException, RulesConfig
    from fluxtui.detection.syscall_rules import RuleFilter, Subject

    deploy = Subject(executable="/usr/bin/dash", parent="/usr/bin/ansible-playbook", uid=1001,
                     user="deploy", args=("-c", "systemctl restart app"))
    other = Subject(executable="/usr/bin/dash", parent="/usr/bin/python3.11", uid=1000,
                    user="alice", args=("-i",))
    assert RuleFilter(RulesConfig()).allows("syscalls.shell_spawn", deploy)
    off = RuleFilter(RulesConfig(disabled=["network.*"]))
    assert not off.allows("network.port_scan", other)
    assert off.allows("syscalls.shell_spawn", other)
    ex = RuleFilter(RulesConfig(exceptions=[RuleException(
        rule="syscalls.shell_spawn", parent="/usr/bin/ansible-*", user="deploy",
        args="-c systemctl *")]))
    assert not ex.allows("syscalls.shell_spawn", deploy)
    assert ex.allows("syscalls.shell_spawn", other)  # another parent and user
    assert ex.allows("syscalls.exec_tmp", deploy)  # another rule
    by_uid = RuleFilter(RulesConfig(exceptions=[RuleException(executable="/usr/bin/dash",
                                                              user="1000")]))
    assert not by_uid.allows("syscalls.reverse_shell", other)
    assert by_uid.allows("syscalls.reverse_shell", deploy)


def test_a_bad_rules_section_gets_one_clear_line() -> None:
    from fluxtui.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match=r"cfg.yml:3: rules.exceptions\[0\].binary: unknown"):
        parse_config("rules:\n  exceptions:\n    - {binary: /usr/bin/x}\n", "cfg.yml")


def test_a_shell_started_on_a_network_socket_is_a_reverse_or_bind_shell() -> None:
    """Must alert (high): a shell whose stdin/stdout the kernel saw on an internet socket at its
    exec, or whose parent's are (a pty relay). Must not alert: a non-shell program on a socket
    (an inetd-style service), a shell on pipes or unix sockets (no flag)."""
    own = exec_event("/usr/bin/bash", parent="bash", flags=("stdio on a network socket",))
    found = {f.rule_id: f for f in run(own, parent("/usr/bin/bash"))}
    assert found["syscalls.reverse_shell"].severity is Severity.HIGH
    assert found["syscalls.reverse_shell"].technique[0] == "T1059.004"
    assert "network socket" in found["syscalls.reverse_shell"].reason
    relay = dataclasses.replace(exec_event("/usr/bin/dash", argv0="/bin/sh"),
                                parent_flags=("stdio on a network socket",),
                                parent_exe="/usr/bin/python3.11")
    found = {f.rule_id: f for f in run(relay, parent("/usr/bin/python3.11"))}
    assert "relay" in found["syscalls.reverse_shell"].reason
    service = exec_event("/usr/sbin/in.tftpd", flags=("stdio on a network socket",))
    assert "syscalls.reverse_shell" not in {f.rule_id for f in run(service)}
    plain = exec_event("/usr/bin/bash", parent="bash")
    assert "syscalls.reverse_shell" not in {f.rule_id for f in run(plain, parent("/usr/bin/bash"))}


def test_another_process_memory_opened_for_writing_through_proc() -> None:
    """Must alert (critical): /proc/PID/mem (or a thread's) of another process opened for
    writing (the kernel sends only opens for writing under /proc/). Must not alert: its own
    memory, another /proc file (uid_map, oom_score_adj)."""
    def opened(path: str, syscall: str = "openat") -> list[Finding]:
        strings = ("", path, "") if syscall == "openat" else (path, "", "")
        return evaluate(event(syscall=syscall, nr=257, args=(0,) * 6, strings=strings))
    for path, syscall in (("/proc/777/mem", "openat"), ("/proc/777/task/778/mem", "open")):
        found = only(opened(path, syscall))
        assert (found.rule_id, found.technique[0], found.severity) == (
            "syscalls.proc_mem_write", "T1055.009", Severity.CRITICAL)
        assert "pid 777" in found.reason
    assert opened(f"/proc/{KEY.pid}/mem") == []
    assert opened("/proc/777/uid_map") == [] and opened("/proc/self/oom_score_adj") == []


def test_an_open_for_writing_under_proc_is_described_by_its_path_and_flags() -> None:
    """The message of an open event named raw pointers (`openat(0xffff…9c, 0xc0001b4870, …)`):
    it names the path and the flags."""
    from fluxtui.collectors.kernel_event import describe_syscall

    at = describe_syscall("openat", (2**64 - 100, 0x7FFD0000, 0o1101, 0o644, 0, 0),
                          ("", "/proc/sys/kernel/core_pattern", ""), (0, 0))
    assert at == "openat('/proc/sys/kernel/core_pattern', flags 0o1101)"
    plain = describe_syscall("open", (0x7FFD0000, 0o2, 0, 0, 0, 0), ("/proc/1/mem", "", ""),
                             (0, 0))
    assert plain == "open('/proc/1/mem', flags 0o2)"
