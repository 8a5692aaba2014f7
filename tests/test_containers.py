"""Container detection from /proc/PID/cgroup: one fixture per runtime and cgroup layout."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.detection.containers import (
    CgroupIdIndex,
    ContainerCache,
    ContainerInfo,
    parse_cgroup_path,
    parse_proc_cgroup,
    read_container,
)
from fluxtui.events import ProcessKey

FIXTURES = Path(__file__).parent / "fixtures" / "cgroups"
A = "3f2a9c1b2d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"
B = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b"
POD = "0b6e5c3a-2f1d-4c3e-9a7b-1c2d3e4f5a6b"

EXPECTED: dict[str, ContainerInfo | None] = {
    "docker_cgroupfs_v1.txt": ContainerInfo("docker", A),
    "docker_systemd_v2.txt": ContainerInfo("docker", A),
    "docker_systemd_nested_unit.txt": ContainerInfo("docker", A),
    "docker_in_docker.txt": ContainerInfo("docker", B),  # the innermost container
    "containerd_k8s_systemd.txt": ContainerInfo("containerd", B, POD),
    "crio_k8s_systemd.txt": ContainerInfo("cri-o", B, POD),
    "crio_k8s_cgroupfs_v1.txt": ContainerInfo("cri-o", B, POD),
    "crio_conmon.txt": None,  # conmon monitors a container from the host
    "k8s_cgroupfs_v1.txt": ContainerInfo("kubernetes", A, POD),
    "k8s_pod_only.txt": ContainerInfo("kubernetes", "", POD),
    "podman_rootful_v2.txt": ContainerInfo("podman", A),
    "podman_rootless_v2.txt": ContainerInfo("podman", B),
    "podman_cgroupfs_v1.txt": ContainerInfo("podman", A),
    "podman_conmon.txt": None,
    "host_v2.txt": None,
    "host_v1.txt": None,
    "malformed.txt": None,
}


def test_every_fixture_has_an_expectation() -> None:
    assert sorted(p.name for p in FIXTURES.glob("*.txt")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_fixture(name: str) -> None:
    assert parse_proc_cgroup((FIXTURES / name).read_text()) == EXPECTED[name]


def test_labels() -> None:
    assert ContainerInfo("docker", A).label == "docker:3f2a9c1b2d4e"
    assert ContainerInfo("kubernetes", "", POD).label == f"pod:{POD}"


def test_pod_uid_with_underscores_is_normalised_to_dashes() -> None:
    info = parse_cgroup_path(f"/kubepods.slice/kubepods-pod{POD.replace('-', '_')}.slice/"
                             f"cri-containerd-{A}.scope")
    assert info == ContainerInfo("containerd", A, POD)


def test_short_or_uppercase_ids_are_not_containers() -> None:
    assert parse_cgroup_path(f"/system.slice/docker-{A[:12]}.scope") is None
    assert parse_cgroup_path(f"/docker/{A.upper()}") is None
    assert parse_cgroup_path(f"/notdocker/{A}") is None


def test_read_container_of_this_process_matches_its_cgroup_file() -> None:
    pid = os.getpid()
    key = ProcessKey(pid, read_start_ticks(pid) or 0)
    known, info = read_container(key)
    assert known
    assert info == parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())


def test_read_container_refuses_a_reused_pid() -> None:
    pid = os.getpid()
    wrong_start = ProcessKey(pid, (read_start_ticks(pid) or 0) + 1)
    assert read_container(wrong_start) == (False, None)


def test_fake_proc_tree_and_cache(tmp_path: Path) -> None:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text((FIXTURES / "docker_systemd_v2.txt").read_text())
    stat = "42 (app) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1000 10 0 0 0\n"
    (proc / "42" / "stat").write_text(stat)
    (proc / "42" / "statm").write_text("100 10 5 1 0 20 0\n")
    cache = ContainerCache(str(proc))
    key = ProcessKey(42, 777)
    assert cache.get(key) == ContainerInfo("docker", A)
    (proc / "42" / "cgroup").write_text("0::/\n")
    assert cache.get(key) == ContainerInfo("docker", A)  # cached per process identity
    cache.refresh(key)
    assert cache.get(key) is None
    (proc / "42" / "cgroup").write_text((FIXTURES / "docker_systemd_v2.txt").read_text())
    cache.retain({key})
    assert cache.get(key) is None  # kept: still the cached answer
    cache.retain(set())
    assert cache.get(key) == ContainerInfo("docker", A)  # dropped: read again
    # Another process with the same pid (other start time) learns nothing from this cgroup file.
    assert cache.get(ProcessKey(42, 778)) is None


def test_cgroup_id_index_maps_inode_numbers_to_paths(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    scope = root / "system.slice" / f"docker-{A}.scope"
    scope.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    index = CgroupIdIndex(root=str(root), rescan_s=0)
    assert index.lookup(os.stat(scope).st_ino) == (True, ContainerInfo("docker", A))
    assert index.lookup(os.stat(root / "system.slice").st_ino) == (True, None)
    assert index.lookup(os.stat(outside).st_ino) == (False, None)
