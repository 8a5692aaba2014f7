"""Textual's Linux driver, with an input thread that sleeps until there is input (issue 13).

Textual's input thread wakes ten times a second to ask its key parser whether a lone Escape has
waited long enough to be a key of its own, whether or not anything was typed: on an idle
dashboard that polling was the `textual-input` thread's whole cost. Here the thread waits
without a timeout unless the parser holds such a pending sequence (then exactly until its
deadline), and stopping wakes it through a pipe.
"""

from __future__ import annotations

import contextlib
import errno
import os
import selectors
from codecs import getincrementaldecoder
from threading import Event
from typing import Any

from textual._time import get_time
from textual._xterm_parser import XTermParser
from textual.drivers.linux_driver import LinuxDriver


class _WakingEvent(Event):
    """An Event that also writes to a pipe when set, so that a thread blocked in `select` on
    that pipe sees it at once."""

    def __init__(self, wake_fd: int) -> None:
        super().__init__()
        self._wake_fd = wake_fd

    def set(self) -> None:
        super().set()
        if self._wake_fd >= 0:
            with contextlib.suppress(OSError):  # a full pipe already says "wake up"
                os.write(self._wake_fd, b"x")

    def detach(self) -> None:
        """The pipe is about to be closed: its number may be reused by another file."""
        self._wake_fd = -1


class _InputEnded(Exception):
    """The terminal is gone (end-of-file, or EIO from a pseudo-terminal): the input thread
    ends."""


def parser_timeout(parser: XTermParser, now: float) -> float | None:
    """How long the input thread may wait for input: until the parser's pending sequence times
    out (a lone Escape), or for ever when nothing is pending."""
    deadline = getattr(parser, "_timeout_time", None)
    return None if deadline is None else max(0.0, deadline - now)


class QuietLinuxDriver(LinuxDriver):
    def __init__(self, app: Any, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._wake_read, self._wake_write = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self.exit_event = _WakingEvent(self._wake_write)

    def run_input_thread(self) -> None:
        """Textual's loop (linux_driver.py), with the select timeout from `parser_timeout`."""
        # poll, not Textual's select: the process collector holds thousands of descriptors,
        # and select() cannot watch one numbered past 1023 (the wake pipe may well be)
        selector = selectors.PollSelector()
        fileno, wake = self.fileno, self._wake_read
        selector.register(fileno, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        parser = XTermParser(self._debug)
        decode = getincrementaldecoder("utf-8")().decode

        def process(ready: list[tuple[selectors.SelectorKey, int]], final: bool = False) -> None:
            for key, mask in ready:
                if key.fd == wake:
                    with contextlib.suppress(BlockingIOError):
                        os.read(wake, 512)
                elif mask & selectors.EVENT_READ:
                    try:
                        data = decode(os.read(fileno, 1024 * 4), final=final)
                    except OSError as exc:  # EIO: a pseudo-terminal whose other side closed
                        if exc.errno != errno.EIO:
                            raise
                        data = ""
                    if not data:
                        # The terminal hung up (or stdin is a pipe at its end): no input can
                        # come. Reading on would spin (it stays readable), and would keep the
                        # process alive after the app ended (this thread is not a daemon).
                        raise _InputEnded
                    for event in parser.feed(data):
                        self.process_message(event)
            for event in parser.tick():
                self.process_message(event)

        try:
            while not self.exit_event.is_set():
                process(selector.select(parser_timeout(parser, get_time())))
            selector.unregister(fileno)
            process(selector.select(0.1), final=True)
        except _InputEnded:
            pass
        finally:
            selector.close()

    def close(self) -> None:
        super().close()
        if isinstance(self.exit_event, _WakingEvent):
            self.exit_event.detach()
        for fd in (self._wake_read, self._wake_write):
            if fd >= 0:
                os.close(fd)
        self._wake_read = self._wake_write = -1
