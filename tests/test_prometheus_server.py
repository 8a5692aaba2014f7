"""A real Prometheus (Debian's `prometheus`, installed by `make test`'s set-up) scrapes fluxtui's
/metrics on loopback and its HTTP API returns the alert counter of an alert this test caused: a
real engine with the BPF syscall collector sees a C workload PTRACE_ATTACH to its child.

Prometheus runs with a temporary configuration and data directory, listens on 127.0.0.1 only,
and is killed whatever happens. Every wait is bounded (condition polling, never a fixed sleep).
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture
from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import Alert
from fluxtui.prometheus import PrometheusExporter
from tests.kernel import require, require_bcc

pytestmark = pytest.mark.kernel

WORKLOAD = Path(__file__).parent / "workloads" / "ptrace_attach.c"
RULE = "syscalls.ptrace_attach"
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180.0) -> T:
    """Polls `probe` until it returns a value; bounded by `timeout` seconds (a limit for a
    stuck test, never a measured figure)."""
    end = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.2)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api(port: int, path: str, **params: str) -> Any:
    url = f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}"
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


@contextmanager
def prometheus_server(tmp_path: Path, target: str) -> Iterator[int]:
    binary = shutil.which("prometheus")
    require(binary is not None, "prometheus not installed (make test's set-up installs it)")
    assert binary is not None
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: fluxtui\n"
        f"    static_configs:\n      - targets: ['{target}']\n")
    port = free_port()
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=1h"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    def ready() -> bool | None:
        if proc.poll() is not None:
            raise AssertionError("prometheus exited: "
                                 + (tmp_path / "prometheus.log").read_text()[-2000:])
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=5) as r:
                return True if r.status == 200 else None
        except OSError:
            return None

    try:
        wait_for("prometheus ready", ready)
        yield port
    finally:
        with suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)
        log.close()


def query(port: int, promql: str) -> list[dict[str, Any]] | None:
    answer = api(port, "/api/v1/query", query=promql)
    if not answer or answer.get("status") != "success":
        return None
    return list(answer["data"]["result"])


def test_prometheus_scrapes_the_alert_counter_of_a_real_ptrace_alert(tmp_path: Path) -> None:
    require_bcc()
    require(shutil.which("gcc") is not None, "gcc not installed")
    tracer_binary = tmp_path / "ptrace_attach"
    subprocess.run(["gcc", "-O2", "-o", str(tracer_binary), str(WORKLOAD)], check=True,
                   timeout=120)

    config = Config()
    engine = Engine(config, [SyscallCapture(config), RiskScorer(config)])
    seen: list[Alert] = []
    engine.bus.subscribe(lambda e: seen.append(e) if isinstance(e, Alert)
                         and e.rule_id == RULE else None)
    exporter = PrometheusExporter(engine.bus, "127.0.0.1", 0)
    exporter.start()
    tracer: subprocess.Popen[bytes] | None = None
    try:
        engine.start()

        def capture_running() -> bool | None:
            snap = engine.snapshot
            status = None if snap is None else next(
                (s for s in snap.statuses if s.name == "syscalls"), None)
            if status is not None and status.state.value == "unavailable":
                require(False, f"syscall capture unavailable: {status.reason}")
            return True if status is not None and status.running else None

        wait_for("syscall capture running", capture_running)
        with prometheus_server(tmp_path, f"127.0.0.1:{exporter.port}") as port:
            wait_for("first scrape", lambda: True if query(
                port, 'up{job="fluxtui"} == 1') else None)
            before = len(seen)

            tracer = subprocess.Popen([str(tracer_binary)], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE)
            assert tracer.stdout is not None
            line = tracer.stdout.readline().decode()
            assert line.startswith("attached "), line
            ours = wait_for("fluxtui's alert", lambda: next(
                (a for a in list(seen) if a.key is not None and a.key.pid == tracer.pid), None))
            assert ours.technique_id == "T1055.008"
            assert len(seen) > before

            # Prometheus catches up with every ptrace alert the engine raised (other tests on
            # the machine may add theirs, so compare with what this engine saw).
            promql = f'sum(fluxtui_alerts_total{{rule="{RULE}",technique="T1055.008"}})'

            def scraped() -> float | None:
                result = query(port, promql)
                value = float(result[0]["value"][1]) if result else None
                return value if value is not None and value >= len(seen) else None

            value = wait_for("the alert counter in Prometheus", scraped)
            assert value >= before + 1
            series = query(port, f'fluxtui_alerts_total{{rule="{RULE}"}}')
            assert series and series[0]["metric"]["severity"] == "high"
            assert series[0]["metric"]["job"] == "fluxtui"
            print(f"prometheus: {promql} = {value:g} (engine raised {len(seen)}, "
                  f"{before} before the workload)")
    finally:
        if tracer is not None:
            if tracer.stdin is not None:
                tracer.stdin.close()
            try:
                tracer.wait(timeout=30)
            except subprocess.TimeoutExpired:
                tracer.kill()
                tracer.wait(timeout=30)
        exporter.stop()
        engine.stop()
