"""Switching to monitor mode never answers a waiting request by itself (issue 8): requests that
came in under enforce mode keep waiting for their answer or their deadline; new opens follow
the new mode. On the old code the switch allowed every waiting request at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxtui.guard.events import GuardDecision
from tests.guard_support import (
    Home,
    guard_config,
    make_home,
    require_guard_kernel,
    run,
    running_guard,
    started,
    wait_for,
)

pytestmark = pytest.mark.kernel
EPERM = b"Operation not permitted"


@pytest.fixture
def home(tmp_path: Path) -> Home:
    require_guard_kernel()
    return make_home(tmp_path)


def test_switch_to_monitor_keeps_the_waiting_request_waiting(home: Home,
                                                             tmp_path: Path) -> None:
    with running_guard(guard_config(home, tmp_path / "state"), interactive=True) as (guard,
                                                                                       events):
        with started(["cat", str(home.key)]) as waiting:
            prompt = wait_for(guard.pending)[0]
            guard.set_mode("monitor")
            # A new open follows the new mode: once it went through, the switch was applied.
            later = run(["cat", str(home.aws)])
            assert later.returncode == 0, later.stderr
            assert waiting.poll() is None  # still blocked in open()
            assert [p.id for p in guard.pending()] == [prompt.id]
            guard.answer(prompt.id, "deny", "once", "test: deny once")
            out, err = waiting.communicate(timeout=10)
        assert waiting.returncode == 1 and out == b"" and EPERM in err
        guard.flush()

        def mine() -> list[GuardDecision]:
            # Published by the guard's thread once the answer is written: the kernel may
            # release `cat` first.
            return [e for e in events if isinstance(e, GuardDecision)
                    and e.requester.pid == waiting.pid]
        wait_for(mine)
    assert [(d.allowed, d.decided_by, d.mode) for d in mine()] == [
        (False, "keypress", "enforce")]


def test_switch_to_monitor_leaves_the_deadline_in_charge(home: Home, tmp_path: Path) -> None:
    config = guard_config(home, tmp_path / "state", decision_timeout=1.0, default_action="deny")
    with running_guard(config, interactive=True) as (guard, _):
        with started(["cat", str(home.key)]) as waiting:
            wait_for(guard.pending)
            guard.set_mode("monitor")
            out, _err = waiting.communicate(timeout=15)
        assert waiting.returncode == 1 and out == b""
