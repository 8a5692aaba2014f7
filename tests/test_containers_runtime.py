"""Containers for real: a real Docker and a real Podman on this machine, the kernel's events of
their containers attributed when they happen, escapes alerted with the container's full id and
name however short the container lived, and the runtime's own set-up raising nothing."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture
from fluxtui.collectors.container_trace import ContainerTrace, SetupChange
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.config import Config
from fluxtui.ecs import document
from fluxtui.engine import Engine
from fluxtui.events import Alert, ProcessExit, ProcessKey, Severity
from tests import container_support as cs
from tests.kernel import require, require_bcc

pytestmark = pytest.mark.kernel
MAX_TICKS = 120
# Docker's runtime processes (conmon is podman's: a podman container of an earlier test is
# cleaned up by its conmon whenever it ends, which may be during a docker test).
RUNTIME_EXES = ("/usr/sbin/runc", "/usr/bin/containerd-shim-runc-v2")
ESCAPE = "syscalls.container_escape"


@pytest.fixture(scope="module")
def docker() -> Iterator[tuple[str, ...]]:
    yield from cs.docker()


class Watch:
    """The engine as the product assembles it (one container resolver for both components),
    with every alert, kernel event and final record it produced."""

    def __init__(self, engine: Engine, capture: SyscallCapture) -> None:
        self.engine = engine
        self.capture = capture
        self.alerts: list[Alert] = []
        self.events: list[KernelEvent] = []
        self.exits: list[ProcessExit] = []
        self.published: list[Alert] = []  # as the bus carried them (to the stream, the journal)
        self._seen: set[int] = set()
        engine.bus.subscribe(self._on_bus)

    def _on_bus(self, obj: object) -> None:
        if isinstance(obj, KernelEvent):
            self.events.append(obj)
        elif isinstance(obj, ProcessExit):
            self.exits.append(obj)
        elif isinstance(obj, Alert):
            self.published.append(obj)

    def tick(self) -> None:
        snapshot = self.engine.tick()
        for alert in snapshot.alerts:
            if id(alert) not in self._seen:
                self._seen.add(id(alert))
                self.alerts.append(alert)

    def until(self, condition: Callable[[], bool], what: str) -> None:
        for _ in range(MAX_TICKS):
            self.tick()
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"not seen within {MAX_TICKS} ticks: {what}")

    def run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run a command, ticking meanwhile: the event queue is drained as on a live system."""
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + timeout
        while proc.poll() is None and time.monotonic() < deadline:
            self.tick()
            time.sleep(0.05)
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)

    def drops(self) -> dict[str, int]:
        return dict(self.capture.status().drops)

    def escape_alerts(self, container_id: str) -> list[Alert]:
        return [a for a in self.alerts if a.rule_id == ESCAPE and a.container is not None
                and a.container.id == container_id]


@pytest.fixture(scope="module")
def watch() -> Iterator[Watch]:
    require_bcc()
    config = Config()
    capture = SyscallCapture(config)
    engine = Engine(config, [capture, RiskScorer(config, containers=capture.containers)])
    try:
        snapshot = engine.start_sync()
        status = next(s for s in snapshot.statuses if s.name == "syscalls")
        require(status.running, f"syscall capture unavailable: {status.reason}")
        assert capture.watch.ready.wait(120), "runtime executables not verified"
        require("no kernel feed" not in capture.watch.note(), capture.watch.note())
        yield Watch(engine, capture)
    finally:
        engine.stop()


def _run(argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def _escape_then_check(watch: Watch, cli: tuple[str, ...], tmp_path: Path, name: str,
                       runtime: str) -> Alert:
    """A container that lives a fraction of a second mounts a file system: by the first tick
    after it, it is gone; its alert names it by full id and name."""
    cidfile = tmp_path / f"{name}.cid"
    done = watch.run([*cs.run_args(cli), "--name", name, "--cidfile", str(cidfile),
                      "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", cs.IMAGE,
                      "sh", "-c", "mount -t tmpfs none /mnt && echo mounted"])
    assert done.stdout.strip() == "mounted", done.stderr
    cid = cidfile.read_text().strip()
    watch.until(lambda: bool(watch.escape_alerts(cid)), f"the mount alert of {name}")
    alert = watch.escape_alerts(cid)[0]
    assert alert.container is not None
    assert (alert.container.runtime, alert.container.id, alert.container.name) == (
        runtime, cid, name)
    assert "mount('none', '/mnt', type 'tmpfs'" in alert.reasons[0]
    doc = document(alert)
    assert doc["container"] == {"id": cid, "name": name, "runtime": runtime}
    assert doc["threat"]["technique"]["id"] == ["T1611"]
    # Every alert about the process names the container as the bus carried it to the stream
    # (the snapshot's copies were named afterwards, the bus's were not).
    about = [a for a in watch.published if a.key == alert.key]
    assert all(a.container is not None and a.container.id == cid for a in about), [
        (a.rule_id, a.container) for a in about]
    return alert


def test_short_lived_docker_mount_escape(watch: Watch, docker: tuple[str, ...],
                                         tmp_path: Path) -> None:
    _escape_then_check(watch, docker, tmp_path, f"fxt-mount-{os.getpid()}", "docker")


def test_short_lived_podman_mount_escape(watch: Watch, tmp_path: Path) -> None:
    _escape_then_check(watch, cs.podman(), tmp_path, f"fxt-pmount-{os.getpid()}", "podman")


def _nsenter(watch: Watch, cli: tuple[str, ...], tmp_path: Path, name: str) -> None:
    """From a --pid=host container, nsenter into a host process's mount and UTS namespaces:
    it prints the host's name (a real escape), and the alert names the container."""
    host = subprocess.Popen(["sleep", "120"])
    try:
        cidfile = tmp_path / f"{name}.cid"
        done = watch.run([*cs.run_args(cli), "--name", name, "--cidfile", str(cidfile),
                          "--pid=host", "--cap-add", "SYS_ADMIN", "--cap-add", "SYS_PTRACE",
                          "--security-opt", "seccomp=unconfined", cs.IMAGE,
                          "nsenter", "-t", str(host.pid), "-m", "-u", "hostname"])
        assert done.stdout.strip() == socket.gethostname(), done.stderr
    finally:
        host.kill()
        host.wait()
    cid = cidfile.read_text().strip()
    watch.until(lambda: any("setns" in a.reasons[0] for a in watch.escape_alerts(cid)),
                f"the setns alert of {name}")
    alert = next(a for a in watch.escape_alerts(cid) if "setns" in a.reasons[0])
    assert alert.container is not None and alert.container.name == name
    assert cid in alert.reasons[0]
    # The container had exited when its events were handled: what its fd held was read by the
    # kernel at the call, so the host's namespaces are named (critical), not just "entered".
    assert alert.title == "Container process entered the host's namespaces", alert.reasons
    assert alert.severity is Severity.CRITICAL


def test_nsenter_into_the_host_from_a_docker_container(watch: Watch, docker: tuple[str, ...],
                                                       tmp_path: Path) -> None:
    _nsenter(watch, docker, tmp_path, f"fxt-nsenter-{os.getpid()}")


def test_nsenter_into_the_host_from_a_podman_container(watch: Watch, tmp_path: Path) -> None:
    _nsenter(watch, cs.podman(), tmp_path, f"fxt-pnsenter-{os.getpid()}")


def test_ten_plain_starts_raise_nothing_and_add_no_risk(watch: Watch, docker: tuple[str, ...],
                                                        tmp_path: Path) -> None:
    """runc's unshare, mounts and pivot_root before each entrypoint: no alert, no risk, for
    the containers' processes and the runtime's."""
    first = len(watch.events)  # what earlier tests' containers did is not this test's
    cids = []
    for i in range(10):
        cidfile = tmp_path / f"{i}.cid"
        done = watch.run([*cs.run_args(docker), "--cidfile", str(cidfile), cs.IMAGE, "true"])
        assert done.returncode == 0, done.stderr
        cids.append(cidfile.read_text().strip())

    def involved() -> set[ProcessKey]:
        return {e.key for e in watch.events[first:]
                if (e.container is not None and e.container.id in cids)
                or (e.kind == "exec" and e.exe in RUNTIME_EXES)}

    def entrypoints_done() -> bool:
        started = {e.container.id for e in watch.events if e.kind == "exec"
                   and e.container is not None and e.container.id in cids
                   and e.argv[:1] == ("true",)}
        exited = {x.lifetime.key for x in watch.exits}
        return started == set(cids) and involved() <= exited

    watch.until(entrypoints_done, "the ten containers' entrypoints and their exits")
    watch.tick()  # final records are scored one tick after they arrive
    keys = involved()
    assert len(keys) >= 20  # runc, its init (the entrypoint after exec), per container
    raised = [a for a in watch.alerts if a.key in keys
              or (a.container is not None and a.container.id in cids)]
    assert [(a.rule_id, a.process_name, a.reasons) for a in raised] == []
    risks = {(x.lifetime.name, x.lifetime.key.pid): (x.risk, x.reasons) for x in watch.exits
             if x.lifetime.key in keys}
    assert risks and {r for r, _ in risks.values()} == {0.0}, {
        k: v for k, v in risks.items() if v[0]}


def test_docker_exec_is_attributed(watch: Watch, docker: tuple[str, ...]) -> None:
    name = f"fxt-exec-{os.getpid()}"
    started = _run([*docker, "run", "-d", "--rm", "--name", name, cs.IMAGE, "sleep", "120"])
    assert started.returncode == 0, started.stderr
    cid = started.stdout.strip()
    try:
        done = watch.run([*docker, "exec", name, "cat", "/proc/self/cgroup"])
        assert cid in done.stdout, done.stderr
        watch.until(lambda: any(e.kind == "exec" and e.argv[:1] == ("cat",)
                                and e.container is not None and e.container.id == cid
                                for e in watch.events), "the exec'd cat in its container")
        cat = next(e for e in watch.events if e.kind == "exec" and e.argv[:1] == ("cat",)
                   and e.container is not None and e.container.id == cid)
        assert cat.container is not None and cat.container.name == name
        assert document(cat)["container"]["id"] == cid
        watch.tick()
        assert not [a for a in watch.alerts if a.container is not None
                    and a.container.id == cid]  # runc exec's setns into it: its set-up
    finally:
        _run([*docker, "rm", "-f", name])


def test_a_runtime_is_recognised_by_its_inode_not_its_name(tmp_path: Path) -> None:
    """A copy of runc (same bytes, another file) begins no set-up; the real one does."""
    require_bcc()
    real = shutil.which("runc") or "/usr/sbin/runc"
    require(os.path.exists(real), "runc is not installed")
    copy = tmp_path / "runc"
    shutil.copy2(os.path.realpath(real), copy)
    trace = ContainerTrace(lambda change: None)
    try:
        trace.set_runtimes([os.stat(os.path.realpath(real))])
        pids = {}
        for label, exe in (("real", real), ("copy", str(copy))):
            proc = subprocess.Popen([exe, "--version"], stdout=subprocess.DEVNULL)
            proc.wait(timeout=60)
            pids[label] = proc.pid
        begun: set[int] = set()
        for _ in range(50):
            begun |= {c.pid for c in trace.drain()
                      if isinstance(c, SetupChange) and c.kind == "begin"}
            if pids["real"] in begun:
                break
            time.sleep(0.1)
        assert pids["real"] in begun
        assert pids["copy"] not in begun
    finally:
        trace.close()


def test_the_real_runc_run_inside_a_container_is_not_exempt(watch: Watch,
                                                            docker: tuple[str, ...]) -> None:
    runc = os.path.realpath(shutil.which("runc") or "/usr/sbin/runc")
    before = watch.capture.watch.setup.refused
    # The container's shell forks and execs the host's own runc (mounted in, with the host's
    # libraries: it is linked dynamically): the very file the kernel knows as a runtime, from
    # inside a container. Its set-up would be exempt; it is refused.
    done = watch.run([*cs.run_args(docker), "-v", "/usr:/usr:ro", "-v", "/lib64:/lib64:ro",
                      "-v", "/lib:/lib:ro", cs.IMAGE, "sh", "-c", f"{runc} --version; true"])
    assert "runc version" in done.stdout, done.stderr
    watch.until(lambda: watch.capture.watch.setup.refused > before,
                "the runtime exec from inside the container refused")


def test_the_evaluation_runs_the_container_pair(docker: tuple[str, ...],
                                                tmp_path: Path) -> None:
    """`fluxtui evaluate`'s container scenarios: the escape attempt is detected on the
    scenario's own container (started under its cgroup), the plain starts raise nothing."""
    import io
    import json

    from fluxtui.evaluation.command import run_evaluate
    from tests.test_evaluation_sandbox import require_cgroup2

    require_bcc()
    require_cgroup2()
    target = tmp_path / "evaluation.json"
    out, err = io.StringIO(), io.StringIO()
    rc = run_evaluate(Config(), ["container-mount-escape", "container-plain-start"],
                      str(target), training_runs=0, out=out, err=err)
    assert rc == 0, err.getvalue()
    by_name = {s["name"]: s for s in json.loads(target.read_text())["scenarios"]}
    escape, plain = by_name["container-mount-escape"], by_name["container-plain-start"]
    assert escape["status"] == plain["status"] == "ok", (escape, plain)
    assert any(a["rule_id"] == ESCAPE and a["role"] == "actor" for a in escape["alerts"]), \
        escape["alerts"]
    assert [a for a in plain["alerts"] if a["role"] == "actor"] == [], plain["alerts"]


def test_a_cgroup_v1_hierarchy_mounted_for_its_release_agent(watch: Watch,
                                                            docker: tuple[str, ...],
                                                            tmp_path: Path) -> None:
    """The release_agent escape's first step, for real: a container with CAP_SYS_ADMIN mounts a
    cgroup v1 hierarchy (a new named one, no controllers: nothing of the host's changes) and
    writes its release_agent (/bin/true, never triggered: no cgroup is created in it) by a
    relative path. The mount and the write are each a critical alert naming the container: the
    kernel sends opens for writing of a path whose name is release_agent, wherever it is."""
    name = f"fxt-cgv1-{os.getpid()}"
    cidfile = tmp_path / "cgv1.cid"
    done = watch.run([*cs.run_args(docker), "--name", name, "--cidfile", str(cidfile),
                      "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined",
                      cs.IMAGE, "sh", "-c",
                      "mkdir -p /tmp/cg && mount -t cgroup -o none,name=fluxtest cgroup /tmp/cg"
                      " && cd /tmp/cg && echo /bin/true > release_agent && cat release_agent"
                      " && cd / && umount /tmp/cg"])
    assert done.stdout.strip() == "/bin/true", done.stderr
    cid = cidfile.read_text().strip()
    watch.until(lambda: any("type 'cgroup'" in a.reasons[0] for a in watch.escape_alerts(cid)),
                "the cgroup v1 mount alert")
    alert = next(a for a in watch.escape_alerts(cid) if "type 'cgroup'" in a.reasons[0])
    assert alert.title == "Cgroup v1 hierarchy mounted in a container"
    assert alert.severity is Severity.CRITICAL
    assert alert.container is not None and (alert.container.id, alert.container.name) == (
        cid, name)
    watch.until(lambda: any("release_agent opened for writing" in a.reasons[0]
                            for a in watch.escape_alerts(cid)), "the release_agent write alert")
    write = next(a for a in watch.escape_alerts(cid)
                 if "release_agent opened for writing" in a.reasons[0])
    assert write.title == "Cgroup release_agent written from a container"
    assert write.severity is Severity.CRITICAL and write.container == alert.container


CORE_PATTERN = Path("/proc/sys/kernel/core_pattern")


def test_core_pattern_written_from_a_container_but_not_read(watch: Watch,
                                                           docker: tuple[str, ...],
                                                           tmp_path: Path) -> None:
    """A write-open of /proc/sys/kernel/core_pattern from a container is alerted (the attempt:
    Docker mounts /proc/sys read-only, so the host's value never changes); a read of it, in
    another container, is not."""
    before = CORE_PATTERN.read_bytes()
    try:
        reader, writer = f"fxt-corer-{os.getpid()}", f"fxt-corew-{os.getpid()}"
        cids = {}
        for name, script in ((reader, f"cat {CORE_PATTERN}"),
                             (writer, f"echo '|/bin/true' > {CORE_PATTERN}; echo tried")):
            cidfile = tmp_path / f"{name}.cid"
            done = watch.run([*cs.run_args(docker), "--name", name, "--cidfile", str(cidfile),
                              cs.IMAGE, "sh", "-c", script])
            assert done.returncode == 0, done.stderr
            cids[name] = cidfile.read_text().strip()
        assert CORE_PATTERN.read_bytes() == before
        watch.until(lambda: bool(watch.escape_alerts(cids[writer])), "the core_pattern alert")
        alert = watch.escape_alerts(cids[writer])[0]
        assert alert.title == "Host kernel setting written from a container"
        assert str(CORE_PATTERN) in alert.reasons[0]
        assert alert.container is not None and alert.container.name == writer
        # The reader ran first: its events were handled before the writer's alert came.
        assert watch.escape_alerts(cids[reader]) == []
        assert not [a for a in watch.alerts
                    if a.container is not None and a.container.id == cids[reader]]
    finally:
        if CORE_PATTERN.read_bytes() != before:
            CORE_PATTERN.write_bytes(before)


def test_close_stops_the_poller_at_once() -> None:
    """The poller waits for records without polling: close wakes it (an eventfd) and it ends
    before close returns."""
    require_bcc()
    trace = ContainerTrace(lambda change: None)
    poller = trace._poller
    trace.close()
    assert not poller.is_alive()
