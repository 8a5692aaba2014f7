"""Process identity and executable verification against real processes and the dpkg database."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.guard.identity import (
    PackageClaim,
    dpkg_owner,
    mapping_flags,
    process_flags,
    read_process,
    usrmerge_aliases,
    verify_executable,
)
from tests.guard_support import started, wait_for
from tests.kernel import require, require_root

SYSTEM_DIRS = ("/usr/bin", "/usr/sbin", "/usr/lib", "/bin", "/sbin", "/lib")
SLEEP = os.path.realpath(shutil.which("sleep") or "/usr/bin/sleep")


def _info(pid: int):
    dir_fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            status = f.read()
        return read_process(pid, dir_fd, status), status
    finally:
        os.close(dir_fd)


def _exec_done(pid: int, exe: str) -> bool:
    """The process runs `exe` and the exec finished (its arguments are in place)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return os.readlink(f"/proc/{pid}/exe").startswith(exe) and bool(f.read())
    except OSError:
        return False


def _require_dpkg() -> None:
    require(shutil.which("dpkg-query") is not None and dpkg_owner(SLEEP) is not None,
            "needs a dpkg system where coreutils owns sleep")


def test_usrmerge_aliases() -> None:
    if os.path.islink("/bin"):
        assert usrmerge_aliases("/usr/bin/cat") == ["/usr/bin/cat", "/bin/cat"]
    assert usrmerge_aliases("/opt/x/y")[0] == "/opt/x/y"


@pytest.mark.kernel
def test_package_binary_is_verified() -> None:
    require_root()
    _require_dpkg()
    with started([SLEEP, "30"]) as proc:
        wait_for(lambda: _exec_done(proc.pid, SLEEP))
        info, status = _info(proc.pid)
        start_ticks = read_start_ticks(proc.pid)
        result = verify_executable(proc.pid, info.exe, SYSTEM_DIRS)
    assert info.key.pid == proc.pid and info.key.start_ticks == start_ticks
    assert info.exe == SLEEP and process_flags(info, status) == ()
    assert result.verified, result.problems
    assert result.package == "coreutils" and result.manager == "dpkg"
    assert result.package_match is True and result.system_dir
    assert result.sha256 == hashlib.sha256(Path(SLEEP).read_bytes()).hexdigest()


@pytest.mark.kernel
def test_copy_outside_system_dirs_is_not_verified(tmp_path: Path) -> None:
    require_root()
    copy = tmp_path / "sleep"
    shutil.copy2(SLEEP, copy)
    with started([str(copy), "30"]) as proc:
        wait_for(lambda: _exec_done(proc.pid, str(copy)))
        info, _ = _info(proc.pid)
        result = verify_executable(proc.pid, info.exe, SYSTEM_DIRS)
    assert not result.verified
    assert result.package is None and "no package owns it" in result.problems
    assert any("not in a system directory" in p for p in result.problems)
    assert result.sha256 == hashlib.sha256(Path(SLEEP).read_bytes()).hexdigest()


@pytest.mark.kernel
def test_content_that_differs_from_the_package_database_is_not_verified() -> None:
    require_root()
    with started([SLEEP, "30"]) as proc:
        wait_for(lambda: _exec_done(proc.pid, SLEEP))
        claim = PackageClaim("dpkg", "coreutils", SLEEP, "md5", "0" * 32)
        result = verify_executable(proc.pid, SLEEP, SYSTEM_DIRS, owner=lambda _: claim)
    assert not result.verified and result.package_match is False
    assert "content differs from dpkg package coreutils" in result.problems


@pytest.mark.kernel
@pytest.mark.parametrize("variable", ["LD_PRELOAD", "LD_LIBRARY_PATH"])
def test_injection_variables_are_flagged(tmp_path: Path, variable: str) -> None:
    require_root()
    env = {"PATH": "/usr/bin:/bin", variable: str(tmp_path)}
    with started([SLEEP, "30"], env=env) as proc:
        wait_for(lambda: _exec_done(proc.pid, SLEEP))
        info, status = _info(proc.pid)
    assert f"{variable} set" in process_flags(info, status)


@pytest.mark.kernel
def test_traced_process_is_flagged() -> None:
    require_root()
    require(shutil.which("strace") is not None, "strace missing")
    with started(["strace", "-o", "/dev/null", SLEEP, "30"]) as proc:
        def traced_child() -> int | None:
            for pid in os.listdir("/proc"):
                if pid.isdigit() and _exec_done(int(pid), SLEEP):
                    with open(f"/proc/{pid}/status", "rb") as f:
                        if f"PPid:\t{proc.pid}\n".encode() in f.read():
                            return int(pid)
            return None

        child = wait_for(traced_child)
        info, status = _info(child)
    assert f"traced by pid {proc.pid}" in process_flags(info, status)


@pytest.mark.kernel
def test_deleted_executable_is_flagged(tmp_path: Path) -> None:
    require_root()
    copy = tmp_path / "sleep"
    shutil.copy2(SLEEP, copy)
    with started([str(copy), "30"]) as proc:
        wait_for(lambda: _exec_done(proc.pid, str(copy)))
        copy.unlink()
        info, status = _info(proc.pid)
        result = verify_executable(proc.pid, info.exe, SYSTEM_DIRS)
    assert "deleted executable" in process_flags(info, status)
    assert not result.verified


@pytest.mark.kernel
def test_memfd_executable_is_flagged() -> None:
    require_root()
    code = ("import os,sys; fd=os.memfd_create('payload', 0); "
            f"os.write(fd, open({SLEEP!r},'rb').read()); os.execve(fd, ['x','30'], {{}})")
    with started([sys.executable, "-c", code]) as proc:
        wait_for(lambda: _exec_done(proc.pid, "/memfd:"), timeout=10)
        info, status = _info(proc.pid)
    assert "memfd executable" in process_flags(info, status)


HIDING_LIBRARY = r"""
#include <string.h>
extern char **environ;
/* Runs before main: blank LD_PRELOAD=... in the original environment block, so that
   /proc/PID/environ no longer shows it. */
__attribute__((constructor)) static void hide(void) {
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "LD_PRELOAD=", 11) == 0)
            memset(*e, 'X', strlen(*e));
}
"""


@pytest.mark.kernel
def test_preloaded_library_that_hides_its_variable_is_flagged(tmp_path: Path) -> None:
    require_root()
    require(shutil.which("gcc") is not None, "gcc missing")
    source = tmp_path / "hide.c"
    source.write_text(HIDING_LIBRARY)
    library = tmp_path / "libhide.so"
    build = subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source)],
                           capture_output=True, timeout=60, check=False)
    assert build.returncode == 0, build.stderr
    env = {"PATH": "/usr/bin:/bin", "LD_PRELOAD": str(library)}
    with started([SLEEP, "30"], env=env) as proc:
        wait_for(lambda: _exec_done(proc.pid, SLEEP))

        def hidden() -> bool:  # the constructor runs a moment after the exec
            with open(f"/proc/{proc.pid}/environ", "rb") as f:
                return b"LD_PRELOAD=" not in f.read()

        wait_for(hidden)
        info, status = _info(proc.pid)
    flags = process_flags(info, status)
    assert "LD_PRELOAD set" not in flags
    assert f"code mapped from outside the system directories: {library}" in flags


def test_mapping_flags_from_a_maps_text() -> None:
    maps = (b"55d0-55d1 r-xp 00000000 08:01 12 /usr/bin/sleep\n"
            b"7f00-7f01 r-xp 00000000 08:01 13 /usr/lib/x86_64-linux-gnu/libc.so.6\n"
            b"7f02-7f03 r--p 00000000 08:01 14 /home/u/data.bin\n"
            b"7f04-7f05 r-xp 00000000 08:01 15 /home/u/lib with space.so\n"
            b"7f06-7f07 r-xp 00000000 00:01 16 /memfd:x (deleted)\n"
            b"7f08-7f09 r-xp 00000000 08:01 17 /usr/lib/old.so (deleted)\n"
            b"7f0a-7f0b r-xp 00000000 00:00 0 [vdso]\n")
    assert mapping_flags(maps, "/usr/bin/sleep", ("/usr/bin", "/usr/lib")) == [
        "code mapped from outside the system directories: /home/u/lib with space.so",
        "memfd code mapped: /memfd:x (deleted)",
        "deleted file mapped as code: /usr/lib/old.so (deleted)"]
