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
containers. Plain containerd (`ctr run`: `/<namespace>/<id>`) cannot be told from a host cgroup by
its path alone; fluxtui/detection/container_names.py checks containerd's state on disk for it.
Names, the index of cgroup ids and the resolver live in container_names.py and
container_index.py. Nothing here imports textual.
"""

from __future__ import annotations

import re
from pathlib import Path

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.events import ContainerIdentity, ProcessKey

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


def parse_cgroup_path(path: str) -> ContainerIdentity | None:
    """The container of one cgroup path (without its name), None for a host cgroup."""
    found: ContainerIdentity | None = None
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
                found = ContainerIdentity(runtime, match.group(1), pod_uid=pod_uid or "",
                                          cgroup=path)
                break
        else:
            bare = _BARE_ID.match(part)
            if bare and i > 0 and parts[i - 1] == "docker":
                found = ContainerIdentity("docker", bare.group(1), pod_uid=pod_uid or "",
                                          cgroup=path)
            elif bare and pod_uid is not None:
                found = ContainerIdentity("kubernetes", bare.group(1), pod_uid=pod_uid,
                                          cgroup=path)
    if found is None and pod_uid is not None:
        return ContainerIdentity("kubernetes", "", pod_uid=pod_uid, cgroup=path)
    return found


def parse_proc_cgroup(text: str) -> ContainerIdentity | None:
    """The container named by a /proc/PID/cgroup file ("ID:controllers:path" lines). The cgroup
    v2 line ("0::") is preferred; with cgroup v1 any hierarchy that names a container counts."""
    best: ContainerIdentity | None = None
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


def read_container(key: ProcessKey, proc: str = "/proc") -> tuple[bool, ContainerIdentity | None]:
    """(known, container) for a live process. known is False when the process is gone or its
    pid now belongs to another process (start time differs), so nothing can be said."""
    try:
        text = Path(f"{proc}/{key.pid}/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False, None
    if read_start_ticks(key.pid, proc) != key.start_ticks:
        return False, None
    return True, parse_proc_cgroup(text)


