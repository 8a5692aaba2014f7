"""The product as a user runs it: `fluxtui --headless` as root, then plain container starts the
moment it reports the syscall capture running. None of them may raise an alert, neither from
the containers' processes nor from the runtime's (runc, its init, the shim, dockerd's network
hook): their unshare, mounts and pivot_root are the runtime's set-up.

The first session's stream held 13 alerts from ten such starts while the engine tests saw none:
the runtime executables were verified in the background after the syscall source was already
attached, so the containers started in fluxtui's first seconds had no set-up marks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fluxtui.capabilities.syscall_risk import MISSING_TICKS
from fluxtui.config import DEFAULT_CONTAINER_RUNTIMES
from tests import container_support as cs
from tests.kernel import require_bcc

pytestmark = pytest.mark.kernel
WAIT_S = 600.0  # a cold BPF compile on a machine shared with other suites: minutes, not hours
RUNTIMES = frozenset(os.path.realpath(p) for p in DEFAULT_CONTAINER_RUNTIMES)


@pytest.fixture(scope="module")
def docker() -> Iterator[tuple[str, ...]]:
    yield from cs.docker()


class Stream:
    """What a headless fluxtui wrote so far (one JSON object per line), the process listings
    left out (they are most of the bytes)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.docs: list[dict[str, Any]] = []
        self.ticks = 0
        self.syscalls_running = False
        self._offset = 0

    def read(self) -> list[dict[str, Any]]:
        with self.path.open("rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1  # a line being written is read next time
        self._offset += end
        for line in data[:end].splitlines():
            if not line.strip() or b'"kind": "state"' in line[:300]:
                continue
            doc = json.loads(line)
            if doc["event"].get("dataset") == "fluxtui.metrics":
                self.ticks += 1
                syscalls = doc["fluxtui"]["collectors"].get("syscalls", {})
                self.syscalls_running |= bool(syscalls.get("running"))
                continue
            self.docs.append(doc)
        return self.docs

    def until(self, proc: subprocess.Popen[bytes], condition: Callable[[], bool],
              what: str) -> None:
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:
            self.read()
            if condition():
                return
            assert proc.poll() is None, f"fluxtui exited ({proc.returncode}) before: {what}"
            time.sleep(0.2)
        raise AssertionError(f"not in the stream within {WAIT_S:.0f} s: {what}")


def _involved(docs: list[dict[str, Any]], cids: set[str]) -> tuple[set[str], set[str]]:
    """(entity ids of the processes of the starts, entity ids of their entrypoints): exec'd a
    runtime executable, or ran in one of the containers, or was exec'd by such a process (the
    stream's order is the kernel's); never a process of another container."""
    family: set[str] = set()
    entrypoints: set[str] = set()
    for d in docs:
        if d["event"].get("action") != "exec":
            continue
        process = d["process"]
        container = (d.get("container") or {}).get("id")
        in_container = container in cids
        if container and not in_container:
            continue  # another container (other suites run on this machine too)
        if (in_container or process.get("executable") in RUNTIMES
                or process.get("parent", {}).get("entity_id") in family):
            family.add(process["entity_id"])
        if in_container and process.get("args", [])[:1] == ["true"]:
            entrypoints.add(process["entity_id"])
    return family, entrypoints


def _start(cli: tuple[str, ...], where: Path, count: int) -> set[str]:
    cids = set()
    for i in range(count):
        cidfile = where / f"{cli[0]}-{i}.cid"
        done = subprocess.run([*cs.run_args(cli), "--cidfile", str(cidfile), cs.IMAGE, "true"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        cids.add(cidfile.read_text().strip())
    return cids


@pytest.mark.timeout(1800)
def test_plain_starts_right_after_the_headless_start_raise_nothing(
        docker: tuple[str, ...], safe_config: Path, tmp_path: Path) -> None:
    require_bcc()
    podman = cs.podman()
    out = tmp_path / "stream.jsonl"
    err = tmp_path / "stderr.log"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "fluxtui", "--headless", "--output", "json", "--no-journal",
             "--config", str(safe_config)], stdout=stdout, stderr=stderr)
    stream = Stream(out)
    try:
        stream.until(proc, lambda: stream.syscalls_running, "the syscall capture running")
        # At once, as a user (or a boot sequence) would: ten docker starts, then ten podman.
        cids = _start(docker, tmp_path, 10) | _start(podman, tmp_path, 10)
        stream.until(proc, lambda: len(_involved(stream.docs, cids)[1]) == len(cids),
                     "the twenty entrypoints")
        # Processes gone are closed within MISSING_TICKS ticks, and scored one tick later.
        ticks = stream.ticks
        stream.until(proc, lambda: stream.ticks >= ticks + MISSING_TICKS + 2, "five more ticks")
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    docs = stream.read()
    family, entrypoints = _involved(docs, cids)
    assert len(family) >= 3 * len(cids)  # runc create/start/delete, its init, per container
    raised = [(d["event"]["action"], d["process"].get("name"), d.get("message"),
               d["event"].get("reason")) for d in docs
              if d["event"]["kind"] == "alert"
              and (d["process"].get("entity_id") in family
                   or (d.get("container") or {}).get("id") in cids)]
    assert raised == []
    # The entrypoints (runc's init until its exec): the set-up's unshare, mounts and
    # pivot_root add nothing. (Host programs the runtime runs after its set-up, iptables from a
    # CNI plugin, keep the small risk of their own calls; a shim's risk can come from another
    # suite's container on this machine.)
    risks = {d["process"]["entity_id"]: (d.get("message"), d["event"].get("risk_score"))
             for d in docs if d["event"].get("dataset") == "fluxtui.process_exit"
             and d["process"]["entity_id"] in entrypoints}
    assert risks and {score for _message, score in risks.values()} == {0.0}, risks
