"""Mirrors of bpf_programs/fluxtui_events.h for ctypes (tests/test_syscalls_bpf.py compares them
with gcc's layout), and what the syscall program captures per syscall. Nothing here imports
textual.
"""

from __future__ import annotations

import ctypes as ct

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
FX_EXEC_DATA_LEN = FX_MAX_ARGS * FX_ARG_LEN + 2 * FX_PATH_PARTS * FX_PART_LEN + FX_FILENAME_LEN
FX_EV_SYSCALL, FX_EV_EXEC, FX_EV_EXIT, FX_EV_CRED = 1, 2, 3, 4
FX_CAP_EVENT, FX_CAP_EXEC, FX_CAP_CRED, FX_CAP_CAPSET, FX_CAP_PTRACE, FX_CAP_BPF = 1, 2, 3, 4, 5, 6
FX_CAP_OPEN_PROC = 7
FX_DROP_SLOTS = 5
FX_RETRIED = 4
FX_EXEC_NO_ARGV, FX_EXEC_ARGV_TRUNCATED, FX_EXEC_PATH_TRUNCATED = 1, 2, 4
FX_EXEC_NAME_TRUNCATED, FX_EXEC_ANON_FILE = 8, 16
FX_EXEC_STDIO_INET = 32
FX_CONN_ATTEMPT, FX_CONN_ESTABLISHED, FX_CONN_FAILED, FX_CONN_PROCESS = 1, 2, 3, 4


class Config(ct.Structure):
    _fields_ = [("self_tgid", ct.c_uint32), ("gen", ct.c_uint32), ("ns_per_tick", ct.c_uint64)] + [
        (name, ct.c_uint32) for name in (
            "task_group_leader", "task_start_boottime", "task_real_parent", "task_tgid",
            "task_comm", "task_mm", "task_cred", "cred_euid", "mm_exe_file", "file_f_path",
            "path_mnt", "path_dentry", "dentry_d_parent", "dentry_d_name", "qstr_name",
            "mount_mnt", "mount_mnt_parent", "mount_mnt_mountpoint", "vfsmount_mnt_root",
            "qstr_len", "task_thread_status", "compat_mask",
            "task_files", "files_fdt", "fdtable_fd", "fdtable_max_fds", "file_f_inode",
            "inode_i_mode", "file_private_data", "socket_sk", "sock_family", "wake_mask",
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


_EXEC_FIXED_FIELDS = [
    ("h", Header), ("ppid", ct.c_uint32), ("old_tid", ct.c_uint32), ("euid", ct.c_uint32),
    ("argc", ct.c_uint32), ("flags", ct.c_uint32), ("exe_parts", ct.c_uint32),
    ("exec_nr", ct.c_int32), ("cut_parts", ct.c_uint32),
    ("parent_comm", ct.c_char * FX_COMM_LEN), ("parent_start_ticks", ct.c_uint64),
    ("parent_exe_parts", ct.c_uint32), ("parent_cut_parts", ct.c_uint32),
    ("parent_flags", ct.c_uint32), ("data_len", ct.c_uint32),
]


class ExecFixedC(ct.Structure):
    """The fixed part of an exec record; `data_len` bytes of strings follow it."""

    _fields_ = _EXEC_FIXED_FIELDS


class ExecEventC(ct.Structure):
    """struct fx_exec_event whole (the kernel sends only its first sizeof(ExecFixedC) +
    data_len bytes)."""

    _fields_ = [*_EXEC_FIXED_FIELDS, ("data", ct.c_char * FX_EXEC_DATA_LEN)]


class ConnectEventC(ct.Structure):
    _fields_ = [
        ("kind", ct.c_uint32), ("tgid", ct.c_uint32), ("ts_ns", ct.c_uint64),
        ("sk", ct.c_uint64), ("start_ticks", ct.c_uint64), ("parent_start_ticks", ct.c_uint64),
        ("tid", ct.c_uint32), ("ppid", ct.c_uint32), ("uid", ct.c_uint32),
        ("family", ct.c_uint16), ("dport", ct.c_uint16), ("daddr", ct.c_uint8 * 16),
        ("comm", ct.c_char * FX_COMM_LEN),
    ]


class ConnectProcessC(ct.Structure):
    _fields_ = [
        ("kind", ct.c_uint32), ("tgid", ct.c_uint32), ("start_ticks", ct.c_uint64),
        ("exe_parts", ct.c_uint32), ("cut_parts", ct.c_uint32), ("exe_flags", ct.c_uint32),
        ("pad", ct.c_uint32), ("exe", (ct.c_char * FX_PART_LEN) * FX_PATH_PARTS),
    ]


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
    # Opens for writing of a path under /proc/ (another process's memory through /proc/PID/mem,
    # kernel settings) or of a cgroup v1 release_agent; the kernel sends only those, with the
    # path. openat2's flags are in its struct open_how (bit 15).
    "open": FX_CAP_OPEN_PROC | 0b001 << 8 | 0 << 12,
    "openat": FX_CAP_OPEN_PROC | 0b010 << 8 | 1 << 12,
    "openat2": FX_CAP_OPEN_PROC | 0b010 << 8 | 1 << 12 | 1 << 15,
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

