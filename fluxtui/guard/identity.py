"""Who is asking: the identity of a process and the verification of its executable.

- `read_process` reads /proc once for a process: its ProcessKey (pid + start time), executable,
  user, parent, command line and injection flags (LD_PRELOAD / LD_LIBRARY_PATH / LD_AUDIT in its
  environment, being traced, a deleted or memfd executable, and code mapped from a file outside
  the system directories, a deleted file or a memfd: an injected library that rewrote its own
  environment still shows in /proc/PID/maps).
  Limit: the maps are read when the process is identified; a library it loads later (dlopen) is
  not seen while its verdict stays cached (until its exec, uid change or a tracer).
- `verify_executable` hashes the executable (sha256, and md5 for dpkg in the same pass), asks the
  package manager who owns the path and whether the content still matches its database, and
  checks that it lives in a root-owned system directory. It is slow the first time; callers cache
  the result by `ExeKey` (device, inode, size, mtime, ctime).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from fluxtui.collectors.procstat import parse_stat
from fluxtui.config import DEFAULT_SYSTEM_DIRS
from fluxtui.events import ProcessKey

DPKG_INFO = "/var/lib/dpkg/info"
INJECTION_VARIABLES = (b"LD_PRELOAD", b"LD_LIBRARY_PATH", b"LD_AUDIT")
SUBPROCESS_TIMEOUT = 10.0
MAPS_LIMIT = 16 << 20  # bytes of /proc/PID/maps read at most


@dataclass(frozen=True, slots=True)
class ExeKey:
    """What identifies an executable file's content without reading it. ctime is included
    because the owner of a file can set its mtime back after changing it; ctime they cannot."""

    dev: int
    ino: int
    size: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> ExeKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True)
class ExeVerification:
    path: str
    key: ExeKey
    sha256: str
    package: str | None  # owning package, None when no package manager claims the path
    manager: str | None  # "dpkg" or "rpm"
    package_match: bool | None  # content matches the package database (None: not owned)
    system_dir: bool
    problems: tuple[str, ...]  # why it is not verified, for the prompt and the audit trail

    @property
    def verified(self) -> bool:
        return bool(self.package and self.package_match and self.system_dir)

    def summary(self) -> str:
        if self.verified:
            return f"verified: {self.manager} package {self.package}, content matches"
        return "not verified: " + "; ".join(self.problems)


@dataclass(frozen=True)
class ProcessInfo:
    key: ProcessKey
    exe: str  # target of /proc/PID/exe (may end in " (deleted)" or start with /memfd:)
    exe_key: ExeKey | None
    comm: str
    uid: int
    euid: int
    user: str
    ppid: int
    parent_exe: str
    cmdline: tuple[str, ...]
    env_flags: tuple[str, ...]  # fixed at exec: injection variables, deleted/memfd executable
    foreign_ns: str = ""  # why its namespaces are not init's ("" when they are)

    @property
    def pid(self) -> int:
        return self.key.pid


class ProcessGone(Exception):
    """The process exited while it was being read."""


def _read_at(dir_fd: int, name: str, limit: int = 1 << 20) -> bytes:
    fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
    try:
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, min(65536, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def status_field(status: bytes, name: bytes) -> bytes:
    """One field of /proc/PID/status, e.g. status_field(s, b"TracerPid") -> b"0"."""
    start = status.find(b"\n" + name + b":")
    if start < 0:
        return b""
    start += len(name) + 2
    end = status.find(b"\n", start)
    return status[start:end if end >= 0 else None].strip()


def tracer_pid(status: bytes) -> int:
    value = status_field(status, b"TracerPid")
    return int(value) if value.isdigit() else 0


@lru_cache(maxsize=256)
def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def exe_flags(exe: str) -> list[str]:
    flags = []
    if exe.endswith(" (deleted)"):
        flags.append("deleted executable")
    if exe.startswith("/memfd:"):
        flags.append("memfd executable")
    return flags


def environment_flags(environ: bytes) -> list[str]:
    flags = []
    for entry in environ.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        if sep and name in INJECTION_VARIABLES and value:
            flags.append(f"{name.decode()} set")
    return flags


def mapping_flags(maps: bytes, exe: str, system_dirs: tuple[str, ...]) -> list[str]:
    """Executable mappings (/proc/PID/maps) of files other than the executable itself that do
    not come from a system directory, or are deleted, or are memfds."""
    flags: list[str] = []
    seen = {exe, exe.removesuffix(" (deleted)")}
    for line in maps.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or b"x" not in parts[1]:
            continue
        path = parts[5].decode("utf-8", "replace")
        if not path.startswith("/") or path in seen:
            continue  # [vdso] and the like, or already flagged
        seen.add(path)
        if path.startswith("/memfd:"):
            flags.append(f"memfd code mapped: {path}")
        elif path.endswith(" (deleted)"):
            flags.append(f"deleted file mapped as code: {path}")
        elif not any(path.startswith(d + "/") for d in system_dirs):
            flags.append(f"code mapped from outside the system directories: {path}")
    return flags


def read_process(pid: int, dir_fd: int, status: bytes,
                 system_dirs: tuple[str, ...] = DEFAULT_SYSTEM_DIRS) -> ProcessInfo:
    """Everything the policy needs about `pid`, read through `dir_fd` (an open /proc/PID)."""
    try:
        st = parse_stat(pid, _read_at(dir_fd, "stat", 4096))
        try:
            exe = os.readlink("exe", dir_fd=dir_fd)
            exe_key: ExeKey | None = ExeKey.of(os.stat("exe", dir_fd=dir_fd))
        except FileNotFoundError:  # kernel threads, or an exe that cannot be reached
            exe, exe_key = "", None
        environ = _read_at(dir_fd, "environ")
        cmdline = _read_at(dir_fd, "cmdline")
        maps = _read_at(dir_fd, "maps", MAPS_LIMIT)
    except (ProcessLookupError, FileNotFoundError, ValueError) as exc:
        raise ProcessGone(str(exc)) from None
    uids = status_field(status, b"Uid").split()
    uid = int(uids[0]) if uids else -1
    euid = int(uids[1]) if len(uids) > 1 else uid
    try:
        parent_exe = os.readlink(f"/proc/{st.ppid}/exe") if st.ppid > 0 else ""
    except OSError:
        parent_exe = ""
    # surrogateescape: undecodable bytes survive and are shown as \xNN, as in the process table
    args = tuple(a.decode("utf-8", "surrogateescape")
                 for a in cmdline.rstrip(b"\0").split(b"\0") if a)
    return ProcessInfo(
        key=ProcessKey(pid, st.start_ticks), exe=exe, exe_key=exe_key, comm=st.comm, uid=uid,
        euid=euid, user=user_name(uid), ppid=st.ppid, parent_exe=parent_exe, cmdline=args,
        env_flags=tuple(environment_flags(environ) + exe_flags(exe)
                        + mapping_flags(maps, exe, system_dirs)
                        + (["memory map too large to check"] if len(maps) >= MAPS_LIMIT else [])))


def process_flags(info: ProcessInfo, status: bytes) -> tuple[str, ...]:
    """All injection flags now: the ones fixed at exec plus being traced (which can start or
    stop at any time, so it is read from a fresh /proc/PID/status)."""
    tracer = tracer_pid(status)
    if tracer:
        return (*info.env_flags, f"traced by pid {tracer}")
    return info.env_flags


def process_tree(pid: int, limit: int = 64) -> tuple[tuple[int, str], ...]:
    """(pid, executable or [comm]) from `pid` up to init."""
    chain: list[tuple[int, str]] = []
    current = pid
    while current > 0 and len(chain) < limit:
        try:
            with open(f"/proc/{current}/stat", "rb") as f:
                st = parse_stat(current, f.read())
        except (OSError, ValueError):
            break
        try:
            exe = os.readlink(f"/proc/{current}/exe")
        except OSError:
            exe = f"[{st.comm}]"
        chain.append((current, exe))
        current = st.ppid
    return tuple(chain)


# --- executable verification ----------------------------------------------------------------


def usrmerge_aliases(path: str) -> list[str]:
    """The names a package database may use for `path`: /usr/bin/cat is /bin/cat on a merged
    /usr (Debian records the name it shipped under)."""
    names = [path]
    if path.startswith("/usr/"):
        alias = path[4:]
        top = "/" + alias.split("/", 2)[1]
        if os.path.islink(top) and os.path.realpath(top) == "/usr" + top:
            names.append(alias)
    else:
        parts = path.split("/", 2)
        if len(parts) > 2 and os.path.islink("/" + parts[1]):
            names.append("/usr" + path)
    return names


def _run(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=SUBPROCESS_TIMEOUT,
                              env={"LC_ALL": "C", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout if proc.returncode == 0 else None


@dataclass(frozen=True)
class PackageClaim:
    manager: str
    package: str
    name: str  # the path as the database records it
    algorithm: str  # "md5", "sha256", ...
    digest: str | None  # None when the database has no digest for it


def dpkg_owner(path: str, info_dir: str = DPKG_INFO) -> PackageClaim | None:
    if shutil.which("dpkg-query") is None:
        return None
    for name in usrmerge_aliases(path):
        out = _run(["dpkg-query", "-S", "--", name])
        if not out:
            continue
        for line in out.splitlines():
            if line.startswith("diversion by "):
                continue
            packages, sep, owned = line.partition(": ")
            if not sep or owned != name:
                continue
            package = packages.split(",")[0].strip()
            return PackageClaim("dpkg", package, name, "md5",
                                _dpkg_md5(package, name, info_dir))
    return None


@lru_cache(maxsize=1)
def _dpkg_architecture() -> str:
    return (_run(["dpkg", "--print-architecture"]) or "").strip()


def _dpkg_md5(package: str, name: str, info_dir: str) -> str | None:
    relative = name.lstrip("/")
    candidates = [f"{package}.md5sums"]
    if ":" not in package and _dpkg_architecture():
        candidates.append(f"{package}:{_dpkg_architecture()}.md5sums")
    for candidate in candidates:
        try:
            with open(os.path.join(info_dir, candidate), encoding="utf-8",
                      errors="surrogateescape") as f:
                for line in f:
                    digest, _, listed = line.rstrip("\n").partition("  ")
                    if listed == relative:
                        return digest
        except OSError:
            continue
    return None


_RPM_ALGORITHMS = {1: "md5", 2: "sha1", 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224"}


def rpm_owner(path: str) -> PackageClaim | None:
    if shutil.which("rpm") is None:
        return None
    fmt = "%{NAME}\\t%{FILEDIGESTALGO}\\n[%{FILENAMES}\\t%{FILEDIGESTS}\\n]"
    for name in usrmerge_aliases(path):
        out = _run(["rpm", "-qf", "--qf", fmt, "--", name])
        if not out:
            continue
        lines = out.splitlines()
        package, _, algo = lines[0].partition("\t")
        algorithm = _RPM_ALGORITHMS.get(int(algo) if algo.isdigit() else 1, "md5")
        for line in lines[1:]:
            listed, _, digest = line.partition("\t")
            if listed == name:
                return PackageClaim("rpm", package, name, algorithm, digest or None)
        return PackageClaim("rpm", package, name, algorithm, None)
    return None


def hash_file(fd: int, algorithms: tuple[str, ...]) -> dict[str, str]:
    hashers = {a: hashlib.new(a) for a in algorithms}
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, 1 << 20):
        for h in hashers.values():
            h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def in_system_dir(path: str, st: os.stat_result, system_dirs: tuple[str, ...]) -> str | None:
    """None when `path` is in a system directory and neither it nor a directory above it can be
    changed by anyone but root; else why not."""
    if not any(path.startswith(d + "/") for d in system_dirs):
        return f"{path} is not in a system directory"
    if st.st_uid != 0 or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return f"{path} is writable by a user other than root"
    directory = os.path.dirname(path)
    while True:
        try:
            dst = os.stat(directory)
        except OSError:
            return f"cannot stat {directory}"
        if dst.st_uid != 0 or (dst.st_mode & (stat.S_IWGRP | stat.S_IWOTH)
                               and not dst.st_mode & stat.S_ISVTX):
            return f"{directory} is writable by a user other than root"
        if directory == "/":
            return None
        directory = os.path.dirname(directory)


def package_owner(path: str) -> PackageClaim | None:
    return dpkg_owner(path) or rpm_owner(path)


def open_executable(pid: int, exe: str, expected: ExeKey | None) -> int:
    """An fd on the executable `pid` runs: through /proc/PID/exe, or, once the process has
    exited (monitor mode records reads after the fact), through its path when the file there
    is still the very one it ran (`expected`: device, inode, size and times)."""
    try:
        return os.open(f"/proc/{pid}/exe", os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, ProcessLookupError):
        if expected is None or exe.endswith(" (deleted)"):
            raise
    fd = os.open(exe, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    if ExeKey.of(os.fstat(fd)) != expected:
        os.close(fd)
        raise ProcessGone(f"pid {pid} exited and {exe} is no longer the file it ran")
    return fd


def verify_executable(pid: int, exe: str, system_dirs: tuple[str, ...],
                      owner: Callable[[str], PackageClaim | None] = package_owner,
                      expected: ExeKey | None = None) -> ExeVerification:
    """Hash and verify the executable that `pid` runs (read through /proc/PID/exe, so the file
    hashed is the one mapped, even when its path was replaced since; see `open_executable`).
    `owner` asks the package database who owns a path."""
    fd = open_executable(pid, exe, expected)
    try:
        st = os.fstat(fd)
        key = ExeKey.of(st)
        problems: list[str] = exe_flags(exe)
        path = exe.removesuffix(" (deleted)")
        claim = None
        if not problems:
            claim = owner(path)
        algorithms = ("sha256",) if claim is None else tuple(dict.fromkeys(("sha256",
                                                                             claim.algorithm)))
        digests = hash_file(fd, algorithms)
    finally:
        os.close(fd)
    match: bool | None = None
    if claim is None:
        if not problems:
            problems.append("no package owns it")
    elif claim.digest is None:
        match = False
        problems.append(f"{claim.manager} package {claim.package} has no checksum for it")
    else:
        match = digests[claim.algorithm] == claim.digest.lower()
        if not match:
            problems.append(f"content differs from {claim.manager} package {claim.package}")
    system_problem = in_system_dir(path, st, system_dirs) if not exe_flags(exe) else "no path"
    if system_problem and system_problem != "no path":
        problems.append(system_problem)
    return ExeVerification(
        path=path, key=key, sha256=digests["sha256"],
        package=claim.package if claim else None, manager=claim.manager if claim else None,
        package_match=match, system_dir=system_problem is None, problems=tuple(problems))
