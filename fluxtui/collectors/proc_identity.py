"""Who a process is: user, executable and command line, read straight from /proc.

Read once per process life, again on exec and on a credential change (see processes.py), so
this is off the per-tick path; it is still the path of a storm of new processes, where psutil's
object set-up and locks cost about twice these three reads (bench/bench_cpu.py measures the tick
as a whole). Fields /proc hides from us (another user's exe without root) are empty strings,
never guesses.
"""

from __future__ import annotations

import contextlib
import os
import pwd
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True, slots=True)
class Identity:
    comm: str
    user: str
    exe: str
    cmdline: tuple[str, ...]


@lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    """The account name of a uid, else the uid as text (a container's user, a deleted account).
    Cached: /etc/passwd does not change under a running process often enough to matter, and a
    name shown a little late is still the same uid."""
    with contextlib.suppress(KeyError, OverflowError):
        return pwd.getpwuid(uid).pw_name
    return str(uid)


def _read_all(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        parts = []
        while chunk := os.read(fd, 65536):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def real_uid(status: bytes) -> int | None:
    """The real uid from /proc/PID/status (`Uid:  real effective saved fs`), as psutil's
    `username()` shows it."""
    start = status.find(b"\nUid:")
    if start < 0:
        return None
    fields = status[start + 5 : status.find(b"\n", start + 1)].split()
    return int(fields[0]) if fields else None


def split_cmdline(raw: bytes) -> tuple[str, ...]:
    """argv from /proc/PID/cmdline: NUL-separated; a process that rewrote its argv area as one
    string (setproctitle) has no NUL between words: then spaces separate them, as in psutil."""
    if not raw:
        return ()
    text = raw.decode("utf-8", "surrogateescape")
    if text.endswith("\0"):
        text = text[:-1]
    if "\0" not in text and " " in text:
        return tuple(part for part in text.split(" ") if part)
    return tuple(text.split("\0"))


def read_identity(pid: int, comm: str, proc: str = "/proc") -> Identity | None:
    """None when the process is gone."""
    base = f"{proc}/{pid}"
    try:
        uid = real_uid(_read_all(f"{base}/status"))
    except OSError:
        return None
    if uid is None:
        return None
    try:
        exe = os.readlink(f"{base}/exe")
    except OSError:  # a kernel thread has none; another user's without root is hidden
        exe = ""
    try:
        cmdline = split_cmdline(_read_all(f"{base}/cmdline"))
    except PermissionError:
        cmdline = ()
    except OSError:
        return None
    return Identity(comm, user_name(uid), exe, cmdline)
