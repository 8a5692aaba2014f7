"""Safe handling of files a root process reads for policy (config, rules, models)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


class UnsafeFileError(Exception):
    """A policy file that another user could have written."""


def refuse_if_writable_by_others(path: Path) -> None:
    """Raise UnsafeFileError when running as root and `path` is writable by group or others, or
    owned by a user other than root (such a user could rewrite what root obeys)."""
    if os.geteuid() != 0:
        return
    st = path.stat()
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
