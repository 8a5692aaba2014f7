"""`fluxtui evaluate` for real: the engine with every collector, two scenarios, as root."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from fluxtui.config import Config
from fluxtui.evaluation.command import run_evaluate
from fluxtui.evaluation.runner import AnomalyPlugin, build_engine
from tests.kernel import require_bcc
from tests.test_evaluation_sandbox import _leftovers, require_cgroup2


@pytest.mark.kernel
def test_evaluate_attributes_alerts_and_guard_decisions_to_the_scenarios_processes(
        tmp_path: Path) -> None:
    require_bcc()
    require_cgroup2()
    out, err = io.StringIO(), io.StringIO()
    target = tmp_path / "evaluation.json"
    rc = run_evaluate(Config(), ["module-load-python", "cred-read-python",
                                 "ssh-keygen-own-key"], str(target), training_runs=0,
                      out=out, err=err)
    assert rc == 0, err.getvalue()
    doc = json.loads(target.read_text())
    by_name = {s["name"]: s for s in doc["scenarios"]}
    assert set(by_name) == {"module-load-python", "cred-read-python", "ssh-keygen-own-key"}
    assert all(s["status"] == "ok" and s["clean"] for s in by_name.values()), by_name
    # The module-load attempt: the kernel's event, attributed to the actor's python by cgroup.
    module = by_name["module-load-python"]
    assert any(a["rule_id"] == "syscalls.module_load" and a["role"] == "actor"
               and a["technique"] == "T1547.006" for a in module["alerts"]), module["alerts"]
    assert any(p["role"] == "actor" and p["name"].startswith("python3")
               for p in module["processes"])
    # The guard's answers, to the scenario's own readers only, on the decoy home.
    (read,) = by_name["cred-read-python"]["guard"]
    assert " /usr/bin/python3" in read and "/home/.aws/credentials" in read
    (own,) = by_name["ssh-keygen-own-key"]["guard"]
    assert own.startswith("allowed /usr/bin/ssh-keygen")
    # Measured, not assumed: the model is unavailable until the anomaly module exists.
    table = out.getvalue()
    assert "module-load-python" in table and "detection rate" in table
    why = doc["summary"]["detection"]["model"]["unavailable"]
    if AnomalyPlugin().available:
        assert why == "not trained (--training-runs 0)"
    else:
        assert why.startswith("no anomaly module")
    assert _leftovers(os.getpid()) == []


def test_without_root_evaluate_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    err = io.StringIO()
    assert run_evaluate(Config(), None, None, err=err) == 2
    assert "needs root" in err.getvalue()


def test_an_unknown_scenario_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    err = io.StringIO()
    assert run_evaluate(Config(), ["no-such-scenario"], None, err=err) == 2
    assert "unknown scenario 'no-such-scenario'" in err.getvalue()


class _Recording:
    """Stands in for the anomaly component's class to check where the runner puts it."""

    name = "anomaly"

    def __init__(self, config: Config, model: object = None, recorder: object = None) -> None:
        self.model, self.recorder = model, recorder


def test_the_model_component_goes_before_the_risk_scorer_and_gets_the_model() -> None:
    plugin = AnomalyPlugin()
    plugin.reason, plugin.component_class = "", _Recording
    model = object()
    engine = build_engine(Config(), plugin, model=model)
    names = [c.name for c in engine.components]
    assert names.index("anomaly") == names.index("risk") - 1
    (mine,) = [c for c in engine.components if isinstance(c, _Recording)]
    assert mine.model is model
