"""ctypes bindings for name_to_handle_at(2) / open_by_handle_at(2): identities of inodes that
outlive their names and survive a restart (an inode number can be reused; a handle carries the
generation, so a stale one is refused with ESTALE instead of naming another file).

open_by_handle_at needs CAP_DAC_READ_SEARCH (root)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from dataclasses import dataclass

AT_EMPTY_PATH = 0x1000
MAX_HANDLE_SZ = 128


class _FileHandle(ctypes.Structure):
    _fields_ = [("handle_bytes", ctypes.c_uint), ("handle_type", ctypes.c_int),
                ("f_handle", ctypes.c_ubyte * MAX_HANDLE_SZ)]


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.name_to_handle_at.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_FileHandle),
                                    ctypes.POINTER(ctypes.c_int), ctypes.c_int]
_libc.open_by_handle_at.argtypes = [ctypes.c_int, ctypes.POINTER(_FileHandle), ctypes.c_int]


@dataclass(frozen=True, slots=True)
class FileHandle:
    handle_type: int
    data: bytes
    mount_id: int

    @property
    def key(self) -> tuple[int, bytes]:
        """What identifies the inode on its file system (the mount id is not part of it)."""
        return (self.handle_type, self.data)


def handle_of_fd(fd: int) -> FileHandle:
    """The handle of the file open on `fd` (any fd, O_PATH included)."""
    fh = _FileHandle()
    fh.handle_bytes = MAX_HANDLE_SZ
    mount_id = ctypes.c_int()
    if _libc.name_to_handle_at(fd, b"", ctypes.byref(fh), ctypes.byref(mount_id),
                               AT_EMPTY_PATH) < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"name_to_handle_at: {os.strerror(err)}")
    return FileHandle(fh.handle_type, bytes(fh.f_handle[: fh.handle_bytes]), mount_id.value)


def open_by_handle(mount_fd: int, handle: FileHandle, flags: int = os.O_PATH) -> int:
    """An fd on the inode `handle` names (O_PATH by default: no open event, no read)."""
    fh = _FileHandle()
    fh.handle_bytes = len(handle.data)
    fh.handle_type = handle.handle_type
    ctypes.memmove(fh.f_handle, handle.data, len(handle.data))
    fd = _libc.open_by_handle_at(mount_fd, ctypes.byref(fh), flags | os.O_CLOEXEC)
    if fd < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"open_by_handle_at: {os.strerror(err)}")
    return int(fd)


def mount_point(mount_id: int, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where mount `mount_id` (as name_to_handle_at reports it) is mounted in this namespace."""
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                fields = line.split(" ", 5)
                if len(fields) > 4 and fields[0] == str(mount_id):
                    return _unescape(fields[4])
    except OSError:
        return None
    return None


def _unescape(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    out = []
    i = 0
    while i < len(path):
        if path[i] == "\\" and i + 3 < len(path) + 0 and path[i + 1:i + 4].isdigit():
            out.append(chr(int(path[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(path[i])
            i += 1
    return "".join(out)
