"""Resident memory (issue 13): the dashboard loads numpy and the anomaly model's modules only
once a model is in use (about 16 MB resident); without a model (or a recorder) the anomaly
component builds no feature window, and with one it holds one batch of windows at a time."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from fluxtui.bus import EventBus
from fluxtui.capabilities import anomaly as anomaly_component
from fluxtui.capabilities.anomaly import AnomalyComponent, AnomalyView
from fluxtui.config import AnomalyConfig, Config
from fluxtui.detection.anomaly.features import FeatureWindow
from fluxtui.detection.anomaly.modelfile import save_model
from fluxtui.events import ProcessKey
from tests.anomaly_support import recorded_model, table
from tests.test_anomaly_component import _tick, _view

REPO = Path(__file__).resolve().parents[1]
KEY = ProcessKey(4242, 1000)

PROBE = textwrap.dedent("""
    import sys
    from pathlib import Path
    import fluxtui.cli, fluxtui.headless, fluxtui.capabilities.assembly, fluxtui.tui.app
    from fluxtui.bus import EventBus
    from fluxtui.capabilities.anomaly import AnomalyComponent
    from fluxtui.collectors.syscall_table import SyscallTable
    from fluxtui.config import AnomalyConfig, Config
    before = "numpy" in sys.modules
    component = AnomalyComponent(Config(anomaly=AnomalyConfig(model_path=sys.argv[1])),
                                 table=SyscallTable.load())
    component.start(EventBus())
    status = component.status()
    print(before, "numpy" in sys.modules, (status.reason or status.detail).split(" (")[0])
""")


def _probe(model_path: Path) -> list[str]:
    done = subprocess.run([sys.executable, "-c", PROBE, str(model_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip().split(maxsplit=2)


def test_no_numpy_in_the_dashboard_until_a_model_loads(tmp_path: Path) -> None:
    # The dashboard's and the headless mode's modules, and a start that finds no model file
    assert _probe(tmp_path / "missing.model") == ["False", "False", "no model trained"]
    # A model refused before its arrays are read (not a model file): still no numpy
    (tmp_path / "bad.model").write_bytes(b"not a model\n")
    (tmp_path / "bad.model").chmod(0o600)
    assert _probe(tmp_path / "bad.model")[:2] == ["False", "False"]
    # A real model: loaded, with numpy
    save_model(recorded_model(), tmp_path / "anomaly.model")
    assert _probe(tmp_path / "anomaly.model")[:2] == ["False", "True"]


def test_without_a_model_or_a_recorder_no_window_is_built(tmp_path: Path,
                                                          monkeypatch: object) -> None:
    built: list[ProcessKey] = []
    real = anomaly_component.window_from_names

    def counting(key: ProcessKey, *args: object, **kwargs: object) -> object:
        built.append(key)
        return real(key, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(anomaly_component, "window_from_names", counting)  # type: ignore[attr-defined]
    config = Config(anomaly=AnomalyConfig(model_path=str(tmp_path / "missing.model")))
    bus = EventBus()
    idle = AnomalyComponent(config, table=table())
    idle.start(bus)
    tick = _tick(bus, _view({KEY: {"read": 3, "write": 1}}, {}))
    idle.on_tick(tick)
    assert built == []
    assert tick.anomaly_model.startswith("no model trained")
    view = tick.views["anomaly"]
    assert isinstance(view, AnomalyView) and view.verdicts == {}
    # With a model the same tick is scored (one window for the process)
    scoring = AnomalyComponent(config, model=recorded_model(), table=table())
    scoring.start(bus)
    tick = _tick(bus, _view({KEY: {"read": 3, "write": 1}}, {}))
    scoring.on_tick(tick)
    assert built == [KEY] and KEY in tick.anomalies


class _CountingModel:
    """The recorded model, noting how many feature windows are alive whenever it scores."""

    def __init__(self) -> None:
        self.model = recorded_model()
        self.alive: list[int] = []
        self.scored = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.model, name)

    def score(self, windows: list[FeatureWindow]) -> list[object]:
        self.alive.append(sum(isinstance(o, FeatureWindow) for o in gc.get_objects()))
        self.scored += len(windows)
        return self.model.score(windows)  # type: ignore[return-value]


def test_a_tick_of_many_processes_holds_one_batch_of_windows_at_a_time() -> None:
    from fluxtui.detection.anomaly.models import SCORE_ROWS

    processes = 3 * SCORE_ROWS + 10
    counts = {ProcessKey(10_000 + i, i): {"read": 3 + i % 5, "write": 1} for i in range(processes)}
    bus = EventBus()
    model = _CountingModel()
    component = AnomalyComponent(Config(), model=model, table=table())  # type: ignore[arg-type]
    component.start(bus)
    gc.collect()
    before = sum(isinstance(o, FeatureWindow) for o in gc.get_objects())
    tick = _tick(bus, _view(counts, {}))
    component.on_tick(tick)
    assert model.scored == processes and set(tick.anomalies) == set(counts)
    assert max(model.alive) - before <= SCORE_ROWS


def test_the_model_scores_without_blas_threads(tmp_path: Path) -> None:
    """numpy's OpenBLAS would start a spinning thread per core; the dashboard's numpy has none
    (one thread: the interpreter's), unless the user set OPENBLAS_NUM_THREADS."""
    save_model(recorded_model(), tmp_path / "anomaly.model")
    probe = textwrap.dedent("""
        import sys
        from pathlib import Path
        import fluxtui.capabilities.assembly
        from fluxtui.detection.anomaly.modelfile import load_model
        model = load_model(Path(sys.argv[1]))
        threads = next(line.split()[1] for line in Path("/proc/self/status").read_text()
                       .splitlines() if line.startswith("Threads:"))
        print("numpy" in sys.modules, threads)
    """)
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    done = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "anomaly.model")],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=True,
                          env=env)
    assert done.stdout.split() == ["True", "1"]
