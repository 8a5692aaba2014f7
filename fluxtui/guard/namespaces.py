"""Processes in another user or mount namespace: their paths cannot be trusted.

A user can `unshare -Urm`, bind-mount a library of their own over a system library path and a
private /etc whose ld.so.preload names it, then exec a real, verified program: /proc/PID/maps
and /proc/PID/exe then show system paths for code that is not the system's. So a process whose
user namespace is not the initial one, or whose mount namespace is not init's (PID 1's: not
fluxtui's own, which a hardened service unit makes private), is auto-allowed only when:
- every file it maps (its executable included) is, by device and inode, the file at the same
  path in init's namespace (read through /proc/1/root);
- the device of each mapping as the kernel reports it in /proc/PID/maps equals the device its
  file reports (they differ on btrfs subvolumes, where the comparison would mean nothing);
- its own /etc/ld.so.preload (read through /proc/PID/root) is missing or empty.
Each failure is a flag: no rule allows a flagged process, and the prompt shows the flag.

Where PID 1 cannot be read (a sandbox that denies /proc/1 even to root), fluxtui's own
namespaces and root stand in for init's, and the guard reports that it does so (`reference`).

`namespace_problems` reads the process's own view of the file system (a FUSE file system of the
user's could make it wait), so it runs on a worker, never on the responder thread.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from fluxtui.guard.identity import MAPS_LIMIT

INIT_ROOT = "/proc/1/root"
PRELOAD_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Namespaces:
    user: int  # inode of /proc/PID/ns/user
    mnt: int

    @classmethod
    def of(cls, proc_dir: str | int, dir_fd: int | None = None) -> Namespaces | None:
        try:
            if dir_fd is not None:
                return cls(os.stat("ns/user", dir_fd=dir_fd).st_ino,
                           os.stat("ns/mnt", dir_fd=dir_fd).st_ino)
            return cls(os.stat(f"{proc_dir}/ns/user").st_ino,
                       os.stat(f"{proc_dir}/ns/mnt").st_ino)
        except OSError:
            return None


@dataclass(frozen=True, slots=True)
class Reference:
    namespaces: Namespaces | None
    root: str  # prefix under which a path is resolved as the reference sees it
    note: str  # "" when it is init's, else why not


_reference: Reference | None = None


def reference() -> Reference:
    """PID 1's namespaces and root, else fluxtui's own (read once)."""
    global _reference
    if _reference is None:
        init = Namespaces.of("/proc/1")
        if init is not None and os.access(INIT_ROOT + "/", os.R_OK):
            _reference = Reference(init, INIT_ROOT, "")
        else:
            _reference = Reference(Namespaces.of("/proc/self"), "",
                                   "PID 1's namespaces cannot be read here: processes are "
                                   "compared with fluxtui's own namespaces")
    return _reference


def foreign_namespace(dir_fd: int) -> str:
    """Why the process open on `dir_fd` (/proc/PID) is not in init's namespaces, or ""."""
    init = reference().namespaces
    mine = Namespaces.of("", dir_fd)
    if init is None or mine is None:
        return "its namespaces cannot be read"
    if mine.user != init.user:
        return "runs in another user namespace"
    if mine.mnt != init.mnt:
        return "runs in another mount namespace"
    return ""


def _mappings(maps: bytes) -> dict[str, tuple[str, int]]:
    """Mapped file path -> (address range, device as the kernel reports it), once per path."""
    out: dict[str, tuple[str, int]] = {}
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith(b"/"):
            continue
        path = parts[5].decode("utf-8", "surrogateescape")
        if path in out:
            continue
        major, _, minor = parts[3].partition(b":")
        try:
            device = os.makedev(int(major, 16), int(minor, 16))
        except ValueError:
            continue
        start, _, end = parts[0].partition(b"-")
        try:  # map_files names carry no leading zeros (/proc/PID/maps pads to 8 digits)
            area = f"{int(start, 16):x}-{int(end, 16):x}"
        except ValueError:
            continue
        out[path] = (area, device)
    return out


def namespace_problems(pid: int, why: str, init_root: str | None = None) -> tuple[str, ...]:
    """The flags of a process in a foreign namespace (`why`, from `foreign_namespace`): () when
    all it maps is init's own files and it preloads nothing."""
    if init_root is None:
        init_root = reference().root
    base = f"/proc/{pid}"
    problems: list[str] = []
    try:
        with open(f"{base}/maps", "rb") as f:
            maps = f.read(MAPS_LIMIT)
    except OSError as exc:
        return (f"{why}: its memory map cannot be read ({exc.strerror})",)
    if len(maps) >= MAPS_LIMIT:
        problems.append(f"{why}: memory map too large to check")
    for path, (area, device) in _mappings(maps).items():
        shown = path.removesuffix(" (deleted)")
        try:
            mapped = os.stat(f"{base}/map_files/{area}")
        except OSError as exc:
            problems.append(f"{why}: cannot check {shown} ({exc.strerror})")
            continue
        if mapped.st_dev != device:
            problems.append(f"{why}: {shown} is on a device that cannot be compared "
                            "(btrfs subvolume or overlay)")
            continue
        try:
            host = os.stat(init_root + shown)
        except OSError:
            problems.append(f"{why}: {shown} maps a file that does not exist at that path "
                            "for init")
            continue
        if (host.st_dev, host.st_ino) != (mapped.st_dev, mapped.st_ino):
            problems.append(f"{why}: {shown} is not the file at that path for init "
                            "(a bind mount over a system path?)")
    problems += _preload_problems(base, why)
    return tuple(problems)


def _preload_problems(base: str, why: str) -> list[str]:
    try:
        fd = os.open(f"{base}/root/etc/ld.so.preload",
                     os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        return [f"{why}: its /etc/ld.so.preload cannot be read ({exc.strerror})"]
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return [f"{why}: its /etc/ld.so.preload is not a regular file"]
        content = os.read(fd, PRELOAD_LIMIT)
    except OSError as exc:
        return [f"{why}: its /etc/ld.so.preload cannot be read ({exc.strerror})"]
    finally:
        os.close(fd)
    names = content.decode("utf-8", "replace").split()
    if names:
        return [f"{why}: its /etc/ld.so.preload loads {', '.join(names[:3])}"]
    return []
