from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil

from fluxtui.ecs import metrics_document
from fluxtui.events import Alert, ProcessKey, Severity
from fluxtui.headless import QUEUE_LIMIT, HeadlessRunner, text_line
from tests import fakes
from tests.fakes import StaticEngine

REPO = Path(__file__).resolve().parents[1]


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(config),
                             "--headless", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def read_documents(proc: subprocess.Popen[bytes], metrics_wanted: int) -> list[dict]:
    """Lines until `metrics_wanted` metrics documents have arrived (bounded by the test's
    timeout, not asserted on)."""
    assert proc.stdout is not None
    docs = []
    while sum(d["event"]["dataset"] == "fluxtui.metrics" for d in docs) < metrics_wanted:
        line = proc.stdout.readline()
        assert line, "the stream ended early"
        docs.append(json.loads(line))
    return docs


def test_json_stream_is_ecs(safe_config: Path) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(safe_config),
                             "--headless"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0)
    try:
        docs = read_documents(proc, 3)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    metrics = [d for d in docs if d["event"]["dataset"] == "fluxtui.metrics"]
    processes = [d for d in docs if d["event"]["dataset"] == "fluxtui.processes"]
    assert len(metrics) >= 2 and len(processes) >= 2
    assert docs[0]["event"]["action"] == "recording-started"
    for doc in docs:
        assert doc["@timestamp"].endswith("Z")
        assert doc["host"]["name"] and doc["host"]["hostname"]
        assert doc["host"]["os"]["kernel"]
        assert doc["ecs"]["version"] and doc["fluxtui"]["stream_version"] == 1
    last = metrics[-1]
    assert last["event"]["kind"] == "metric"
    assert 0.0 <= last["host"]["cpu"]["usage"] <= 1.0
    memory = last["fluxtui"]["metrics"]["memory"]
    assert memory["total_bytes"] == psutil.virtual_memory().total
    assert len(last["fluxtui"]["metrics"]["cpu"]["per_core_pct"]) == psutil.cpu_count()
    assert processes[-1]["event"]["kind"] == "state"
    pids = {p["pid"] for p in processes[-1]["fluxtui"]["processes"]}
    assert proc.pid in pids  # the stream sees itself
    entry = processes[-1]["fluxtui"]["processes"][0]
    for field in ("pid", "start_ticks", "name", "user", "cpu_pct", "memory_rss_bytes", "risk",
                  "syscalls", "network"):
        assert field in entry
    collectors = last["fluxtui"]["collectors"]
    assert collectors["metrics"]["state"] == "running"
    assert collectors["stream"]["drops"]["event_queue"]["total"] == 0


def test_sigterm_and_sigint_end_the_stream_cleanly(safe_config: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Unbuffered, so that what readline() leaves is still there for communicate().
        proc = subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(safe_config),
                                 "--headless"], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it streams (bounded by the test timeout)
        assert json.loads(first)["event"]["dataset"] == "fluxtui.recording"
        assert json.loads(proc.stdout.readline())["event"]["dataset"] == "fluxtui.metrics"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
        for line in out.splitlines():
            json.loads(line)  # every line complete: nothing cut mid-object


def test_timeout_ends_the_stream_with_exit_0(safe_config: Path) -> None:
    proc = start(safe_config, "--output", "text", "--timeout", "1")
    out, err = proc.communicate(timeout=60)  # the bound: it must end by itself
    assert proc.returncode == 0, err
    assert any(" metrics " in line and " mem " in line for line in out.splitlines())


def test_text_output_is_compact_and_shows_escapes_as_text() -> None:
    metrics = metrics_document(fakes.snapshot(), {})
    assert " metrics cpu 37.5% mem 37.5% load 0.42 procs 5 lost 0" in (text_line(metrics) or "")
    hostile = {"@timestamp": "2026-11-22T00:00:00.000Z",
               "event": {"kind": "alert", "dataset": "fluxtui.syscalls"},
               "threat": {"technique": {"id": "T1059"}},
               "message": "exec of /tmp/x\x1b[2J\x1b]0;pwned\x07"}
    line = text_line(hostile) or ""
    assert "\x1b" not in line and "\x07" not in line
    assert "exec of /tmp/x\\x1b[2J\\x1b]0;pwned\\x07" in line
    assert "alert [T1059]" in line


def test_a_stalled_reader_never_makes_the_queue_grow_without_bound() -> None:
    runner = HeadlessRunner(StaticEngine(fakes.snapshot()), "json", out=io.StringIO())
    writer = runner.writer
    for index in range(QUEUE_LIMIT + 25):
        writer.offer(index_event(index))
    for sequence in range(1, 4):
        writer.offer(fakes.snapshot(sequence=sequence))
    assert runner.dropped == 25
    assert writer._queue.qsize() == QUEUE_LIMIT
    writer.drain()
    lines = [json.loads(line) for line in writer.out.getvalue().splitlines()]
    # the start, every queued event, the latest snapshot only (metrics, processes), the drop
    assert len(lines) == 1 + QUEUE_LIMIT + 3
    assert [d["message"] for d in lines[1:4]] == ["t0", "t1", "t2"]
    metrics = lines[-3]
    assert metrics["fluxtui"]["tick"] == 3
    assert metrics["fluxtui"]["collectors"]["stream"]["drops"]["event_queue"] == {
        "total": 25, "since_last": 25}
    assert lines[-1]["event"]["dataset"] == "fluxtui.drops"
    assert lines[-1]["fluxtui"]["drop"] == {"component": "stream", "kind": "event_queue",
                                            "count": 25, "total": 25}


def index_event(index: int) -> Alert:
    return Alert(1_800_000_000.0 + index, "syscalls.test", f"t{index}", Severity.LOW, "", "",
                 ProcessKey(index, index), "x")


def test_stream_survives_a_closed_reader(safe_config: Path) -> None:
    result = subprocess.run(
        f"{sys.executable} -m fluxtui --config {safe_config} --headless --timeout 3600 "
        "| head -n 1",
        shell=True, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout)["event"]["action"] == "recording-started"
    assert "Traceback" not in result.stderr
