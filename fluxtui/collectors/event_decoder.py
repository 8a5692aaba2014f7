"""Ring buffer records of the syscall program -> `KernelEvent`s. Nothing here imports textual."""

from __future__ import annotations

import ctypes as ct
from collections.abc import Callable
from typing import Any

from fluxtui.collectors.bpf_structs import (
    ELLIPSIS,
    FX_EV_CRED,
    FX_EV_EXEC,
    FX_EV_EXIT,
    FX_EV_SYSCALL,
    FX_EXEC_ANON_FILE,
    FX_EXEC_ARGV_TRUNCATED,
    FX_EXEC_NAME_TRUNCATED,
    FX_EXEC_NO_ARGV,
    FX_EXEC_PATH_TRUNCATED,
    FX_EXEC_STDIO_INET,
    FX_MAX_ARGS,
    FX_PATH_PARTS,
    ExecEventC,
    Header,
    SyscallEventC,
)
from fluxtui.collectors.kernel_event import KernelEvent, boot_to_wall, text
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.events import ProcessKey


def path_from_parts(steps: Any, count: int, cut: int, flags: int) -> str:
    """A path from the steps the kernel walked (leaf first). A path cut at FX_PATH_PARTS steps
    reads "…/a/b", never "/a/b" (a made-up absolute path); a name cut at FX_PART_LEN - 1 bytes
    ends with "…"."""
    parts = []
    for i in range(min(count, FX_PATH_PARTS)):
        raw = steps[i].value
        if not raw:
            continue  # "" marks a mount crossing
        name = text(raw)
        if cut >> i & 1:
            name += ELLIPSIS
        parts.append(name)
    if not parts:
        return ""
    path = "/".join(reversed(parts))
    return f"{ELLIPSIS}/{path}" if flags & FX_EXEC_PATH_TRUNCATED else f"/{path}"


def _flags(bits: int) -> list[str]:
    return [name for bit, name in ((FX_EXEC_NO_ARGV, "no argv"),
                                   (FX_EXEC_ARGV_TRUNCATED, "argv truncated"),
                                   (FX_EXEC_PATH_TRUNCATED, "path truncated"),
                                   (FX_EXEC_NAME_TRUNCATED, "name truncated"),
                                   (FX_EXEC_ANON_FILE, "anonymous file"),
                                   (FX_EXEC_STDIO_INET, "stdio on a network socket"))
            if bits & bit]


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
        "comm": text(header.comm),
        "cgroup_id": header.cgroup_id,
    }
    if header.kind == FX_EV_EXEC:
        if len(raw) < ct.sizeof(ExecEventC):
            return None
        ev = ExecEventC.from_buffer_copy(raw[: ct.sizeof(ExecEventC)])
        syscall = table.name(ev.exec_nr) if table is not None and ev.exec_nr >= 0 else ""
        return KernelEvent(
            kind="exec", syscall=syscall, nr=ev.exec_nr,
            filename=text(ev.filename),
            argv=tuple(text(ev.argv[i].value) for i in range(min(ev.argc, FX_MAX_ARGS))),
            exe=path_from_parts(ev.exe, ev.exe_parts, ev.cut_parts, ev.flags),
            ppid=ev.ppid, parent_comm=text(ev.parent_comm), euid=ev.euid,
            flags=tuple(_flags(ev.flags)),
            parent_start_ticks=ev.parent_start_ticks,
            parent_exe=path_from_parts(ev.parent_exe, ev.parent_exe_parts, ev.parent_cut_parts,
                                       ev.parent_flags),
            parent_flags=tuple(_flags(ev.parent_flags)), **common,
        )
    if header.kind not in (FX_EV_SYSCALL, FX_EV_EXIT, FX_EV_CRED):
        return None
    if len(raw) < ct.sizeof(SyscallEventC):
        return None
    call = SyscallEventC.from_buffer_copy(raw[: ct.sizeof(SyscallEventC)])
    kind = {FX_EV_SYSCALL: "syscall", FX_EV_EXIT: "exit", FX_EV_CRED: "cred"}[header.kind]
    if kind == "exit":
        return KernelEvent(kind="exit", **common)
    name = table.name(header.nr) if table is not None else f"syscall_{header.nr}"
    return KernelEvent(
        kind=kind, syscall=name, nr=header.nr, args=tuple(call.args),
        strings=(text(call.str[0].value), text(call.str[1].value), text(call.str[2].value)),
        aux=(call.aux[0], call.aux[1]), **common,
    )

