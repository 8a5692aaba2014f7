"""The guard's recorder sleeps while there is nothing to record, and wakes for the first answer
of a batch (it used to wake five times a second for nothing)."""

from __future__ import annotations

import threading

from fluxtui.guard.recorder import IDLE_WAIT_S, Recorder


class SpyEvent(threading.Event):
    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []
        self.results: list[bool] = []
        self.waiting = threading.Event()

    def wait(self, timeout: float | None = None) -> bool:
        self.timeouts.append(timeout)
        self.waiting.set()
        woken = super().wait(timeout)
        self.results.append(woken)
        return woken


def test_an_idle_recorder_waits_for_work_and_the_first_answer_wakes_it() -> None:
    recorder = Recorder(publish=lambda _event: None, store=None, journal=None, interval=0.01)
    work = recorder._work = SpyEvent()
    flushed = threading.Event()
    recorder._flush = flushed.set  # type: ignore[method-assign]
    recorder.start()
    try:
        assert work.waiting.wait(30)
        assert work.timeouts[0] == IDLE_WAIT_S and IDLE_WAIT_S >= 1
        assert not flushed.is_set()
        recorder.record_folds([], "enforce")  # not urgent: joins a batch
        assert flushed.wait(30)
        assert work.results[0] is True  # woken by the answer, not by the safety timeout
    finally:
        recorder.stop()
