from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]


def start(config: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(config),
                             "--headless", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def test_json_stream_is_ecs_and_exits_0_after_timeout(safe_config: Path) -> None:
    proc = start(safe_config, "--output", "json", "--timeout", "2.5")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    docs = [json.loads(line) for line in out.splitlines()]
    metrics = [d for d in docs if d["event"]["dataset"] == "fluxtui.metrics"]
    processes = [d for d in docs if d["event"]["dataset"] == "fluxtui.processes"]
    assert len(metrics) >= 2 and len(processes) >= 2
    for doc in docs:
        assert doc["@timestamp"].endswith("Z")
        assert doc["host"]["hostname"]
        assert doc["host"]["os"]["kernel"]
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
    for field in ("pid", "name", "user", "cpu", "memory", "risk", "syscalls", "network"):
        assert field in entry


def test_sigterm_and_sigint_end_the_stream_cleanly(safe_config: Path) -> None:
    for sig in (signal.SIGTERM, signal.SIGINT):
        # Unbuffered, so that what readline() leaves is still there for communicate().
        proc = subprocess.Popen([sys.executable, "-m", "fluxtui", "--config", str(safe_config),
                                 "--headless"], cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, bufsize=0)
        assert proc.stdout is not None
        first = proc.stdout.readline()  # wait until it streams (bounded by the test timeout)
        assert json.loads(first)["event"]["dataset"] == "fluxtui.metrics"
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert b"Traceback" not in err
        for line in out.splitlines():
            json.loads(line)  # every line complete: nothing cut mid-object


def test_text_output_is_compact(safe_config: Path) -> None:
    proc = start(safe_config, "--output", "text", "--timeout", "2.2")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert any(" metrics cpu " in line and " mem " in line for line in lines)
    assert any(" processes " in line for line in lines)


def test_stream_survives_a_closed_reader(safe_config: Path) -> None:
    result = subprocess.run(
        f"{sys.executable} -m fluxtui --config {safe_config} --headless --timeout 3600 "
        "| head -n 1",
        shell=True, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert json.loads(result.stdout)["event"]["kind"] == "metric"
    assert "Traceback" not in result.stderr
