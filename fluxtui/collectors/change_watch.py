"""ctypes bindings for a fanotify(7) *notification* group that reports directory fids and names
(FAN_REPORT_DFID_NAME) and, where the kernel has it, a pidfd of the process (FAN_REPORT_PIDFD).

Mechanism only: open the group, mark directories or whole file systems, read and parse events.
Nothing waits for an answer. Constants and layouts are those of <linux/fanotify.h>.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
from dataclasses import dataclass

from fluxtui.collectors.fanotify import (
    FAN_CLASS_NOTIF,
    FAN_CLOEXEC,
    FAN_NONBLOCK,
    FanotifyError,
    FanotifyGroup,
    _libc,
    event_headers,
)
from fluxtui.collectors.file_handles import FileHandle

# fanotify_init flags
FAN_REPORT_PIDFD = 0x00000080
FAN_REPORT_DIR_FID = 0x00000400
FAN_REPORT_NAME = 0x00000800
FAN_REPORT_DFID_NAME = FAN_REPORT_DIR_FID | FAN_REPORT_NAME

# fanotify_mark flags
FAN_MARK_ONLYDIR = 0x00000008
FAN_MARK_FILESYSTEM = 0x00000100

# event masks
FAN_ATTRIB = 0x00000004
FAN_CLOSE_WRITE = 0x00000008
FAN_MOVED_FROM = 0x00000040
FAN_MOVED_TO = 0x00000080
FAN_CREATE = 0x00000100
FAN_DELETE = 0x00000200
FAN_DELETE_SELF = 0x00000400
FAN_MOVE_SELF = 0x00000800
FAN_Q_OVERFLOW = 0x00004000
FAN_RENAME = 0x10000000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000

# What a watched directory reports: entries created, written and closed, renamed in or out,
# deleted, their attributes changed; and the directory itself going away.
CHANGE_MASK = (FAN_CREATE | FAN_CLOSE_WRITE | FAN_MOVED_FROM | FAN_MOVED_TO | FAN_DELETE
               | FAN_ATTRIB | FAN_DELETE_SELF | FAN_MOVE_SELF | FAN_EVENT_ON_CHILD | FAN_ONDIR)

# info record types
INFO_DFID_NAME = 2
INFO_DFID = 3
INFO_PIDFD = 4
INFO_OLD_DFID_NAME = 10
INFO_NEW_DFID_NAME = 12

FAN_NOPIDFD = -1
FAN_EPIDFD = -2  # the process was gone before the event was read

_INFO_HEADER = struct.Struct("=BBH")
_FSID = struct.Struct("=ii")
_HANDLE_HEADER = struct.Struct("=Ii")
_PIDFD = struct.Struct("=i")

READ_SIZE = 64 * 1024

MASK_NAMES = ((FAN_CREATE, "created"), (FAN_CLOSE_WRITE, "written"),
              (FAN_MOVED_FROM, "renamed out"), (FAN_MOVED_TO, "renamed in"),
              (FAN_DELETE, "deleted"), (FAN_ATTRIB, "attributes changed"),
              (FAN_DELETE_SELF, "directory deleted"), (FAN_MOVE_SELF, "directory moved"),
              (FAN_RENAME, "renamed"))


def describe_mask(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in MASK_NAMES if mask & bit)


@dataclass(frozen=True, slots=True)
class DirName:
    """A directory (by its file handle on file system `fsid`) and an entry name in it (bytes:
    names are not always UTF-8)."""

    fsid: tuple[int, int]
    handle: FileHandle
    name: bytes


@dataclass(frozen=True, slots=True)
class ChangeEvent:
    mask: int
    pid: int
    pidfd: int  # >= 0: a pidfd the reader must close; FAN_NOPIDFD / FAN_EPIDFD otherwise
    where: DirName | None  # DFID_NAME (or DFID for events on the directory itself)
    old: DirName | None = None  # FAN_RENAME: where the entry was
    new: DirName | None = None  # FAN_RENAME: where it went

    @property
    def overflow(self) -> bool:
        return bool(self.mask & FAN_Q_OVERFLOW)

    def close(self) -> None:
        if self.pidfd >= 0:
            os.close(self.pidfd)


def _dir_name(buf: bytes, start: int, end: int, with_name: bool) -> DirName:
    fsid = _FSID.unpack_from(buf, start)
    offset = start + _FSID.size
    handle_bytes, handle_type = _HANDLE_HEADER.unpack_from(buf, offset)
    offset += _HANDLE_HEADER.size
    data = bytes(buf[offset:offset + handle_bytes])
    offset += handle_bytes
    name = b""
    if with_name:
        name = bytes(buf[offset:end]).split(b"\0", 1)[0]
    return DirName((fsid[0], fsid[1]), FileHandle(handle_type, data, -1), name)


def parse_change_events(buf: bytes) -> list[ChangeEvent]:
    """Split a read() of a FAN_REPORT_DFID_NAME group into events with their info records."""
    events: list[ChangeEvent] = []
    for header in event_headers(buf):
        pidfd = FAN_NOPIDFD
        where = old = new = None
        info = header.offset + header.metadata_len
        end = header.offset + header.length
        while info + _INFO_HEADER.size <= end:
            info_type, _pad, length = _INFO_HEADER.unpack_from(buf, info)
            if length < _INFO_HEADER.size or info + length > end:
                break
            body = info + _INFO_HEADER.size
            if info_type in (INFO_DFID_NAME, INFO_DFID):
                where = _dir_name(buf, body, info + length, info_type == INFO_DFID_NAME)
            elif info_type == INFO_OLD_DFID_NAME:
                old = _dir_name(buf, body, info + length, True)
            elif info_type == INFO_NEW_DFID_NAME:
                new = _dir_name(buf, body, info + length, True)
            elif info_type == INFO_PIDFD:
                (pidfd,) = _PIDFD.unpack_from(buf, body)
            info += length
        events.append(ChangeEvent(header.mask, header.pid, pidfd, where, old, new))
    return events


class ChangeGroup(FanotifyGroup):
    """A notification-class group with FAN_REPORT_DFID_NAME, FAN_REPORT_PIDFD where the kernel
    has it. Events never wait: the kernel queues at most 16384 of them, then queues one
    FAN_Q_OVERFLOW (reported by the caller as a drop)."""

    def __init__(self, pidfd: bool = True) -> None:
        flags = FAN_CLASS_NOTIF | FAN_CLOEXEC | FAN_NONBLOCK | FAN_REPORT_DFID_NAME
        self.pidfds = False
        if pidfd:
            try:
                super().__init__(flags | FAN_REPORT_PIDFD, os.O_RDONLY | os.O_CLOEXEC)
                self.pidfds = True
                return
            except FanotifyError as exc:
                if exc.errno != errno.EINVAL:  # an older kernel: no pidfds, the rest works
                    raise
        super().__init__(flags, os.O_RDONLY | os.O_CLOEXEC)

    def mark_dir(self, path: str, mask: int = CHANGE_MASK) -> None:
        self.mark(path, mask, FAN_MARK_ONLYDIR)

    def unmark_dir(self, path: str, mask: int = CHANGE_MASK) -> None:
        self.unmark(path, mask, FAN_MARK_ONLYDIR)

    def mark_filesystem(self, path: str, mask: int) -> None:
        self.mark(path, mask, FAN_MARK_FILESYSTEM)

    def read_changes(self) -> list[ChangeEvent]:
        """The events queued now; [] when none. Every pidfd returned must be closed
        (`ChangeEvent.close`)."""
        try:
            buf = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return []
        return parse_change_events(buf)


def pidfd_alive(pidfd: int) -> bool:
    """Whether the process a pidfd refers to still exists (a zombie counts: its /proc entry
    still tells who it was)."""
    if pidfd < 0:
        return False
    return int(_pidfd_send_signal(pidfd, 0, None, 0)) == 0


_SYS_PIDFD_SEND_SIGNAL = 424  # the same number on every architecture (unified since 5.1)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _pidfd_send_signal(pidfd: int, sig: int, info: None, flags: int) -> int:
    return int(_syscall(ctypes.c_long(_SYS_PIDFD_SEND_SIGNAL), ctypes.c_int(pidfd),
                        ctypes.c_int(sig), ctypes.c_void_p(info), ctypes.c_uint(flags)))
