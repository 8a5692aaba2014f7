"""Detections over observed connections: port scan, connection burst, beaconing, new listener.

Input is only what was observed (a connect attempt the tracer saw, a connection or listener a
sock_diag query or close notification reported); every address, port and time in an alert is one
of those observations. Memory is bounded: windows drop old observations, and per-destination
beacon state is kept for at most MAX_BEACON_KEYS destinations.

Port-scan and burst windows are kept per process and also per user (uid) and per parent process:
a scan that starts one short-lived process per port (`for p in ...; do nc -z host $p; done`,
`xargs -P`) spreads over many processes but not over many users or parents. Such an alert names
the user or parent and the latest process; its risk goes to that latest process.

MITRE ATT&CK mapping:
- Port scan -> T1046 Network Service Discovery: enumerating the services listening on hosts.
- Connection burst -> T1499 Endpoint Denial of Service: judged on what a flood or a sweep
  looks like, not on a count of connections: many distinct destinations (address and port) in a
  short window, or many failed attempts (refused, timed out: the tracer reports outcomes). 500
  sequential requests to one local service succeed and have one destination: not a burst.
- Beaconing -> T1071 Application Layer Protocol: regular check-ins to one destination are how C2
  implants poll their server over ordinary protocols. T1573 (Encrypted Channel) would need the
  payload, and T1029 (Scheduled Transfer) is about exfiltration volume on a schedule; only the
  timing is observed here.
- New listener -> T1571 Non-Standard Port: ATT&CK has no technique for "opened a listening port";
  a listener that appears on a running host is an inbound channel on a port the program chose
  (bind shells, implants), which is what T1571 describes. T1205 (Traffic Signaling) would need
  the knock sequence, which is not observed.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from itertools import pairwise
from statistics import fmean, pstdev
from typing import NamedTuple

from fluxtui.config import NetworkConfig
from fluxtui.events import Alert, ProcessKey, Severity

MAX_BEACON_KEYS = 20000
MAX_WINDOW_EVENTS = 200000  # per process: a flood beyond this is already alerted


class Observation(NamedTuple):
    """One outgoing connection (attempt) of one process."""

    timestamp: float
    key: ProcessKey | None  # None: the process exited before it could be identified
    pid: int | None
    name: str
    proto: str
    remote_ip: str  # canonical: IPv4-mapped IPv6 folded to IPv4
    remote_port: int
    uid: int | None = None  # None: not known (close notification)
    ppid: int | None = None  # parent pid, None when not known
    exe: str = ""  # the executable, read in the kernel at connect time ("" when not known)
    parent_start_ticks: int | None = None  # with ppid, the parent's identity (kernel-read)


class Detection(NamedTuple):
    alert: Alert
    points: float  # risk added to alert.key's process


_Item = tuple[float, str, int, tuple[object, ...]]


@dataclass
class _Window:
    """Outgoing connections of one process, user or parent: within portscan_window (with
    distinct-port, distinct-host and per-process counts) and, separately, within burst_window.
    Items are (time, remote ip, remote port, process id)."""

    scan: deque[_Item] = field(default_factory=deque)
    ports_of_host: dict[str, Counter[int]] = field(default_factory=dict)
    hosts_on_port: dict[int, Counter[str]] = field(default_factory=dict)
    burst: deque[_Item] = field(default_factory=deque)
    destinations: Counter[tuple[str, int]] = field(default_factory=Counter)  # in burst window
    failures: deque[float] = field(default_factory=deque)  # failed attempts in burst window
    quiet_until: dict[str, float] = field(default_factory=dict)  # rule -> no re-alert before
    processes: Counter[tuple[object, ...]] = field(default_factory=Counter)  # in the scan window

    def empty(self, now: float) -> bool:
        return not self.scan and not self.burst and not self.failures and all(
            t <= now for t in self.quiet_until.values())


@dataclass
class _Beacon:
    times: deque[float]
    alerted: bool = False


def _owner_id(obs: Observation) -> tuple[object, ...]:
    return (obs.key,) if obs.key is not None else ("pid", obs.pid, obs.name)


def _windows_of(obs: Observation) -> list[tuple[object, ...]]:
    """The windows an observation counts in: its process first, then its user and parent."""
    ids = [_owner_id(obs)]
    if obs.uid is not None:
        ids.append(("uid", obs.uid))
    if obs.ppid is not None and obs.ppid > 0:
        ids.append(("ppid", obs.ppid))
    return ids


class NetRules:
    def __init__(self, config: NetworkConfig) -> None:
        self.config = config
        self._windows: dict[tuple[object, ...], _Window] = {}
        self._beacons: OrderedDict[tuple[object, ...], _Beacon] = OrderedDict()
        self._listeners_alerted: set[tuple[object, ...]] = set()

    # --- connections -------------------------------------------------------------------------

    def connection(self, obs: Observation) -> list[Detection]:
        owner = _owner_id(obs)
        item = (obs.timestamp, obs.remote_ip, obs.remote_port, owner)
        windows: list[tuple[tuple[object, ...], _Window]] = []
        for ident in _windows_of(obs):
            window = self._windows.setdefault(ident, _Window())
            self._expire(window, obs.timestamp)
            if len(window.scan) < MAX_WINDOW_EVENTS:
                window.scan.append(item)
                window.ports_of_host.setdefault(obs.remote_ip, Counter())[obs.remote_port] += 1
                window.hosts_on_port.setdefault(obs.remote_port, Counter())[obs.remote_ip] += 1
                window.processes[owner] += 1
            if len(window.burst) < MAX_WINDOW_EVENTS:
                window.burst.append(item)
                window.destinations[(obs.remote_ip, obs.remote_port)] += 1
            windows.append((ident, window))
        return self._check(obs, windows, (("port_scan", self._port_scan),
                                          ("burst", self._burst))) + self._beacon(obs, owner)

    @staticmethod
    def _burst_windows(windows: list[tuple[tuple[object, ...], _Window]]
                       ) -> list[tuple[tuple[object, ...], _Window]]:
        """A burst is judged per process and per parent, not per user: everything one user
        (root above all) runs on a busy host adds up to many destinations without being one
        actor's flood."""
        return [(ident, w) for ident, w in windows if ident[0] != "uid"]

    def outcome(self, obs: Observation, established: bool) -> list[Detection]:
        """The outcome of an attempt already passed to `connection` (`obs` is that attempt,
        its timestamp the outcome's): failures count toward a burst."""
        if established:
            return []
        windows = []
        for ident in _windows_of(obs):
            window = self._windows.get(ident)
            if window is None:
                continue
            self._expire(window, obs.timestamp)
            if len(window.failures) < MAX_WINDOW_EVENTS:
                window.failures.append(obs.timestamp)
            windows.append((ident, window))
        return self._check(obs, windows, (("burst", self._burst),))

    def _check(self, obs: Observation, windows: list[tuple[tuple[object, ...], _Window]],
               checks: tuple[tuple[str, object], ...]) -> list[Detection]:
        found: list[Detection] = []
        for rule, check in checks:
            candidates = self._burst_windows(windows) if rule == "burst" else windows
            # One alert per rule and observation, from the narrowest window that fires; the
            # wider ones are quiet for as long, so the same activity is not reported twice. A
            # narrower window that has not fired stays free: when a user's window fires first
            # (other processes of the user added to it), the process still gets its own alert.
            for index, (ident, window) in enumerate(candidates):
                detection = check(obs, ident, window)  # type: ignore[operator]
                if detection is not None:
                    until = window.quiet_until[rule]
                    for _, other in candidates[index:]:
                        other.quiet_until[rule] = max(other.quiet_until.get(rule, 0.0), until)
                    found.append(detection)
                    break
        return found

    def _expire(self, window: _Window, now: float) -> None:
        horizon = now - self.config.portscan_window
        while window.scan and window.scan[0][0] < horizon:
            _, ip, port, owner = window.scan.popleft()
            _decrement(window.ports_of_host, ip, port)
            _decrement(window.hosts_on_port, port, ip)
            window.processes[owner] -= 1
            if window.processes[owner] <= 0:
                del window.processes[owner]
        horizon = now - self.config.burst_window
        while window.burst and window.burst[0][0] < horizon:
            _, ip, port, _ = window.burst.popleft()
            window.destinations[(ip, port)] -= 1
            if window.destinations[(ip, port)] <= 0:
                del window.destinations[(ip, port)]
        while window.failures and window.failures[0] < horizon:
            window.failures.popleft()

    @staticmethod
    def _quiet(window: _Window, rule: str, now: float) -> bool:
        return window.quiet_until.get(rule, 0.0) > now

    def _port_scan(self, obs: Observation, ident: tuple[object, ...], window: _Window
                   ) -> Detection | None:
        cfg = self.config
        if self._quiet(window, "port_scan", obs.timestamp):
            return None
        ports = window.ports_of_host.get(obs.remote_ip, Counter())
        hosts = window.hosts_on_port.get(obs.remote_port, Counter())
        if len(ports) >= cfg.portscan_ports:
            target = f"{len(ports)} ports of {obs.remote_ip}"
            extra = {"destination": {"ip": obs.remote_ip}, "ports": sorted(ports)[:1000],
                     "distinct_ports": len(ports)}
        elif len(hosts) >= cfg.portscan_hosts:
            target = f"{len(hosts)} hosts on port {obs.remote_port}"
            extra = {"destination": {"port": obs.remote_port}, "hosts": sorted(hosts)[:1000],
                     "distinct_hosts": len(hosts)}
        else:
            return None
        window.quiet_until["port_scan"] = obs.timestamp + cfg.portscan_window
        by, extra = _aggregate(obs, ident, len(window.processes), extra)
        reason = f"{obs.proto} connections to {target} within {cfg.portscan_window:g} s{by}"
        return self._detection(obs, "network.port_scan", "Port scan", Severity.HIGH, "T1046",
                               "Network Service Discovery", reason, extra, cfg.portscan_risk,
                               ident)

    def _burst(self, obs: Observation, ident: tuple[object, ...], window: _Window
               ) -> Detection | None:
        cfg = self.config
        distinct, failed = len(window.destinations), len(window.failures)
        if (distinct < cfg.burst_destinations and failed < cfg.burst_failures) or self._quiet(
                window, "burst", obs.timestamp):
            return None
        window.quiet_until["burst"] = obs.timestamp + cfg.burst_window
        top = [{"ip": ip, "port": port, "count": n} for (ip, port), n in
               window.destinations.most_common(5)]
        processes = len({owner for *_, owner in window.burst})
        by, extra = _aggregate(obs, ident, processes,
                               {"connections": len(window.burst), "distinct_destinations":
                                distinct, "failed": failed, "top_destinations": top})
        what = (f"{distinct} distinct destinations" if distinct >= cfg.burst_destinations
                else f"{failed} failed connection attempts")
        reason = f"{what} within {cfg.burst_window:g} s{by}"
        return self._detection(obs, "network.connection_burst", "Connection burst",
                               Severity.MEDIUM, "T1499", "Endpoint Denial of Service", reason,
                               extra, cfg.burst_risk, ident)

    def _beacon(self, obs: Observation, owner: tuple[object, ...]) -> list[Detection]:
        cfg = self.config
        key = (*owner, obs.proto, obs.remote_ip, obs.remote_port)
        beacon = self._beacons.get(key)
        if beacon is None:
            beacon = _Beacon(deque(maxlen=cfg.beacon_min_hits))
            self._beacons[key] = beacon
            while len(self._beacons) > MAX_BEACON_KEYS:
                self._beacons.popitem(last=False)
        else:
            self._beacons.move_to_end(key)
        if beacon.times and obs.timestamp - beacon.times[-1] > cfg.beacon_max_interval:
            beacon.times.clear()
            beacon.alerted = False
        beacon.times.append(obs.timestamp)
        if len(beacon.times) < cfg.beacon_min_hits:
            return []
        times = list(beacon.times)
        intervals = [b - a for a, b in pairwise(times)]
        mean = fmean(intervals)
        regular = (cfg.beacon_min_interval <= mean <= cfg.beacon_max_interval
                   and pstdev(intervals) <= cfg.beacon_max_jitter * mean)
        if not regular:
            beacon.alerted = False  # the pattern broke: a new regular run may alert again
            return []
        if beacon.alerted:
            return []
        beacon.alerted = True
        jitter = pstdev(intervals) / mean
        reason = (f"{len(times)} {obs.proto} connections to {obs.remote_ip}:{obs.remote_port} "
                  f"every {mean:.1f} s (jitter {jitter:.0%})")
        extra = {"destination": {"ip": obs.remote_ip, "port": obs.remote_port},
                 "interval_s": round(mean, 3), "jitter": round(jitter, 4),
                 "hits": len(times)}
        return [self._detection(obs, "network.beaconing", "Beaconing", Severity.MEDIUM, "T1071",
                                "Application Layer Protocol", reason, extra, cfg.beacon_risk)]

    # --- listeners ---------------------------------------------------------------------------

    def listener(self, timestamp: float, key: ProcessKey | None, pid: int | None, name: str,
                 proto: str, local_ip: str, local_port: int) -> list[Detection]:
        """A listening socket that appeared after start-up."""
        if not self.config.listener_alerts:
            return []
        owner = (key,) if key is not None else ("pid", pid, name)
        ident = (*owner, proto, local_port)
        if ident in self._listeners_alerted:  # one alert per process and port (v4 + v6 binds)
            return []
        self._listeners_alerted.add(ident)
        if len(self._listeners_alerted) > MAX_BEACON_KEYS:
            self._listeners_alerted.clear()
        loopback = local_ip.startswith("127.") or local_ip in ("::1", "::ffff:127.0.0.1")
        where = "loopback only" if loopback else "reachable from other hosts"
        reason = f"new {proto} listener on {local_ip}:{local_port} ({where})"
        obs = Observation(timestamp, key, pid, name, proto, local_ip, local_port)
        return [self._detection(obs, "network.new_listener", "New listening port",
                                Severity.LOW if loopback else Severity.MEDIUM, "T1571",
                                "Non-Standard Port", reason,
                                {"source": {"ip": local_ip, "port": local_port},
                                 "transport": proto}, self.config.listener_risk)]

    # --- housekeeping ------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Drop state of processes with nothing left in their window (call once per tick)."""
        for owner in list(self._windows):
            window = self._windows[owner]
            self._expire(window, now)
            if window.empty(now):
                del self._windows[owner]

    def _detection(self, obs: Observation, rule_id: str, title: str, severity: Severity,
                   technique_id: str, technique_name: str, reason: str,
                   extra: dict[str, object], points: float,
                   ident: tuple[object, ...] = ()) -> Detection:
        """The alert is on the process, except for a parent's window when the parent is known
        (from the kernel): the parent started the processes that did it, and takes the risk."""
        extra = {**extra, "pid": obs.pid}
        if obs.key is not None:
            extra["start_ticks"] = obs.key.start_ticks
        if obs.exe:
            extra["executable"] = obs.exe
        key, name = obs.key, obs.name
        if ident[:1] == ("ppid",) and obs.ppid and obs.parent_start_ticks is not None:
            key = ProcessKey(obs.ppid, obs.parent_start_ticks)
            name = f"parent (pid {obs.ppid}) of {obs.name}"
        alert = Alert(timestamp=obs.timestamp, rule_id=rule_id, title=title, severity=severity,
                      technique_id=technique_id, technique_name=technique_name, key=key,
                      process_name=name, reasons=(reason,), extra=extra)
        return Detection(alert, points)


def _aggregate(obs: Observation, ident: tuple[object, ...], processes: int,
               extra: dict[str, object]) -> tuple[str, dict[str, object]]:
    """For a user or parent window: the reason's suffix naming it and the latest process, and
    the alert's extra fields."""
    if ident[0] not in ("uid", "ppid"):
        return "", extra
    kind, value = ident
    who = f"user {value}" if kind == "uid" else f"children of pid {value}"
    latest = f"{obs.name} (pid {obs.pid})" if obs.pid is not None else obs.name
    suffix = f" by {who} from {processes} processes, latest {latest}"
    return suffix, {**extra, "aggregated_by": "user" if kind == "uid" else "parent",
                    "uid" if kind == "uid" else "parent_pid": value, "processes": processes}


def _decrement(table: dict, outer: object, inner: object) -> None:
    counter = table.get(outer)
    if counter is None:
        return
    counter[inner] -= 1
    if counter[inner] <= 0:
        del counter[inner]
    if not counter:
        del table[outer]
