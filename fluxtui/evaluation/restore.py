"""Undo what scenarios changed outside their sandbox, even when they were killed.

A scenario that must touch a system file (/etc/ld.so.preload), add a temporary user (for a
crontab) or install a package first leaves a marker in RESTORE_ROOT (demo/lib.sh:
`protect_file`, `temp_user`, `temp_package`): a directory with the owner's pid, what to undo, and
for a file its exact bytes, mode and owner (or that it did not exist). The script's EXIT trap
undoes it; when the script was killed (SIGKILL by a timeout, a crash of the run), the runner
does it after the scenario, and every run does it at its start for markers whose owner is gone.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from fluxtui.evaluation.sandbox import _alive

RESTORE_ROOT = Path("/var/lib/fluxtui/eval-restore")
COMMAND_TIMEOUT = 60


def _owner(marker: Path) -> int | None:
    try:
        return int((marker / "owner").read_text().strip())
    except (OSError, ValueError):
        return None  # incomplete: the owner is written last


def restore_marker(marker: Path) -> str:
    """Undo one marker; returns what was done, for the log."""
    done = ""
    if (marker / "path").is_file():
        path = (marker / "path").read_bytes().decode("utf-8", "surrogateescape")
        if (marker / "absent").exists():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            done = f"removed {path}"
        elif (marker / "backup").is_file():
            backup = marker / "backup"
            st = backup.stat()
            with open(path, "wb") as out:  # in place: the file keeps its inode
                out.write(backup.read_bytes())
            os.chown(path, st.st_uid, st.st_gid)
            os.chmod(path, st.st_mode & 0o7777)
            done = f"restored {path}"
    if (marker / "package").is_file():
        package = (marker / "package").read_text().strip()
        subprocess.run(["dpkg", "--purge", package], capture_output=True,
                       timeout=COMMAND_TIMEOUT, check=False)
        done = f"purged package {package}"
    if (marker / "user").is_file():
        user = (marker / "user").read_text().strip()
        subprocess.run(["crontab", "-r", "-u", user], capture_output=True,
                       timeout=COMMAND_TIMEOUT, check=False)
        subprocess.run(["userdel", user], capture_output=True, timeout=COMMAND_TIMEOUT,
                       check=False)
        done = f"removed user {user}"
    shutil.rmtree(marker, ignore_errors=True)
    return done


def restore_stale(root: Path = RESTORE_ROOT) -> list[str]:
    """Undo the markers whose owner is gone (killed before its EXIT trap ran)."""
    done: list[str] = []
    if not root.is_dir():
        return done
    for marker in sorted(root.iterdir()):
        owner = _owner(marker)
        if owner is None:  # written only partly: the change, made after the owner, never was
            shutil.rmtree(marker, ignore_errors=True)
            continue
        if not _alive(owner):
            done.append(restore_marker(marker))
    return [d for d in done if d]
