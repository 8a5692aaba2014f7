"""Who controls the place a program was executed from, judged on every directory of its path.

A world-writable directory (/tmp, /var/tmp, /dev/shm, or any directory with mode o+w) lets
anyone drop a file there; what lies below it decides how far that matters:
- the file directly in a world-writable directory, the file itself world-writable, a hidden
  directory (a name starting with ".") directly inside one, a directory below it owned by
  another non-root user than the one executing (planted by someone else), or the
  shared-memory filesystem (the device of /dev/shm, made for shared memory, not programs):
  medium;
- a chain of directories below it owned by the executing user (their own build): low;
- a chain owned by root (a root-owned virtualenv in /tmp/x/.venv, root's build in a 0700
  directory): nothing, only root could have put the file there.
Directories are read with lstat when the exec event is handled (well under a second after the
exec); a directory removed by then is judged by what is left of the path.
Nothing here imports textual.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass

from fluxtui.events import Severity

Stat = Callable[[str], os.stat_result]
SHARED_MEMORY = "/dev/shm"


@dataclass(frozen=True)
class Location:
    severity: Severity
    writable_dir: str  # the deepest world-writable directory on the path
    why: str


def _lstat(stat_fn: Stat, path: str) -> os.stat_result | None:
    try:
        return stat_fn(path)
    except OSError:
        return None


def judge_location(path: str, uid: int, stat_fn: Stat = os.lstat) -> Location | None:
    """The verdict on an absolute executable path run by `uid`; None when only root controls
    the place it was run from (or the path is not absolute)."""
    if not path.startswith("/"):
        return None
    names = [n for n in path.split("/") if n]
    if not names:
        return None
    dirs: list[tuple[str, os.stat_result]] = []
    current = ""
    removed = False
    for name in ["", *names[:-1]]:
        current = f"{current}/{name}" if name else "/"
        current = current.replace("//", "/")
        st = _lstat(stat_fn, current)
        if st is None or not stat.S_ISDIR(st.st_mode):
            removed = True
            break
        dirs.append((current, st))
    writable = [i for i, (_, st) in enumerate(dirs) if st.st_mode & stat.S_IWOTH]
    if not writable:
        return None
    w = writable[-1]
    ww_path, ww_st = dirs[w]
    below = dirs[w + 1:]
    file_st = None if removed else _lstat(stat_fn, path)
    gone = " (removed since)" if removed or file_st is None else ""
    if not below and not removed:
        return Location(Severity.MEDIUM, ww_path,
                        f"directly in world-writable {ww_path}{gone}")
    if removed and not below:
        return Location(Severity.MEDIUM, ww_path, f"below world-writable {ww_path}{gone}")
    if file_st is not None and file_st.st_mode & stat.S_IWOTH:
        return Location(Severity.MEDIUM, ww_path, "the file itself is world-writable")
    first = below[0][0].rsplit("/", 1)[-1]
    if first.startswith("."):
        return Location(Severity.MEDIUM, ww_path,
                        f"in hidden directory {below[0][0]} of world-writable {ww_path}")
    shm = _lstat(stat_fn, SHARED_MEMORY)
    if shm is not None and shm.st_dev == ww_st.st_dev:
        return Location(Severity.MEDIUM, ww_path,
                        f"on the shared-memory filesystem ({ww_path}), made for data, not "
                        "programs")
    owners = {st.st_uid for _, st in below}
    if file_st is not None:
        owners.add(file_st.st_uid)
    foreign = sorted(owners - {0, uid})
    if foreign:
        return Location(Severity.MEDIUM, ww_path,
                        f"below world-writable {ww_path}, owned by uid {foreign[0]}, not by the "
                        f"user running it (uid {uid})")
    if owners <= {0}:
        return None
    return Location(Severity.LOW, ww_path,
                    f"the user's own directory below world-writable {ww_path}{gone}")
