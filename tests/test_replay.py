"""`fluxtui replay`: recordings played into the dashboard; damage, foreign lines, gzip."""

from __future__ import annotations

import dataclasses
import gzip
import io
import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fluxtui.capabilities.connection_tracker import ConnectionsComponent
from fluxtui.config import Config, NetworkConfig, StreamConfig
from fluxtui.ecs import host_fields
from fluxtui.engine import Engine
from fluxtui.events import Alert, ProcessKey, Severity, Snapshot
from fluxtui.headless import StreamWriter, record_stream
from fluxtui.replay import RecordingError, ReplaySource
from fluxtui.tui.app import FluxApp
from fluxtui.tui.replay_bar import banner
from tests import fakes
from tests.kernel import require_root
from tests.tui_support import until

REPO = Path(__file__).resolve().parents[1]
SIZE = (160, 48)
T0 = 1_800_000_000.0


def fake_recording(ticks: int = 3) -> list[str]:
    """The lines of a recording of `ticks` fake ticks one second apart, an alert after the
    first."""
    out = io.StringIO()
    writer = StreamWriter(Config(), "json", out, clock=lambda: T0)
    for sequence in range(1, ticks + 1):
        snap = fakes.snapshot(sequence=sequence)
        snap = dataclasses.replace(snap, metrics=fakes.metrics(timestamp=T0 + sequence))
        writer.offer(snap)
        if sequence == 2:
            writer.offer(Alert(T0 + 1.5, "syscalls.ptrace_attach", "ptrace attach",
                               Severity.HIGH, "T1055.008", "Ptrace", ProcessKey(301, 1301),
                               "vim", ("PTRACE_ATTACH of pid 1",)))
        writer.drain()
    return out.getvalue().splitlines(keepends=True)


def play(path: Path) -> ReplaySource:
    source = ReplaySource(str(path), Config(), speed=1000)
    source.start()
    end = time.monotonic() + 60
    while not source.finished:  # bounded: a broken player fails the test, never hangs it
        assert time.monotonic() < end, "the replay did not finish"
        time.sleep(0.01)
    source.stop()
    return source


def test_a_recording_replays_every_tick_and_alert(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(fake_recording()))
    source = play(path)
    assert source.ticks == 3 and source.damage is None and source.read.foreign == 0
    snap = source.snapshot
    assert snap is not None
    assert sorted(k.pid for k in snap.processes) == [1, 200, 300, 301, 400]
    assert snap.processes[ProcessKey(301, 1301)].user == "alice"
    assert [a.rule_id for a in snap.alerts] == ["syscalls.ptrace_attach"]
    assert snap.alerts[0].technique_id == "T1055.008"
    assert snap.alerts[0].severity is Severity.HIGH
    assert snap.metrics.timestamp == T0 + 3
    assert source.host == host_fields()["name"] and source.recorded_at == T0


def test_a_truncated_recording_plays_up_to_the_damage_and_says_where(tmp_path: Path) -> None:
    lines = fake_recording()
    last_metrics = max(i for i, line in enumerate(lines) if '"fluxtui.metrics"' in line)
    cut = [*lines[:last_metrics], lines[last_metrics][:40]]  # the writer died mid-line
    path = tmp_path / "cut.jsonl"
    path.write_text("".join(cut))
    source = play(path)
    assert source.damage is not None and source.damage.line == last_metrics + 1
    assert "cut short" in str(source.damage)
    assert source.ticks == 2  # everything before the damage
    assert f"stopped at line {last_metrics + 1}" in source.summary()


def test_a_corrupt_line_stops_the_replay_there(tmp_path: Path) -> None:
    lines = fake_recording()
    lines[3] = '{"@timestamp": "2027-01-15T08:00:00.000Z", "event": \x00garbage\n'
    path = tmp_path / "corrupt.jsonl"
    path.write_text("".join(lines))
    source = play(path)
    assert source.damage is not None and source.damage.line == 4
    assert "corrupt" in source.damage.reason


def test_foreign_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    lines = fake_recording()
    lines.insert(2, "fluxtui: alerts are not sent to the journal\n")
    lines.insert(5, json.dumps({"level": "info", "msg": "another program"}) + "\n")
    lines.insert(7, "\n")
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(lines))
    source = play(path)
    assert source.read.foreign == 2 and source.damage is None and source.ticks == 3
    assert "2 non-fluxtui lines skipped" in source.summary()


def test_gzip_recordings_and_truncated_gzip(tmp_path: Path) -> None:
    data = gzip.compress("".join(fake_recording()).encode())
    path = tmp_path / "rec.jsonl.gz"
    path.write_bytes(data)
    assert play(path).ticks == 3
    cut = tmp_path / "cut.gz"
    cut.write_bytes(data[: len(data) * 2 // 3])
    source = play(cut)
    assert source.damage is not None and "compressed data" in source.damage.reason
    assert source.ticks < 3


def test_a_newer_stream_version_is_refused_at_its_line(tmp_path: Path) -> None:
    lines = fake_recording()
    doc = json.loads(lines[4])
    doc["fluxtui"]["stream_version"] = 99
    lines[4] = json.dumps(doc) + "\n"
    path = tmp_path / "new.jsonl"
    path.write_text("".join(lines))
    source = play(path)
    assert source.damage is not None and source.damage.line == 5
    assert "newer" in source.damage.reason


def test_replay_command_errors_are_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(RecordingError, match="cannot open"):
        ReplaySource(str(missing))
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("not a recording\n")
    for args in ([str(missing)], [str(foreign)], [str(foreign), "--speed", "0"], []):
        result = subprocess.run([sys.executable, "-m", "fluxtui", "replay", *args], cwd=REPO,
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


async def test_replay_keys_pause_and_speed_and_the_banner_says_whose(tmp_path: Path) -> None:
    path = tmp_path / "rec.jsonl"
    path.write_text("".join(fake_recording(ticks=300)))
    source = ReplaySource(str(path), Config(), speed=1.0)
    app = FluxApp(source, privileged=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: source.ticks >= 1)
        text = banner(source).plain
        assert f"REPLAY  of a recording made on {host_fields()['name']} at 2027-01-15" in text
        await pilot.press("space")
        assert source.paused and "PAUSED" in banner(source).plain
        await pilot.press("space")
        assert not source.paused and "PAUSED" not in banner(source).plain
        await pilot.press("plus")
        assert source.speed == 2.0
        await pilot.press("minus", "minus")
        assert source.speed == 0.5


def record_real(path: Path) -> tuple[Snapshot, Alert]:
    """A few ticks of the real engine with the connections capability; a loopback listener
    opened after start raises a real alert."""
    config = Config(network=NetworkConfig(connect_trace=False))
    engine = Engine(config, [ConnectionsComponent(config.network, rules=config.rules)])
    recording = record_stream(engine, str(path))
    listener = socket.socket()
    try:
        engine.start()
        end = time.monotonic() + 120

        def wait(condition) -> Snapshot:
            while True:
                snap = engine.snapshot
                if snap is not None and condition(snap):
                    return snap
                assert time.monotonic() < end, "the engine did not get there"
                time.sleep(0.02)

        wait(lambda s: "connections" in s.views)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        alerted = wait(lambda s: any(a.rule_id == "network.new_listener"
                                     and str(port) in " ".join(a.reasons) for a in s.alerts))
        wait(lambda s: s.sequence >= alerted.sequence + 2)
    finally:
        engine.stop()
        recording.close()
        listener.close()
    final = engine.snapshot
    assert final is not None
    alert = next(a for a in final.alerts if a.rule_id == "network.new_listener")
    return final, alert


@pytest.mark.kernel
async def test_round_trip_real_engine_to_the_dashboard(tmp_path: Path) -> None:
    require_root()
    path = tmp_path / "real.jsonl.gz"
    final, alert = record_real(path)
    source = ReplaySource(str(path), Config(), speed=1000)
    app = FluxApp(source, privileged=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: source.finished, timeout=60, message=source.summary)
        assert source.damage is None
        await until(pilot, lambda: set(app.process_table.rows) == {
            f"{k.pid}:{k.start_ticks}" for k in final.processes} or None, timeout=10,
            message=lambda: f"{len(app.process_table.rows)} rows vs {len(final.processes)}")
        for key, row in final.processes.items():
            shown = app.process_table.rows[f"{key.pid}:{key.start_ticks}"]
            assert (shown.name, shown.cmdline, shown.user, shown.risk) == (
                row.name, row.cmdline, row.user, row.risk)
        await pilot.press("3")
        pane = app.query_one("#alerts-pane")
        await until(pilot, lambda: any(a.rule_id == alert.rule_id and a.key == alert.key
                                       and a.reasons == alert.reasons for a in pane.shown))
        assert "connections" in source.snapshot.views  # type: ignore[union-attr]


def test_record_stream_writes_while_the_engine_runs(tmp_path: Path) -> None:
    """record_stream is a subscriber of any engine: the demo records the dashboard's."""
    engine = fakes.StaticEngine(fakes.snapshot())
    path = tmp_path / "rec.jsonl"
    recording = record_stream(engine, str(path))
    ticks = threading.Thread(target=lambda: [engine.bus.publish(fakes.snapshot(sequence=n))
                                             for n in (1, 2)])
    ticks.start()
    ticks.join()
    recording.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["event"]["action"] == "recording-started"
    assert any(d["event"]["dataset"] == "fluxtui.metrics" for d in lines)
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_an_endless_line_is_damage_not_memory(tmp_path: Path, monkeypatch) -> None:
    import fluxtui.replay.reader as reader

    monkeypatch.setattr(reader, "MAX_LINE", 20000)
    lines = fake_recording()
    lines.insert(3, '{"@timestamp": "' + "x" * 50000 + "\n")
    path = tmp_path / "long.jsonl"
    path.write_text("".join(lines))
    source = play(path)
    assert source.damage is not None and source.damage.line == 4
    assert "longer than" in source.damage.reason


async def test_recorded_guard_decisions_are_history_in_the_guard_tab(tmp_path: Path) -> None:
    from fluxtui.guard.events import GuardDecision, Requester
    from fluxtui.tui.guard_prompt import PromptScreen

    requester = Requester(ProcessKey(9, 90), "/usr/bin/cat", ("cat", "/h/.aws/credentials"),
                          1000, 1000, "alice", 8, "/bin/bash", None, None, False,
                          "not packaged", ())
    out = io.StringIO()
    writer = StreamWriter(Config(), "json", out, clock=lambda: T0)
    writer.offer(fakes.snapshot(sequence=1))
    writer.offer(GuardDecision(T0 + 0.5, "/h/.aws/credentials", "aws", "T1552.001", False,
                               "headless", "default action", requester, 800.0, "enforce"))
    writer.offer(fakes.snapshot(sequence=2))
    writer.drain()
    path = tmp_path / "guard.jsonl"
    path.write_text(out.getvalue())
    source = ReplaySource(str(path), Config(), speed=1000)
    app = FluxApp(source, privileged=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: source.finished)
        await pilot.press("4")
        table = app.query_one("#guard-history-table")
        await until(pilot, lambda: table.row_count == 1)
        cells = [str(c) for c in table.get_row_at(0)]
        assert "denied" in cells and "/usr/bin/cat" in cells and "/h/.aws/credentials" in cells
        assert not isinstance(app.screen, PromptScreen)


@pytest.mark.parametrize("mode", ["list", "state"])
def test_a_recording_of_changes_between_full_listings_replays_every_table(
        tmp_path: Path, mode: str) -> None:
    """Between full listings the stream carries only changed and gone processes: the replay
    rebuilds each tick's whole table from them, a tick where nothing changed included."""
    out = io.StringIO()
    config = Config(stream=StreamConfig(process_documents=mode,  # type: ignore[arg-type]
                                        process_listing_interval=60))
    writer = StreamWriter(config, "json", out, clock=lambda: T0)
    rows = {r.pid: r for r in fakes.snapshot().processes.values()}
    tables = []
    for sequence in range(1, 6):
        if sequence == 2:
            rows[500] = fakes.row(500, "new")
        if sequence == 3:
            rows[301] = dataclasses.replace(rows[301], cpu_percent=50.0)
            del rows[300]
        # sequence 4 and 5: nothing changes
        snap = fakes.snapshot(list(rows.values()), sequence=sequence)
        snap = dataclasses.replace(snap, metrics=fakes.metrics(timestamp=T0 + sequence))
        tables.append(dict(snap.processes))
        writer.offer(snap)
        writer.drain()
    assert '"kind": "changes"' in out.getvalue()
    path = tmp_path / "rec.jsonl"
    path.write_text(out.getvalue())
    seen: list[Snapshot] = []
    source = ReplaySource(str(path), Config(), speed=1000)
    source.bus.subscribe(lambda e: seen.append(e) if isinstance(e, Snapshot) else None)
    source.start()
    end = time.monotonic() + 60
    while not source.finished:
        assert time.monotonic() < end, "the replay did not finish"
        time.sleep(0.01)
    source.stop()
    assert source.damage is None and len(seen) == 5
    for replayed, recorded in zip(seen, tables, strict=True):
        assert sorted(replayed.processes) == sorted(recorded)
        for key, row in recorded.items():
            assert replayed.processes[key].cpu_percent == row.cpu_percent
