"""Offsets of the kernel structure members the BPF programs read, from the running kernel's BTF
(BCC compiles against installed headers that may belong to another kernel version). Nothing here
imports textual.
"""

from __future__ import annotations

import platform
import struct
from array import array
from pathlib import Path

BTF_PATH = Path("/sys/kernel/btf/vmlinux")

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
    # A process's standard streams at exec: task->files->fdt->fd[0..2], each file's inode mode
    # and, for a socket, its address family (reverse and bind shells).
    "task_files": ("task_struct", "files"),
    "files_fdt": ("files_struct", "fdt"),
    "fdtable_fd": ("fdtable", "fd"),
    "fdtable_max_fds": ("fdtable", "max_fds"),
    "file_f_inode": ("file", "f_inode"),
    "inode_i_mode": ("inode", "i_mode"),
    "file_private_data": ("file", "private_data"),
    "socket_sk": ("socket", "sk"),
}


_BTF_TRAILER = {1: 4, 3: 12, 14: 4, 17: 4}  # kind -> bytes after the common header
_BTF_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # kind -> bytes per vlen entry
_BTF_STRUCT, _BTF_UNION = 4, 5
_BTF_MODIFIERS = (8, 9, 10, 11, 18)  # typedef, volatile, const, restrict, type_tag


class Btf:
    """Just enough of the BTF format (linux/Documentation/bpf/btf.rst) to find the byte offset
    of a struct member, looking into anonymous structs and unions.

    The kernel's BTF has about 127,000 types here: each is kept as the offset of its record in one
    array (read on demand), not as Python objects; only structs are indexed by name. A tuple
    per type held 17 MB, three times at start (syscalls, connections, containers), and the
    pymalloc arenas they were in stayed resident after they were freed (issue 13)."""

    def __init__(self, data: bytes) -> None:
        magic, _version, _flags, hdr_len, type_off, type_len, str_off, _str_len = (
            struct.unpack_from("<HBBIIIII", data))
        if magic != 0xEB9F:
            raise ValueError("not BTF data (bad magic)")
        self._data = data
        self._strings = hdr_len + str_off
        self._pos = array("I", [0])  # type id -> offset of its record; id 0 is void
        self._structs: dict[int, int] = {}  # name offset -> first struct with members
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        while pos < end:
            name_off, info = struct.unpack_from("<II", data, pos)
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            if kind == _BTF_STRUCT and vlen:
                self._structs.setdefault(name_off, len(self._pos))
            self._pos.append(pos)
            pos += 12 + _BTF_TRAILER.get(kind, 0) + _BTF_PER_MEMBER.get(kind, 0) * vlen

    @classmethod
    def load(cls, path: Path = BTF_PATH) -> Btf:
        return cls(path.read_bytes())

    def _type(self, type_id: int) -> tuple[int, int, int, int, int]:
        """(kind, name offset, info, size or type, offset of what follows the header)."""
        if type_id == 0:
            return (0, 0, 0, 0, 0)
        pos = self._pos[type_id]
        name_off, info, size_or_type = struct.unpack_from("<III", self._data, pos)
        return (info >> 24) & 0x1F, name_off, info, size_or_type, pos + 12

    def _name_is(self, name_off: int, name: bytes) -> bool:
        return self._data.startswith(name + b"\0", self._strings + name_off)

    def struct_id(self, name: str) -> int:
        """The first struct with members named `name`: every place the name is spelled in the
        string section, as a name offset of such a struct."""
        wanted = name.encode() + b"\0"
        found = []
        at = self._data.find(wanted, self._strings)
        while at >= 0:
            type_id = self._structs.get(at - self._strings)
            if type_id is not None:
                found.append(type_id)
            at = self._data.find(wanted, at + 1)
        if not found:
            raise KeyError(f"struct {name} not in the kernel's BTF")
        return min(found)

    def member_offset(self, struct_name: str, member: str) -> int:
        offset = self._find(self.struct_id(struct_name), member.encode())
        if offset is None:
            raise KeyError(f"{struct_name}.{member} not in the kernel's BTF")
        return offset

    def _find(self, type_id: int, member: bytes) -> int | None:
        _kind, _name_off, info, _size, pos = self._type(type_id)
        bitfield_encoding = info >> 31
        for i in range(info & 0xFFFF):
            name_off, member_type, bits = struct.unpack_from("<III", self._data, pos + 12 * i)
            if bitfield_encoding:
                bits &= 0xFFFFFF
            if name_off and self._name_is(name_off, member):
                return bits // 8
            if not name_off:  # anonymous struct or union: look inside
                inner = member_type
                while self._type(inner)[0] in _BTF_MODIFIERS:
                    inner = self._type(inner)[3]
                if self._type(inner)[0] in (_BTF_STRUCT, _BTF_UNION):
                    found = self._find(inner, member)
                    if found is not None:
                        return bits // 8 + found
        return None


TS_COMPAT = 0x0002  # arch/x86/include/asm/thread_info.h: a 32-bit syscall is running


def kernel_offsets(btf: Btf) -> dict[str, int]:
    offsets = {name: btf.member_offset(*where) for name, where in BTF_MEMBERS.items()}
    offsets["sock_family"] = (btf.member_offset("sock", "__sk_common")
                              + btf.member_offset("sock_common", "skc_family"))
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

