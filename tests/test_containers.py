"""Container identity: cgroup paths (one fixture per runtime and layout, the styles that cannot
run here among them: CRI-O, the systemd driver, Kubernetes), runtime state on disk, the cgroup-id
index, the resolver, and what the stream says."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fluxtui.collectors.container_trace import CgroupChange
from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.detection.container_index import CgroupIndex, ContainerResolver
from fluxtui.detection.container_names import ContainerNames
from fluxtui.detection.containers import (
    parse_cgroup_path,
    parse_proc_cgroup,
    read_container,
)
from fluxtui.ecs import document
from fluxtui.ecs.processes import container_fields
from fluxtui.events import HOST, UNKNOWN, Alert, ContainerIdentity, ProcessKey, Severity

FIXTURES = Path(__file__).parent / "fixtures" / "cgroups"
A = "3f2a9c1b2d4e5f60718293a4b5c6d7e8f90123456789abcdef0123456789abcd"
B = "9e8d7c6b5a4f3e2d1c0b9a8f7e6d5c4b3a29180716f5e4d3c2b1a09f8e7d6c5b"
POD = "0b6e5c3a-2f1d-4c3e-9a7b-1c2d3e4f5a6b"


def ContainerInfo(runtime: str, cid: str, pod: str = "", name: str = "") -> ContainerIdentity:
    return ContainerIdentity(runtime, cid, name=name, pod_uid=pod)


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
def test_parse_fixture_keeps_the_full_id(name: str) -> None:
    found = parse_proc_cgroup((FIXTURES / name).read_text())
    assert found is None or len(found.id) in (0, 64)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_parse_fixture(name: str) -> None:
    assert parse_proc_cgroup((FIXTURES / name).read_text()) == EXPECTED[name]


def test_labels() -> None:
    assert ContainerInfo("docker", A).label == "docker:3f2a9c1b2d4e"
    assert ContainerInfo("docker", A, name="web").label == "docker:web"
    assert ContainerInfo("kubernetes", "", POD).label == f"pod:{POD}"
    assert (HOST.label, UNKNOWN.label) == ("host", "unknown")


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


def test_cgroup_index_scans_once_then_learns_from_the_kernel(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    scope = root / "system.slice" / f"docker-{A}.scope"
    scope.mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    now = [0.0]
    index = CgroupIndex(root=str(root), rescan_s=5, clock=lambda: now[0])
    index.scan()
    index.live = True
    assert index.path(os.stat(scope).st_ino) == f"/system.slice/docker-{A}.scope"
    assert index.path(os.stat(outside).st_ino) is None  # live: a miss is not a rescan
    index.learn(CgroupChange(True, 777, f"/docker/{B}", 0))
    assert index.path(777) == f"/docker/{B}"
    index.learn(CgroupChange(True, 778, "/cpu/x", 3))  # a v1 hierarchy: not what events carry
    assert index.path(778) is None
    index.learn(CgroupChange(False, 777, f"/docker/{B}", 0))
    assert index.path(777) == f"/docker/{B}"  # removed, kept for its last events
    assert index.path(0) is None


def test_cgroup_index_without_the_kernel_rescans_at_most_every_interval(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    now = [100.0]
    index = CgroupIndex(root=str(root), rescan_s=5, clock=lambda: now[0])
    late = root / "late"
    assert index.path(12345) is None  # first miss: scanned
    late.mkdir()
    assert index.path(os.stat(late).st_ino) is None  # within the interval: not rescanned
    now[0] += 5
    assert index.path(os.stat(late).st_ino) == "/late"


def _docker_state(root: Path, cid: str, name: str) -> None:
    (root / "containers" / cid).mkdir(parents=True)
    (root / "containers" / cid / "config.v2.json").write_text(
        json.dumps({"ID": cid, "Name": f"/{name}", "State": {"Running": True}}))


def _names(tmp_path: Path) -> ContainerNames:
    return ContainerNames(docker_root=str(tmp_path / "docker"),
                          storage_root=str(tmp_path / "storage"),
                          containerd_state=str(tmp_path / "containerd"))


def test_names_from_docker_and_podman_state(tmp_path: Path) -> None:
    names = _names(tmp_path)
    _docker_state(tmp_path / "docker", A, "web-1")
    overlay = tmp_path / "storage" / "overlay-containers"
    overlay.mkdir(parents=True)
    (overlay / "containers.json").write_text(
        json.dumps([{"id": B, "names": ["db"], "image": "x"}, {"id": A, "names": []}]))
    assert names.name("docker", A) == "web-1"
    assert names.name("podman", B) == "db"
    assert names.name("podman", A) == ""  # no name recorded
    assert names.name("docker", B) == ""  # no state: removed already, or never docker's
    assert names.name("cri-o", A) == ""


@pytest.mark.parametrize("content", ["{", "[]", '{"Name": 5}', "x" * 10])
def test_broken_state_files_give_no_name(tmp_path: Path, content: str) -> None:
    names = _names(tmp_path)
    (tmp_path / "docker" / "containers" / A).mkdir(parents=True)
    (tmp_path / "docker" / "containers" / A / "config.v2.json").write_text(content)
    assert names.name("docker", A) == ""


def test_plain_containerd_by_its_live_task(tmp_path: Path) -> None:
    """`ctr run` puts a container in /<namespace>/<id>, which could be any host cgroup: only a
    live task of that name in containerd's state makes it a container."""
    names = _names(tmp_path)
    assert names.containerd("/default/redis") is None
    (tmp_path / "containerd" / "io.containerd.runtime.v2.task" / "default" / "redis").mkdir(
        parents=True)
    found = names.containerd("/default/redis")
    assert found == ContainerIdentity("containerd", "redis", name="redis", namespace="default")
    assert names.containerd("/system.slice/cron.service") is None
    assert names.containerd("/default/../etc") is None
    resolver = ContainerResolver(str(tmp_path), CgroupIndex(root=""), names)
    assert resolver.of_path("/default/redis").label == "containerd:redis"
    assert resolver.of_path("/user.slice") == HOST


def test_resolver_reads_the_name_when_the_cgroup_appears(tmp_path: Path) -> None:
    """A `docker run --rm` container is gone (state removed) by the time its events are
    handled: the name read when its cgroup was created is the one they get."""
    names = _names(tmp_path)
    _docker_state(tmp_path / "docker", A, "short")
    resolver = ContainerResolver(str(tmp_path), CgroupIndex(root=""), names)
    resolver.index.live = True
    learnt = resolver.learn(CgroupChange(True, 4242, f"/docker/{A}", 0))
    assert learnt is not None and learnt.name == "short"
    shutil.rmtree(tmp_path / "docker" / "containers" / A)
    resolver.learn(CgroupChange(False, 4242, f"/docker/{A}", 0))
    found = resolver.of_cgroup(4242)
    assert (found.runtime, found.id, found.name) == ("docker", A, "short")
    assert resolver.of_cgroup(999) == UNKNOWN  # never seen: unknown, not host
    assert resolver.learn(CgroupChange(True, 5, "/user.slice", 0)) is None


def _fake_proc(tmp_path: Path, cgroup: str) -> Path:
    proc = tmp_path / "proc"
    (proc / "42").mkdir(parents=True)
    (proc / "42" / "cgroup").write_text(cgroup)
    stat = "42 (app) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 777 1000 10 0 0 0\n"
    (proc / "42" / "stat").write_text(stat)
    (proc / "42" / "statm").write_text("100 10 5 1 0 20 0\n")
    return proc


def test_resolver_per_process_host_unknown_and_events_first(tmp_path: Path) -> None:
    proc = _fake_proc(tmp_path, (FIXTURES / "docker_systemd_v2.txt").read_text())
    resolver = ContainerResolver(str(proc), CgroupIndex(root=""), _names(tmp_path))
    key = ProcessKey(42, 777)
    assert resolver.of_process(key) == ContainerInfo("docker", A)
    (proc / "42" / "cgroup").write_text("0::/user.slice\n")
    assert resolver.of_process(key) == ContainerInfo("docker", A)  # cached per process
    resolver.refresh(key)
    assert resolver.of_process(key) == HOST
    assert resolver.of_process(ProcessKey(42, 778)) == UNKNOWN  # pid reused: nothing known
    assert resolver.of_process(ProcessKey(43, 1)) == UNKNOWN  # gone
    resolver.observe(key, ContainerInfo("podman", B))  # what its latest event said wins
    assert resolver.of_process(key) == ContainerInfo("podman", B)
    resolver.retain(set())
    assert resolver.of_process(key) == HOST  # forgotten: read again


def test_the_stream_names_the_container_and_tells_host_from_unknown() -> None:
    key = ProcessKey(7, 70)
    alert = Alert(0.0, "syscalls.container_escape", "Mount inside a container", Severity.HIGH,
                  "T1611", "Escape to Host", key, "mount",
                  container=ContainerIdentity("docker", A, name="web"))
    doc = document(alert)
    assert doc["container"] == {"id": A, "name": "web", "runtime": "docker"}
    assert doc["fluxtui"]["container"] == {"state": "container"}
    pod = container_fields(ContainerIdentity("containerd", B, pod_uid=POD))
    assert pod["orchestrator"] == {"type": "kubernetes", "resource": {"type": "pod", "id": POD}}
    host = document(Alert(0.0, "x", "t", Severity.LOW, "", "", key, "p", container=HOST))
    unknown = document(Alert(0.0, "x", "t", Severity.LOW, "", "", key, "p",
                               container=UNKNOWN))
    assert "container" not in host and "container" not in unknown
    assert host["fluxtui"]["container"]["state"] == "host"
    assert unknown["fluxtui"]["container"]["state"] == "unknown"
    assert "id " + A in ContainerIdentity("docker", A, name="web").describe()


def test_every_alert_the_bus_carries_names_the_container(tmp_path: Path) -> None:
    """The stream and the journal take alerts from the bus. A risk alert, or an alert another
    component raised without a container, reached them with `container: null` (only the
    snapshot's copies were named afterwards)."""
    import dataclasses

    from fluxtui.bus import EventBus
    from fluxtui.capabilities.risk_scorer import RiskScorer
    from fluxtui.component import TickContext
    from fluxtui.config import Config
    from tests.fakes import metrics, row

    proc = _fake_proc(tmp_path, (FIXTURES / "docker_systemd_v2.txt").read_text())
    resolver = ContainerResolver(str(proc), CgroupIndex(root=""), _names(tmp_path))
    key = ProcessKey(42, 777)
    scorer = RiskScorer(Config(), proc=str(proc), clock=lambda: 100.0, containers=resolver)
    bus = EventBus()
    scorer.start(bus)
    published: list[object] = []
    bus.subscribe(published.append)
    tick = TickContext(100.0, 1.0, metrics(), {key: dataclasses.replace(row(42, "app"), key=key)},
                       bus)
    tick.container_of = resolver.of_process  # as the syscall capture sets it each tick
    tick.raise_alert(Alert(100.0, "guard.read", "Credential read", Severity.HIGH, "T1552.004",
                           "Private Keys", key, "app"))
    tick.add_risk(key, 90.0, "a finding", ("T1611", "Escape to Host"))
    scorer.on_tick(tick)
    alerts = [o for o in published if isinstance(o, Alert)]
    assert sorted(a.rule_id for a in alerts) == ["guard.read", "risk.threshold"]
    assert all(a.container == ContainerInfo("docker", A) for a in alerts), alerts
