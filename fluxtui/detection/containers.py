"""Which container a process runs in, from its cgroup path (/proc/PID/cgroup).

Runtimes name the cgroup of a container in their own way; each is matched on one path component,
and the innermost match wins (a container inside a container reports the inner one):

  Docker      /docker/<id> (cgroupfs), docker-<id>.scope (systemd)
  containerd  cri-containerd-<id>.scope
  CRI-O       crio-<id>.scope, crio-<id>
  Podman      libpod-<id>.scope, libpod-<id>
  Kubernetes  a pod<uid> component (dashes with cgroupfs, underscores with systemd) and a bare
              <id> below it (cgroupfs drivers), whatever the runtime

`crio-conmon-` and `libpod-conmon-` are the runtimes' monitor processes on the host side, not
containers. Nothing here imports textual.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.events import ProcessKey

_ID = r"([0-9a-f]{64})"
_SCOPED = [  # (pattern on one path component, runtime)
    (re.compile(rf"^docker-{_ID}\.scope$"), "docker"),
    (re.compile(rf"^cri-containerd-{_ID}\.scope$"), "containerd"),
    (re.compile(rf"^crio-{_ID}(?:\.scope)?$"), "cri-o"),
    (re.compile(rf"^libpod-{_ID}(?:\.scope)?$"), "podman"),
]
_BARE_ID = re.compile(rf"^{_ID}$")
_CONMON = re.compile(r"^(?:crio|libpod)-conmon-")
_POD = re.compile(
    r"pod([0-9a-f]{8})[-_]([0-9a-f]{4})[-_]([0-9a-f]{4})[-_]([0-9a-f]{4})[-_]([0-9a-f]{12})"
    r"(?:\.slice)?$"
)


@dataclass(frozen=True)
class ContainerInfo:
    runtime: str  # docker, containerd, cri-o, podman, kubernetes
    container_id: str  # 64 hex digits; "" for a process in a pod's cgroup but no container's
    pod_uid: str | None = None  # Kubernetes pod UID with dashes

    @property
    def label(self) -> str:
        """Short form for a table column: runtime and the first 12 digits of the id."""
        if self.container_id:
            return f"{self.runtime}:{self.container_id[:12]}"
        return f"pod:{self.pod_uid}"


def parse_cgroup_path(path: str) -> ContainerInfo | None:
    """The container of one cgroup path, None for a host cgroup."""
    found: ContainerInfo | None = None
    pod_uid: str | None = None
    parts = [p for p in path.split("/") if p]
    for i, part in enumerate(parts):
        pod = _POD.search(part)
        if pod:
            pod_uid = "-".join(pod.groups())
            continue
        if _CONMON.match(part):
            return None  # the runtime's monitor, a host process even inside a pod's slice
        for pattern, runtime in _SCOPED:
            match = pattern.match(part)
            if match:
                found = ContainerInfo(runtime, match.group(1), pod_uid)
                break
        else:
            bare = _BARE_ID.match(part)
            if bare and i > 0 and parts[i - 1] == "docker":
                found = ContainerInfo("docker", bare.group(1), pod_uid)
            elif bare and pod_uid is not None:
                found = ContainerInfo("kubernetes", bare.group(1), pod_uid)
    if found is None and pod_uid is not None:
        return ContainerInfo("kubernetes", "", pod_uid)
    return found


def parse_proc_cgroup(text: str) -> ContainerInfo | None:
    """The container named by a /proc/PID/cgroup file ("ID:controllers:path" lines). The cgroup
    v2 line ("0::") is preferred; with cgroup v1 any hierarchy that names a container counts."""
    best: ContainerInfo | None = None
    for line in text.splitlines():
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        info = parse_cgroup_path(fields[2])
        if info is None:
            continue
        if fields[0] == "0" and fields[1] == "":
            return info
        best = best or info
    return best


def read_container(key: ProcessKey, proc: str = "/proc") -> tuple[bool, ContainerInfo | None]:
    """(known, container) for a live process. known is False when the process is gone or its
    pid now belongs to another process (start time differs), so nothing can be said."""
    try:
        text = Path(f"{proc}/{key.pid}/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False, None
    if read_start_ticks(key.pid, proc) != key.start_ticks:
        return False, None
    return True, parse_proc_cgroup(text)


class CgroupIdIndex:
    """cgroup v2 id (the inode number of the cgroup's directory, what BPF's
    bpf_get_current_cgroup_id returns) -> container, for events of processes that are already
    gone. Scans the unified hierarchy on a miss, at most every `rescan_s` seconds."""

    MAX_DIRS = 50_000

    def __init__(self, root: str | None = None, rescan_s: float = 5.0) -> None:
        self.root = root if root is not None else cgroup2_mount()
        self._rescan_s = rescan_s
        self._paths: dict[int, str] = {}
        self._scanned_at: float | None = None

    def lookup(self, cgroup_id: int) -> tuple[bool, ContainerInfo | None]:
        if not self.root or cgroup_id == 0:
            return False, None
        path = self._paths.get(cgroup_id)
        now = time.monotonic()
        if path is None and (self._scanned_at is None or now - self._scanned_at >= self._rescan_s):
            self._scan()
            self._scanned_at = now
            path = self._paths.get(cgroup_id)
        if path is None:
            return False, None
        return True, parse_cgroup_path(path)

    def _scan(self) -> None:
        assert self.root is not None
        paths: dict[int, str] = {}
        for count, (dirpath, _dirs, _files) in enumerate(os.walk(self.root)):
            if count >= self.MAX_DIRS:
                break
            try:
                inode = os.stat(dirpath).st_ino
            except OSError:
                continue
            paths[inode] = "/" + os.path.relpath(dirpath, self.root).removeprefix(".")
        self._paths = paths


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Mount point of the cgroup v2 (unified) hierarchy, None when there is none."""
    try:
        lines = Path(mountinfo).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        # "... mount_point options - fstype source super_options"
        left, sep, right = line.partition(" - ")
        if sep and right.split(" ", 1)[0] == "cgroup2":
            return left.split(" ")[4].replace("\\040", " ")
    return None


class ContainerCache:
    """Container of each live process, read once per process identity (pid + start time)."""

    def __init__(self, proc: str = "/proc", index: CgroupIdIndex | None = None) -> None:
        self._proc = proc
        self._index = index
        self._known: dict[ProcessKey, ContainerInfo | None] = {}

    def get(self, key: ProcessKey, cgroup_id: int = 0) -> ContainerInfo | None:
        """None for a host process, or when nothing can be learnt (process gone, no v2 id)."""
        if key in self._known:
            return self._known[key]
        known, info = read_container(key, self._proc)
        if not known and self._index is not None and cgroup_id:
            known, info = self._index.lookup(cgroup_id)
        if known:
            self._known[key] = info
        return info

    def refresh(self, key: ProcessKey) -> None:
        """Read again at the next `get` (after an exec, a process may have moved)."""
        self._known.pop(key, None)

    def retain(self, alive: set[ProcessKey]) -> None:
        """Drop every process not in `alive`: memory stays bounded."""
        for key in [k for k in self._known if k not in alive]:
            del self._known[key]
