"""Where the headless stream goes: a file rotated by size (whole lines, 0600, never through a
symlink) and the systemd journal over its native protocol (a real datagram socket standing in for
journald's), with alerts sent there whenever one runs."""

from __future__ import annotations

import io
import json
import os
import socket
import stat
import struct
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fluxtui.bus import EventBus
from fluxtui.config import Config
from fluxtui.ecs import document
from fluxtui.events import Alert, ProcessKey, Severity
from fluxtui.headless import HeadlessRunner
from fluxtui.journal import JournalWriter
from fluxtui.journal_alerts import QUEUE_LIMIT, AlertJournal
from fluxtui.stream_outputs import (
    JournalDocuments,
    OutputError,
    RotatingFile,
    StreamFileError,
    StreamSettings,
    open_outputs,
)
from tests import fakes
from tests.fakes import StaticEngine

REPO = Path(__file__).resolve().parents[1]


# --- the rotated file ------------------------------------------------------------------------


def lines_of(path: Path, backups: int) -> list[str]:
    """Every line still on disk, oldest first (PATH.N ... PATH.1, PATH)."""
    out: list[str] = []
    for index in range(backups, 0, -1):
        older = Path(f"{path}.{index}")
        if older.exists():
            out += older.read_text().splitlines()
    return out + path.read_text().splitlines()


def test_rotation_keeps_whole_lines_in_order_and_the_newest_files(tmp_path: Path) -> None:
    path = tmp_path / "stream.jsonl"
    sink = RotatingFile(str(path), max_bytes=100, backups=2)
    written = [json.dumps({"n": n, "pad": "x" * 20}) for n in range(40)]
    for line in written:
        sink.write(line + "\n")
    sink.close()
    assert sink.rotations > 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "stream.jsonl", "stream.jsonl.1", "stream.jsonl.2"]
    kept = lines_of(path, 2)
    assert kept == written[-len(kept):]  # the newest lines, in order, none split
    for name in ("stream.jsonl", "stream.jsonl.1", "stream.jsonl.2"):
        info = (tmp_path / name).stat()
        assert info.st_size <= 100
        assert stat.S_IMODE(info.st_mode) == 0o600


def test_a_line_longer_than_the_limit_gets_a_file_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "s"
    sink = RotatingFile(str(path), max_bytes=10, backups=1)
    sink.write("short\n")
    sink.write("a line far longer than ten bytes\n")
    sink.close()
    assert Path(f"{path}.1").read_text() == "short\n"
    assert path.read_text() == "a line far longer than ten bytes\n"


def test_no_backups_starts_the_file_over_and_appends_to_an_existing_one(tmp_path: Path) -> None:
    path = tmp_path / "s"
    path.write_text("kept from before\n")
    sink = RotatingFile(str(path), max_bytes=40, backups=0)
    sink.write("second\n")
    assert path.read_text() == "kept from before\nsecond\n"
    sink.write("third line that does not fit\n")
    sink.close()
    assert path.read_text() == "third line that does not fit\n"
    assert list(tmp_path.iterdir()) == [path]


def test_symlinks_directories_and_bad_sizes_are_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(StreamFileError, match="cannot open"):
        RotatingFile(str(link), 100, 1)
    with pytest.raises(StreamFileError, match="cannot open"):
        RotatingFile(str(tmp_path), 100, 1)
    with pytest.raises(StreamFileError, match="positive"):
        RotatingFile(str(tmp_path / "x"), 0, 1)
    with pytest.raises(StreamFileError, match="negative"):
        RotatingFile(str(tmp_path / "x"), 10, -1)


def test_headless_stream_to_a_rotated_file_end_to_end(tmp_path: Path) -> None:
    config = tmp_path / "config.yml"
    config.write_text("syscalls:\n  enabled: false\nguard:\n  enabled: false\n"
                      "network:\n  enabled: false\ngeneral:\n  refresh_interval: 0.1\n")
    config.chmod(0o600)
    path = tmp_path / "stream.jsonl"
    result = subprocess.run(
        [sys.executable, "-m", "fluxtui", "--config", str(config), "--headless", "--timeout",
         "3", "--stream-file", str(path), "--stream-max-mb", "0.02", "--stream-backups", "3",
         "--no-journal"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert Path(f"{path}.1").exists()  # each processes document is several KB: it rotated
    docs = [json.loads(line) for line in lines_of(path, 3)]
    assert {d["event"]["dataset"] for d in docs} >= {"fluxtui.metrics", "fluxtui.processes"}


# --- the journal -----------------------------------------------------------------------------


def parse_native(datagram: bytes) -> dict[str, str]:
    """journald's native protocol: KEY=value lines, or KEY, newline, 64-bit LE size, bytes."""
    fields: dict[str, str] = {}
    rest = datagram
    while rest:
        newline = rest.index(b"\n")
        head = rest[:newline]
        if b"=" in head:
            key, value = head.split(b"=", 1)
            fields[key.decode()] = value.decode()
            rest = rest[newline + 1:]
        else:
            (size,) = struct.unpack("<Q", rest[newline + 1:newline + 9])
            start = newline + 9
            fields[head.decode()] = rest[start:start + size].decode()
            rest = rest[start + size + 1:]
    return fields


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "journal.socket")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(10)
    yield path, server
    server.close()


def received(server: socket.socket) -> list[dict[str, str]]:
    out = []
    server.setblocking(False)
    try:
        while True:
            out.append(parse_native(server.recv(1 << 20)))
    except BlockingIOError:
        pass
    finally:
        server.settimeout(10)
    return out


def alert(severity: Severity = Severity.CRITICAL) -> Alert:
    return Alert(timestamp=1_800_000_000.0, rule_id="syscalls.process_vm_write",
                 title="Process memory written\nby another", severity=severity,
                 technique_id="T1055", technique_name="Process Injection",
                 key=ProcessKey(4242, 1), process_name="evil", reasons=("wrote 4 KB",))


def test_alerts_reach_the_journal_with_priority_fields_and_the_ecs_document(
        journal: tuple[str, socket.socket]) -> None:
    path, server = journal
    sink = JournalDocuments(JournalWriter(path), alerts_only=True)
    sink(document(alert()))
    sink({"event": {"kind": "event", "dataset": "fluxtui.connections"}, "message": "x"})
    sink({"event": {"kind": "metric", "dataset": "fluxtui.metrics"}})
    (entry,) = received(server)
    assert entry["PRIORITY"] == "2" and entry["SYSLOG_IDENTIFIER"] == "fluxtui"
    assert entry["MESSAGE"] == "alert [T1055]: Process memory written\nby another"
    assert entry["FLUXTUI_RULE"] == "syscalls.process_vm_write"
    assert entry["FLUXTUI_TECHNIQUE"] == "T1055" and entry["FLUXTUI_PROCESS_PID"] == "4242"
    assert json.loads(entry["FLUXTUI_ECS"]) == json.loads(json.dumps(document(alert())))
    assert sink.sent == 1 and sink.dropped == 0


def test_output_journal_sends_alerts_and_socket_events_and_nothing_to_stdout(
        journal: tuple[str, socket.socket]) -> None:
    path, server = journal
    outputs = open_outputs(Config(), StreamSettings(output="journal", journal_socket=path))
    engine = StaticEngine(fakes.snapshot())
    out = io.StringIO()
    runner = HeadlessRunner(engine, "journal", out, outputs.sinks)
    runner.writer.offer(fakes.snapshot())
    runner.writer.offer(alert(Severity.MEDIUM))
    runner.writer.drain()
    guard_doc = {"event": {"kind": "event", "dataset": "fluxtui.guard"}, "message": "denied"}
    conn_doc = {"event": {"kind": "event", "dataset": "fluxtui.connections",
                          "action": "connection-opened"}}
    exec_doc = {"event": {"kind": "event", "dataset": "fluxtui.syscalls", "action": "exec"}}
    for doc in (guard_doc, conn_doc, exec_doc):
        outputs.sinks[0](doc)
    outputs.close()
    entries = received(server)
    # The guard writes its own decisions to the journal (guard.journal: true): not twice; every
    # exec on the host would flood it.
    assert [e["FLUXTUI_DATASET"] for e in entries] == ["fluxtui.syscalls", "fluxtui.connections"]
    assert entries[0]["PRIORITY"] == "4"
    assert entries[1]["MESSAGE"] == "fluxtui.connections: connection-opened"
    assert out.getvalue() == ""


def test_without_a_journal_alerts_are_a_note_and_output_journal_an_error(
        tmp_path: Path) -> None:
    missing = str(tmp_path / "no-journal")
    outputs = open_outputs(Config(), StreamSettings(journal_socket=missing))
    assert outputs.sinks == [] and outputs.out is sys.stdout
    assert outputs.notes == [f"alerts are not sent to the journal: no systemd journal running "
                             f"({missing} does not exist)"]
    with pytest.raises(OutputError, match=r"^--output journal: no systemd journal running"):
        open_outputs(Config(), StreamSettings(output="journal", journal_socket=missing))


def test_a_journal_that_went_away_drops_and_counts(journal: tuple[str, socket.socket]) -> None:
    path, server = journal
    sink = JournalDocuments(JournalWriter(path), alerts_only=True)
    server.close()
    os.unlink(path)
    sink(document(alert()))
    assert sink.sent == 0 and sink.dropped == 1 and sink.last_error


def test_dashboard_alerts_reach_the_journal_from_their_own_thread(
        journal: tuple[str, socket.socket], tmp_path: Path) -> None:
    path, server = journal
    bus = EventBus()
    alerts = AlertJournal.if_running(bus, path)
    assert alerts is not None
    bus.publish(alert(Severity.HIGH))
    bus.publish(fakes.snapshot())  # not an alert: not sent
    alerts.stop()  # sends what is queued first
    (entry,) = received(server)
    assert entry["PRIORITY"] == "3" and entry["FLUXTUI_RULE"] == "syscalls.process_vm_write"
    doc = json.loads(entry["FLUXTUI_ECS"])
    assert doc["@timestamp"].endswith("Z") and doc["host"]["hostname"]
    assert AlertJournal.if_running(bus, str(tmp_path / "none")) is None


def test_a_stalled_journal_never_holds_up_the_publisher(
        journal: tuple[str, socket.socket]) -> None:
    path, _ = journal
    release = threading.Event()

    class Stalled(JournalDocuments):
        def __call__(self, doc: dict[str, object]) -> None:
            release.wait(60)

    alerts = AlertJournal(EventBus(), Stalled(JournalWriter(path), alerts_only=True))
    alerts.start()
    try:
        for _ in range(QUEUE_LIMIT + 50):  # returns at once although nothing is sent
            alerts.bus.publish(alert())
        assert alerts.dropped >= 49  # the thread may have taken one before it stalled
    finally:
        release.set()
        alerts.stop()
