"""The responder's cache of processes that asked for a credential file.

One entry per pid, holding fds on that very process's /proc directory and status file: a reused
pid can never reach an old entry's identity (the fds of a dead process only return errors).

Keeping the cache exact:
- with the kernel's process events (exec, exit, uid change, ptrace attach), the responder drains
  them before answering a batch of opens, and an entry is trusted as it is;
- without them, each use re-reads /proc/PID/status and the executable's identity.

Owned by the responder thread; not thread-safe.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os

from fluxtui.collectors.proc_events import (
    PROC_EVENT_EXEC,
    PROC_EVENT_EXIT,
    PROC_EVENT_PTRACE,
    PROC_EVENT_UID,
    ProcEvents,
    ProcEventsLost,
)
from fluxtui.config import DEFAULT_SYSTEM_DIRS
from fluxtui.guard.access_rules import Verdict
from fluxtui.guard.identity import (
    ExeKey,
    ExeVerification,
    ProcessGone,
    ProcessInfo,
    process_flags,
    read_process,
    status_field,
    tracer_pid,
)
from fluxtui.guard.namespaces import foreign_namespace

MAX_CACHED_PROCESSES = 256  # two fds each


class CachedProcess:
    """`flags` are the process's injection flags now; `verdicts` caches the policy's answer per
    group, valid while the rules version and the flags (the same tuple) are unchanged.
    `waiting` counts its requests still waiting for an answer: the fds stay open until then
    even when the entry has left the cache."""

    __slots__ = ("cached", "dir_fd", "flags", "info", "ns_flags", "status", "status_fd",
                 "traced_by", "verdicts", "verification", "waiting")

    def __init__(self, dir_fd: int, status_fd: int, info: ProcessInfo, status: bytes,
                 traced_by: int) -> None:
        self.dir_fd = dir_fd
        self.status_fd = status_fd
        self.info = info
        self.traced_by = traced_by  # from any thread's TracerPid or a ptrace event; sticky
        self.verdicts: dict[str, tuple[int, tuple[str, ...], Verdict]] = {}
        self.flags: tuple[str, ...] = ()
        self.status = b""
        self.verification: ExeVerification | None = None
        self.waiting = 0
        self.cached = True
        # A process in another namespace is checked on a worker (see guard.namespaces): None
        # until then, and no verdict is given before it.
        self.ns_flags: tuple[str, ...] | None = None if info.foreign_ns else ()
        self.refresh(status)

    def refresh(self, status: bytes) -> None:
        """A fresh /proc/PID/status: recompute the flags (keeping the same tuple object when
        they did not change, so cached verdicts stay valid)."""
        self.status = status
        flags = process_flags(self.info, status) + (self.ns_flags or ())
        if self.traced_by and not any(f.startswith("traced") for f in flags):
            flags = (*flags, f"traced by pid {self.traced_by}")
        if flags != self.flags:
            self.flags = flags

    def namespaces_checked(self, flags: tuple[str, ...]) -> None:
        self.ns_flags = flags
        self.refresh(self.status)
        self.verdicts.clear()

    def traced(self, tracer: int) -> None:
        self.traced_by = tracer
        self.refresh(self.status)
        self.verdicts.clear()

    def release(self) -> None:
        """One of its requests was answered."""
        self.waiting -= 1
        if not self.cached and self.waiting <= 0:
            self.close()

    def close(self) -> None:
        for fd in (self.status_fd, self.dir_fd):
            with contextlib.suppress(OSError):
                os.close(fd)
        self.status_fd = self.dir_fd = -1


def task_tracer(dir_fd: int) -> int:
    """The tracer of any thread of the process (the leader's TracerPid alone misses a tracer
    attached to another thread)."""
    try:
        tids = os.listdir(f"/proc/self/fd/{dir_fd}/task")
    except OSError:
        return 0
    for tid in tids:
        try:
            with open(f"/proc/self/fd/{dir_fd}/task/{tid}/status", "rb") as f:
                tracer = tracer_pid(f.read())
        except OSError:
            continue
        if tracer:
            return tracer
    return 0


class ProcessCache:
    def __init__(self, proc_events: ProcEvents | None,
                 system_dirs: tuple[str, ...] = DEFAULT_SYSTEM_DIRS) -> None:
        self.proc_events = proc_events
        self.system_dirs = system_dirs
        self.entries: dict[int, CachedProcess] = {}

    def get(self, pid: int) -> CachedProcess | None:
        """The cached entry when it can be trusted without reading /proc (process events on),
        else None: call `lookup`."""
        return self.entries.get(pid) if self.proc_events is not None else None

    def lookup(self, pid: int) -> CachedProcess | None:
        """The entry for `pid`, read from /proc when new or changed; None when it is gone."""
        proc = self.entries.get(pid)
        if proc is not None:
            if self.proc_events is not None:
                return proc
            try:
                status = os.pread(proc.status_fd, 4096, 0)
                same = bool(status) and ExeKey.of(os.stat("exe", dir_fd=proc.dir_fd)) == \
                    proc.info.exe_key and status_field(status, b"Uid") == \
                    status_field(proc.status, b"Uid")
            except OSError:
                same = False
            if same:
                proc.refresh(status)
                return proc
            self.forget(pid)
        return self._read(pid)

    def _read(self, pid: int) -> CachedProcess | None:
        try:
            dir_fd = os.open(f"/proc/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            status_fd = os.open("status", os.O_RDONLY | os.O_CLOEXEC, dir_fd=dir_fd)
        except OSError:
            os.close(dir_fd)
            return None
        try:
            status = os.pread(status_fd, 4096, 0)
            info = read_process(pid, dir_fd, status, self.system_dirs)
            info = dataclasses.replace(info, foreign_ns=foreign_namespace(dir_fd))
            traced_by = task_tracer(dir_fd)
        except (ProcessGone, ProcessLookupError):
            os.close(status_fd)
            os.close(dir_fd)
            return None
        except BaseException:
            os.close(status_fd)
            os.close(dir_fd)
            raise
        if len(self.entries) >= MAX_CACHED_PROCESSES:
            self._evict_idle()
        proc = CachedProcess(dir_fd, status_fd, info, status, traced_by)
        self.entries[pid] = proc
        return proc

    def forget(self, pid: int) -> None:
        proc = self.entries.pop(pid, None)
        if proc is not None:
            proc.cached = False
            if proc.waiting <= 0:
                proc.close()

    def _evict_idle(self) -> None:
        idle = [pid for pid, proc in self.entries.items() if proc.waiting <= 0]
        for pid in idle[: MAX_CACHED_PROCESSES // 4]:  # the oldest first
            self.forget(pid)

    def apply_events(self) -> None:
        """Drain the kernel's process events and drop or update the entries they concern."""
        assert self.proc_events is not None
        try:
            events = self.proc_events.drain()
        except ProcEventsLost:
            # Changes were missed: nothing cached about any process can be trusted.
            for pid in list(self.entries):
                self.forget(pid)
            return
        for event in events:
            proc = self.entries.get(event.tgid)
            if proc is None:
                continue
            if event.what == PROC_EVENT_PTRACE:
                if event.arg2:  # attach (detach reports 0): the flag stays for this process
                    proc.traced(event.arg2)
            elif event.what in (PROC_EVENT_EXEC, PROC_EVENT_UID) or (
                    event.what == PROC_EVENT_EXIT and event.pid == event.tgid):
                self.forget(event.tgid)

    def sweep(self) -> None:
        """Drop entries of processes that are gone (their status fd no longer reads)."""
        for pid, proc in list(self.entries.items()):
            try:
                alive = bool(os.pread(proc.status_fd, 64, 0))
            except OSError:
                alive = False
            if not alive:
                self.forget(pid)

    def close(self) -> None:
        for pid in list(self.entries):
            self.forget(pid)
