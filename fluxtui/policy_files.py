"""Safe handling of files a root process reads for policy (config, rules, models)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class UnsafeFileError(Exception):
    """A policy file that another user could have written."""


def _refuse_unsafe(path: Path, st: os.stat_result) -> None:
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeFileError(
            f"{path}: refused, writable by users other than its owner "
            f"(mode {stat.filemode(st.st_mode)}); fix with: chmod go-w {path}"
        )
    if st.st_uid != 0:
        raise UnsafeFileError(
            f"{path}: refused, owned by uid {st.st_uid} but read by root; "
            f"fix with: chown root {path}"
        )
    directory = path.resolve().parent
    dst = directory.stat()
    replaceable = dst.st_uid != 0 or dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
    if replaceable and not (dst.st_uid == 0 and dst.st_mode & stat.S_ISVTX):
        raise UnsafeFileError(
            f"{path}: refused, its directory {directory} lets users other than root replace it "
            f"(owner uid {dst.st_uid}, mode {stat.filemode(dst.st_mode)})"
        )


def read_policy_file(path: Path) -> bytes:
    """The content of a file root obeys (config, rules, model). The checks and the read use one
    open file, so the content cannot be swapped between them. Running as root, the file must be
    owned by root, not writable by group or others, in a directory only root can replace it in
    (a root-owned sticky directory such as /tmp qualifies). Raises OSError or UnsafeFileError."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafeFileError(f"{path}: refused, not a regular file")
        if os.geteuid() == 0:
            _refuse_unsafe(path, st)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write `data` to `path` so that readers see the old or the new content, never a mix:
    write a temporary file in the same directory, fsync it, rename it over, fsync the dir."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(data)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
