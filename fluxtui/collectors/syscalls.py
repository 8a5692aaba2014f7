"""Syscall capture with eBPF: loads bpf_programs/syscalls.bpf.c with BCC, drains its count maps
and reads its ring buffer of high-signal events. No scoring here (see fluxtui/detection/).

What the kernel side does is described at the top of syscalls.bpf.c. This module:
- finds the offsets of the few kernel structure members the program reads (start time, parent,
  executable path) in the running kernel's BTF, because BCC compiles against installed headers
  that may belong to another kernel version;
- maps syscall numbers to names with bcc's own table (ausyscall's when installed), completed by
  the architecture's <asm/unistd_64.h> for numbers newer than bcc's built-in x86_64 list;
- decodes ring buffer events into `KernelEvent`s (copied out inside the callback, on a poll
  thread) and drains the count maps on demand (`drain`, from the engine's tick).
Nothing here imports textual.
"""

from __future__ import annotations

import ctypes as ct
import logging
import os
import platform
import re
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxtui.collectors.bpf_loader import compile_program, program_path
from fluxtui.ecs import iso_time
from fluxtui.events import ProcessKey

log = logging.getLogger(__name__)

BPF_SOURCE = program_path("syscalls.bpf.c")
BTF_PATH = Path("/sys/kernel/btf/vmlinux")
TRACEFS = Path("/sys/kernel/tracing")

# Mirrors of fluxtui_events.h (tests/test_syscalls_bpf.py compares them with gcc's layout).
FX_MAX_NR = 1024
FX_NR_OTHER = 0xFFFE
FX_NR_START = 0xFFFF
FX_COMM_LEN = 16
FX_STR_LEN = 128
FX_FILENAME_LEN = 256
FX_MAX_ARGS = 8
FX_ARG_LEN = 64
FX_PATH_PARTS = 24
FX_PART_LEN = 48
FX_EV_SYSCALL, FX_EV_EXEC, FX_EV_EXIT, FX_EV_CRED = 1, 2, 3, 4
FX_CAP_EVENT, FX_CAP_EXEC, FX_CAP_CRED, FX_CAP_CAPSET, FX_CAP_PTRACE, FX_CAP_BPF = 1, 2, 3, 4, 5, 6
FX_DROP_SLOTS = 4
FX_EXEC_NO_ARGV, FX_EXEC_ARGV_TRUNCATED, FX_EXEC_PATH_TRUNCATED = 1, 2, 4
FX_EXEC_NAME_TRUNCATED = 8


class Config(ct.Structure):
    _fields_ = [("self_tgid", ct.c_uint32), ("gen", ct.c_uint32), ("ns_per_tick", ct.c_uint64)] + [
        (name, ct.c_uint32) for name in (
            "task_group_leader", "task_start_boottime", "task_real_parent", "task_tgid",
            "task_comm", "task_mm", "task_cred", "cred_euid", "mm_exe_file", "file_f_path",
            "path_mnt", "path_dentry", "dentry_d_parent", "dentry_d_name", "qstr_name",
            "mount_mnt", "mount_mnt_parent", "mount_mnt_mountpoint", "vfsmount_mnt_root",
            "qstr_len", "task_thread_status", "compat_mask",
        )
    ]


class CountKey(ct.Structure):
    _fields_ = [("tgid", ct.c_uint32), ("prev", ct.c_uint16), ("nr", ct.c_uint16),
                ("start_ticks", ct.c_uint64)]


class Header(ct.Structure):
    _fields_ = [
        ("boot_ns", ct.c_uint64), ("start_ticks", ct.c_uint64), ("cgroup_id", ct.c_uint64),
        ("tgid", ct.c_uint32), ("tid", ct.c_uint32), ("uid", ct.c_uint32), ("gid", ct.c_uint32),
        ("kind", ct.c_uint32), ("nr", ct.c_int32), ("comm", ct.c_char * FX_COMM_LEN),
    ]


class SyscallEventC(ct.Structure):
    _fields_ = [("h", Header), ("args", ct.c_uint64 * 6), ("aux", ct.c_uint64 * 2),
                ("str", (ct.c_char * FX_STR_LEN) * 3)]


class ExecEventC(ct.Structure):
    _fields_ = [
        ("h", Header), ("ppid", ct.c_uint32), ("old_tid", ct.c_uint32), ("euid", ct.c_uint32),
        ("argc", ct.c_uint32), ("flags", ct.c_uint32), ("exe_parts", ct.c_uint32),
        ("exec_nr", ct.c_int32), ("cut_parts", ct.c_uint32),
        ("parent_comm", ct.c_char * FX_COMM_LEN), ("filename", ct.c_char * FX_FILENAME_LEN),
        ("argv", (ct.c_char * FX_ARG_LEN) * FX_MAX_ARGS),
        ("exe", (ct.c_char * FX_PART_LEN) * FX_PATH_PARTS),
    ]


# Config fields -> (BTF struct, member); nested members are found in anonymous unions too.
BTF_MEMBERS = {
    "task_group_leader": ("task_struct", "group_leader"),
    "task_start_boottime": ("task_struct", "start_boottime"),
    "task_real_parent": ("task_struct", "real_parent"),
    "task_tgid": ("task_struct", "tgid"),
    "task_comm": ("task_struct", "comm"),
    "task_mm": ("task_struct", "mm"),
    "task_cred": ("task_struct", "cred"),
    "cred_euid": ("cred", "euid"),
    "mm_exe_file": ("mm_struct", "exe_file"),
    "file_f_path": ("file", "f_path"),
    "path_mnt": ("path", "mnt"),
    "path_dentry": ("path", "dentry"),
    "dentry_d_parent": ("dentry", "d_parent"),
    "dentry_d_name": ("dentry", "d_name"),
    "qstr_name": ("qstr", "name"),
    "qstr_len": ("qstr", "len"),
    "mount_mnt": ("mount", "mnt"),
    "mount_mnt_parent": ("mount", "mnt_parent"),
    "mount_mnt_mountpoint": ("mount", "mnt_mountpoint"),
    "vfsmount_mnt_root": ("vfsmount", "mnt_root"),
}

# What the program captures per syscall: class | string-argument mask << 8 | argv arg << 12.
CAPTURE: dict[str, int] = {
    "execve": FX_CAP_EXEC | 1 << 12,
    "execveat": FX_CAP_EXEC | 2 << 12,
    "ptrace": FX_CAP_PTRACE,
    "setuid": FX_CAP_CRED, "setgid": FX_CAP_CRED, "setreuid": FX_CAP_CRED,
    "setregid": FX_CAP_CRED, "setresuid": FX_CAP_CRED, "setresgid": FX_CAP_CRED,
    "capset": FX_CAP_CAPSET,
    "mount": FX_CAP_EVENT | 0b111 << 8,
    "umount2": FX_CAP_EVENT | 0b001 << 8,
    "pivot_root": FX_CAP_EVENT | 0b011 << 8,
    "chroot": FX_CAP_EVENT | 0b001 << 8,
    "init_module": FX_CAP_EVENT | 0b100 << 8,
    "finit_module": FX_CAP_EVENT | 0b010 << 8,
    "bpf": FX_CAP_BPF,
    "memfd_create": FX_CAP_EVENT | 0b001 << 8,
    "unshare": FX_CAP_EVENT,
    "setns": FX_CAP_EVENT,
    "process_vm_writev": FX_CAP_EVENT,
    # The new mount API and file handles: as able to change mounts or reach outside a
    # container's root as mount/pivot_root are.
    "fsopen": FX_CAP_EVENT | 0b001 << 8,
    "fsmount": FX_CAP_EVENT,
    "move_mount": FX_CAP_EVENT | 0b010 << 8,
    "open_tree": FX_CAP_EVENT | 0b010 << 8,
    "mount_setattr": FX_CAP_EVENT | 0b010 << 8,
    "open_by_handle_at": FX_CAP_EVENT,
}

# 32-bit (compat) syscalls emitted as events, by their 32-bit names: the high-signal calls above.
# A 64-bit program has no reason to make them through int 0x80, which bypasses filters and
# tools that only know the 64-bit numbers. execve is left out: its exec event is reported anyway.
COMPAT_CAPTURE = frozenset({
    "ptrace", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setuid32", "setgid32", "setreuid32", "setregid32", "setresuid32", "setresgid32", "capset",
    "mount", "umount", "umount2", "pivot_root", "chroot", "init_module", "finit_module", "bpf",
    "memfd_create", "unshare", "setns", "process_vm_writev", "fsopen", "fsmount", "move_mount",
    "open_tree", "mount_setattr", "open_by_handle_at",
})
COMPAT_PREFIX = "compat:"

ELLIPSIS = "\u2026"  # marks a path or a path component that was cut


class CollectorUnavailable(Exception):
    """Why the syscall collector cannot run here, phrased for the header and `fluxtui doctor`."""


# --- kernel structure offsets from BTF -------------------------------------------------------

_BTF_TRAILER = {1: 4, 3: 12, 14: 4, 17: 4}  # kind -> bytes after the common header
_BTF_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # kind -> bytes per vlen entry
_BTF_STRUCT, _BTF_UNION = 4, 5
_BTF_MODIFIERS = (8, 9, 10, 11, 18)  # typedef, volatile, const, restrict, type_tag


class Btf:
    """Just enough of the BTF format (linux/Documentation/bpf/btf.rst) to find the byte offset
    of a struct member, looking into anonymous structs and unions."""

    def __init__(self, data: bytes) -> None:
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = (
            struct.unpack_from("<HBBIIIII", data))
        if magic != 0xEB9F:
            raise ValueError("not BTF data (bad magic)")
        self._data = data
        self._strings = hdr_len + str_off
        self._types: list[tuple[int, int, int, int, int]] = [(0, 0, 0, 0, 0)]  # id 0 is void
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info, size_or_type = struct.unpack_from("<III", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            self._types.append((kind, name_off, info, size_or_type, pos + 12))
            pos += 12 + _BTF_TRAILER.get(kind, 0) + _BTF_PER_MEMBER.get(kind, 0) * vlen

    @classmethod
    def load(cls, path: Path = BTF_PATH) -> Btf:
        return cls(path.read_bytes())

    def _name_is(self, name_off: int, name: bytes) -> bool:
        return self._data.startswith(name + b"\0", self._strings + name_off)

    def struct_id(self, name: str) -> int:
        wanted = name.encode()
        for type_id, (kind, name_off, info, _size, _pos) in enumerate(self._types):
            if kind == _BTF_STRUCT and info & 0xFFFF and self._name_is(name_off, wanted):
                return type_id
        raise KeyError(f"struct {name} not in the kernel's BTF")

    def member_offset(self, struct_name: str, member: str) -> int:
        offset = self._find(self.struct_id(struct_name), member.encode())
        if offset is None:
            raise KeyError(f"{struct_name}.{member} not in the kernel's BTF")
        return offset

    def _find(self, type_id: int, member: bytes) -> int | None:
        _kind, _name_off, info, _size, pos = self._types[type_id]
        bitfield_encoding = info >> 31
        for i in range(info & 0xFFFF):
            name_off, member_type, bits = struct.unpack_from("<III", self._data, pos + 12 * i)
            if bitfield_encoding:
                bits &= 0xFFFFFF
            if name_off and self._name_is(name_off, member):
                return bits // 8
            if not name_off:  # anonymous struct or union: look inside
                inner = member_type
                while self._types[inner][0] in _BTF_MODIFIERS:
                    inner = self._types[inner][3]
                if self._types[inner][0] in (_BTF_STRUCT, _BTF_UNION):
                    found = self._find(inner, member)
                    if found is not None:
                        return bits // 8 + found
        return None


TS_COMPAT = 0x0002  # arch/x86/include/asm/thread_info.h: a 32-bit syscall is running


def kernel_offsets(btf: Btf) -> dict[str, int]:
    offsets = {name: btf.member_offset(*where) for name, where in BTF_MEMBERS.items()}
    offsets.update(compat_offsets(btf))
    return offsets


def compat_offsets(btf: Btf) -> dict[str, int]:
    """Where TS_COMPAT lives (x86_64 only); compat_mask 0 turns 32-bit detection off."""
    if platform.machine() != "x86_64":
        return {"task_thread_status": 0, "compat_mask": 0}
    try:
        status = (btf.member_offset("task_struct", "thread_info")
                  + btf.member_offset("thread_info", "status"))
    except KeyError:
        return {"task_thread_status": 0, "compat_mask": 0}
    return {"task_thread_status": status, "compat_mask": TS_COMPAT}


# --- syscall names ---------------------------------------------------------------------------

_UNISTD = re.compile(r"^#define\s+__NR_(\w+)\s+(\d+)\s*$", re.MULTILINE)


class SyscallTable:
    """Syscall number <-> name for the running architecture; 32-bit (compat) syscalls, counted
    as FX_MAX_NR + their number, are named "compat:<32-bit name>"."""

    def __init__(self, names: dict[int, str], compat: dict[int, str] | None = None) -> None:
        self.names = names
        self.numbers = {name: nr for nr, name in names.items()}
        self.compat = compat or {}
        self.compat_numbers = {name: nr for nr, name in self.compat.items()}

    def name(self, nr: int) -> str:
        if nr == FX_NR_OTHER:
            return "(out of range)"
        if nr == FX_NR_START:
            return "(start)"
        if FX_MAX_NR <= nr < 2 * FX_MAX_NR:
            nr -= FX_MAX_NR
            return COMPAT_PREFIX + (self.compat.get(nr) or f"syscall_{nr}")
        return self.names.get(nr) or f"syscall_{nr}"

    @classmethod
    def load(cls) -> SyscallTable:
        """bcc's table (from ausyscall when installed), completed from <asm/unistd_64.h> for
        numbers bcc's built-in x86_64 list predates (clone3, openat2, ...)."""
        from bcc import syscall as bcc_syscall  # imports libbcc: only where bcc is installed

        names = {int(nr): raw.decode() for nr, raw in bcc_syscall.syscalls.items()}
        compat: dict[int, str] = {}
        if platform.machine() == "x86_64":
            for name, nr in _unistd("unistd_64.h"):
                names.setdefault(nr, name)
            compat = dict((nr, name) for name, nr in _unistd("unistd_32.h"))
        return cls(names, compat)


def _unistd(header: str) -> list[tuple[str, int]]:
    """(name, number) from the first <asm/HEADER> installed, [] when none is."""
    for path in (Path("/usr/include/x86_64-linux-gnu/asm") / header,
                 Path("/usr/include/asm") / header):
        try:
            text = path.read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        return [(name, int(nr)) for name, nr in _UNISTD.findall(text)]
    return []


# --- events ----------------------------------------------------------------------------------


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "replace")


def boot_to_wall(boot_ns: int) -> float:
    """Wall-clock time of a bpf_ktime_get_boot_ns() timestamp."""
    return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - boot_ns / 1e9)


@dataclass(frozen=True)
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
    flags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """Program name: the executable's base name for an exec, else the kernel's comm."""
        if self.kind == "exec" and self.exe:
            return self.exe.rsplit("/", 1)[-1]
        return self.comm

    def describe(self) -> str:
        """One line for people; untrusted parts still need fluxtui.text.visible to display."""
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

    def to_ecs(self) -> dict[str, Any]:
        action = self.kind if self.kind in ("exec", "exit") else self.syscall
        types = {"exec": ["start"], "exit": ["end"], "cred": ["change"]}.get(self.kind, ["info"])
        process: dict[str, Any] = {
            "pid": self.key.pid,
            "thread": {"id": self.tid},
            "name": self.name,
            "user": {"id": str(self.uid)},
            "group": {"id": str(self.gid)},
        }
        fluxtui: dict[str, Any] = {"process": {"start_ticks": self.key.start_ticks},
                                   "cgroup_id": self.cgroup_id}
        if self.kind == "exec":
            process["executable"] = self.exe or self.filename
            process["args"] = list(self.argv)
            process["parent"] = {"pid": self.ppid, "name": self.parent_comm}
            if self.euid is not None:
                process["user"]["effective"] = {"id": str(self.euid)}
            fluxtui["exec"] = {"filename": self.filename, "flags": list(self.flags)}
        elif self.kind in ("syscall", "cred"):
            fluxtui["syscall"] = {"name": self.syscall, "nr": self.nr, "args": list(self.args),
                                  "strings": [s for s in self.strings if s]}
        return {
            "@timestamp": iso_time(self.timestamp),
            "event": {"kind": "event", "module": "fluxtui", "dataset": "fluxtui.syscalls",
                      "category": ["process"], "type": types, "action": action},
            "message": self.describe(),
            "process": process,
            "fluxtui": fluxtui,
        }


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
    if name == "open_by_handle_at":
        return f"open_by_handle_at(mount fd {signed32(a[0])}, flags {a[2]:#x})"
    return f"{name}({', '.join(hex(x) for x in a)})"


def _signed(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def signed32(value: int) -> int:
    """A 32-bit syscall argument (pid, fd, uid) as the signed number it is."""
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value >= 1 << 31 else value


def _exe_path(ev: ExecEventC) -> str:
    """The executable's path from its steps (leaf first). A path cut at FX_PATH_PARTS steps
    reads "…/a/b", never "/a/b" (a made-up absolute path); a name cut at FX_PART_LEN - 1 bytes
    ends with "…"."""
    parts = []
    for i in range(min(ev.exe_parts, FX_PATH_PARTS)):
        raw = ev.exe[i].value
        if not raw:
            continue  # "" marks a mount crossing
        name = _text(raw)
        if ev.cut_parts >> i & 1:
            name += ELLIPSIS
        parts.append(name)
    if not parts:
        return ""
    path = "/".join(reversed(parts))
    return f"{ELLIPSIS}/{path}" if ev.flags & FX_EXEC_PATH_TRUNCATED else f"/{path}"


def decode_event(raw: bytes, table: SyscallTable | None,
                 to_wall: Callable[[int], float] = boot_to_wall) -> KernelEvent | None:
    """A KernelEvent from ring buffer bytes; None for a record too short for its kind."""
    if len(raw) < ct.sizeof(Header):
        return None
    header = Header.from_buffer_copy(raw[: ct.sizeof(Header)])
    common: dict[str, Any] = {
        "timestamp": to_wall(header.boot_ns),
        "key": ProcessKey(header.tgid, header.start_ticks),
        "tid": header.tid,
        "uid": header.uid,
        "gid": header.gid,
        "comm": _text(header.comm),
        "cgroup_id": header.cgroup_id,
    }
    if header.kind == FX_EV_EXEC:
        if len(raw) < ct.sizeof(ExecEventC):
            return None
        ev = ExecEventC.from_buffer_copy(raw[: ct.sizeof(ExecEventC)])
        flags = [name for bit, name in ((FX_EXEC_NO_ARGV, "no argv"),
                                        (FX_EXEC_ARGV_TRUNCATED, "argv truncated"),
                                        (FX_EXEC_PATH_TRUNCATED, "path truncated"),
                                        (FX_EXEC_NAME_TRUNCATED, "name truncated"))
                 if ev.flags & bit]
        syscall = table.name(ev.exec_nr) if table is not None and ev.exec_nr >= 0 else ""
        return KernelEvent(
            kind="exec", syscall=syscall, nr=ev.exec_nr,
            filename=_text(ev.filename),
            argv=tuple(_text(ev.argv[i].value) for i in range(min(ev.argc, FX_MAX_ARGS))),
            exe=_exe_path(ev),
            ppid=ev.ppid, parent_comm=_text(ev.parent_comm), euid=ev.euid,
            flags=tuple(flags), **common,
        )
    if header.kind not in (FX_EV_SYSCALL, FX_EV_EXIT, FX_EV_CRED):
        return None
    if len(raw) < ct.sizeof(SyscallEventC):
        return None
    ev = SyscallEventC.from_buffer_copy(raw[: ct.sizeof(SyscallEventC)])
    kind = {FX_EV_SYSCALL: "syscall", FX_EV_EXIT: "exit", FX_EV_CRED: "cred"}[header.kind]
    if kind == "exit":
        return KernelEvent(kind="exit", **common)
    name = table.name(header.nr) if table is not None else f"syscall_{header.nr}"
    return KernelEvent(
        kind=kind, syscall=name, nr=header.nr, args=tuple(ev.args),
        strings=(_text(ev.str[0].value), _text(ev.str[1].value), _text(ev.str[2].value)),
        aux=(ev.aux[0], ev.aux[1]), **common,
    )


# --- the collector ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DropCounts:
    """What could not be recorded (never silently): syscalls not counted because the count map
    was full or per-thread state could not be allocated, events lost in a full ring buffer or a
    full user-space queue, execs reported without argv."""

    counts: int = 0
    thread_state: int = 0
    events: int = 0
    queue: int = 0
    argv: int = 0

    @property
    def syscalls_lost(self) -> int:
        return self.counts + self.thread_state

    @property
    def events_lost(self) -> int:
        return self.events + self.queue

    def __sub__(self, other: DropCounts) -> DropCounts:
        return DropCounts(self.counts - other.counts, self.thread_state - other.thread_state,
                          self.events - other.events, self.queue - other.queue,
                          self.argv - other.argv)


@dataclass(frozen=True)
class Drain:
    """Counts since the previous drain, per process: by syscall number and by bigram."""

    window_s: float
    counts: dict[ProcessKey, dict[int, int]]
    bigrams: dict[ProcessKey, dict[tuple[int, int], int]]
    events: list[KernelEvent]
    dropped: DropCounts  # during this window
    dropped_total: DropCounts  # since start
    malformed_events: int = 0


@dataclass
class _Queue:
    events: deque[KernelEvent] = field(default_factory=deque)
    overflow: int = 0
    malformed: int = 0


def group_dead_supported() -> bool:
    fmt = TRACEFS / "events/sched/sched_process_exit/format"
    try:
        return "group_dead" in fmt.read_text()
    except OSError:
        return False


def unavailable_reason() -> str | None:
    """Why the collector cannot start here, checked without compiling (for `fluxtui doctor`);
    None when every prerequisite is present (compilation may still fail: see start())."""
    if os.geteuid() != 0:
        return "needs root (run with sudo)"
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        return f"bcc not importable ({exc}); install python3-bpfcc (make setup)"
    release = os.uname().release
    if not Path(f"/lib/modules/{release}/build/include").exists():
        return f"no kernel headers at /lib/modules/{release}/build (make setup links them)"
    if not (TRACEFS / "events/raw_syscalls/sys_enter").exists():
        return f"tracefs not mounted at {TRACEFS} (mount -t tracefs nodev {TRACEFS})"
    if not BTF_PATH.exists():
        return f"kernel has no BTF ({BTF_PATH}); needs CONFIG_DEBUG_INFO_BTF"
    if not BPF_SOURCE.exists():
        return f"BPF source missing: {BPF_SOURCE}"
    return None


class SyscallCollector:
    """Owns the loaded BPF program. `start` raises CollectorUnavailable with the reason; `drain`
    is called from one thread (the engine tick); ring buffer events are read on a poll thread."""

    def __init__(self, ring_buffer_pages: int = 64, count_map_entries: int = 65536,
                 event_queue_limit: int = 10_000, self_pid: int | None = None) -> None:
        self.ring_buffer_pages = ring_buffer_pages
        self.count_map_entries = count_map_entries
        self.event_queue_limit = event_queue_limit
        self.self_pid = os.getpid() if self_pid is None else self_pid
        self.table: SyscallTable | None = None
        self._bpf: Any = None
        self._config = Config()
        self._gen = 0
        self._queue = _Queue()
        self._queue_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self._bpf_lock = threading.Lock()  # drain and close: the BPF object is not freed mid-use
        self.join_timeout_s = 2.0
        self._last_drain = time.monotonic()
        self._dropped_before = DropCounts()

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise CollectorUnavailable(reason)
        try:
            offsets = kernel_offsets(Btf.load())
        except (OSError, ValueError, KeyError, struct.error) as exc:
            raise CollectorUnavailable(f"kernel BTF unusable: {exc}") from None
        try:
            self.table = SyscallTable.load()
        except Exception as exc:  # bcc.syscall raises a bare Exception without ausyscall
            raise CollectorUnavailable(f"no syscall table for this architecture: {exc}") from None

        cflags = [f"-DFX_COUNT_ENTRIES={self.count_map_entries}",
                  f"-DFX_RINGBUF_PAGES={self.ring_buffer_pages}"]
        if group_dead_supported():
            cflags.append("-DFX_HAVE_GROUP_DEAD")
        try:
            self._bpf = compile_program(BPF_SOURCE.name, cflags)
        except Exception as exc:  # compile or verifier error: BCC raises Exception
            raise CollectorUnavailable(f"BPF program failed to load: {exc}") from None
        try:
            self._configure(offsets)
            self._bpf[b"events"].open_ring_buffer(self._on_event)
        except Exception as exc:
            self.close()
            raise CollectorUnavailable(f"BPF maps could not be set up: {exc}") from None
        self._last_drain = time.monotonic()
        self._poller = threading.Thread(target=self._poll, args=(self._bpf,),
                                        name="fluxtui-syscalls", daemon=True)
        self._poller.start()

    def _configure(self, offsets: dict[str, int]) -> None:
        assert self._bpf is not None and self.table is not None
        counts = self._bpf[b"counts"]
        counts[ct.c_int(0)] = ct.c_int(self._bpf[b"counts_a"].get_fd())
        counts[ct.c_int(1)] = ct.c_int(self._bpf[b"counts_b"].get_fd())
        desc = self._bpf[b"syscall_desc"]
        for name, value in CAPTURE.items():
            nr = self.table.numbers.get(name)
            if nr is not None and nr < FX_MAX_NR:
                desc[ct.c_int(nr)] = ct.c_uint32(value)
        compat_desc = self._bpf[b"compat_desc"]
        for name in COMPAT_CAPTURE:
            nr = self.table.compat_numbers.get(name)
            if nr is not None and nr < FX_MAX_NR:
                compat_desc[ct.c_int(nr)] = ct.c_uint32(FX_CAP_EVENT)
        cfg = self._config
        cfg.self_tgid = self.self_pid
        cfg.gen = self._gen
        for name, offset in offsets.items():
            setattr(cfg, name, offset)
        # The program ignores everything while ns_per_tick is 0. The array update is a plain
        # copy, so write every other field first, then the same values with ns_per_tick.
        cfg.ns_per_tick = 0
        self._bpf[b"config"][ct.c_int(0)] = cfg
        cfg.ns_per_tick = 1_000_000_000 // os.sysconf("SC_CLK_TCK")
        self._bpf[b"config"][ct.c_int(0)] = cfg

    def close(self) -> None:
        self._stop.set()
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.join(timeout=self.join_timeout_s)
        with self._bpf_lock:
            bpf, self._bpf = self._bpf, None
            if bpf is None:
                return
            if poller is not None and poller.is_alive():
                # Freeing the ring buffer under a running poll would crash the process; the
                # program stays loaded until the thread ends and the object is collected.
                log.warning("syscall ring buffer poller did not stop; BPF object not cleaned up")
                return
            bpf.cleanup()

    @property
    def running(self) -> bool:
        return self._bpf is not None

    # --- ring buffer -------------------------------------------------------------------------

    def _poll(self, bpf: Any) -> None:
        while not self._stop.is_set():
            try:
                bpf.ring_buffer_poll(timeout=100)
            except Exception:
                log.exception("ring buffer poll failed")
                self._stop.wait(0.5)

    def _on_event(self, _ctx: Any, data: Any, size: int) -> int:
        raw = ct.string_at(data, size)  # copy out before the kernel reuses the buffer
        event = decode_event(raw, self.table)
        with self._queue_lock:
            if event is None:
                self._queue.malformed += 1
            elif len(self._queue.events) >= self.event_queue_limit:
                self._queue.overflow += 1
            else:
                self._queue.events.append(event)
        return 0

    # --- draining ----------------------------------------------------------------------------

    def drain(self) -> Drain:
        """Counts since the previous drain (none lost: see "Draining" in syscalls.bpf.c) and
        the events received meanwhile."""
        with self._bpf_lock:
            if self._bpf is None:
                raise RuntimeError("collector not started")
            return self._drain()

    def _drain(self) -> Drain:
        old = self._gen
        self._gen = old ^ 1
        self._config.gen = self._gen
        self._bpf[b"config"][ct.c_int(0)] = self._config
        # Rewriting a slot of the array of maps waits until every running program is done.
        self._bpf[b"counts"][ct.c_int(old)] = ct.c_int(self._bpf[_INNER[old]].get_fd())
        now = time.monotonic()
        window, self._last_drain = now - self._last_drain, now

        counts: dict[ProcessKey, dict[int, int]] = {}
        bigrams: dict[ProcessKey, dict[tuple[int, int], int]] = {}
        inner = self._bpf[_INNER[old]]
        for _ in range(3):  # one pass empties it; more only if the kernel returned a partial one
            got = 0
            for key, value in inner.items_lookup_and_delete_batch():
                got += 1
                pkey = ProcessKey(key.tgid, key.start_ticks)
                by_nr = counts.setdefault(pkey, {})
                by_nr[key.nr] = by_nr.get(key.nr, 0) + value
                pairs = bigrams.setdefault(pkey, {})
                pairs[(key.prev, key.nr)] = pairs.get((key.prev, key.nr), 0) + value
            if not got:
                break

        with self._queue_lock:
            events = list(self._queue.events)
            self._queue.events.clear()
            overflow, malformed = self._queue.overflow, self._queue.malformed
        dropped_map = self._bpf[b"dropped"]
        slots = [int(dropped_map.sum(ct.c_int(i)).value) for i in range(FX_DROP_SLOTS)]
        total = DropCounts(counts=slots[0], events=slots[1], thread_state=slots[2],
                           argv=slots[3], queue=overflow)
        dropped, self._dropped_before = total - self._dropped_before, total
        return Drain(window, counts, bigrams, events, dropped, total, malformed)


_INNER = (b"counts_a", b"counts_b")
