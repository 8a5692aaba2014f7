"""The input thread sleeps until there is input (issue 13): Textual's own woke ten times a
second to check for a lone Escape whether or not anything was typed."""

from __future__ import annotations

import os
import pty
import queue
import resource
import selectors
import signal
import threading
import tty
from typing import Any

import pytest
from textual import events
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver

from fluxtui.tui.app import FluxApp
from fluxtui.tui.quiet_driver import QuietLinuxDriver, parser_timeout
from tests.fakes import StaticEngine, snapshot


def test_the_app_runs_on_the_quiet_driver_unless_told_otherwise(monkeypatch) -> None:
    app = FluxApp(StaticEngine(snapshot()), privileged=True, start_engine=False)
    assert app.get_driver_class() is QuietLinuxDriver
    assert issubclass(QuietLinuxDriver, LinuxDriver)
    monkeypatch.setattr("textual.constants.DRIVER",
                        "textual.drivers.headless_driver:HeadlessDriver")
    assert app.get_driver_class().__name__ == "HeadlessDriver"


def test_the_parser_timeout_is_none_unless_a_sequence_is_pending() -> None:
    parser = XTermParser()
    assert parser_timeout(parser, 0.0) is None
    list(parser.feed("\x1b"))  # a lone Escape: a key only once its delay is over
    deadline = parser._timeout_time
    assert deadline is not None
    left = parser_timeout(parser, deadline - 0.05)
    assert left is not None and abs(left - 0.05) < 1e-9
    assert parser_timeout(parser, deadline + 1.0) == 0.0


async def test_the_input_thread_blocks_without_timeout_delivers_keys_and_stops(
        monkeypatch) -> None:
    timeouts: list[float | None] = []
    blocked = threading.Event()
    original = selectors.PollSelector.select

    def select(self: Any, timeout: float | None = None) -> Any:
        timeouts.append(timeout)
        blocked.set()
        return original(self, timeout)

    monkeypatch.setattr(selectors.PollSelector, "select", select)
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTSTP, signal.SIGCONT)}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2048 <= hard or hard == resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (2048, hard))
    held: list[int] = []
    got: queue.Queue[object] = queue.Queue()
    driver = QuietLinuxDriver(object())  # type: ignore[arg-type]
    thread = None
    try:
        # As the process collector does: descriptors past 1023, which select() cannot watch.
        held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
        master, slave = pty.openpty()
        held += [master, slave]
        tty.setraw(slave)  # keys as typed, not lines
        driver.fileno = slave
        driver.process_message = got.put  # type: ignore[method-assign]
        thread = threading.Thread(target=driver.run_input_thread, daemon=True)
        thread.start()
        assert blocked.wait(10)
        assert timeouts == [None]  # nothing typed: it waits for input, no polling
        os.write(master, b"a")
        key = got.get(timeout=10)
        assert isinstance(key, events.Key) and key.key == "a"
        os.write(master, b"\x1b")  # a lone Escape: the thread wakes at its deadline
        key = got.get(timeout=10)
        assert isinstance(key, events.Key) and key.key == "escape"
        pending = [t for t in timeouts[1:] if t is not None]
        assert pending and all(0.0 <= t <= 1.0 for t in pending), timeouts
        driver.exit_event.set()  # wakes the blocked thread through the pipe
        thread.join(10)
        assert not thread.is_alive()
    finally:
        driver.exit_event.set()
        if thread is not None:
            thread.join(10)
        driver.close()
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


@pytest.mark.parametrize("terminal", ["pty", "pipe"])
async def test_the_input_thread_ends_when_the_terminal_hangs_up(terminal: str) -> None:
    """tmux kill-session, a closed ssh connection: the terminal reads EIO (a pseudo-terminal
    whose other side closed) or end-of-file for ever. The thread must end quietly, not spin on
    it (and keep the process alive after the app ended)."""
    reads = 0
    driver = QuietLinuxDriver(object())  # type: ignore[arg-type]
    if terminal == "pty":
        other, ours = pty.openpty()
        tty.setraw(ours)
    else:
        ours, other = os.pipe()
    thread = None
    failures: list[BaseException] = []
    try:
        driver.fileno = ours
        original = os.read

        def counting_read(fd: int, n: int) -> bytes:
            nonlocal reads
            if fd == ours:
                reads += 1
            return original(fd, n)

        def run() -> None:
            try:
                driver.run_input_thread()
            except BaseException as exc:  # what Textual would turn into a panic
                failures.append(exc)

        driver.process_message = lambda _message: None  # type: ignore[method-assign]
        thread = threading.Thread(target=run, daemon=True)
        os.read = counting_read  # type: ignore[assignment]
        try:
            thread.start()
            os.close(other)  # the terminal goes away
            other = -1
            thread.join(30)
        finally:
            os.read = original  # type: ignore[assignment]
        assert not thread.is_alive() and failures == []
        assert not driver.exit_event.is_set()  # it ended by itself, nobody asked it to
        assert reads <= 2
    finally:
        driver.exit_event.set()
        if thread is not None:
            thread.join(10)
        driver.close()
        for fd in (other, ours):
            if fd >= 0:
                os.close(fd)
