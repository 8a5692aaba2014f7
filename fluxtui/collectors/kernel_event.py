"""`KernelEvent`: one high-signal event from the syscall program's ring buffer, with its one-line
description (its ECS document: `fluxtui.ecs.processes`). Nothing here imports textual.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from fluxtui.events import ContainerIdentity, ProcessKey


def text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def boot_to_wall(boot_ns: int) -> float:
    """Wall-clock time of a bpf_ktime_get_boot_ns() timestamp."""
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - boot_ns / 1e9)


@dataclass(frozen=True, slots=True)
class KernelEvent:
    """One high-signal event from the ring buffer. kind: "syscall" (a high-signal syscall was
    entered, with its arguments), "exec" (an exec succeeded), "exit" (the process's last thread
    exited), "cred" (a set*id call changed the real uid/gid: args are old uid, old gid, new
    uid, new gid)."""

    kind: str
    timestamp: float  # wall clock, from the kernel's boot-time stamp
    key: ProcessKey
    tid: int
    uid: int
    gid: int
    comm: str
    cgroup_id: int = 0
    syscall: str = ""
    nr: int = -1
    args: tuple[int, ...] = ()
    strings: tuple[str, str, str] = ("", "", "")
    aux: tuple[int, int] = (0, 0)
    # exec only
    filename: str = ""
    argv: tuple[str, ...] = ()
    exe: str = ""
    ppid: int = 0
    parent_comm: str = ""
    euid: int | None = None
    flags: tuple[str, ...] = ()  # "anonymous file": the executable is a memfd or the like
    # The parent as the kernel saw it when the exec succeeded ("" / 0 when not read).
    parent_start_ticks: int = 0
    parent_exe: str = ""
    parent_flags: tuple[str, ...] = ()
    # Where it happened, resolved from cgroup_id when the event was handled (None: not resolved).
    container: ContainerIdentity | None = None

    @property
    def parent_key(self) -> ProcessKey | None:
        return ProcessKey(self.ppid, self.parent_start_ticks) if self.ppid else None

    @property
    def name(self) -> str:
        """Program name: the executable's base name for an exec, else the kernel's comm."""
        if self.kind == "exec" and self.exe:
            return self.exe.rsplit("/", 1)[-1]
        return self.comm

    def describe(self) -> str:
        """One line for people; its untrusted parts still need `untrusted_text.visible`."""
        if self.kind == "exec":
            args = " ".join(self.argv[1:]) if self.argv else ""
            more = " …" if "argv truncated" in self.flags else ""
            return f"exec {self.exe or self.filename} {args}{more}".rstrip()
        if self.kind == "exit":
            return "exit"
        if self.kind == "cred":
            old_uid, old_gid, new_uid, new_gid = self.args[:4]
            return f"{self.syscall}: uid {old_uid}→{new_uid}, gid {old_gid}→{new_gid}"
        return describe_syscall(self.syscall, self.args, self.strings, self.aux)


PTRACE_REQUESTS = {
    0: "PTRACE_TRACEME", 1: "PTRACE_PEEKTEXT", 2: "PTRACE_PEEKDATA", 3: "PTRACE_PEEKUSER",
    4: "PTRACE_POKETEXT", 5: "PTRACE_POKEDATA", 6: "PTRACE_POKEUSER", 7: "PTRACE_CONT",
    8: "PTRACE_KILL", 9: "PTRACE_SINGLESTEP", 12: "PTRACE_GETREGS", 13: "PTRACE_SETREGS",
    14: "PTRACE_GETFPREGS", 15: "PTRACE_SETFPREGS", 16: "PTRACE_ATTACH", 17: "PTRACE_DETACH",
    24: "PTRACE_SYSCALL", 0x4200: "PTRACE_SETOPTIONS", 0x4204: "PTRACE_GETREGSET",
    0x4205: "PTRACE_SETREGSET", 0x4206: "PTRACE_SEIZE", 0x4207: "PTRACE_INTERRUPT",
}


def describe_syscall(name: str, args: tuple[int, ...], strings: tuple[str, str, str],
                     aux: tuple[int, int]) -> str:
    a = list(args) + [0] * (6 - len(args))
    if name == "ptrace":
        request = PTRACE_REQUESTS.get(a[0], str(a[0]))
        return f"ptrace({request}, pid {_signed(a[1])})"
    if name in ("setuid", "setgid"):
        return f"{name}({signed32(a[0])})"
    if name in ("setreuid", "setregid"):
        return f"{name}({signed32(a[0])}, {signed32(a[1])})"
    if name in ("setresuid", "setresgid"):
        return f"{name}({signed32(a[0])}, {signed32(a[1])}, {signed32(a[2])})"
    if name == "capset":
        return f"capset(effective={aux[0]:#x}, permitted={aux[1]:#x})"
    if name == "mount":
        return f"mount({strings[0]!r}, {strings[1]!r}, type {strings[2]!r}, flags {a[3]:#x})"
    if name == "umount2":
        return f"umount2({strings[0]!r})"
    if name == "pivot_root":
        return f"pivot_root({strings[0]!r}, {strings[1]!r})"
    if name == "chroot":
        return f"chroot({strings[0]!r})"
    if name == "init_module":
        return f"init_module({a[1]} bytes, params {strings[2]!r})"
    if name == "finit_module":
        return f"finit_module(fd {signed32(a[0])}, params {strings[1]!r})"
    if name == "memfd_create":
        return f"memfd_create({strings[0]!r})"
    if name == "bpf":
        return f"bpf(cmd {a[0]})"
    if name == "unshare":
        return f"unshare(flags {a[0]:#x})"
    if name == "setns":
        return f"setns(fd {signed32(a[0])}, nstype {a[1]:#x})"
    if name == "process_vm_writev":
        return f"process_vm_writev(pid {signed32(a[0])}, {a[4]} remote iovecs)"
    if name == "fsopen":
        return f"fsopen({strings[0]!r})"
    if name == "fsmount":
        return f"fsmount(fd {signed32(a[0])}, flags {a[1]:#x})"
    if name == "move_mount":
        return f"move_mount(fd {signed32(a[0])}, {strings[1]!r}, flags {a[4]:#x})"
    if name in ("open_tree", "mount_setattr"):
        return f"{name}(fd {signed32(a[0])}, {strings[1]!r}, flags {a[2]:#x})"
    if name == "open":
        return f"open({strings[0]!r}, flags {a[1]:#o})"
    if name == "openat":
        return f"openat({strings[1]!r}, flags {a[2]:#o})"
    if name == "openat2":
        return f"openat2({strings[1]!r}, for writing)"  # the flags are in its struct open_how
    if name == "open_by_handle_at":
        return f"open_by_handle_at(mount fd {signed32(a[0])}, flags {a[2]:#x})"
    return f"{name}({', '.join(hex(x) for x in a)})"


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def signed32(value: int) -> int:
    """A 32-bit syscall argument (pid, fd, uid) as the signed number it is."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value

