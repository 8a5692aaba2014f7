"""pidfds of the processes that have requests waiting, so that their exit (killed while blocked
in open) is noticed at once and their requests and prompt go away."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from fluxtui.guard.loop import EventLoop


class PidWatch:
    def __init__(self, loop: EventLoop, on_exit: Callable[[int], None]) -> None:
        self._loop = loop
        self._on_exit = on_exit
        self._fds: dict[int, int] = {}  # pid -> pidfd

    def watch(self, pid: int) -> None:
        if pid in self._fds:
            return
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return  # already gone: its requests were cancelled by the kernel and expire
        self._fds[pid] = fd
        self._loop.add_fd(fd, lambda: self._on_exit(pid))

    def unwatch(self, pid: int) -> None:
        fd = self._fds.pop(pid, None)
        if fd is not None:
            self._loop.remove_fd(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in self._fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds.clear()
