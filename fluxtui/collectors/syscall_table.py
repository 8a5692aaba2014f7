"""Syscall number <-> name, from the architecture's <asm/unistd_64.h> (ausyscall's or bcc's
table without it). Nothing here imports textual.
"""

from __future__ import annotations

import platform
import re
import subprocess
from pathlib import Path

from fluxtui.collectors.bpf_structs import COMPAT_PREFIX, FX_MAX_NR, FX_NR_OTHER, FX_NR_START

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
        """The architecture's <asm/unistd_64.h> (and unistd_32.h for compat numbers); without
        the headers, `ausyscall --dump`, else bcc's built-in table. bcc is imported only in
        that last case: importing it maps libbcc and its LLVM (about 100 MB) into the process."""
        names: dict[int, str] = {}
        compat: dict[int, str] = {}
        if platform.machine() == "x86_64":
            names = {nr: name for name, nr in _unistd("unistd_64.h")}
            compat = {nr: name for name, nr in _unistd("unistd_32.h")}
        if not names:
            names = _ausyscall()
        if not names:
            from bcc import syscall as bcc_syscall  # only where installed

            names = {int(nr): raw.decode() for nr, raw in bcc_syscall.syscalls.items()}
        return cls(names, compat)


def _ausyscall() -> dict[int, str]:
    """`ausyscall --dump` (auditd's table for this machine), {} when not installed."""
    try:
        out = subprocess.run(["ausyscall", "--dump"], capture_output=True, text=True,
                             timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    table: dict[int, str] = {}
    for line in out.splitlines():
        nr, _, name = line.partition("\t")
        if nr.strip().isdigit() and name.strip():
            table[int(nr)] = name.strip()
    return table


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

