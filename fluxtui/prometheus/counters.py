"""Counts of what arrives on the engine's bus, for the exporter.

`BusCounters.on_event` is an `EventBus` subscriber: it runs on the publishing thread (a collector,
the guard's recorder, the engine's tick), so it only adds to a few integers under a lock that a
scrape holds just long enough to copy them; it never blocks on I/O.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric

from fluxtui.capabilities.syscall_risk import SyscallView
from fluxtui.events import Alert, Snapshot
from fluxtui.guard.events import GuardDecision
from fluxtui.prometheus.families import label

# Alerts are counted by (rule, severity, technique). Rules and techniques come from fluxtui's own
# rule set, so the number of series is small; this cap keeps it bounded whatever a rule reports:
# past it, new combinations are counted under rule="other".
MAX_ALERT_SERIES = 500


class BusCounters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._alerts: dict[tuple[str, str, str], int] = {}
        self._decisions: dict[tuple[str, str], int] = {}
        self._syscalls = 0
        self._latest: Snapshot | None = None

    @property
    def latest(self) -> Snapshot | None:
        return self._latest

    def on_event(self, event: object) -> None:
        if isinstance(event, Snapshot):
            view = event.views.get("syscalls")
            with self._lock:
                self._latest = event
                if isinstance(view, SyscallView):
                    self._syscalls += view.total_syscalls
        elif isinstance(event, Alert):
            key = (event.rule_id, event.severity.value, event.technique_id)
            with self._lock:
                if key not in self._alerts and len(self._alerts) >= MAX_ALERT_SERIES:
                    key = ("other", event.severity.value, "")
                self._alerts[key] = self._alerts.get(key, 0) + 1
        elif isinstance(event, GuardDecision):
            pair = (event.outcome, event.decided_by)
            with self._lock:
                self._decisions[pair] = self._decisions.get(pair, 0) + event.count

    def families(self) -> Iterator[Metric]:
        with self._lock:
            alerts = dict(self._alerts)
            decisions = dict(self._decisions)
            syscalls = self._syscalls
        alert_family = CounterMetricFamily(
            "fluxtui_alerts", "Alerts raised since fluxtui started, by rule, severity and "
            "MITRE ATT&CK technique", labels=["rule", "severity", "technique"])
        for (rule, severity, technique), n in sorted(alerts.items()):
            alert_family.add_metric([label(rule), severity, label(technique)], n)
        yield alert_family
        decision_family = CounterMetricFamily(
            "fluxtui_guard_decisions", "Opens of protected files answered by the credential "
            "guard, by outcome (allowed, denied) and by what decided (rule, catalogue, "
            "keypress, timeout, headless, monitor, process-exit, error)",
            labels=["outcome", "decided_by"])
        for (outcome, decided_by), n in sorted(decisions.items()):
            decision_family.add_metric([outcome, label(decided_by)], n)
        yield decision_family
        yield CounterMetricFamily("fluxtui_syscalls", "System calls counted by the BPF "
                                  "collector since fluxtui started", value=syscalls)
