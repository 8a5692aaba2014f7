"""Issue 10: a credential read by a program the policy does not allow (unverified, unlisted or
flagged) is a finding (ATT&CK T1552) that raises the reader's risk, in monitor mode as in
enforce mode. On the old code monitor mode recorded python reading ~/.aws/credentials exactly
like ssh-keygen reading its key ("verification: not checked") and nothing reached the risk."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fluxtui.bus import EventBus
from fluxtui.capabilities.guard import GuardComponent
from fluxtui.component import TickContext
from fluxtui.events import Alert
from fluxtui.guard.events import GuardDecision
from tests.fakes import metrics
from tests.guard_support import (
    SSH_KEYGEN,
    Home,
    guard_config,
    make_home,
    require_guard_kernel,
    run,
    running_guard,
    wait_for,
)

pytestmark = pytest.mark.kernel


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    return make_home(tmp_path)


def _tick(guard: GuardComponent) -> TickContext:
    tick = TickContext(0.0, 1.0, metrics(), {}, EventBus())
    guard.on_tick(tick)
    return tick


def _decided(guard: GuardComponent, events: list[object], count: int) -> list[GuardDecision]:
    def enough() -> list[GuardDecision] | None:
        guard.flush()
        found = [e for e in events if isinstance(e, GuardDecision)]
        return found if len(found) >= count else None

    return wait_for(enough)


@pytest.mark.parametrize("mode", ["monitor", "enforce"])
def test_an_unlisted_reader_is_a_finding_and_a_listed_verified_one_is_not(
        home: Home, tmp_path: Path, mode: str) -> None:
    reader = f"open({str(home.aws)!r}).read()"
    with running_guard(guard_config(home, tmp_path / "state", mode=mode)) as (guard, events):
        python = run([sys.executable, "-c", reader])
        assert (python.returncode == 0) == (mode == "monitor"), python.stderr
        keygen = run([SSH_KEYGEN, "-y", "-f", str(home.key)])
        assert keygen.returncode == 0, keygen.stderr
        decisions = _decided(guard, events, 2)
        tick = _tick(guard)
        again = _tick(guard)  # each finding is taken once
    by_exe = {d.requester.exe: d for d in decisions}
    assert by_exe[SSH_KEYGEN].vetted and by_exe[SSH_KEYGEN].requester.verified
    python_decision = next(d for d in decisions if d.group == "aws")
    assert not python_decision.vetted
    assert python_decision.requester.verification != "not checked"  # verified in monitor too
    assert [(r.key, r.points) for r in tick.risk_inputs] == [
        (python_decision.requester.key, 50.0)]
    assert "aws credential" in tick.risk_inputs[0].reason
    [alert] = [a for a in tick.alerts if isinstance(a, Alert)]
    assert alert.rule_id == "guard.unverified_credential_read"
    assert alert.technique_id == "T1552.001" and alert.key == python_decision.requester.key
    assert again.risk_inputs == [] and again.alerts == []


def test_one_alert_per_process_and_group_but_risk_for_each_read(home: Home,
                                                                tmp_path: Path) -> None:
    script = (f"for _ in range(2):\n    try: open({str(home.aws)!r}).read()\n"
              "    except OSError: pass")
    with running_guard(guard_config(home, tmp_path / "state", mode="monitor",
                                    unverified_reader_risk=25.0)) as (guard, events):
        assert run([sys.executable, "-c", script]).returncode == 0
        _decided(guard, events, 1)
        tick = _tick(guard)
    assert len(tick.alerts) == 1
    assert sum(r.points for r in tick.risk_inputs) >= 25.0
