"""Where a scenario runs: its own cgroups, temporary directories and a decoy home.

Each run of `fluxtui evaluate` makes a cgroup v2 directory `fluxtui-eval.<pid>` and, per
scenario, `<n>-<name>/{launch,actor,support}` below it. The cgroup is how the evaluation knows a
process belongs to a scenario (never its name): every process a scenario starts stays in its
cgroup, whatever it execs or calls itself, and `cgroup.kill` ends them all at once.
Temporary directories carry a marker file with the owner's pid, so that a run killed with
SIGKILL is cleaned up by the next one (cgroups by their name, directories by the marker).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fluxtui.collectors.procstat import cgroup2_mount

PREFIX = "fluxtui-eval."
MARKER = ".fluxtui-eval-owner"
DECOY_MARKER = ".fluxtui-decoy"
TEMP_ROOTS = ("/tmp", "/dev/shm", "/var/tmp")
ROLES = ("launch", "actor", "support")
SHARED_MODE = 0o1777  # of the stand-ins for /dev/shm and /var/tmp


class SandboxError(Exception):
    """The evaluation cannot set up its sandbox; phrased for the user."""


def cgroup2_root(mountinfo: str = "/proc/self/mountinfo") -> Path | None:
    """Mount point of the cgroup v2 (unified) hierarchy, None when there is none."""
    mount = cgroup2_mount(mountinfo)
    return None if mount is None else Path(mount)


def own_cgroup(proc_cgroup: str = "/proc/self/cgroup") -> str:
    """This process's cgroup v2 path ("0::" line), relative to the hierarchy's root."""
    with contextlib.suppress(OSError):
        for line in Path(proc_cgroup).read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    return "/"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def make_temp_dir(root: str, owner: int | None = None) -> Path:
    """A fresh 0700 directory under `root`, with the owner marker inside."""
    path = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))
    (path / MARKER).write_text(f"{os.getpid() if owner is None else owner}\n")
    return path


def remove_temp_dir(path: Path) -> None:
    """Remove a directory this module made (it must hold the marker)."""
    if (path / MARKER).is_file() and path.name.startswith(PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def kill_cgroup(path: Path, timeout: float = 10.0) -> bool:
    """Kill every process in the cgroup tree at `path`; True when it is empty afterwards."""
    kill_file = path / "cgroup.kill"
    deadline = time.monotonic() + timeout
    while True:
        pids = cgroup_pids(path)
        if not pids:
            return True
        if kill_file.exists():
            with contextlib.suppress(OSError):
                kill_file.write_text("1")
        else:  # kernels before 5.14: one by one, until none is left
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


def cgroup_pids(path: Path) -> list[int]:
    pids: list[int] = []
    for procs in path.rglob("cgroup.procs"):
        with contextlib.suppress(OSError, ValueError):
            pids.extend(int(line) for line in procs.read_text().split())
    return pids


def remove_cgroup(path: Path) -> None:
    """rmdir the cgroup tree at `path`, deepest first (cgroups only go with rmdir)."""
    if not path.is_dir():
        return
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()),
                      key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    with contextlib.suppress(OSError):
        path.rmdir()


def clean_stale(cgroup_root: Path | None) -> list[str]:
    """Remove what runs killed with SIGKILL left: cgroups and marked temporary directories
    whose owner is gone. Returns what was removed, for the log."""
    removed: list[str] = []
    if cgroup_root is not None:
        parent = cgroup_root / own_cgroup().lstrip("/")
        for path in parent.glob(PREFIX + "*") if parent.is_dir() else ():
            pid = path.name.removeprefix(PREFIX)
            if pid.isdigit() and not _alive(int(pid)):
                kill_cgroup(path)
                remove_cgroup(path)
                removed.append(str(path))
    for root in TEMP_ROOTS:
        with contextlib.suppress(OSError):
            for path in Path(root).glob(PREFIX + "*"):
                try:
                    owner = int((path / MARKER).read_text().strip())
                except (OSError, ValueError):
                    continue  # not ours, or not readable: never touched
                if not _alive(owner):
                    remove_temp_dir(path)
                    removed.append(str(path))
    return removed


@dataclass(frozen=True)
class DecoyHome:
    """A home with clearly fake credentials; the guard protects it and nothing else."""

    root: Path  # the run's temporary directory
    home: Path
    state: Path  # the guard's rules file and audit database

    @classmethod
    def create(cls, root: Path) -> DecoyHome:
        home, state = root / "home", root / "state"
        for d in (home, state, home / ".ssh", home / ".aws", home / ".kube"):
            d.mkdir(mode=0o700)
        (home / DECOY_MARKER).write_text("made by fluxtui evaluate; every credential is fake\n")
        key = home / ".ssh" / "id_ed25519"
        if shutil.which("ssh-keygen"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C",
                            "fluxtui-decoy", "-f", str(key)],
                           check=True, timeout=30, capture_output=True)
        (home / ".aws" / "credentials").write_text(
            "[default]\n# fluxtui decoy: not a real key\n"
            "aws_access_key_id = AKIAFLUXTUIDECOY0000\n"
            "aws_secret_access_key = fluxtui-decoy-secret-not-real-0000000000\n")
        (home / ".kube" / "config").write_text(
            "# fluxtui decoy: not a real cluster\napiVersion: v1\nkind: Config\n"
            "users:\n- name: decoy\n  user:\n    token: fluxtui-decoy-token-not-real\n")
        (home / ".bashrc").write_text("# fluxtui decoy home\n")
        return cls(root, home, state)


class ScenarioSandbox:
    """One scenario's cgroups and directories. `close()` kills whatever is left and removes
    everything; it is safe to call twice and runs on every exit path of the runner."""

    def __init__(self, run_cgroup: Path, index: int, name: str) -> None:
        self.cgroup = run_cgroup / f"{index:02d}-{name}"
        self.cgroups: dict[str, Path] = {}
        self.dirs: list[Path] = []
        try:
            self.cgroup.mkdir()
            for role in ROLES:
                (self.cgroup / role).mkdir()
                self.cgroups[role] = self.cgroup / role
            for root in TEMP_ROOTS:
                self.dirs.append(make_temp_dir(root))
            # $FLUX_SHM and $FLUX_VARTMP stand for /dev/shm and /var/tmp themselves (a script
            # drops files straight into them as it would there), so they are what those are:
            # world-writable with the sticky bit. A private 0700 directory in between would
            # make a file dropped "in /var/tmp" look like one only root could have put there.
            # $FLUX_WORK stays a private 0700 work directory (a build under /tmp).
            for shared in self.dirs[1:]:
                shared.chmod(SHARED_MODE)
        except OSError as exc:
            self.close()
            raise SandboxError(f"cannot set up scenario {name}: {exc}") from None
        self.work, self.shm, self.vartmp = self.dirs
        # cgroup v2 ids are the inode numbers of the directories (what BPF reports).
        self.ids = {self.cgroups[role].stat().st_ino: role for role in ROLES}

    def procs(self, role: str) -> Path:
        return self.cgroups[role] / "cgroup.procs"

    def relative_paths(self, root: Path) -> dict[str, str]:
        """cgroup path as /proc/PID/cgroup shows it -> role."""
        return {"/" + str(path.relative_to(root)): role for role, path in self.cgroups.items()}

    def kill(self) -> bool:
        return kill_cgroup(self.cgroup) if self.cgroup.is_dir() else True

    def close(self) -> bool:
        """Kill, remove; True when nothing is left (no process, no directory)."""
        empty = self.kill()
        remove_cgroup(self.cgroup)
        for d in self.dirs:
            remove_temp_dir(d)
        left = [d for d in self.dirs if d.exists()]
        return empty and not self.cgroup.exists() and not left


class RunSandbox:
    """The run's parent cgroup and temporary root (with the decoy home)."""

    def __init__(self) -> None:
        root = cgroup2_root()
        if root is None:
            raise SandboxError("no cgroup v2 hierarchy is mounted: the evaluation tells a "
                               "scenario's processes apart by the cgroup it makes for them")
        self.cgroup_root = root
        self.stale = clean_stale(root)
        parent = root / own_cgroup().lstrip("/")
        self.cgroup = parent / f"{PREFIX}{os.getpid()}"
        try:
            self.cgroup.mkdir()
        except OSError as exc:
            raise SandboxError(f"cannot make cgroup {self.cgroup}: {exc.strerror or exc} "
                               "(needs root and a writable cgroup v2 hierarchy)") from None
        self.temp = make_temp_dir("/tmp")
        try:
            self.decoy = DecoyHome.create(self.temp)
        except (OSError, subprocess.SubprocessError) as exc:
            self.close()
            raise SandboxError(f"cannot make the decoy home: {exc}") from None
        (self.temp / "logs").mkdir()
        self._index = 0

    def scenario(self, name: str) -> ScenarioSandbox:
        self._index += 1
        return ScenarioSandbox(self.cgroup, self._index, name)

    def close(self) -> None:
        kill_cgroup(self.cgroup)
        remove_cgroup(self.cgroup)
        remove_temp_dir(self.temp)
