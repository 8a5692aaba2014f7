"""Detection rules on high-signal kernel events, each tagged with its MITRE ATT&CK technique.

A rule looks at one `KernelEvent` (and what the capability knows around it: the container, the
real parent, whether executables are verified) and returns `Finding`s: risk points for the
process with the reason shown to the user, and, when the finding has a severity, an alert. No
process is trusted or skipped because of its name: names only decide what a program *is* (a
shell), never whether it is watched; trust comes from verified executables (package-owned,
unmodified) in the lists of `rules:` in config.yml. `RuleFilter` applies `rules.disabled` and
`rules.exceptions`. The README lists every rule. Nothing here imports textual.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluxtui.collectors.bpf_structs import COMPAT_PREFIX, FX_MAX_NR, FX_PATH_PARTS
from fluxtui.collectors.kernel_event import KernelEvent, signed32
from fluxtui.config import DEFAULT_SHELL_PARENTS, RulesConfig
from fluxtui.detection.locations import Stat, judge_location
from fluxtui.events import HOST, ContainerIdentity, ProcessKey, Severity
from fluxtui.untrusted_text import visible

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh"})
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
T_PROC_MEM = ("T1055.009", "Process Injection: Proc Memory")
T_HIDE = ("T1564", "Hide Artifacts")
T_SHELL = ("T1059.004", "Command and Scripting Interpreter: Unix Shell")
T_INTERPRETER = ("T1059", "Command and Scripting Interpreter")
T_REFLECTIVE = ("T1620", "Reflective Code Loading")
T_MODULE = ("T1547.006", "Boot or Logon Autostart Execution: Kernel Modules and Extensions")
T_SETUID = ("T1548.001", "Abuse Elevation Control Mechanism: Setuid and Setgid")
T_ESCAPE = ("T1611", "Escape to Host")
T_ELEVATION = ("T1548", "Abuse Elevation Control Mechanism")
CLONE_NEWUSER = 0x10000000
CLONE_NEWNS = 0x00020000

# Arguments that make a program run a command on request (GTFOBins), by the program's base name
# (that of a verified executable: what it is, not whether it is watched).
SHELL_TRICKS: dict[str, tuple[str, ...]] = {
    "tar": ("--checkpoint-action=exec", "--to-command", "--use-compress-program",
            "--info-script", "--new-volume-script", "-I"),
    "git": ("core.pager=", "core.sshcommand=", "core.editor=", "core.fsmonitor=",
            "--upload-pack", "--receive-pack", "alias.", "--exec-path", "-p"),
    "find": ("-exec", "-execdir", "-ok", "-okdir", "-fprint"),
    "make": ("--eval", "-E", "SHELL="),
    "rsync": ("-e", "--rsh"),
    "ssh": ("proxycommand=", "localcommand=", "permitlocalcommand="),
    "zip": ("-TT", "--unzip-command"),
    "vim": ("-c", "+"), "vi": ("-c", "+"), "nvim": ("-c", "+"),
    "less": ("-+",), "man": ("-P", "--pager"),
    "apt-get": ("pre-invoke", "post-invoke"), "apt": ("pre-invoke", "post-invoke"),
    "dpkg": ("--pre-invoke", "--post-invoke"),
    "awk": ("system(",), "gawk": ("system(",), "mawk": ("system(",),
}


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
    # Where the event came from: the container of the cgroup the kernel reported with it
    # (HOST, or UNKNOWN when the cgroup could not be resolved).
    container: ContainerIdentity = HOST
    # The process is a container runtime setting a container up (descended from a verified
    # runtime executable, before the exec of the entrypoint): fluxtui/detection/runtime_setup.py.
    runtime_setup: bool = False
    # ptrace / process_vm_writev / setns: where the target process runs (None: not known).
    target_container: ContainerIdentity | None = None
    # For an exec: the real parent's executable path, as the kernel read it when the exec
    # succeeded, with wrappers (timeout, env, sudo, ...) looked through ("" when unknown). The
    # parent's comm is never used to decide anything: any process can rename itself.
    parent_exe: str = ""
    parent_verified: bool = False  # package-owned and unmodified
    parent_args: tuple[str, ...] = ()  # the arguments the real parent was started with
    wrappers: tuple[str, ...] = ()  # wrappers looked through, nearest first
    shell_parents: frozenset[str] = frozenset(DEFAULT_SHELL_PARENTS)
    # For unshare/setns: the process runs a verified executable of rules.sandboxes.
    sandbox: bool = False
    stat: Stat | None = None  # lstat for exec_tmp (None: os.lstat)
    # For a cred event: the process holds root because its exec was of a set-user-ID-root
    # program that is verified (package-owned, unmodified: sudo, su, pkexec doing their job).
    setuid_verified: bool = False


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


def _shell_trick(parent_exe: str, args: tuple[str, ...]) -> str | None:
    """The argument that made a program expected to start shells run one on request."""
    tricks = SHELL_TRICKS.get(_basename(parent_exe))
    if not tricks:
        return None
    for arg in args:
        lowered = arg.lower()
        for trick in tricks:
            if lowered.startswith(trick.lower()) or (
                    "=" in trick and trick.lower() in lowered):
                return arg
    return None


def rule_exec(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "exec":
        return []
    found: list[Finding] = []
    path = ev.exe or ev.filename
    if "anonymous file" in ev.flags:
        found.append(_finding(ev, "exec_memfd", "Program executed from memory (memfd)",
                              f"exec of {path} (an anonymous file: no place in any directory)",
                              50, T_REFLECTIVE, Severity.HIGH, executable=path,
                              filename=ev.filename))
    else:
        found += _exec_location(ev, ctx, path)
    if "path truncated" in ev.flags:
        found.append(_finding(ev, "exec_deep_path", "Program executed from a very deep path",
                              f"path truncated: exec of {path} (more than {FX_PATH_PARTS} "
                              "directories deep, which hides where it lives)", 20, T_HIDE,
                              Severity.MEDIUM, executable=path, filename=ev.filename))
    found += _shell_spawn(ev, ctx, path)
    found += _shell_on_socket(ev, path)
    if ev.euid == 0 and ev.uid != 0:
        found.append(_finding(ev, "exec_setuid_root", "Root gained by a set-user-ID program",
                              f"uid {ev.uid} runs {path} as root (set-user-ID)", 10, T_SETUID))
    return found


_LOCATION_POINTS = {Severity.LOW: 10, Severity.MEDIUM: 30}
# A file in such a place whose inode changed (written, chmod +x, renamed in) this few seconds
# before it ran was dropped there to be run: the download-and-execute pattern (T1105). ctime
# cannot be set from user space, unlike mtime.
FRESH_S = 120.0
FRESH_POINTS = 50


def _exec_location(ev: KernelEvent, ctx: EventContext, path: str) -> list[Finding]:
    """exec_tmp: the resolved executable and the file passed to exec (a script) judged on every
    directory of their paths (fluxtui/detection/locations.py)."""
    candidates = []
    if ev.exe.startswith("/"):
        candidates.append(ev.exe)
    if ev.filename.startswith("/") and ev.filename != ev.exe:
        candidates.append(os.path.realpath(ev.filename) if ctx.stat is None else ev.filename)
    best = None
    for candidate in candidates:
        verdict = judge_location(candidate, ev.uid, ctx.stat or os.lstat)
        if verdict is not None and (best is None or verdict.severity == Severity.MEDIUM):
            best = (candidate, verdict)
    if best is None:
        return []
    where, verdict = best
    age = _age(where, ev.timestamp, ctx) if verdict.severity is Severity.MEDIUM else None
    if age is not None:
        return [_finding(ev, "exec_tmp", "Program dropped and run from a world-writable place",
                         f"exec of {where}: {verdict.why}; the file was written or made "
                         f"executable {age:.0f} s before it ran", FRESH_POINTS, T_INTERPRETER,
                         Severity.HIGH, executable=where, writable_dir=verdict.writable_dir,
                         written_s_before=round(age, 1))]
    return [_finding(ev, "exec_tmp", "Program executed from a world-writable directory",
                     f"exec of {where}: {verdict.why}", _LOCATION_POINTS[verdict.severity],
                     T_INTERPRETER, verdict.severity, executable=where,
                     writable_dir=verdict.writable_dir)]


def _age(path: str, when: float, ctx: EventContext) -> float | None:
    """Seconds between the file's last inode change and the exec, when under FRESH_S."""
    try:
        changed = (ctx.stat or os.lstat)(path).st_ctime
    except OSError:
        return None
    age = when - changed
    return max(age, 0.0) if -2.0 <= age <= FRESH_S else None


def _shell_spawn(ev: KernelEvent, ctx: EventContext, path: str) -> list[Finding]:
    names = {_basename(p) for p in (ev.exe, ev.filename, ev.argv[0] if ev.argv else "") if p}
    if not names & SHELLS or not ctx.parent_exe:
        return []  # not a shell, or a parent that cannot be known: no reason by itself
    via = f" via {', '.join(ctx.wrappers)}" if ctx.wrappers else ""
    extra = {"parent_pid": ev.ppid, "parent_name": ev.parent_comm,
             "parent_executable": ctx.parent_exe, "wrappers": list(ctx.wrappers)}
    trick = _shell_trick(ctx.parent_exe, ctx.parent_args)
    if trick is not None:
        return [_finding(ev, "shell_spawn", "Shell started through a command-running option",
                         f"shell {path} started by {ctx.parent_exe}{via} through its argument "
                         f"{trick!r} (GTFOBins-style)", 25, T_SHELL, Severity.MEDIUM,
                         trick=trick, **extra)]
    if ctx.parent_exe in ctx.shell_parents and ctx.parent_verified:
        return []
    unverified = " (not verified)" if ctx.parent_exe in ctx.shell_parents else ""
    return [_finding(ev, "shell_spawn", "Shell started by a program that is not a shell",
                     f"shell {path} started by {ctx.parent_exe}{unverified}{via} "
                     f"(pid {ev.ppid})", 10, T_SHELL, Severity.LOW, **extra)]


STDIO_INET = "stdio on a network socket"  # the exec event's flag, read in the kernel at exec


def _is_shell(ev: KernelEvent) -> bool:
    names = {_basename(p) for p in (ev.exe, ev.filename, ev.argv[0] if ev.argv else "") if p}
    return bool(names & SHELLS)


def _shell_on_socket(ev: KernelEvent, path: str) -> list[Finding]:
    """A shell exec'd with a standard stream on an internet socket (bash -i >& /dev/tcp/..., a
    bind shell handing its accepted connection over), or started by a process whose own
    standard streams are one (a relay: python pty.spawn, socat): read in the kernel at the
    exec, so a shell that lives a few milliseconds is caught too."""
    if not _is_shell(ev):
        return []
    if STDIO_INET in ev.flags:
        how = f"shell {path} started with its standard input/output on a network socket"
    elif STDIO_INET in ev.parent_flags:
        how = (f"shell {path} started by {ev.parent_exe or ev.parent_comm} (pid {ev.ppid}), "
               "whose standard input/output is a network socket (a relay to the shell)")
    else:
        return []
    return [_finding(ev, "reverse_shell", "Shell on a network connection (reverse/bind shell)",
                     how, 50, T_SHELL, Severity.HIGH, executable=path,
                     relay=STDIO_INET not in ev.flags)]


def rule_credentials(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "cred":
        return []
    old_uid, old_gid, new_uid, new_gid = ev.args[:4]
    if old_uid != 0 and new_uid == 0:
        if ctx.setuid_verified:  # sudo, su, pkexec: root granted by a verified program's mode
            return [_finding(ev, "uid_root", "Process changed its user to root",
                             f"{ev.syscall}: uid {old_uid} → 0 (verified set-user-ID program)",
                             5, T_SETUID, old_uid=old_uid)]
        # Anything else that makes itself root (a saved uid 0 taken back, a set-user-ID copy
        # nobody verified) has escalated privileges.
        return [_finding(ev, "uid_root", "Process changed its user to root",
                         f"{ev.syscall}: uid {old_uid} → 0", 45, T_SETUID, Severity.HIGH,
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


# /proc/PID/mem (or a thread's /proc/PID/task/TID/mem), opened for writing: the kernel sends
# only opens for writing of paths under /proc/ or of a release_agent (FX_CAP_OPEN_PROC).
PROC_MEM = re.compile(r"^/proc/(\d+)(?:/task/(\d+))?/mem$")
OPENS = ("open", "openat", "openat2")


def opened_path(ev: KernelEvent) -> str:
    """The path of an open event ("" when it is not one)."""
    if ev.syscall == "open":
        return ev.strings[0]
    return ev.strings[1] if ev.syscall in OPENS else ""


def rule_proc_mem_write(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall not in OPENS:
        return []
    path = opened_path(ev)
    match = PROC_MEM.match(os.path.normpath(path)) if path else None
    if match is None:
        return []
    target = int(match.group(1))
    if target == ev.key.pid:
        return []
    return [_finding(ev, "proc_mem_write", "Memory of another process opened for writing",
                     f"{ev.syscall} of {path} for writing (the memory of pid {target})", 50,
                     T_PROC_MEM, Severity.CRITICAL, target_pid=target)]


def rule_module(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    if ev.kind != "syscall" or ev.syscall not in ("init_module", "finit_module"):
        return []
    if ctx.container.is_container:
        return []  # rule_container_escape: a module load from a container
    params = ev.strings[2] if ev.syscall == "init_module" else ev.strings[1]
    shown = f" (params {params!r})" if params else ""
    return [_finding(ev, "module_load", "Kernel module load attempted",
                     f"{ev.syscall}{shown}", 50, T_MODULE, Severity.HIGH)]


# Writable from a privileged container, each a way to run code on the host or stop it.
PROC_SYS_CRITICAL = {
    "/proc/sys/kernel/core_pattern": "runs a program of the container's choice as root on the "
                                     "host at the next crash",
    "/proc/sys/kernel/modprobe": "runs a program as root on the host at the next module "
                                 "request",
    "/proc/sys/fs/binfmt_misc/register": "makes the host kernel run a program of the "
                                         "container's choice for some files",
    "/proc/sysrq-trigger": "crashes, reboots or freezes the host",
    "/proc/sys/kernel/hotplug": "runs a program as root on the host at the next device event",
}
MOUNT_CGROUP_V1 = "cgroup"
MS_BIND = 0x1000  # the fs type of a v1 hierarchy: its release_agent runs on the host


def _in_container(ev: KernelEvent, ctx: EventContext, title: str, reason: str, points: float,
                  severity: Severity, **extra: Any) -> list[Finding]:
    where = ctx.container
    return [_finding(ev, "container_escape", title,
                     f"{reason} inside container {where.label} (id {where.id or where.pod_uid})",
                     points, T_ESCAPE, severity, container=where.label,
                     container_id=where.id, container_runtime=where.runtime, **extra)]


def rule_container_escape(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    """Escape indicators judged against the container the event came from: mounts (a block
    device: the host's disk; a cgroup v1 hierarchy: its release_agent), namespaces entered or
    created, kernel modules, ptrace of a process outside the container, writes under /proc/sys
    that the host acts on. The runtime's own set-up is not judged (`runtime_setup`)."""
    if ev.kind != "syscall" or not ctx.container.is_container or ctx.runtime_setup:
        return []
    name = ev.syscall
    what = ev.describe()
    if name == "mount":
        source, fstype = ev.strings[0], ev.strings[2]
        if fstype == MOUNT_CGROUP_V1:
            return _in_container(ev, ctx, "Cgroup v1 hierarchy mounted in a container",
                                 f"{what}: its release_agent runs a program on the host", 60,
                                 Severity.CRITICAL)
        if source.startswith("/dev/") and not ev.args[3] & MS_BIND:
            return _in_container(ev, ctx, "Host block device mounted in a container",
                                 f"{what}: the host's file system", 60, Severity.CRITICAL)
        return _in_container(ev, ctx, "Mount inside a container", what, 40, Severity.HIGH)
    if name == "open_by_handle_at":
        return _in_container(ev, ctx, "File opened by handle in a container",
                             f"{what}: reaches host files outside the container's root "
                             "(the 'shocker' escape)", 60, Severity.CRITICAL)
    if name in ("init_module", "finit_module"):
        return _in_container(ev, ctx, "Kernel module load from a container", what, 60,
                             Severity.CRITICAL)
    if name == "setns":
        target = ctx.target_container
        if target is not None and not target.is_container and target.state == "host":
            return _in_container(ev, ctx, "Container process entered the host's namespaces",
                                 f"{what} into namespaces of a host process", 60,
                                 Severity.CRITICAL)
        return _in_container(ev, ctx, "Namespaces entered from a container", what, 45,
                             Severity.HIGH)
    if name == "unshare":
        flags = ev.args[0] if ev.args else 0
        if flags & (CLONE_NEWUSER | CLONE_NEWNS):
            return _in_container(ev, ctx, "User or mount namespace created in a container",
                                 what, 40, Severity.HIGH)
        return _in_container(ev, ctx, "Namespaces unshared in a container", what, 15,
                             Severity.MEDIUM)
    if name in ("ptrace", "process_vm_writev"):
        target = ctx.target_container
        if target is not None and target.state == "host" and (
                name == "process_vm_writev" or ev.args[0] in PTRACE_ATTACH
                or ev.args[0] in PTRACE_WRITE):
            pid = signed32(ev.args[0] if name == "process_vm_writev" else ev.args[1])
            return _in_container(ev, ctx, "Host process traced from a container",
                                 f"{what}: pid {pid} runs on the host", 60, Severity.CRITICAL,
                                 target_pid=pid)
        return []
    if name in OPENS:
        path = os.path.normpath(opened_path(ev) or ".")
        if os.path.basename(path) == "release_agent":
            return _in_container(ev, ctx, "Cgroup release_agent written from a container",
                                 f"{path} opened for writing: the program it names runs as "
                                 "root on the host when a cgroup of the hierarchy empties", 60,
                                 Severity.CRITICAL, path=path)
        if path in PROC_SYS_CRITICAL:
            return _in_container(ev, ctx, "Host kernel setting written from a container",
                                 f"{path} opened for writing: {PROC_SYS_CRITICAL[path]}", 60,
                                 Severity.CRITICAL, path=path)
        if path.startswith("/proc/sys/"):
            return _in_container(ev, ctx, "Kernel setting written from a container",
                                 f"{path} opened for writing", 30, Severity.HIGH, path=path)
        return []
    if name in CONTAINER_ESCAPE_SYSCALLS:
        return _in_container(ev, ctx, "Namespace or mount change inside a container", what, 40,
                             Severity.HIGH)
    return []


def rule_namespace(ev: KernelEvent, ctx: EventContext) -> list[Finding]:
    """unshare/setns outside containers. Sandboxes (verified executables of rules.sandboxes:
    bwrap, browsers, systemd and its executor, container runtimes) do this as their job and
    are not findings; the syscall's base weight still counts in the mix."""
    if ev.kind != "syscall" or ev.syscall not in ("unshare", "setns"):
        return []
    if ctx.container.is_container:
        return []  # rule_container_escape
    if ctx.sandbox:
        return []
    if ev.syscall == "setns":
        # Joining another process's namespaces from the host is what container runtimes do
        # (verified sandboxes, above); anything else is moving into another context.
        return [_finding(ev, "namespace_enter", "Process entered other namespaces",
                         f"{ev.describe()} outside any container (not a known sandbox)", 45,
                         T_ESCAPE, Severity.HIGH)]
    flags = ev.args[0] if ev.args else 0
    if flags & CLONE_NEWUSER and flags & CLONE_NEWNS:
        # Root in a user namespace with a mount table of its own: the primitive of the user
        # namespace privilege escalations (overlayfs, fuse, fsconfig mounts as "root").
        return [_finding(ev, "namespace_unshare", "New user and mount namespaces created",
                         f"{ev.describe()}: a new user namespace with its own mounts gives its "
                         "creator root over them (not a known sandbox)", 40, T_ELEVATION,
                         Severity.HIGH)]
    if flags & CLONE_NEWUSER:
        return [_finding(ev, "namespace_unshare", "New user namespace created",
                         f"{ev.describe()}: a new user namespace gives its creator every "
                         "capability inside it (not a known sandbox)", 25, T_ELEVATION,
                         Severity.MEDIUM)]
    return [_finding(ev, "namespace_unshare", "Namespaces unshared",
                     f"{ev.describe()} outside any container (not a known sandbox)", 10,
                     T_ELEVATION, Severity.LOW)]


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


RULES: tuple[Rule, ...] = (rule_ptrace, rule_process_vm_write, rule_proc_mem_write, rule_exec,
                           rule_credentials,
                           rule_module, rule_container_escape, rule_namespace, rule_memfd_create,
                           rule_bpf_load, rule_compat_syscall)


def evaluate(ev: KernelEvent, ctx: EventContext | None = None) -> list[Finding]:
    """Every finding of every rule for one event. A container runtime setting a container up
    (`ctx.runtime_setup`) does its job: no finding, no risk."""
    ctx = ctx or EventContext()
    if ctx.runtime_setup:
        return []
    return [finding for rule in RULES for finding in rule(ev, ctx)]


@dataclass(frozen=True)
class Subject:
    """Who a finding is about, for `rules.exceptions`."""

    executable: str = ""
    parent: str = ""
    uid: int | None = None
    user: str = ""
    args: tuple[str, ...] = ()


class RuleFilter:
    """`rules.disabled` (rule ids, globs) and `rules.exceptions` of config.yml."""

    def __init__(self, config: RulesConfig) -> None:
        self.config = config

    def disabled(self, rule_id: str) -> bool:
        return any(fnmatch.fnmatchcase(rule_id, pattern) for pattern in self.config.disabled)

    def allows(self, rule_id: str, subject: Subject) -> bool:
        """False when the rule is disabled or an exception covers this subject."""
        if self.disabled(rule_id):
            return False
        return not any(_matches(ex, rule_id, subject) for ex in self.config.exceptions)


def _matches(ex: Any, rule_id: str, subject: Subject) -> bool:
    if not fnmatch.fnmatchcase(rule_id, ex.rule or "*"):
        return False
    if ex.executable and not fnmatch.fnmatchcase(subject.executable, ex.executable):
        return False
    if ex.parent and not fnmatch.fnmatchcase(subject.parent, ex.parent):
        return False
    if ex.user and ex.user not in (subject.user, str(subject.uid)):
        return False
    return not (ex.args and not fnmatch.fnmatchcase(" ".join(subject.args), ex.args))


def stdio_socket_finding(key: ProcessKey, name: str, exe: str, fds: tuple[int, ...],
                         remote: str, inbound: bool) -> Finding:
    """A shell whose standard input or output is a TCP connection: a reverse shell when it
    connected out, a bind shell when the connection came in to a listening port."""
    kind = "bind shell" if inbound else "reverse shell"
    which = "/".join({0: "stdin", 1: "stdout", 2: "stderr"}[fd] for fd in fds)
    reason = visible(f"{kind}: shell {exe or name} has its {which} on a TCP connection "
                     f"{'from' if inbound else 'to'} {remote}")
    return Finding(key, "syscalls.reverse_shell", f"Shell on a network connection ({kind})",
                   reason, 50, T_SHELL, Severity.HIGH,
                   {"remote": remote, "direction": "inbound" if inbound else "outbound",
                    "fds": list(fds), "executable": exe})
