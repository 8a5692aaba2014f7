"""Real windows for the anomaly model's tests.

tests/fixtures/anomaly/windows.json.gz holds the 1,912 windows that `fluxtui train --duration 60`
recorded on this machine (the feature store exported as JSON: recorded time, process, executable,
calls by syscall number, bigrams, findings), and the names of the syscall numbers they use from
bcc's table. Nothing in it is generated.
"""

from __future__ import annotations

import functools
import gzip
import json
from pathlib import Path

from fluxtui.collectors.syscall_table import SyscallTable
from fluxtui.detection.anomaly import AnomalyModel, FeatureWindow
from fluxtui.events import ProcessKey

FIXTURE = Path(__file__).parent / "fixtures" / "anomaly" / "windows.json.gz"


@functools.cache
def _document() -> dict:
    return json.loads(gzip.decompress(FIXTURE.read_bytes()))


def recorded_windows() -> list[FeatureWindow]:
    return [FeatureWindow(ProcessKey(r["pid"], r["st"]), r["exe"], r["s"],
                          {int(nr): int(n) for nr, n in r["c"]},
                          {(int(a), int(b)): int(n) for a, b, n in r["b"]},
                          {str(k): int(v) for k, v in r["e"].items()}, r["t"])
            for r in _document()["windows"]]


def names() -> dict[int, str]:
    return {int(nr): name for nr, name in _document()["names"].items()}


def table() -> SyscallTable:
    return SyscallTable(names())


@functools.cache
def recorded_model() -> AnomalyModel:
    """The model fitted on the recorded windows (the same every time: the fit is seeded)."""
    from fluxtui.detection.anomaly.fit import fit_models  # scikit-learn: only when fitting

    return fit_models(recorded_windows(), names=names(), host="test")
