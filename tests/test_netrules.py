"""The network detections on sequences of observations (what the tracer or the sock_diag listing
would report), with thresholds from NetworkConfig."""

from __future__ import annotations

from dataclasses import replace

from fluxtui.config import NetworkConfig
from fluxtui.detection.network_rules import NetRules, Observation
from fluxtui.events import ProcessKey, Severity

SCANNER = ProcessKey(4242, 777)
OTHER = ProcessKey(5000, 888)
CFG = NetworkConfig(portscan_ports=20, portscan_hosts=10, portscan_window=10.0,
                    burst_destinations=50, burst_failures=40, burst_window=5.0, beacon_min_hits=5,
                    beacon_max_jitter=0.1, beacon_min_interval=2.0, beacon_max_interval=600.0)


def obs(t: float, ip: str, port: int, key: ProcessKey = SCANNER) -> Observation:
    return Observation(t, key, key.pid, "scanner", "tcp", ip, port)


def rule_ids(found: list) -> list[str]:
    return [d.alert.rule_id for d in found]


def test_port_scan_fires_at_the_threshold_for_the_scanning_process() -> None:
    rules = NetRules(CFG)
    found = []
    for i in range(19):
        found += rules.connection(obs(100 + i * 0.01, "127.0.0.1", 1000 + i))
    assert found == []
    found = rules.connection(obs(100.5, "127.0.0.1", 2000))
    assert rule_ids(found) == ["network.port_scan"]
    alert = found[0].alert
    assert alert.key == SCANNER and alert.technique_id == "T1046"
    assert alert.severity is Severity.HIGH
    assert alert.extra["distinct_ports"] == 20 and 2000 in alert.extra["ports"]
    assert found[0].points == CFG.portscan_risk
    # Once per window, not once per further port.
    assert rules.connection(obs(100.6, "127.0.0.1", 2001)) == []


def test_port_scan_counts_only_the_window() -> None:
    rules = NetRules(CFG)
    for i in range(15):
        assert rules.connection(obs(i * 1.0, "10.0.0.1", 100 + i)) == []
    # 15 s later the first ports are out of the 10 s window: 10 in window + 5 new = 15 < 20.
    for i in range(5):
        assert rules.connection(obs(15.0 + i * 0.1, "10.0.0.1", 500 + i)) == []


def test_host_sweep_on_one_port() -> None:
    rules = NetRules(CFG)
    found = []
    for i in range(10):
        found += rules.connection(obs(1.0 + i * 0.1, f"10.0.0.{i + 1}", 22))
    assert rule_ids(found) == ["network.port_scan"]
    assert found[0].alert.extra["distinct_hosts"] == 10


def test_processes_are_counted_separately() -> None:
    rules = NetRules(CFG)
    found = []
    for i in range(19):
        found += rules.connection(obs(1.0, "127.0.0.1", 1000 + i, key=SCANNER))
        found += rules.connection(obs(1.0, "127.0.0.1", 3000 + i, key=OTHER))
    assert found == []


def test_connection_burst_is_many_distinct_destinations() -> None:
    rules = NetRules(replace(CFG, portscan_hosts=1000, portscan_ports=1000))
    found = []
    for i in range(49):
        found += rules.connection(obs(1.0 + i * 0.05, f"192.0.2.{i + 1}", 443 + i))
    assert found == []
    found = rules.connection(obs(4.0, "192.0.2.200", 443))
    assert rule_ids(found) == ["network.connection_burst"]
    assert found[0].alert.extra["distinct_destinations"] == 50
    assert "50 distinct destinations" in found[0].alert.reasons[0]
    assert found[0].alert.technique_id == "T1499"

    rules.connection(obs(1.0, "10.0.0.1", 1))
    rules.expire(100.0)
    assert rules._windows == {}


def test_many_successful_requests_to_one_local_service_are_not_a_burst() -> None:
    """500 sequential curls to a local server: one destination, every attempt established."""
    rules = NetRules(CFG)
    found = []
    for i in range(500):
        key = ProcessKey(20000 + i, 9000 + i)
        attempt = Observation(1.0 + i * 0.005, key, key.pid, "curl", "tcp", "127.0.0.1", 8000,
                              uid=1000, ppid=777)
        found += rules.connection(attempt)
        found += rules.outcome(attempt, established=True)
    assert found == []


def test_failed_attempts_make_a_burst() -> None:
    rules = NetRules(CFG)
    found = []
    for i in range(40):
        attempt = obs(1.0 + i * 0.01, "127.0.0.1", 8000)
        found += rules.connection(attempt)
        found += rules.outcome(attempt, established=False)
    assert rule_ids(found) == ["network.connection_burst"]
    assert "40 failed connection attempts" in found[0].alert.reasons[0]
    assert found[0].alert.extra["failed"] == 40


def test_scan_spread_over_one_process_per_port_alerts_by_user_and_parent() -> None:
    # `for p in ...; do nc -z host $p; done` / `xargs -P`: 1,000 processes, one port each.
    rules = NetRules(CFG)
    found = []
    for i in range(1000):
        key = ProcessKey(10000 + i, 5000 + i)
        found += rules.connection(Observation(100.0 + i * 0.001, key, key.pid, "nc", "tcp",
                                              "127.0.0.1", 1 + i, uid=1000, ppid=777))
    # 1,000 ports of one host: a scan; the burst sees 50 distinct destinations too.
    assert sorted(rule_ids(found)) == ["network.connection_burst", "network.port_scan"]
    scan = next(d for d in found if d.alert.rule_id == "network.port_scan")
    # Fires at the threshold (the 20th port), names the user and the latest process.
    assert scan.alert.key == ProcessKey(10019, 5019)
    assert scan.alert.extra["aggregated_by"] == "user" and scan.alert.extra["uid"] == 1000
    assert scan.alert.extra["processes"] == 20 and scan.alert.extra["distinct_ports"] == 20
    assert "user 1000" in scan.alert.reasons[0] and "nc (pid 10019)" in scan.alert.reasons[0]
    burst = next(d for d in found if d.alert.rule_id == "network.connection_burst")
    assert burst.alert.extra["connections"] == 50 and burst.alert.extra["processes"] == 50


def test_scan_spread_over_processes_alerts_by_parent_when_uid_unknown() -> None:
    rules = NetRules(CFG)
    found = []
    for i in range(1000):
        key = ProcessKey(20000 + i, 1 + i)
        found += rules.connection(Observation(5.0 + i * 0.001, key, key.pid, "nc", "tcp",
                                              "10.0.0.1", 1 + i, ppid=4321))
    assert rule_ids(found).count("network.port_scan") == 1
    scan = next(d for d in found if d.alert.rule_id == "network.port_scan")
    assert scan.alert.extra["aggregated_by"] == "parent"
    assert scan.alert.extra["parent_pid"] == 4321
    assert scan.alert.key == ProcessKey(20019, 20)  # the parent's identity is not known here


def test_a_parents_window_blames_the_parent_when_the_kernel_named_it() -> None:
    """`for p in ...; do nc -z host $p; done`: the loop's shell started every scanner; with
    its start time (read in the kernel at connect) the alert and its risk go to it."""
    rules = NetRules(CFG)
    found = []
    for i in range(40):
        key = ProcessKey(21000 + i, 1 + i)
        found += rules.connection(Observation(5.0 + i * 0.001, key, key.pid, "nc", "tcp",
                                              "10.0.0.1", 1 + i, ppid=4321,
                                              parent_start_ticks=99))
    scan = next(d for d in found if d.alert.rule_id == "network.port_scan")
    assert scan.alert.key == ProcessKey(4321, 99)
    assert scan.alert.process_name == "parent (pid 4321) of nc"


def test_one_process_scan_alerts_once_not_again_per_user() -> None:
    rules = NetRules(CFG)
    found = []
    for i in range(40):
        found += rules.connection(Observation(1.0 + i * 0.01, SCANNER, SCANNER.pid, "scanner",
                                              "tcp", "127.0.0.1", 1000 + i, uid=0, ppid=1))
    assert rule_ids(found) == ["network.port_scan"]
    assert "aggregated_by" not in found[0].alert.extra


def test_a_process_still_gets_its_own_scan_alert_after_its_users_window_fired() -> None:
    """Other processes of the same user filled the user's window: it fires first, and the
    scanner's own window still alerts when it reaches the threshold itself."""
    rules = NetRules(CFG)
    for i in range(15):
        key = ProcessKey(30000 + i, 1)
        rules.connection(Observation(1.0, key, key.pid, "curl", "tcp", "127.0.0.1", 5000 + i,
                                     uid=0))
    found = []
    for i in range(20):
        found += rules.connection(Observation(2.0 + i * 0.01, SCANNER, SCANNER.pid, "scanner",
                                              "tcp", "127.0.0.1", 1000 + i, uid=0))
    scans = [d.alert for d in found if d.alert.rule_id == "network.port_scan"]
    assert [a.extra.get("aggregated_by") for a in scans] == ["user", None]
    assert scans[1].key == SCANNER and scans[1].extra["distinct_ports"] == 20


def test_a_users_many_unrelated_processes_are_not_a_burst() -> None:
    """Everything root runs on a busy host: many destinations, many processes and parents."""
    rules = NetRules(replace(CFG, portscan_hosts=1000, portscan_ports=1000))
    found = []
    for i in range(300):
        key = ProcessKey(40000 + i, i)
        found += rules.connection(Observation(1.0 + i * 0.01, key, key.pid, "job", "tcp",
                                              f"10.0.{i // 200}.{i % 200}", 1000 + i, uid=0,
                                              ppid=50000 + i))
    assert found == []
