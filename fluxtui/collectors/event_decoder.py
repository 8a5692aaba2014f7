"""Ring buffer records of the syscall program -> `KernelEvent`s. Nothing here imports textual."""

from __future__ import annotations

import ctypes as ct
from collections.abc import Callable, Sequence
from typing import Any

from fluxtui.collectors.bpf_structs import (
    ELLIPSIS,
    FX_ARG_LEN,
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
    FX_PART_LEN,
    FX_PATH_PARTS,
    ExecFixedC,
    Header,
    SyscallEventC,
)
from fluxtui.collectors.kernel_event import KernelEvent, boot_to_wall, text
from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.events import ProcessKey


def path_from_parts(steps: Any, count: int, cut: int, flags: int) -> str:
    """A path from fixed-size rows of the steps the kernel walked (leaf first)."""
    return path_from_names([steps[i].value for i in range(min(count, FX_PATH_PARTS))], cut,
                           flags)


def path_from_names(names: Sequence[bytes], cut: int, flags: int) -> str:
    """A path from the names of the steps the kernel walked (leaf first). A path cut at
    FX_PATH_PARTS steps reads "…/a/b", never "/a/b" (a made-up absolute path); a name cut at
    FX_PART_LEN - 1 bytes ends with "…"."""
    parts = []
    for i, raw in enumerate(names[:FX_PATH_PARTS]):
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
        return _exec_event(raw, table, common)
    if header.kind == FX_EV_EXIT:
        return KernelEvent(kind="exit", **common)
    if header.kind not in (FX_EV_SYSCALL, FX_EV_CRED):
        return None
    if len(raw) < ct.sizeof(SyscallEventC):
        return None
    call = SyscallEventC.from_buffer_copy(raw[: ct.sizeof(SyscallEventC)])
    kind = "syscall" if header.kind == FX_EV_SYSCALL else "cred"
    name = table.name(header.nr) if table is not None else f"syscall_{header.nr}"
    return KernelEvent(
        kind=kind, syscall=name, nr=header.nr, args=tuple(call.args),
        strings=(text(call.str[0].value), text(call.str[1].value), text(call.str[2].value)),
        aux=(call.aux[0], call.aux[1]), **common,
    )



_EXEC_FIXED = ct.sizeof(ExecFixedC)


def _exec_event(raw: bytes, table: SyscallTable | None, common: dict[str, Any]
                ) -> KernelEvent | None:
    """An exec record: the fixed part, then argv entries, the executable's path steps, the
    parent's, and the filename (see struct fx_exec_event)."""
    if len(raw) < _EXEC_FIXED:
        return None
    ev = ExecFixedC.from_buffer_copy(raw, 0)
    argc, exe_parts, parent_parts = ev.argc, ev.exe_parts, ev.parent_exe_parts
    rows_end = _EXEC_FIXED + argc * FX_ARG_LEN + (exe_parts + parent_parts) * FX_PART_LEN
    if (argc > FX_MAX_ARGS or exe_parts > FX_PATH_PARTS or parent_parts > FX_PATH_PARTS
            or rows_end >= _EXEC_FIXED + ev.data_len or _EXEC_FIXED + ev.data_len > len(raw)):
        return None  # counts that do not fit what was sent: not a record this program wrote
    at = _EXEC_FIXED
    argv = _rows(raw, at, argc, FX_ARG_LEN)
    at += argc * FX_ARG_LEN
    exe = _rows(raw, at, exe_parts, FX_PART_LEN)
    at += exe_parts * FX_PART_LEN
    parent_exe = _rows(raw, at, parent_parts, FX_PART_LEN)
    filename = raw[rows_end:_EXEC_FIXED + ev.data_len].split(b"\0", 1)[0]
    syscall = table.name(ev.exec_nr) if table is not None and ev.exec_nr >= 0 else ""
    return KernelEvent(
        kind="exec", syscall=syscall, nr=ev.exec_nr,
        filename=text(filename),
        argv=tuple(text(arg) for arg in argv),
        exe=path_from_names(exe, ev.cut_parts, ev.flags),
        ppid=ev.ppid, parent_comm=text(ev.parent_comm), euid=ev.euid,
        flags=tuple(_flags(ev.flags)),
        parent_start_ticks=ev.parent_start_ticks,
        parent_exe=path_from_names(parent_exe, ev.parent_cut_parts, ev.parent_flags),
        parent_flags=tuple(_flags(ev.parent_flags)), **common,
    )


def _rows(raw: bytes, at: int, count: int, size: int) -> list[bytes]:
    """`count` NUL-terminated strings in rows of `size` bytes from `at`."""
    return [raw[i:i + size].split(b"\0", 1)[0] for i in range(at, at + count * size, size)]
