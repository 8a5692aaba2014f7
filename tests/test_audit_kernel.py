"""The audit fallback on the real kernel: the ptrace, memfd and module-load workloads and demo
scenarios raise the same alert ids with `syscalls.collector: audit` as with eBPF (both lists
printed side by side); none of fluxtui's rules is left in `auditctl -l` after a normal exit,
SIGTERM, SIGINT, or SIGKILL followed by a new start; an auditd started before fluxtui still gets
its records; fluxtui holds the daemon role only while it runs.

Audit is off on a machine booted without audit=1: these tests allow fluxtui to turn it on
(syscalls.audit_enable) and check that it is off again afterwards.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from fluxtui.capabilities.syscall_risk import RiskScorer, SyscallCapture
from fluxtui.collectors.audit import RULE_CHECK_EVERY, AuditCollector
from fluxtui.collectors.audit_netlink import AUDIT_STATUS_ENABLED, AuditSocket
from fluxtui.collectors.audit_rules import KEY_PREFIX, arch_tables, build_rules, rule_key
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.config import Config
from fluxtui.engine import Engine
from fluxtui.events import Alert
from tests.kernel import require, require_bcc, require_root

pytestmark = pytest.mark.kernel

HERE = Path(__file__).parent
WORKLOADS = HERE / "workloads"
MAX_TICKS = 100  # every wait is bounded by this many ticks, 0.05 s apart
SCENARIOS = ("ptrace_attach", "memfd_exec", "module_attempt")


def audit_config(collector: Literal["auto", "ebpf", "audit"] = "audit") -> Config:
    config = Config()
    return dataclasses.replace(config, syscalls=dataclasses.replace(
        config.syscalls, collector=collector, audit_enable=True))


def audit_status() -> tuple[int, int]:
    """(enabled, daemon pid) now."""
    sock = AuditSocket()
    try:
        status = sock.status()
    finally:
        sock.close()
    return status.enabled, status.pid


def fluxtui_rules() -> list[str]:
    out = subprocess.run(["auditctl", "-l"], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if KEY_PREFIX in line]


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    require(shutil.which("gcc") is not None, "gcc not installed")
    out = tmp_path_factory.mktemp("workloads")
    built = {}
    for name in SCENARIOS:
        binary = out / name
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(WORKLOADS / f"{name}.c")],
                       check=True)
        built[name] = str(binary)
    return built


@pytest.fixture(scope="module")
def initial_audit() -> Iterator[tuple[int, int]]:
    require_root()
    require(shutil.which("auditctl") is not None, "auditctl not installed (auditd package)")
    before = audit_status()
    require(before[0] != 2, "audit rules are locked on this machine (enabled 2)")
    yield before
    assert audit_status()[0] == before[0], "the enabled flag was not put back"
    assert fluxtui_rules() == []


class Ticker:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.events: list[KernelEvent] = []
        self.alerts: list[Alert] = []
        engine.bus.subscribe(self._on_bus)

    def _on_bus(self, obj: object) -> None:
        if isinstance(obj, KernelEvent):
            self.events.append(obj)

    def until(self, condition: Callable[[], bool]) -> None:
        for _ in range(MAX_TICKS):
            snapshot = self.engine.tick()
            self.alerts.extend(a for a in snapshot.alerts if a not in self.alerts)
            if condition():
                return
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {MAX_TICKS} ticks")

    def alerts_of(self, pid: int) -> list[Alert]:
        return [a for a in self.alerts if a.key is not None and a.key.pid == pid]


SETTLE_TICKS = 6  # after the exit: audit has no exit event, a process ends 3 ticks after it
                  # left /proc (syscall_risk.MISSING_TICKS); its final risk comes then


def run_workload(engine: Engine, binary: str) -> list[Alert]:
    """Runs one workload to its end; returns the alerts of its process."""
    ticker = Ticker(engine)
    proc = subprocess.Popen([binary], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        if binary.endswith("ptrace_attach"):
            assert proc.stdout.readline().startswith(b"attached ")
        ticker.until(lambda: bool(ticker.alerts_of(proc.pid)))
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(timeout=30)
    ticks = iter(range(SETTLE_TICKS))
    ticker.until(lambda: next(ticks, None) is None)
    return ticker.alerts_of(proc.pid)


def start_engine(config: Config) -> Engine:
    engine = Engine(config, [SyscallCapture(config), RiskScorer(config)])
    snapshot = engine.start_sync()
    status = next(s for s in snapshot.statuses if s.name == "syscalls")
    if not status.running:
        engine.stop()
    require(status.running, f"syscall capture unavailable: {status.reason}")
    return engine


def test_the_same_alerts_as_ebpf_on_ptrace_memfd_and_module_workloads(
        initial_audit: tuple[int, int], binaries: dict[str, str]) -> None:
    require_bcc()
    results: dict[str, dict[str, list[tuple[str, str, str]]]] = {}
    for collector in ("ebpf", "audit"):
        engine = start_engine(audit_config(collector))
        try:
            capture = engine.component("syscalls")
            assert isinstance(capture, SyscallCapture)
            status = capture.status()
            if collector == "audit":
                assert status.detail.startswith("audit fallback")
            for name in SCENARIOS:
                try:
                    alerts = run_workload(engine, binaries[name])
                except AssertionError as exc:
                    raise AssertionError(f"{name} with {collector}: {exc}") from None
                results.setdefault(name, {})[collector] = sorted(
                    (a.rule_id, a.technique_id, a.reasons[0]) for a in alerts)
        finally:
            engine.stop()
    print("\nworkload        | collector | alerts (rule id, technique, reason)")
    for name, by in results.items():
        for collector, listed in by.items():
            print(f"{name:<15} | {collector:<9} | {listed}")
    for name, by in results.items():
        assert by["audit"], f"{name}: no alert with audit"
        ebpf_ids = {rule for rule, _t, _r in by["ebpf"]}
        audit_ids = {rule for rule, _t, _r in by["audit"]}
        assert audit_ids == ebpf_ids, name
    assert fluxtui_rules() == []


# --- rules and daemon role over fluxtui's lifetime --------------------------------------------


def headless(config_path: Path, log: Path, timeout: int = 0) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "fluxtui", "--headless", "--config", str(config_path),
         "--log", str(log), *(["--timeout", str(timeout)] if timeout else [])],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition: Callable[[], bool], what: str, attempts: int = 600) -> None:
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def audit_only_config(safe_config: Path) -> Path:
    """The real program, with the audit collector and nothing else that compiles BPF."""
    text = safe_config.read_text()
    safe_config.write_text(text + "syscalls:\n  collector: audit\n  audit_enable: true\n"
                           "network:\n  enabled: false\n")
    return safe_config


@pytest.mark.parametrize("how", ["timeout", signal.SIGTERM, signal.SIGINT])
def test_no_rule_of_fluxtui_is_left_after_it_exits(
        initial_audit: tuple[int, int], audit_only_config: Path, tmp_path: Path,
        how: object) -> None:
    before = subprocess.run(["auditctl", "-l"], capture_output=True, text=True).stdout
    proc = headless(audit_only_config, tmp_path / "log", 60 if how == "timeout" else 0)
    try:
        wait_for(lambda: bool(fluxtui_rules()) or proc.poll() is not None, "rules added")
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert all(f"{KEY_PREFIX}{proc.pid}:" in rule for rule in fluxtui_rules())
        assert audit_status() == (1, proc.pid)  # no auditd here: fluxtui is the daemon
        if isinstance(how, signal.Signals):
            proc.send_signal(how)
        # else a normal exit, at the end of --timeout
        assert proc.wait(timeout=180) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert fluxtui_rules() == []
    assert subprocess.run(["auditctl", "-l"], capture_output=True, text=True).stdout == before
    assert audit_status() == initial_audit


def test_rules_of_a_killed_instance_are_removed_at_the_next_start(
        initial_audit: tuple[int, int], audit_only_config: Path, tmp_path: Path) -> None:
    first = headless(audit_only_config, tmp_path / "first.log")
    try:
        wait_for(lambda: bool(fluxtui_rules()) or first.poll() is not None, "rules added")
        first.kill()
        first.wait()
        left = fluxtui_rules()
        assert left and all(f"{KEY_PREFIX}{first.pid}:" in rule for rule in left)
        # The kernel takes the daemon role back when it next fails to send a record to the
        # dead daemon's socket: make one (an exec, which the left rules log).
        wait_for(lambda: subprocess.run(["true"]).returncode == 0 and audit_status()[1] == 0,
                 "daemon role released")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    second = headless(audit_only_config, tmp_path / "second.log")
    try:
        wait_for(lambda: any(f"{KEY_PREFIX}{second.pid}:" in r for r in fluxtui_rules())
                 or second.poll() is not None, "second instance's rules")
        assert not any(f"{KEY_PREFIX}{first.pid}:" in r for r in fluxtui_rules())
        assert "removed" in (tmp_path / "second.log").read_text()
        second.send_signal(signal.SIGINT)
        assert second.wait(timeout=120) == 0
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    assert fluxtui_rules() == []
    # The first instance had turned audit on; the second turned it off again.
    assert audit_status() == initial_audit


AUDITD_CONF = """local_events = yes
write_logs = yes
log_file = {log}
log_group = root
log_format = RAW
flush = INCREMENTAL_ASYNC
freq = 1
max_log_file = 8
num_logs = 1
priority_boost = 0
name_format = NONE
max_log_file_action = IGNORE
space_left = 10
space_left_action = IGNORE
admin_space_left = 5
admin_space_left_action = IGNORE
disk_full_action = IGNORE
disk_error_action = IGNORE
use_libwrap = no
tcp_listen_queue = 5
tcp_max_per_addr = 1
tcp_client_max_idle = 0
transport = TCP
distribute_network = no
q_depth = 2000
overflow_action = IGNORE
max_restarts = 10
plugin_dir = {plugins}
end_of_event_timeout = 2
"""


@pytest.fixture
def auditd(initial_audit: tuple[int, int], tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An auditd of the test's own (temporary config, log and no plugins), started before
    fluxtui; it turns audit on, as a system's auditd does. Stopped, and audit's enabled flag
    put back, afterwards."""
    require(shutil.which("auditd") is not None, "auditd not installed")
    require(initial_audit[1] == 0, f"an audit daemon already runs (pid {initial_audit[1]})")
    log = tmp_path / "audit.log"
    (tmp_path / "plugins").mkdir()
    conf = tmp_path / "auditd.conf"
    conf.write_text(AUDITD_CONF.format(log=log, plugins=tmp_path / "plugins"))
    conf.chmod(0o600)
    daemon = subprocess.Popen(["auditd", "-n", "-s", "enable", "-c", str(tmp_path)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: audit_status()[1] == daemon.pid or daemon.poll() is not None,
                 "auditd registered")
        assert daemon.poll() is None
        yield daemon.pid, log
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        if initial_audit[0] == 0:  # the test's auditd turned audit on: off again
            subprocess.run(["auditctl", "-e", "0"], check=True, stdout=subprocess.DEVNULL)


def test_an_auditd_started_before_keeps_its_records_and_its_role(
        auditd: tuple[int, Path], binaries: dict[str, str]) -> None:
    daemon_pid, log = auditd
    collector = AuditCollector(allow_enable=False)  # auditd turned audit on: nothing to change
    collector.start()
    try:
        assert collector.mode == "multicast" and collector.daemon_pid == daemon_pid
        assert audit_status() == (1, daemon_pid)
        assert "its log grows" in collector.describe()
        proc = subprocess.run([binaries["memfd_exec"]], timeout=30)
        assert proc.returncode == 0
        events: list[KernelEvent] = []

        def memfd_exec_seen() -> bool:
            events.extend(collector.drain().events)
            return any(e.kind == "exec" and "anonymous file" in e.flags for e in events)

        wait_for(memfd_exec_seen, "the memfd exec read from the multicast group")
        exec_event = next(e for e in events if e.kind == "exec" and "anonymous file" in e.flags)
        pid = exec_event.key.pid
    finally:
        collector.close()
    assert audit_status() == (1, daemon_pid)  # auditd is still the daemon, audit still on
    assert fluxtui_rules() == []
    # auditd wrote the same syscall (fluxtui's key) to its own log.
    wait_for(lambda: f"pid={pid} " in log.read_text() and collector.key in log.read_text(),
             "auditd logged the record")
    lines = [line for line in log.read_text().splitlines()
             if f"pid={pid} " in line and "syscall=322" in line]
    assert lines and f'key="{collector.key}"' in lines[0]


def test_rules_deleted_or_audit_turned_off_behind_fluxtuis_back_is_said_and_undone(
        initial_audit: tuple[int, int]) -> None:
    """What malware with root would try first to blind the fallback."""
    collector = AuditCollector(allow_enable=True)
    collector.start()
    other = AuditSocket()
    try:
        for raw in other.list_rules():
            if rule_key(raw) == collector.key:
                other.delete_rule(raw)
        assert fluxtui_rules() == []
        for _ in range(RULE_CHECK_EVERY):
            collector.drain()
        assert len(fluxtui_rules()) == len(build_rules(collector.key, 1, arch_tables() or {}))
        assert "rules deleted by someone, put back 1×" in collector.describe()
        other.set_status(AUDIT_STATUS_ENABLED, enabled=0)
        collector.drain()
        assert "audit turned off by someone" in collector.describe()
        other.set_status(AUDIT_STATUS_ENABLED, enabled=1)
        collector.drain()
        assert "audit turned off" not in collector.describe()
    finally:
        other.close()
        collector.close()
    assert fluxtui_rules() == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_the_dashboard_removes_its_rules_on_sigterm_and_sighup(
        initial_audit: tuple[int, int], audit_only_config: Path, tmp_path: Path,
        sig: signal.Signals) -> None:
    """The Textual dashboard, in a real terminal (tmux), ended with SIGTERM (systemd, kill) or
    SIGHUP (its terminal went away)."""
    require(shutil.which("tmux") is not None, "tmux not installed")
    session = f"fluxtui-audit-{os.getpid()}"
    pid_file = tmp_path / "pid"
    script = tmp_path / "run.sh"
    script.write_text(f"#!/bin/sh\necho $$ > {pid_file}\nexec {sys.executable} -m fluxtui "
                      f"--config {audit_only_config} --log {tmp_path / 'log'}\n")
    script.chmod(0o700)
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "160", "-y", "40",
                    str(script)], check=True)
    try:
        wait_for(pid_file.exists, "dashboard started")
        pid = int(pid_file.read_text())
        wait_for(lambda: any(f"{KEY_PREFIX}{pid}:" in r for r in fluxtui_rules()),
                 "the dashboard's rules")
        os.kill(pid, sig)
        wait_for(lambda: not Path(f"/proc/{pid}").exists(), "the dashboard exited")
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], stderr=subprocess.DEVNULL)
    assert fluxtui_rules() == []
    assert audit_status() == initial_audit
