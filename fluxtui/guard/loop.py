"""The responder's thread: an epoll loop with an inbox and named timers.

Two levels of epoll: the thread waits on the hot fd (fanotify) and on one "control" epoll
(wake-ups, inotify, process events, pidfds), so the common wait watches two fds. Other threads
only `post` a message (appended under a lock, then an eventfd wakes the loop); the handlers all
run on this one thread, so what they own needs no lock.

An exception in a handler is reported and the loop goes on (the kernel waits on it); after
MAX_CONSECUTIVE_ERRORS in a row it gives up, and `on_exit` runs whatever happens.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import select
import threading
from collections.abc import Callable
from typing import Any

from fluxtui.guard.timers import Timers

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 100
PRIORITY_BOOST = -4  # nice value of the thread (auditd's default boost is 4)


class EventLoop:
    def __init__(self, name: str, clock: Callable[[], float],
                 on_error: Callable[[str], None], on_exit: Callable[[], None]) -> None:
        self.name = name
        self.clock = clock
        self.timers = Timers()
        self._on_error = on_error
        self._on_exit = on_exit
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._inbox: list[tuple[Any, ...]] = []
        self._inbox_lock = threading.Lock()
        self._control = select.epoll()
        self._main = select.epoll()
        self._hot: dict[int, Callable[[], None]] = {}
        self._handlers: dict[int, Callable[[], None]] = {}
        self._messages: dict[str, Callable[..., None]] = {"stop": self._stop}
        self._timer_handlers: dict[str, Callable[[float], None]] = {}
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.add_fd(self._wake_fd, self._on_inbox)

    # --- set-up (before start, or on the loop thread) ------------------------------------------

    def add_hot_fd(self, fd: int, handler: Callable[[], None]) -> None:
        self._hot[fd] = handler
        self._main.register(fd, select.EPOLLIN)

    def add_fd(self, fd: int, handler: Callable[[], None]) -> None:
        self._handlers[fd] = handler
        self._control.register(fd, select.EPOLLIN)

    def remove_fd(self, fd: int) -> None:
        if self._handlers.pop(fd, None) is not None:
            with contextlib.suppress(OSError):
                self._control.unregister(fd)

    def on_message(self, kind: str, handler: Callable[..., None]) -> None:
        self._messages[kind] = handler

    def on_timer(self, name: str, handler: Callable[[float], None]) -> None:
        self._timer_handlers[name] = handler

    # --- any thread ---------------------------------------------------------------------------

    def post(self, message: tuple[Any, ...]) -> None:
        with self._inbox_lock:
            self._inbox.append(message)
        with contextlib.suppress(OSError):
            os.eventfd_write(self._wake_fd, 1)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.post(("stop",))
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        os.close(self._wake_fd)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        # Like auditd's priority_boost: waiting opens are blocked processes, answer them first.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRIORITY_BOOST)
        self._main.register(self._control.fileno(), select.EPOLLIN)
        failures = 0
        try:
            while not self._stopping:
                try:
                    timeout = self._run_timers()
                    for fd, _ in self._main.poll(timeout):
                        hot = self._hot.get(fd)
                        if hot is not None:
                            hot()
                        else:
                            self._on_control()
                    failures = 0
                except Exception as exc:  # keep answering: the kernel waits on us
                    log.exception("%s: error in its loop", self.name)
                    failures += 1
                    self._on_error(f"responder error: {type(exc).__name__}: {exc}")
                    if failures >= MAX_CONSECUTIVE_ERRORS:
                        self._on_error(f"responder stopped after repeated errors: {exc}")
                        break
        finally:
            try:
                self._on_exit()
            finally:
                self._control.close()
                self._main.close()

    def _run_timers(self) -> float:
        now = self.clock()
        for name in self.timers.due(now):
            self._timer_handlers[name](now)
        return math.ceil(self.timers.timeout(now) * 1000) / 1000.0

    def _on_control(self) -> None:
        for fd, _mask in self._control.poll(0):
            handler = self._handlers.get(fd)
            if handler is not None:
                handler()

    def _on_inbox(self) -> None:
        with contextlib.suppress(BlockingIOError):
            os.eventfd_read(self._wake_fd)
        with self._inbox_lock:
            messages, self._inbox = self._inbox, []
        for message in messages:
            self._messages[message[0]](*message[1:])

    def _stop(self) -> None:
        self._stopping = True
