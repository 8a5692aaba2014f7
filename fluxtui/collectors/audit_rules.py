"""fluxtui's own audit rules: which syscalls, encoded as `struct audit_rule_data`, tagged with a
key that names the instance ("fluxtui:<pid>:<start ticks>"), so that rules a killed instance
left behind are told apart from a live one's and from everybody else's. Nothing here imports
textual.

The syscalls are those the eBPF collector sends as events (bpf_structs.CAPTURE, less the opens
under /proc it filters in the kernel), with the same in-kernel filters where audit can express
them: only the ptrace requests that take hold of or write into a process, only the bpf
commands that load or attach a program (one rule per value: a rule's fields are ANDed); and
exit_group, logged when the process ends: its exit event, in order after its other records.
"""

from __future__ import annotations

import platform
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from fluxtui.collectors.procstat import read_start_ticks

AUDIT_FILTER_EXIT = 0x04
AUDIT_ALWAYS = 2
AUDIT_BITMASK_SIZE = 64
AUDIT_MAX_FIELDS = 64
AUDIT_PID = 0
AUDIT_ARCH = 11
AUDIT_ARG0 = 200
AUDIT_FILTERKEY = 210
AUDIT_EQUAL = 0x40000000
AUDIT_NOT_EQUAL = 0x30000000

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003

KEY_PREFIX = "fluxtui:"

_HEAD = struct.Struct("=3I")
_ARRAYS = struct.Struct(f"={4 * AUDIT_MAX_FIELDS}I")  # mask, fields, values, fieldflags
_BUFLEN = struct.Struct("=I")
RULE_SIZE = _HEAD.size + _ARRAYS.size + _BUFLEN.size

# The kernel ABI's numbers (arch/x86/entry/syscalls/syscall_{64,32}.tbl): the audit fallback
# must work where bcc, and with it bcc's syscall table, is missing.
X86_64 = {
    "execve": 59, "execveat": 322, "ptrace": 101, "process_vm_writev": 311,
    "setuid": 105, "setgid": 106, "setreuid": 113, "setregid": 114, "setresuid": 117,
    "setresgid": 119, "capset": 126, "mount": 165, "umount2": 166, "pivot_root": 155,
    "chroot": 161, "init_module": 175, "finit_module": 313, "memfd_create": 319,
    "unshare": 272, "setns": 308, "bpf": 321, "fsopen": 430, "fsmount": 432, "move_mount": 429,
    "open_tree": 428, "mount_setattr": 442, "open_by_handle_at": 304, "exit_group": 231,
}
I386 = {
    "execve": 11, "execveat": 358, "ptrace": 26, "process_vm_writev": 348,
    "setuid": 23, "setgid": 46, "setreuid": 70, "setregid": 71, "setresuid": 164,
    "setresgid": 170, "setuid32": 213, "setgid32": 214, "setreuid32": 203, "setregid32": 204,
    "setresuid32": 208, "setresgid32": 210, "capset": 185, "mount": 21, "umount": 22,
    "umount2": 52, "pivot_root": 217, "chroot": 61, "init_module": 128, "finit_module": 350,
    "memfd_create": 356, "unshare": 310, "setns": 346, "bpf": 357, "fsopen": 430,
    "fsmount": 432, "move_mount": 429, "open_tree": 428, "mount_setattr": 442,
    "open_by_handle_at": 342, "exit_group": 252,
}
PTRACE_REQUESTS = (0, 4, 5, 6, 13, 15, 16, 0x4205, 0x4206)  # as ptrace_wanted() in the BPF
BPF_COMMANDS = (5, 8, 17, 28)  # as bpf_cmd_wanted(): PROG_LOAD, PROG_ATTACH, RAW_TP, LINK
FILTERED = {"ptrace": PTRACE_REQUESTS, "bpf": BPF_COMMANDS}


def arch_tables() -> dict[int, dict[str, int]] | None:
    """Audit arch -> {syscall name: number} for this machine; None where unsupported."""
    if platform.machine() != "x86_64":
        return None
    return {AUDIT_ARCH_X86_64: X86_64, AUDIT_ARCH_I386: I386}


@dataclass(frozen=True)
class Rule:
    """One exit-filter rule: syscalls, (field, op, value) conditions and a key."""

    syscalls: tuple[int, ...]
    fields: tuple[tuple[int, int, int], ...]
    key: str

    def encode(self) -> bytes:
        mask = [0] * AUDIT_BITMASK_SIZE
        for nr in self.syscalls:
            mask[nr // 32] |= 1 << (nr % 32)
        key = self.key.encode()
        conditions = [*self.fields, (AUDIT_FILTERKEY, AUDIT_EQUAL, len(key))]
        fields = [f for f, _op, _v in conditions] + [0] * (AUDIT_MAX_FIELDS - len(conditions))
        flags = [op for _f, op, _v in conditions] + [0] * (AUDIT_MAX_FIELDS - len(conditions))
        values = [v for _f, _op, v in conditions] + [0] * (AUDIT_MAX_FIELDS - len(conditions))
        return (_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, len(conditions))
                + _ARRAYS.pack(*mask, *fields, *values, *flags)
                + _BUFLEN.pack(len(key)) + key)


ENABLED_MARK = ":enabled"  # the instance turned audit on, and must turn it off again


def instance_key(pid: int, start_ticks: int, enabled_audit: bool = False) -> str:
    return f"{KEY_PREFIX}{pid}:{start_ticks}{ENABLED_MARK if enabled_audit else ''}"


def build_rules(key: str, self_pid: int,
                tables: dict[int, dict[str, int]]) -> list[Rule]:
    """The rules for every arch: one for the unfiltered syscalls, one per wanted ptrace request
    and bpf command. fluxtui's own process is left out, as the eBPF program leaves it out."""
    rules = []
    for arch, table in tables.items():
        base = ((AUDIT_ARCH, AUDIT_EQUAL, arch), (AUDIT_PID, AUDIT_NOT_EQUAL, self_pid))
        plain = tuple(sorted(nr for name, nr in table.items() if name not in FILTERED))
        rules.append(Rule(plain, base, key))
        for name, wanted in FILTERED.items():
            if name in table:
                rules += [Rule((table[name],), (*base, (AUDIT_ARG0, AUDIT_EQUAL, value)), key)
                          for value in wanted]
    return rules


def rule_key(raw: bytes) -> str | None:
    """The key of a listed rule (struct audit_rule_data), None when it has none."""
    if len(raw) < RULE_SIZE:
        return None
    _flags, _action, count = _HEAD.unpack_from(raw)
    arrays = _ARRAYS.unpack_from(raw, _HEAD.size)
    fields = arrays[AUDIT_BITMASK_SIZE: AUDIT_BITMASK_SIZE + AUDIT_MAX_FIELDS]
    values = arrays[AUDIT_BITMASK_SIZE + AUDIT_MAX_FIELDS: AUDIT_BITMASK_SIZE
                    + 2 * AUDIT_MAX_FIELDS]
    # String fields (key, paths, labels) are laid one after the other in buf, in field order.
    offset = RULE_SIZE
    string_fields = {*range(13, 18), *range(19, 24), 105, 107, 112, AUDIT_FILTERKEY}
    for i in range(min(count, AUDIT_MAX_FIELDS)):
        if fields[i] in string_fields:
            text = raw[offset: offset + values[i]].decode("utf-8", "replace")
            if fields[i] == AUDIT_FILTERKEY:
                return text
            offset += values[i]
    return None


def is_stale(key: str, alive: Iterable[str] = ()) -> bool:
    """True for a key of fluxtui whose instance is gone (its pid no longer runs, or runs a
    process started at another time); keys of live instances and others' keys are not."""
    if not key.startswith(KEY_PREFIX) or key in alive:
        return False
    try:
        pid_text, ticks_text = key[len(KEY_PREFIX):].removesuffix(ENABLED_MARK).split(":")
        pid, ticks = int(pid_text), int(ticks_text)
    except ValueError:
        return False  # not ours after all: never touched
    return read_start_ticks(pid) != ticks
