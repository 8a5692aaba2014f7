"""Names of containers, and plain containerd's containers, from the runtimes' state on disk: no
call to a runtime's API (a slow or hung daemon must not stall the collectors).

  Docker      <docker root>/containers/<id>/config.v2.json, "Name" ("/web" -> "web"); written
              when the container is created, before it starts
  Podman      <storage root>/overlay-containers/containers.json, "names" of the entry whose
              "id" is the container's (containers/storage's own record, written at create)
  Docker      a container under another parent (`--cgroup-parent`): its cgroup is its bare id,
              known as docker's by the state above
  containerd  plain containerd (`ctr run`) names no container in its cgroup path beyond
              `/<namespace>/<id>`; a live task of it has the directory
              <state>/io.containerd.runtime.v2.task/<namespace>/<id>

A container removed before its name was read (`docker run --rm` that lived 100 ms) keeps the
name read when its cgroup appeared: the caller asks at that moment (see container_index.py).
Nothing here imports textual.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from fluxtui.events import ContainerIdentity

MAX_STATE_BYTES = 8 << 20  # a state file larger than this is not read (a hostile or broken one)
_FULL_ID = re.compile(r"^[0-9a-f]{64}$")
_CONTAINERD_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,75}$")  # containerd's identifiers


class ContainerNames:
    def __init__(self, docker_root: str = "/var/lib/docker",
                 storage_root: str = "/var/lib/containers/storage",
                 containerd_state: str = "/run/containerd") -> None:
        self.docker_root = Path(docker_root)
        self.storage_root = Path(storage_root)
        self.containerd_tasks = Path(containerd_state) / "io.containerd.runtime.v2.task"

    def name(self, runtime: str, container_id: str) -> str:
        """The runtime's name for the container, "" when its state names none (or is gone)."""
        if not container_id:
            return ""
        if runtime == "docker":
            return self._docker(container_id)
        if runtime == "podman":
            return self._podman(container_id)
        return ""

    def containerd(self, cgroup_path: str) -> ContainerIdentity | None:
        """A plain containerd container (`/<namespace>/<id>`) with a live task, else None."""
        parts = [p for p in cgroup_path.split("/") if p]
        if len(parts) != 2 or not all(_CONTAINERD_NAME.match(p) for p in parts):
            return None
        namespace, container_id = parts
        if not (self.containerd_tasks / namespace / container_id).is_dir():
            return None
        return ContainerIdentity("containerd", container_id, name=container_id,
                                 namespace=namespace, cgroup=cgroup_path)

    def docker_elsewhere(self, cgroup_path: str) -> ContainerIdentity | None:
        """A docker container put under another cgroup (`--cgroup-parent`): its cgroup is its
        full id, which docker's state on disk knows."""
        last = cgroup_path.rstrip("/").rsplit("/", 1)[-1]
        if not _FULL_ID.match(last):
            return None
        if not (self.docker_root / "containers" / last).is_dir():
            return None
        return ContainerIdentity("docker", last, name=self._docker(last), cgroup=cgroup_path)

    def _docker(self, container_id: str) -> str:
        data = _read_json(self.docker_root / "containers" / container_id / "config.v2.json")
        name = data.get("Name") if isinstance(data, dict) else None
        return name.lstrip("/") if isinstance(name, str) else ""

    def _podman(self, container_id: str) -> str:
        data = _read_json(self.storage_root / "overlay-containers" / "containers.json")
        for entry in data if isinstance(data, list) else ():
            if isinstance(entry, dict) and entry.get("id") == container_id:
                names = entry.get("names")
                if isinstance(names, list) and names and isinstance(names[0], str):
                    return names[0]
        return ""


def _read_json(path: Path) -> object:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_STATE_BYTES + 1)
    except OSError:
        return None
    if len(raw) > MAX_STATE_BYTES:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None
