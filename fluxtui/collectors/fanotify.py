"""ctypes bindings for fanotify(7): open a group, mark paths, read events, write answers.

Mechanism only, no policy: the guard's responder decides what to answer. Constants and layouts
are those of <linux/fanotify.h>.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

# fanotify_init flags
FAN_CLOEXEC = 0x00000001
FAN_NONBLOCK = 0x00000002
FAN_CLASS_NOTIF = 0x00000000
FAN_CLASS_CONTENT = 0x00000004
FAN_UNLIMITED_QUEUE = 0x00000010

# fanotify_mark flags
FAN_MARK_ADD = 0x00000001
FAN_MARK_REMOVE = 0x00000002
FAN_MARK_DONT_FOLLOW = 0x00000004
FAN_MARK_ONLYDIR = 0x00000008
FAN_MARK_IGNORED_MASK = 0x00000020
FAN_MARK_IGNORED_SURV_MODIFY = 0x00000040
FAN_MARK_FLUSH = 0x00000080

# event masks
FAN_OPEN = 0x00000020
FAN_Q_OVERFLOW = 0x00004000
FAN_OPEN_PERM = 0x00010000
FAN_EVENT_ON_CHILD = 0x08000000
FAN_ONDIR = 0x40000000

# responses
FAN_ALLOW = 0x01
FAN_DENY = 0x02

FAN_NOFD = -1
FANOTIFY_METADATA_VERSION = 3

# struct fanotify_event_metadata { __u32 event_len; __u8 vers; __u8 reserved;
#   __u16 metadata_len; __aligned_u64 mask; __s32 fd; __s32 pid; }
_METADATA = struct.Struct("=IBBHQii")
# struct fanotify_response { __s32 fd; __u32 response; }
RESPONSE = struct.Struct("=iI")

READ_BATCH = 256  # events per read; a read that returns fewer emptied the queue
READ_SIZE = READ_BATCH * _METADATA.size

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.fanotify_init.argtypes = [ctypes.c_uint, ctypes.c_uint]
_libc.fanotify_init.restype = ctypes.c_int
_libc.fanotify_mark.argtypes = [ctypes.c_int, ctypes.c_uint, ctypes.c_uint64, ctypes.c_int,
                                ctypes.c_char_p]
_libc.fanotify_mark.restype = ctypes.c_int

AT_FDCWD = -100


class FanotifyError(OSError):
    """A failed fanotify call, with the errno and what was being done."""


@dataclass(frozen=True, slots=True)
class FanEvent:
    mask: int
    fd: int  # an fd opened by the kernel on the file (FAN_NOFD for overflow); close it after
    pid: int  # the thread-group id of the process that opened the file

    @property
    def is_permission(self) -> bool:
        return bool(self.mask & FAN_OPEN_PERM)


class EventHeader(NamedTuple):
    """One event's metadata in a read() buffer: where it starts, its length, and where its info
    records start (`offset + metadata_len`, for groups that report fids and names)."""

    offset: int
    length: int
    metadata_len: int
    mask: int
    fd: int
    pid: int


def event_headers(buf: bytes) -> Iterator[EventHeader]:
    """The events of one read() of a fanotify fd, in order (the kernel writes whole events)."""
    offset = 0
    size = len(buf)
    while offset + _METADATA.size <= size:
        event_len, vers, _reserved, metadata_len, mask, fd, pid = _METADATA.unpack_from(buf, offset)
        if vers != FANOTIFY_METADATA_VERSION:
            raise FanotifyError(0, f"fanotify metadata version {vers}, expected "
                                   f"{FANOTIFY_METADATA_VERSION}")
        if event_len < metadata_len or event_len == 0 or offset + event_len > size:
            return
        yield EventHeader(offset, event_len, metadata_len, mask, fd, pid)
        offset += event_len


def parse_events(buf: bytes) -> list[FanEvent]:
    """Split a read() of the fanotify fd into events (several per read)."""
    return [FanEvent(h.mask, h.fd, h.pid) for h in event_headers(buf)]


class FanotifyGroup:
    """One fanotify group (one fd). Close it when done: the kernel then allows every event that
    is still waiting for an answer, so no process stays blocked."""

    def __init__(self, init_flags: int, event_f_flags: int) -> None:
        fd = _libc.fanotify_init(init_flags, event_f_flags)
        if fd < 0:
            err = ctypes.get_errno()
            raise FanotifyError(err, f"fanotify_init: {os.strerror(err)}")
        self.fd: int = fd
        # Events the kernel could not hand over because no fd could be opened for them
        # (EMFILE/ENFILE): it answered (denied) them itself.
        self.unreadable = 0

    @classmethod
    def for_permissions(cls) -> FanotifyGroup:
        """A content-class group for permission events, non-blocking, with event fds opened
        read-only so the responder can fstat and name the file. The queue is unlimited: an
        overflow would drop permission events unanswered by us."""
        return cls(FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
                   os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC)

    def mark(self, path: str, mask: int, flags: int = 0) -> None:
        self._mark(FAN_MARK_ADD | flags, mask, path)

    def unmark(self, path: str, mask: int, flags: int = 0) -> None:
        self._mark(FAN_MARK_REMOVE | flags, mask, path)

    def mark_fd(self, fd: int, mask: int, flags: int = 0, name: str = "") -> None:
        """Mark the object open on `fd` (not a path: it stays right when the path is renamed)."""
        self._mark(FAN_MARK_ADD | flags, mask, name, fd)

    def unmark_fd(self, fd: int, mask: int, flags: int = 0, name: str = "") -> None:
        self._mark(FAN_MARK_REMOVE | flags, mask, name, fd)

    def _mark(self, flags: int, mask: int, path: str, fd: int | None = None) -> None:
        if self.fd < 0:
            raise FanotifyError(9, "fanotify group is closed")
        if fd is None:
            rc = _libc.fanotify_mark(self.fd, flags, mask, AT_FDCWD, os.fsencode(path))
        else:
            rc = _libc.fanotify_mark(self.fd, flags, mask, fd, None)
        if rc < 0:
            err = ctypes.get_errno()
            raise FanotifyError(err, f"fanotify_mark {path}: {os.strerror(err)}", path)

    def read_events(self) -> list[FanEvent]:
        """The events queued now; [] when none (the fd is non-blocking). When the kernel cannot
        open an fd for an event (EMFILE/ENFILE) it denies that event itself: counted in
        `unreadable`, and [] is returned (the next read goes on with the queue)."""
        try:
            buf = os.read(self.fd, READ_SIZE)
        except BlockingIOError:
            return []
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                self.unreadable += 1
                return []
            raise
        return parse_events(buf)

    def respond(self, event_fd: int, allow: bool) -> bool:
        """Answer one permission event. False when the kernel no longer waits for it (the opener
        was killed meanwhile: ENOENT)."""
        try:
            os.write(self.fd, RESPONSE.pack(event_fd, FAN_ALLOW if allow else FAN_DENY))
        except FileNotFoundError:
            return False
        return True

    def close(self) -> None:
        if self.fd >= 0:
            fd, self.fd = self.fd, -1
            os.close(fd)

    def __enter__(self) -> FanotifyGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

