"""The container of a process or of a kernel event, resolved once, for every component.

`CgroupIndex` maps a cgroup v2 id (the inode number of the cgroup's directory, what BPF's
bpf_get_current_cgroup_id returns with every event) to its path. It walks the unified hierarchy
once at start; after that the kernel's cgroup:cgroup_mkdir events (`learn`, from
fluxtui/collectors/container_trace.py) keep it current, so a container that lived 100 ms is
known by the time its events are resolved. Removed cgroups are kept (bounded) for the events of
a container's last processes. Without the kernel feed it rescans on a miss, at most every
`rescan_s` seconds (a container that came and went between two scans stays unknown).

`ContainerResolver` turns ids and processes into `ContainerIdentity` (runtime, full id, name,
pod), with the name read from the runtime's state when the cgroup appears. It is the one cache
of containers: the syscall capture and the risk scorer share it. `HOST` and `UNKNOWN` are
different answers: unknown means nothing could be read (process gone, id never seen).
Nothing here imports textual.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from pathlib import Path

from fluxtui.collectors.container_trace import CgroupChange
from fluxtui.collectors.procstat import cgroup2_mount, read_start_ticks
from fluxtui.detection.container_names import ContainerNames
from fluxtui.detection.containers import parse_cgroup_path
from fluxtui.events import HOST, UNKNOWN, ContainerIdentity, ProcessKey

V2_HIERARCHY = 0  # the kernel's id of the unified hierarchy in cgroup_mkdir events


class CgroupIndex:
    MAX_DIRS = 50_000
    REMOVED_KEPT = 4096

    def __init__(self, root: str | None = None, rescan_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.root = root if root is not None else cgroup2_mount()
        self.live = False  # True once the kernel's cgroup events feed it
        self._rescan_s = rescan_s
        self._clock = clock
        self._paths: dict[int, str] = {}
        self._removed: OrderedDict[int, str] = OrderedDict()
        self._scanned_at: float | None = None
        self.learnt = 0  # cgroups learnt from the kernel's events

    def scan(self) -> None:
        """Walk the unified hierarchy (bounded by MAX_DIRS directories)."""
        self._scanned_at = self._clock()
        if not self.root:
            return
        paths: dict[int, str] = {}
        for count, (dirpath, _dirs, _files) in enumerate(os.walk(self.root)):
            if count >= self.MAX_DIRS:
                break
            try:
                inode = os.stat(dirpath).st_ino
            except OSError:
                continue
            paths[inode] = "/" + os.path.relpath(dirpath, self.root).removeprefix(".")
        paths.update(self._paths if self.live else {})  # learnt during the walk stay
        self._paths = paths

    def learn(self, change: CgroupChange) -> None:
        if change.hierarchy != V2_HIERARCHY:
            return
        if change.created:
            self._paths[change.cgroup_id] = change.path
            self.learnt += 1
            return
        path = self._paths.pop(change.cgroup_id, change.path)
        self._removed[change.cgroup_id] = path
        while len(self._removed) > self.REMOVED_KEPT:
            self._removed.popitem(last=False)

    def path(self, cgroup_id: int) -> str | None:
        if cgroup_id == 0:
            return None
        found = self._paths.get(cgroup_id) or self._removed.get(cgroup_id)
        if found is None and not self.live and self.root and (
                self._scanned_at is None or self._clock() - self._scanned_at >= self._rescan_s):
            self.scan()
            found = self._paths.get(cgroup_id)
        return found


class ContainerResolver:
    NAME_RETRY_S = 1.0

    def __init__(self, proc: str = "/proc", index: CgroupIndex | None = None,
                 names: ContainerNames | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._proc = proc
        self.index = index if index is not None else CgroupIndex(clock=clock)
        self.names = names or ContainerNames()
        self._clock = clock
        self._lock = threading.Lock()
        self._by_path: dict[str, tuple[ContainerIdentity, float]] = {}  # (identity, read at)
        self._by_key: dict[ProcessKey, ContainerIdentity] = {}
        self._observed: set[ProcessKey] = set()  # see take_observed

    # --- cgroups -----------------------------------------------------------------------------

    def learn(self, change: CgroupChange) -> ContainerIdentity | None:
        """A cgroup appeared or went (the kernel's event): indexed, and a container's name read
        now, while its runtime's state still has it. The container, None for a host cgroup."""
        self.index.learn(change)
        if change.hierarchy != V2_HIERARCHY or not change.created:
            return None
        found = self.of_path(change.path)
        return found if found.is_container else None

    def of_cgroup(self, cgroup_id: int) -> ContainerIdentity:
        """The container of a cgroup v2 id as the kernel reported it with an event."""
        path = self.index.path(cgroup_id)
        return UNKNOWN if path is None else self.of_path(path)

    def of_path(self, path: str) -> ContainerIdentity:
        now = self._clock()
        with self._lock:
            cached = self._by_path.get(path)
        if cached is not None:
            identity, read_at = cached
            if identity.name or not identity.is_container or (
                    now - read_at < self.NAME_RETRY_S):
                return identity
        identity = self._identify(path)
        with self._lock:
            if len(self._by_path) > 4 * CgroupIndex.REMOVED_KEPT:
                self._by_path.clear()  # bounded: rebuilt on demand
            self._by_path[path] = (identity, now)
        return identity

    def _identify(self, path: str) -> ContainerIdentity:
        found = (parse_cgroup_path(path) or self.names.containerd(path)
                 or self.names.docker_elsewhere(path))
        if found is None:
            return HOST
        if found.name:
            return found
        name = self.names.name(found.runtime, found.id)
        return ContainerIdentity(found.runtime, found.id, name, found.pod_uid, found.namespace,
                                 found.cgroup) if name else found

    # --- processes ---------------------------------------------------------------------------

    def observe(self, key: ProcessKey, identity: ContainerIdentity) -> None:
        """What an event of the process said (fresher than /proc)."""
        if identity.state != "unknown":
            with self._lock:
                if self._by_key.get(key) != identity:
                    self._observed.add(key)
                self._by_key[key] = identity

    def take_observed(self) -> set[ProcessKey]:
        """The processes whose container an event told since the last call (it may differ
        from what /proc said before)."""
        with self._lock:
            observed, self._observed = self._observed, set()
        return observed

    def known(self) -> set[ProcessKey]:
        """The processes whose container is cached."""
        with self._lock:
            return set(self._by_key)

    def forget(self, keys: Iterable[ProcessKey]) -> None:
        with self._lock:
            for key in keys:
                self._by_key.pop(key, None)
                self._observed.discard(key)

    def of_process(self, key: ProcessKey) -> ContainerIdentity:
        """A process in the table: what its events said, else its /proc/PID/cgroup (v2 line);
        UNKNOWN when it is gone or its pid was reused."""
        with self._lock:
            known = self._by_key.get(key)
        if known is not None:
            return known
        path = self._proc_cgroup(key)
        if path is None:
            return UNKNOWN
        identity = self.of_path(path)
        with self._lock:
            self._by_key[key] = identity
        return identity

    def _proc_cgroup(self, key: ProcessKey) -> str | None:
        try:
            text = Path(f"{self._proc}/{key.pid}/cgroup").read_text(encoding="utf-8",
                                                                   errors="replace")
        except OSError:
            return None
        if read_start_ticks(key.pid, self._proc) != key.start_ticks:
            return None
        fallback = None
        for line in text.splitlines():
            fields = line.split(":", 2)
            if len(fields) != 3:
                continue
            if fields[0] == "0" and fields[1] == "":
                return fields[2]
            if fallback is None and parse_cgroup_path(fields[2]) is not None:
                fallback = fields[2]  # cgroup v1 only: a hierarchy that names a container
        return fallback or "/"

    def refresh(self, key: ProcessKey) -> None:
        """Read again at the next lookup (after an exec, a process may have moved)."""
        with self._lock:
            self._by_key.pop(key, None)
            self._observed.add(key)

    def retain(self, alive: set[ProcessKey]) -> None:
        """Forget every process not in `alive`: memory stays bounded."""
        with self._lock:
            self._by_key = {k: v for k, v in self._by_key.items() if k in alive}
            self._observed &= alive
