"""Resident memory (issue 13): the records made once per process and tick (tens of thousands a
tick in a storm of short-lived processes) have slots, no per-instance __dict__: 30-70 bytes less
each on CPython 3.11 (bench/memory_sites.py shows their counts in a running engine)."""

from __future__ import annotations

import dataclasses

import pytest

from fluxtui.capabilities.syscall_risk import _Life
from fluxtui.collectors.kernel_event import KernelEvent
from fluxtui.detection.anomaly.features import FeatureWindow
from fluxtui.detection.anomaly.models import AnomalyVerdict
from fluxtui.detection.risk import RiskScore, _ProcessState
from fluxtui.events import AnomalyInput, ProcessExit, ProcessKey, ProcessLifetime, ProcessRow

KEY = ProcessKey(4242, 1000)
LIFETIME = ProcessLifetime(KEY, "sleep", "/usr/bin/sleep", ("600",), 0, None, 1.0, 2.0,
                           {"read": 1}, 0, (), True)
RECORDS = [
    KernelEvent("exec", 1.0, KEY, 4242, 0, 0, "sleep", exe="/usr/bin/sleep"),
    LIFETIME,
    ProcessExit(LIFETIME, 10.0, (), (), 0.0, ""),
    AnomalyInput(KEY, 10.0, ()),
    ProcessRow(KEY, 1, "root", "sleep", "/usr/bin/sleep", ("sleep", "600"), None, 0, 1, "S"),
    RiskScore(10.0, (), 10.0, 0.0, 0.0, ""),
    _ProcessState(1.0),
    _Life(),
    FeatureWindow(KEY, "/usr/bin/sleep", 1.0, {0: 1}),
    AnomalyVerdict(KEY, 10.0, ()),
]


@pytest.mark.parametrize("record", RECORDS, ids=lambda r: type(r).__name__)
def test_per_process_records_have_no_instance_dict(record: object) -> None:
    assert dataclasses.is_dataclass(record)
    assert not hasattr(record, "__dict__")
    # still a dataclass as before: replace() and equality work
    assert dataclasses.replace(record) == record  # type: ignore[type-var]
