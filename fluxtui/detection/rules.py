"""Detection rules on high-signal kernel events, each tagged with its MITRE ATT&CK technique.

A rule looks at one `KernelEvent` (and the container of its process) and returns `Finding`s:
risk points for the process with the reason shown to the user, and, when the finding has a
severity, an alert. No process is trusted or skipped because of its name: names only decide what
a program *is* (a shell), never whether it is watched. Nothing here imports textual.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluxtui.collectors.bpf_structs import COMPAT_PREFIX, FX_MAX_NR, FX_PATH_PARTS
from fluxtui.collectors.kernel_event import KernelEvent, signed32
from fluxtui.detection.containers import ContainerInfo
from fluxtui.events import ProcessKey, Severity
from fluxtui.text import visible

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
WORLD_WRITABLE_DIRS = ("/tmp/", "/var/tmp/", "/dev/shm/", "/run/shm/")
CONTAINER_ESCAPE_SYSCALLS = frozenset({"mount", "umount2", "pivot_root", "chroot", "setns",
                                       "unshare", "init_module", "finit_module",
                                       "fsopen", "fsmount", "move_mount", "open_tree",
                                       "mount_setattr", "open_by_handle_at"})

PTRACE_ATTACH = {16: "PTRACE_ATTACH", 0x4206: "PTRACE_SEIZE"}
PTRACE_WRITE = {4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER",
                13: "PTRACE_SETREGS", 15: "PTRACE_SETFPREGS", 0x4205: "PTRACE_SETREGSET"}
PTRACE_TRACEME = 0
BPF_PROG_LOAD = 5

T_PTRACE = ("T1055.008", "Process Injection: Ptrace System Calls")
T_INJECTION = ("T1055", "Process Injection")
T_HIDE = ("T1564", "Hide Artifacts")
T_SHELL = ("T1059.004", "Command and Scripting Interpreter: Unix Shell")
T_INTERPRETER = ("T1059", "Command and Scripting Interpreter")
T_REFLECTIVE = ("T1620", "Reflective Code Loading")
T_MODULE = ("T1547.006", "Boot or Logon Autostart Execution: Kernel Modules and Extensions")
T_SETUID = ("T1548.001", "Abuse Elevation Control Mechanism: Setuid and Setgid")
T_ESCAPE = ("T1611", "Escape to Host")


@dataclass(frozen=True)
class Finding:
    """What a rule saw: risk points for a process, the reason shown, and an alert when
    `severity` is set."""

    key: ProcessKey
    rule_id: str  # "syscalls.<rule>"
    title: str
    reason: str
    points: float
    technique: tuple[str, str] = ("", "")  # (id, name)
    severity: Severity | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def raises_alert(self) -> bool:
        return self.severity is not None


@dataclass(frozen=True)
class EventContext:
    container: ContainerInfo | None = None
    # For an exec: the parent's executable path ("" when unknown). The parent's comm is never
    # used to decide anything: any process can rename itself (prctl PR_SET_NAME).
    parent_exe: str = ""


Rule = Callable[[KernelEvent, EventContext], list[Finding]]


def _finding(ev: KernelEvent, rule: str, title: str, reason: str, points: float,
             technique: tuple[str, str] = ("", ""), severity: Severity | None = None,
             **extra: Any) -> Finding:
    return Finding(ev.key, f"syscalls.{rule}", title, visible(reason), points, technique,
                   severity, {"event": ev.describe(), **extra})


def rule_ptrace(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall != "ptrace":
        return []
    request, target = ev.args[0], signed32(ev.args[1])
    if request == PTRACE_TRACEME:
        return [_finding(ev, "ptrace_traceme", "Process asked to be traced",
                         "PTRACE_TRACEME", 10, T_PTRACE)]
    if target in (ev.key.pid, ev.tid):
        return []
    if request in PTRACE_ATTACH:
        return [_finding(ev, "ptrace_attach", "Ptrace attach to another process",
                         f"{PTRACE_ATTACH[request]} of pid {target}", 40, T_PTRACE,
                         Severity.HIGH, target_pid=target)]
    if request in PTRACE_WRITE:
        return [_finding(ev, "ptrace_write", "Ptrace write into another process",
                         f"{PTRACE_WRITE[request]} into pid {target}", 50, T_PTRACE,
                         Severity.CRITICAL, target_pid=target)]
    return []


def _basename(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def rule_exec(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "exec":
        return []
    found: list[Finding] = []
    path = ev.exe or ev.filename
    base = _basename(path)
    # The resolved path may be cut ("…/a/b"); the path as passed to exec, when absolute, still
    # names the directory it was started from.
    paths = [p for p in (ev.exe, ev.filename) if p.startswith("/")]
    writable = next((p for p in paths if p.startswith(WORLD_WRITABLE_DIRS)), None)
    if ev.exe.count("/") == 1 and base.startswith("memfd:"):
        found.append(_finding(ev, "exec_memfd", "Program executed from memory (memfd)",
                              f"exec of {path} (an anonymous memory file)", 50, T_REFLECTIVE,
                              Severity.HIGH, executable=path))
    elif writable is not None:
        found.append(_finding(ev, "exec_tmp", "Program executed from a world-writable directory",
                              f"exec of {writable}", 30, T_INTERPRETER, Severity.MEDIUM,
                              executable=writable))
    if "path truncated" in ev.flags:
        found.append(_finding(ev, "exec_deep_path", "Program executed from a very deep path",
                              f"path truncated: exec of {path} (more than {FX_PATH_PARTS} "
                              "directories deep, which hides where it lives)", 20, T_HIDE,
                              Severity.MEDIUM, executable=path, filename=ev.filename))
    names = {_basename(p) for p in (ev.exe, ev.filename, ev.argv[0] if ev.argv else "") if p}
    parent = _basename(ctx.parent_exe)
    if names & SHELLS and parent not in SHELLS:
        shown = ctx.parent_exe or f"an unknown executable (comm {ev.parent_comm!r})"
        found.append(_finding(ev, "shell_spawn", "Shell started by a program that is not a shell",
                              f"shell {path} started by {shown} (pid {ev.ppid})", 10,
                              T_SHELL, Severity.LOW, parent_pid=ev.ppid,
                              parent_name=ev.parent_comm, parent_executable=ctx.parent_exe))
    if ev.euid == 0 and ev.uid != 0:
        found.append(_finding(ev, "exec_setuid_root", "Root gained by a set-user-ID program",
                              f"uid {ev.uid} runs {path} as root (set-user-ID)", 10, T_SETUID))
    return found


def rule_credentials(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "cred":
        return []
    old_uid, old_gid, new_uid, new_gid = ev.args[:4]
    if old_uid != 0 and new_uid == 0:
        return [_finding(ev, "uid_root", "Process changed its user to root",
                         f"{ev.syscall}: uid {old_uid} → 0", 30, T_SETUID, Severity.MEDIUM,
                         old_uid=old_uid)]
    if old_gid != 0 and new_gid == 0:
        return [_finding(ev, "gid_root", "Process changed its group to root",
                         f"{ev.syscall}: gid {old_gid} → 0", 10, T_SETUID)]
    return []


def rule_process_vm_write(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall != "process_vm_writev":
        return []
    target = signed32(ev.args[0])
    if target in (ev.key.pid, ev.tid):
        return []
    return [_finding(ev, "process_vm_write", "Memory written into another process",
                     f"process_vm_writev into pid {target}", 50, T_INJECTION,
                     Severity.CRITICAL, target_pid=target)]


def rule_module(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall not in ("init_module", "finit_module"):
        return []
    params = ev.strings[2] if ev.syscall == "init_module" else ev.strings[1]
    shown = f" (params {params!r})" if params else ""
    return [_finding(ev, "module_load", "Kernel module load attempted",
                     f"{ev.syscall}{shown}", 50, T_MODULE, Severity.HIGH)]


def rule_container_escape(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ctx.container is None:
        return []
    if ev.syscall not in CONTAINER_ESCAPE_SYSCALLS:
        return []
    label = ctx.container.label
    return [_finding(ev, "container_escape", "Namespace or mount change inside a container",
                     f"{ev.describe()} inside {label}", 40, T_ESCAPE, Severity.HIGH,
                     container=label)]


def rule_memfd_create(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall != "memfd_create":
        return []
    return [_finding(ev, "memfd_create", "Anonymous memory file created",
                     f"memfd_create({ev.strings[0]!r})", 10, T_REFLECTIVE)]


def rule_bpf_load(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall != "bpf" or ev.args[0] != BPF_PROG_LOAD:
        return []
    return [_finding(ev, "bpf_prog_load", "BPF program loaded", "bpf(BPF_PROG_LOAD)", 10)]


def rule_compat_syscall(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    """A high-signal syscall made through the 32-bit interface (only those are sent)."""
    if ev.kind != "syscall" or not ev.syscall.startswith(COMPAT_PREFIX):
        return []
    return [_finding(ev, "compat_syscall", "32-bit syscall interface used",
                     f"32-bit syscall interface used: {ev.syscall.removeprefix(COMPAT_PREFIX)} "
                     "(int 0x80 or a 32-bit program)", 20, severity=Severity.MEDIUM,
                     compat_nr=ev.nr - FX_MAX_NR)]


RULES: tuple[Rule, ...] = (rule_ptrace, rule_process_vm_write, rule_exec, rule_credentials,
                           rule_module, rule_container_escape, rule_memfd_create, rule_bpf_load,
                           rule_compat_syscall)


def evaluate(ev: KernelEvent, ctx: EventContext | None = None) -> list[Finding]:
    """Every finding of every rule for one event."""
    ctx = ctx or EventContext()
    return [finding for rule in RULES for finding in rule(ev, ctx)]
