"""The ECS mapping (fluxtui/ecs) and the stream writer's per-tick documents, without a kernel."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.collectors.sock_diag import SocketEntry
from fluxtui.collectors.socket_owners import Owner
from fluxtui.config import Config, StreamConfig
from fluxtui.connection_views import ConnectionEvent, ConnectionsView, SocketRow
from fluxtui.ecs import ECS_VERSION, document, envelope, host_fields
from fluxtui.ecs.common import os_fields, read_os_release
from fluxtui.events import Alert, ComponentState, ComponentStatus, ProcessKey, Severity
from fluxtui.guard.events import GuardDecision, Requester
from fluxtui.headless import QUEUE_LIMIT, StreamWriter
from tests import fakes
from tests.ecs_schema import problems

T = 1_800_000_000.25
ENTRY = SocketEntry("tcp", 4, "ESTAB", "127.0.0.1", 40000, "127.0.0.1", 8080,
                    0, 99, 5, 0, 0, 120, 10, 20)


def full(doc: dict) -> dict:
    return json.loads(json.dumps(envelope(doc, host_fields(), T + 5)))


def test_an_alert_carries_the_time_it_was_raised_not_the_time_of_writing() -> None:
    alert = Alert(T, "syscalls.ptrace_attach", "ptrace attach", Severity.HIGH, "T1055.008",
                  "Ptrace System Calls", ProcessKey(42, 777), "evil", ("PTRACE_ATTACH of 1",),
                  {"executable": "/tmp/evil", "uid": 1000, "event": "ptrace(...)"})
    doc = full(document(alert))
    assert doc["@timestamp"] == "2027-01-15T08:00:00.250Z"
    assert doc["event"]["created"] == "2027-01-15T08:00:05.250Z"
    assert doc["event"]["kind"] == "alert" and doc["event"]["severity"] == 73
    assert doc["threat"]["technique"]["id"] == ["T1055.008"]
    assert doc["process"]["real_user"] == {"id": "1000"}
    assert doc["process"]["executable"] == "/tmp/evil"
    assert doc["fluxtui"]["process"]["start_ticks"] == 777
    assert problems(doc) == []


def test_exec_event_effective_user_is_process_user_and_custom_fields_leave_ecs() -> None:
    ev = KernelEvent(kind="exec", timestamp=T, key=ProcessKey(42, 777), tid=42, uid=1000,
                     gid=100, comm="su", syscall="execve", filename="/bin/su",
                     argv=("su", "-"), exe="/usr/bin/su", ppid=41, parent_comm="bash", euid=0,
                     parent_start_ticks=700)
    doc = full(document(ev))
    assert doc["process"]["user"] == {"id": "0"}
    assert doc["process"]["real_user"] == {"id": "1000"}
    assert "start_ticks" not in doc["process"] and "effective" not in doc["process"]["user"]
    assert doc["fluxtui"]["process"]["start_ticks"] == 777
    assert doc["process"]["entity_id"].endswith("-42-777")
    assert problems(doc) == []


def test_inbound_connection_has_the_remote_end_as_source() -> None:
    inbound = full(document(ConnectionEvent(T, "opened", ENTRY, (Owner(7, 70, "nginx"),),
                                            direction="inbound")))
    assert inbound["network"]["direction"] == "inbound"
    assert inbound["source"] == {"ip": "127.0.0.1", "port": 8080}
    assert inbound["destination"] == {"ip": "127.0.0.1", "port": 40000}
    outbound = full(document(ConnectionEvent(T, "opened", ENTRY, None, direction="outbound")))
    assert outbound["source"]["port"] == 40000 and outbound["destination"]["port"] == 8080
    assert outbound["fluxtui"]["connection"]["owner"] == "unknown"
    mapped = ENTRY._replace(family=6, local_addr="::ffff:127.0.0.1")
    doc = full(document(ConnectionEvent(T, "closed", mapped, (), direction="outbound")))
    assert doc["source"]["ip"] == "127.0.0.1"  # the IPv4 address, not ::ffff:...
    assert doc["event"]["type"] == ["connection", "end"]
    listener = ENTRY._replace(state="LISTEN", remote_addr="0.0.0.0", remote_port=0)
    doc = full(document(ConnectionEvent(T, "listening", listener, ())))
    assert doc["destination"]["port"] == 40000 and "source" not in doc
    for each in (inbound, outbound, doc):
        assert problems(each) == []


def requester() -> Requester:
    return Requester(ProcessKey(9, 90), "/usr/bin/cat", ("cat", "/h/.aws/credentials"), 1000,
                     0, "alice", 8, "/bin/bash", None, None, False, "not packaged", ())


def test_guard_decisions_pair_file_with_access_and_say_the_answer_in_the_outcome() -> None:
    for allowed, outcome in ((True, "success"), (False, "failure")):
        decision = GuardDecision(T, "/h/.aws/credentials", "aws", "T1552.001", allowed,
                                 "keypress", "key d", requester(), 1500.0, "enforce")
        doc = full(document(decision))
        assert doc["event"]["category"] == ["file"] and doc["event"]["type"] == ["access"]
        assert doc["event"]["outcome"] == outcome
        assert doc["process"]["user"] == {"id": "0"}
        assert doc["process"]["real_user"] == {"id": "1000", "name": "alice"}
        assert problems(doc) == []


def test_host_os_platform_is_the_distribution(tmp_path: Path) -> None:
    release = tmp_path / "os-release"
    release.write_text('NAME="Ubuntu"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID="24.04"\n'
                       'PRETTY_NAME="Ubuntu 24.04 LTS"\n# comment\n')
    fields = os_fields(read_os_release((str(tmp_path / "missing"), str(release))), "6.8.0")
    assert fields == {"type": "linux", "kernel": "6.8.0", "platform": "ubuntu",
                      "family": "debian", "name": "Ubuntu", "version": "24.04",
                      "full": "Ubuntu 24.04 LTS"}
    assert read_os_release((str(tmp_path / "missing"),)) == {}
    host = host_fields()
    assert host["name"] and host["os"]["platform"] != "linux"


def writer(mode: str = "list", interval: float = 60.0) -> tuple[StreamWriter, io.StringIO]:
    out = io.StringIO()
    config = Config(stream=StreamConfig(process_documents=mode,  # type: ignore[arg-type]
                                        connection_listing_interval=interval))
    return StreamWriter(config, "json", out, clock=lambda: T), out


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def with_drops(snapshot, sequence: int, kernel_events: int):
    statuses = (*snapshot.statuses,
                ComponentStatus("syscalls", ComponentState.RUNNING, "", "",
                                {"kernel_events": kernel_events, "syscall_counts": 0}))
    return dataclasses.replace(snapshot, sequence=sequence, statuses=statuses[:2] + statuses[3:])


def test_metrics_documents_carry_every_status_and_drop_counter_and_a_drop_is_an_event() -> None:
    w, out = writer()
    base = fakes.snapshot()
    for sequence, lost in ((1, 0), (2, 25), (3, 25), (4, 40)):
        w.offer(with_drops(base, sequence, lost))
        w.drain()
    docs = lines(out)
    assert docs[0]["event"]["action"] == "recording-started"
    metrics = [d for d in docs if d["event"]["dataset"] == "fluxtui.metrics"]
    since = [m["fluxtui"]["collectors"]["syscalls"]["drops"]["kernel_events"] for m in metrics]
    assert since == [{"total": 0, "since_last": 0}, {"total": 25, "since_last": 25},
                     {"total": 25, "since_last": 0}, {"total": 40, "since_last": 15}]
    collectors = metrics[0]["fluxtui"]["collectors"]
    assert collectors["metrics"]["state"] == "running"
    assert collectors["stream"]["drops"]["event_queue"] == {"total": 0, "since_last": 0}
    drops = [d for d in docs if d["event"]["dataset"] == "fluxtui.drops"]
    assert [(d["fluxtui"]["drop"]["count"], d["fluxtui"]["drop"]["total"]) for d in drops] == [
        (25, 25), (15, 40)]
    assert all(d["fluxtui"]["drop"]["kind"] == "kernel_events" for d in drops)
    for doc in docs:
        assert problems(doc) == [], doc["event"]["dataset"]
        assert doc["fluxtui"]["stream_version"] == 1 and doc["ecs"]["version"] == ECS_VERSION


def test_state_documents_one_per_process_through_the_snapshot_path() -> None:
    w, out = writer("state")
    for _ in range(QUEUE_LIMIT + 3):  # the event queue is full ...
        w.offer(object())
    for sequence in (1, 2, 3):  # ... and three ticks come before the reader is back
        w.offer(fakes.snapshot(sequence=sequence))
    w.drain()
    docs = lines(out)
    states = [d for d in docs if d["event"]["dataset"] == "fluxtui.process"]
    assert len(states) == 5 and {d["fluxtui"]["tick"] for d in states} == {3}
    assert {d["process"]["pid"] for d in states} == {1, 200, 300, 301, 400}
    assert not any(d["event"]["dataset"] == "fluxtui.processes" for d in docs)
    assert w.dropped == 3  # only the events beyond the limit; the state documents never queue
    vim = next(d for d in states if d["process"]["pid"] == 301)
    assert vim["event"]["kind"] == "state"
    assert vim["process"]["real_user"] == {"name": "alice"}
    assert vim["fluxtui"]["process"]["memory_rss_bytes"] == 80 * 1024 * 1024
    for doc in states:
        assert problems(doc) == []


def test_full_socket_listing_at_start_and_every_interval() -> None:
    w, out = writer(interval=10.0)
    rows = (SocketRow(ENTRY._replace(state="LISTEN", local_port=8080, remote_port=0,
                                     remote_addr="0.0.0.0"), (Owner(7, 70, "nginx"),)),
            SocketRow(ENTRY._replace(local_port=8080, remote_port=40000), (Owner(7, 70, "nginx"),)),
            SocketRow(ENTRY, None))
    for sequence, at in ((1, 0.0), (2, 5.0), (3, 10.0), (4, 12.0)):
        snap = fakes.snapshot(sequence=sequence)
        snap = dataclasses.replace(
            snap, metrics=dataclasses.replace(snap.metrics, timestamp=T + at),
            views={"connections": ConnectionsView(T + at, rows, 0.25, 1.0, (), 0)})
        w.offer(snap)
        w.drain()
    listings = [d for d in lines(out) if d["event"]["dataset"] == "fluxtui.connection_listing"]
    assert [d["fluxtui"]["tick"] for d in listings] == [1, 3]
    sockets = listings[0]["fluxtui"]["connections"]["sockets"]
    assert [s["direction"] for s in sockets] == ["unknown", "inbound", "outbound"]
    assert sockets[1]["owners"] == [{"pid": 7, "start_ticks": 70, "name": "nginx"}]
    assert sockets[2]["owner"] == "unknown"
    assert problems(listings[0]) == []


def test_the_validator_rejects_what_the_old_stream_wrote() -> None:
    """The validation test can fail: the old documents' mistakes are each reported."""
    old = full({
        "@timestamp": "2027-01-15T08:00:00.250Z",
        "event": {"kind": "event", "dataset": "fluxtui.guard", "category": ["file"],
                  "type": ["access", "denied"], "outcome": "failure"},
        "process": {"pid": 9, "start_ticks": 90, "user": {"id": "0", "effective": {"id": "0"}},
                    "args": "cat"},
        "source": {"ip": "::ffff:127.0.0.1x", "port": "80"},
        "network": {"direction": "sideways"},
        "threat": {"technique": {"id": "T1552.001"}},
    })
    found = problems(old)
    for expected in ("event.type ['denied'] not expected with event.category 'file'",
                     "process.start_ticks: not an ECS", "process.user.effective.id: not an ECS",
                     "process.args: ECS keeps it as an array", "source.ip:", "source.port:",
                     "network.direction: 'sideways'", "threat.technique.id: ECS keeps it"):
        assert any(p.startswith(expected) for p in found), (expected, found)
    assert not any(p.startswith("host.name") for p in found)
    assert "event.kind missing" in problems({"@timestamp": "2027-01-15T08:00:00Z"})


def test_the_stream_section_of_the_config_is_checked() -> None:
    import pytest

    from fluxtui.config import ConfigError, parse_config

    config = parse_config("stream:\n  process_documents: both\n"
                          "  connection_listing_interval: 5\n", "test.yml")
    assert config.stream == StreamConfig("both", 5.0)
    with pytest.raises(ConfigError, match="process_documents"):
        parse_config("stream:\n  process_documents: each\n", "test.yml")
    with pytest.raises(ConfigError, match="connection_listing_interval"):
        parse_config("stream:\n  connection_listing_interval: 0\n", "test.yml")
    assert parse_config("stream:\n  process_listing_interval: 0\n", "test.yml"
                        ).stream.process_listing_interval == 0
    with pytest.raises(ConfigError, match="process_listing_interval"):
        parse_config("stream:\n  process_listing_interval: -1\n", "test.yml")


def changing_ticks() -> list:
    """Four ticks at 0, 1, 2 and 10 s: vim runs (its CPU changes), bash exits at 2 s, a new
    process starts at 1 s; the rest sleep (the same row objects, as the engine hands them)."""
    rows = {r.pid: r for r in fakes.snapshot().processes.values()}
    ticks = []
    for sequence, at in ((1, 0.0), (2, 1.0), (3, 2.0), (4, 10.0)):
        rows[301] = dataclasses.replace(rows[301], cpu_percent=10.0 + sequence)
        if at == 1.0:
            rows[500] = fakes.row(500, "new")
        if at == 2.0:
            del rows[300]
        snap = fakes.snapshot(list(rows.values()), sequence=sequence)
        ticks.append(dataclasses.replace(
            snap, metrics=dataclasses.replace(snap.metrics, timestamp=T + at)))
    return ticks


def test_between_full_listings_only_changed_and_gone_processes_are_written() -> None:
    out = io.StringIO()
    config = Config(stream=StreamConfig(process_documents="both", process_listing_interval=10))
    w = StreamWriter(config, "json", out, clock=lambda: T)
    for snap in changing_ticks():
        w.offer(snap)
        w.drain()
    docs = lines(out)
    lists = [d["fluxtui"] for d in docs if d["event"]["dataset"] == "fluxtui.processes"]
    assert [x["listing"]["kind"] for x in lists] == ["full", "changes", "changes", "full"]
    assert [x["listing"]["count"] for x in lists] == [5, 6, 5, 5]
    assert [sorted(p["pid"] for p in x["processes"]) for x in lists] == [
        [1, 200, 300, 301, 400], [301, 500], [301], [1, 200, 301, 400, 500]]
    assert [x.get("removed") for x in lists] == [None, [], [{"pid": 300, "start_ticks": 1300}],
                                                 None]
    states = [d for d in docs if d["event"]["dataset"] == "fluxtui.process"]
    by_tick: dict[int, list] = {}
    for d in states:
        by_tick.setdefault(d["fluxtui"]["tick"], []).append(d)
    assert [len(by_tick[t]) for t in (1, 2, 3, 4)] == [5, 2, 2, 5]
    gone = next(d for d in by_tick[3] if "process_removed" in d["fluxtui"])
    assert gone["event"]["type"] == ["end"] and gone["process"]["pid"] == 300
    assert gone["process"]["entity_id"].endswith("-300-1300")
    for doc in docs:
        assert problems(doc) == [], doc["event"]["dataset"]


def test_a_slow_reader_gets_every_change_since_what_it_was_last_written() -> None:
    out = io.StringIO()
    w = StreamWriter(Config(stream=StreamConfig(process_listing_interval=60)), "json", out,
                     clock=lambda: T)
    first, second, third, _ = changing_ticks()
    w.offer(first)
    w.drain()
    w.offer(second)  # never written: the third arrives before the reader is back
    w.offer(third)
    w.drain()
    lists = [d["fluxtui"] for d in lines(out) if d["event"]["dataset"] == "fluxtui.processes"]
    assert sorted(p["pid"] for p in lists[1]["processes"]) == [301, 500]  # 500 came in tick 2
    assert lists[1]["removed"] == [{"pid": 300, "start_ticks": 1300}]


def test_a_zero_listing_interval_writes_every_process_every_tick() -> None:
    out = io.StringIO()
    w = StreamWriter(Config(stream=StreamConfig(process_listing_interval=0)), "json", out,
                     clock=lambda: T)
    for snap in changing_ticks():
        w.offer(snap)
        w.drain()
    lists = [d["fluxtui"] for d in lines(out) if d["event"]["dataset"] == "fluxtui.processes"]
    assert [x["listing"]["kind"] for x in lists] == ["full"] * 4
    assert [len(x["processes"]) for x in lists] == [5, 6, 5, 5]


def test_a_listing_that_follows_looks_at_the_changed_rows_and_a_skipped_tick_at_all() -> None:
    """Issue 13: right after the snapshot written, only the rows the engine says changed are
    compared (thousands of sleeping processes are not); after a skipped tick, every row."""
    from fluxtui.ecs.process_changes import ProcessListing

    rows = fakes.snapshot().processes
    listing = ProcessListing(interval=3600)
    first = dataclasses.replace(fakes.snapshot(), sequence=1)
    assert listing.take(first).full
    vim = next(k for k, r in rows.items() if r.name == "vim")
    bash = next(k for k, r in rows.items() if r.name == "bash")
    moved = {**rows, vim: dataclasses.replace(rows[vim], cpu_percent=99.0),
             bash: dataclasses.replace(rows[bash], cpu_percent=98.0)}
    # The engine said only vim changed: bash's new object is not looked at (the engine never
    # leaves out a changed row; this shows the comparison follows what it says).
    told = dataclasses.replace(first, sequence=2, processes=moved, changed=frozenset({vim}))
    assert [r.key for r in listing.take(told).changed] == [vim]
    later = {**moved, bash: dataclasses.replace(moved[bash], cpu_percent=1.0)}
    skipped = dataclasses.replace(first, sequence=4, processes=later, changed=frozenset())
    assert [r.key for r in listing.take(skipped).changed] == [bash]  # all rows compared
