"""The responder's clocks are injected: its timers and prompt pauses run on any time source,
never on the uptime (issue 14)."""

from __future__ import annotations

import math

from fluxtui.guard.timers import Timers


def test_timers_fire_in_order_on_an_injected_clock() -> None:
    timers = Timers()
    assert timers.due(0.0) == [] and timers.timeout(0.0) == 60.0
    timers.set("deadline", 10.0)
    timers.set("record", 5.0)
    timers.set_once("record", 7.0)  # already set: the first deadline stays
    assert timers.at("record") == 5.0
    assert timers.timeout(1.0) == 4.0
    assert timers.due(4.9) == []
    assert timers.due(5.0) == ["record"]
    assert timers.due(9.0) == [] and timers.timeout(9.0) == 1.0
    timers.cancel("deadline")
    assert timers.due(1e9) == []  # a cancelled timer never fires
    assert timers.at("deadline") is None and timers.timeout(1e9) == 60.0


def test_a_deadline_in_the_past_is_due_at_once() -> None:
    timers = Timers()
    timers.set("housekeeping", -math.inf)
    assert timers.timeout(0.0) == 0.0
    assert timers.due(0.0) == ["housekeeping"]
