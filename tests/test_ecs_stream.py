"""Every document of a full headless stream validated against the ECS field definitions of the
declared version (tests/data/ecs_flat-<version>.yml.gz): the real engine with every capability,
as root, and the things it reports caused by the test: a credential read the guard denies (in a
temporary home), the alert it raises, a loopback listener (alert) and connections both ways,
execs and process exits, per-process state documents and socket listings."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fluxtui.capabilities.assembly import build_components
from fluxtui.config import Config, StreamConfig
from fluxtui.connection_views import ConnectionEvent
from fluxtui.engine import Engine
from fluxtui.events import Alert, ProcessExit
from fluxtui.guard.events import GuardDecision
from fluxtui.headless import record_stream
from tests.ecs_schema import problems
from tests.guard_support import guard_config, make_home, require_guard_kernel, run
from tests.kernel import require_bcc

BOUND = 300.0  # seconds: a BPF compile on a loaded machine; a working run returns far sooner


def wait(condition: Callable[[], Any], what: str) -> Any:
    end = time.monotonic() + BOUND
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < end, f"not seen within the bound: {what}"
        time.sleep(0.05)


@pytest.mark.kernel
def test_every_document_of_a_full_stream_is_ecs(tmp_path: Path) -> None:
    require_guard_kernel()
    require_bcc()
    home = make_home(tmp_path)
    config = dataclasses.replace(
        Config(), guard=guard_config(home, tmp_path / "state"),
        stream=StreamConfig(process_documents="both", connection_listing_interval=1.0))
    engine = Engine(config, build_components(config, privileged=True, interactive=False))
    seen: list[object] = []
    engine.bus.subscribe(seen.append)
    path = tmp_path / "stream.jsonl"
    recording = record_stream(engine, str(path))
    listener = socket.socket()
    clients: list[socket.socket] = []
    try:
        engine.start()
        wait(lambda: engine.snapshot is not None and all(
            s.running for s in engine.snapshot.statuses
            if s.name in ("syscalls", "guard", "connections")), "every capability running")
        wait(lambda: "connections" in engine.snapshot.views, "the first socket query")
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=10)
        clients += [client, listener.accept()[0]]
        denied = run(["cat", str(home.aws)])
        assert denied.returncode != 0  # the guard denied the read (headless: default action)
        run(["/bin/true"])

        def has(kind: type, test: Callable[[Any], bool]) -> bool:
            return any(isinstance(e, kind) and test(e) for e in list(seen))

        wait(lambda: has(GuardDecision, lambda d: d.file == str(home.aws) and not d.allowed),
             "the guard's decision")
        wait(lambda: has(Alert, lambda a: a.rule_id == "network.new_listener"), "listener alert")
        wait(lambda: has(Alert, lambda a: a.rule_id.startswith("guard.")), "guard alert")
        for direction in ("inbound", "outbound"):
            wait(lambda d=direction: has(ConnectionEvent, lambda e: e.direction == d
                                         and port in (e.entry.local_port, e.entry.remote_port)),
                 f"{direction} connection event")
        wait(lambda: has(ProcessExit, lambda x: x.lifetime.name == "cat"), "cat's exit record")
        last = engine.snapshot.sequence
        wait(lambda: engine.snapshot.sequence >= last + 2, "two more ticks")
    finally:
        for sock in clients:
            sock.close()
        listener.close()
        engine.stop()
        recording.close()

    docs = [json.loads(line) for line in path.read_text().splitlines()]
    kinds = Counter((d["event"]["kind"], d["event"]["dataset"]) for d in docs)
    for wanted in (("metric", "fluxtui.metrics"), ("state", "fluxtui.processes"),
                   ("state", "fluxtui.process"), ("state", "fluxtui.connection_listing"),
                   ("event", "fluxtui.connections"), ("event", "fluxtui.guard"),
                   ("alert", "fluxtui.network"), ("alert", "fluxtui.guard"),
                   ("event", "fluxtui.process_exit"), ("event", "fluxtui.syscalls"),
                   ("event", "fluxtui.recording")):
        assert kinds[wanted], f"no {wanted} document in {sorted(kinds)}"
    found: Counter[str] = Counter()
    for doc in docs:
        for problem in problems(doc):
            found[f"{doc['event']['dataset']}: {problem}"] += 1
    assert not found, "\n".join(f"{n} x {p}" for p, n in found.most_common(30))
    guard = next(d for d in docs if d["event"]["dataset"] == "fluxtui.guard"
                 and d["event"].get("action") == "credential-access")
    assert guard["event"]["outcome"] == "failure" and guard["file"]["path"] == str(home.aws)
    inbound = next(d for d in docs if d.get("network", {}).get("direction") == "inbound"
                   and d["destination"]["port"] == port)
    assert inbound["source"]["ip"] == "127.0.0.1" and inbound["source"]["port"] != port
    metrics = [d for d in docs if d["event"]["dataset"] == "fluxtui.metrics"]
    collectors = metrics[-1]["fluxtui"]["collectors"]
    assert {"syscalls", "guard", "connections", "stream"} <= set(collectors)
    assert collectors["syscalls"]["state"] == "running"
