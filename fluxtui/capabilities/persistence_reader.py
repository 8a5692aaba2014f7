"""The persistence watch's reader: two fanotify notification groups read on their own thread.

One group marks the directories of the catalogue (persistence_places.py) and turns each change
into a `Change` (who, what, lines added and removed against the content last seen); the other
marks whole file systems for FAN_RENAME, for the names of ransomware-like renames. A burst of
changes in one place is counted, summarised and the place compared again afterwards; a queue
overflow is counted as a drop and followed by a rescan. The tick (persistence.py) takes what was
read with `take()`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import select
import stat
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fluxtui.capabilities.persistence_places import (
    Plan,
    dir_waits,
    expand,
    login_homes,
    make_plan,
)
from fluxtui.capabilities.persistence_writers import WriterIdentifier
from fluxtui.collectors.change_watch import (
    FAN_CREATE,
    FAN_DELETE_SELF,
    FAN_MOVE_SELF,
    FAN_MOVED_TO,
    FAN_ONDIR,
    FAN_RENAME,
    ChangeEvent,
    ChangeGroup,
    DirName,
    describe_mask,
)
from fluxtui.collectors.fanotify import FanotifyError
from fluxtui.collectors.file_handles import handle_of_fd, open_by_handle
from fluxtui.config import PersistenceConfig
from fluxtui.detection.persistence_rules import Change, Content, Writer, diff, read_content
from fluxtui.guard.loop import PRIORITY_BOOST
from fluxtui.untrusted_text import visible

log = logging.getLogger(__name__)
IDLE_WAIT_S = 5.0

QUEUE_LIMIT = 10000  # changes waiting for the tick; past it they are counted as dropped

Rename = tuple[int, str, str, float]  # (pid, old path, new path, when)


@dataclass
class Burst:
    start: float
    place: Any
    count: int = 0
    summarised: int = 0
    names: list[str] = field(default_factory=list)
    writers: dict[int, None] = field(default_factory=dict)


@dataclass(frozen=True)
class Taken:
    """What the reader produced since the last tick."""

    changes: list[Change]
    renames: list[Rename]
    bursts: list[tuple[str, Burst]]  # (place path, burst) of bursts that ended


class ChangeReader:
    def __init__(self, cfg: PersistenceConfig, identifier: WriterIdentifier,
                 homes: list[str] | None, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.identifier = identifier
        self._homes = homes
        self._clock = clock
        self.notes: list[str] = []
        self._changes: ChangeGroup | None = None
        self._renames: ChangeGroup | None = None
        self._plan = Plan()
        self._marked: set[str] = set()
        self._handles: dict[tuple[int, bytes], str] = {}
        self._retired: set[tuple[int, bytes]] = set()  # directories moved away or deleted
        self._mounts: dict[tuple[int, int], int] = {}
        self._content: OrderedDict[str, Content | None] = OrderedDict()
        self._content_bytes = 0
        self._lock = threading.Lock()
        self._queue: deque[Change] = deque()
        self._rename_queue: deque[Rename] = deque()
        self._bursts: dict[str, Burst] = {}  # reader thread only
        self._summaries: deque[tuple[str, Burst]] = deque()
        self._drops: dict[str, int] = {}
        self._stop = threading.Event()
        self._stop_wake = -1  # an eventfd close writes: the reader's wait ends at once
        self._thread: threading.Thread | None = None
        self.changes_seen = 0

    # --- lifecycle ---------------------------------------------------------------------------

    def open(self) -> str:
        """Open the groups, mark the catalogue, read what is there now and start the thread.
        Returns why the watch cannot run, or "" when it runs."""
        try:
            self._changes = ChangeGroup()
        except FanotifyError as exc:
            return (f"fanotify notification group: {exc.strerror or exc} "
                    "(needs root and FAN_REPORT_DFID_NAME, Linux 5.9+)")
        if not self._changes.pidfds:
            self.notes.append("no pidfds (Linux < 5.15): writers identified by pid only")
        self._replan()
        self._seed()
        if self.cfg.ransomware.enabled:
            self._start_renames()
        self._stop_wake = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._thread = threading.Thread(target=self._run, name="fluxtui-persistence",
                                        daemon=True)
        self._thread.start()
        return ""

    def _start_renames(self) -> None:
        try:
            group = ChangeGroup(pidfd=False)
        except FanotifyError as exc:
            self.notes.append(f"rename names unavailable: {exc.strerror or exc}")
            return
        marked = 0
        for path in self.cfg.ransomware.filesystems:
            fsid = _fsid(path)
            if fsid is None or fsid in self._mounts:
                continue
            try:
                group.mark_filesystem(path, FAN_RENAME)
                self._mounts[fsid] = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                marked += 1
            except (FanotifyError, OSError) as exc:
                self.notes.append(f"renames on {visible(path)} not named: "
                                   f"{exc.strerror or exc}")
        if marked:
            self._renames = group
        else:
            group.close()

    def close(self) -> None:
        self._stop.set()
        if self._stop_wake >= 0:
            os.eventfd_write(self._stop_wake, 1)
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._stop_wake >= 0 and (self._thread is None or not self._thread.is_alive()):
            os.close(self._stop_wake)
            self._stop_wake = -1
        for group in (self._changes, self._renames):
            if group is not None:
                group.close()
        for fd in self._mounts.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._mounts.clear()

    @property
    def names_renames(self) -> bool:
        """Whether renames are named (the FAN_RENAME group runs)."""
        return self._renames is not None

    @property
    def directories(self) -> int:
        return len(self._plan.rules)

    @property
    def waiting(self) -> int:
        """Directories of the catalogue waited for (not created yet)."""
        return len(self._plan.pending)

    def drops(self) -> dict[str, int]:
        with self._lock:
            return dict(self._drops)

    def take(self) -> Taken:
        with self._lock:
            taken = Taken(list(self._queue), list(self._rename_queue), list(self._summaries))
            self._queue.clear()
            self._rename_queue.clear()
            self._summaries.clear()
        return taken

    # --- the plan ----------------------------------------------------------------------------

    def homes(self) -> list[str]:
        return list(self._homes) if self._homes is not None else (
            list(self.cfg.homes) or login_homes())

    def _replan(self) -> list[str]:
        """Mark what the catalogue needs now; returns the directories newly marked."""
        assert self._changes is not None
        plan = make_plan(expand(self.cfg.places, self.homes()))
        added = []
        for directory in sorted(plan.directories() - self._marked):
            try:
                self._changes.mark_dir(directory)
                fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
                try:
                    self._handles[handle_of_fd(fd).key] = directory
                finally:
                    os.close(fd)
            except (FanotifyError, OSError) as exc:
                self.notes.append(f"{visible(directory)} not watched: {exc.strerror or exc}")
                continue
            self._marked.add(directory)
            added.append(directory)
        self._plan = plan
        return added

    def _entries(self, directory: str) -> list[str]:
        try:
            return sorted(os.listdir(directory))
        except OSError:
            return []

    def _seed(self) -> None:
        """The content of every watched file as it is now: what the first change is compared
        with."""
        for directory in self._plan.rules:
            for name in self._entries(directory):
                rule = self._plan.place_of(directory, name)
                if rule is not None:
                    path = os.path.join(directory, name)
                    self._remember(path, self._read(path, rule.place.kind))

    # --- the reader thread -------------------------------------------------------------------

    def _run(self) -> None:
        # A change is judged on the writer's process, whose final record the risk scorer
        # closes a tick after its exit: the reader must not lag behind a loaded machine.
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), PRIORITY_BOOST)
        fds = [g.fd for g in (self._changes, self._renames) if g is not None]
        fds.append(self._stop_wake)
        while not self._stop.is_set():
            try:
                # Bursts end by the clock: looked at twice a second while one is open; else
                # only events and close wake the thread (a wake-up costs ~0.1 ms on a VM).
                ready, _, _ = select.select(fds, [], [], 0.5 if self._bursts else IDLE_WAIT_S)
            except (OSError, ValueError):
                return
            try:
                if self._changes is not None and self._changes.fd in ready:
                    self._read_changes()
                if self._renames is not None and self._renames.fd in ready:
                    self._read_renames()
                self._close_bursts()
            except Exception:  # one bad event must not end the watch
                log.exception("persistence watch: reading events failed")
                self._drop("unreadable_events")

    def _drop(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self._drops[kind] = self._drops.get(kind, 0) + n

    def _read_changes(self) -> None:
        assert self._changes is not None
        for _ in range(64):  # bounded per wake-up: the stop flag is looked at in between
            events = self._changes.read_changes()
            if not events:
                return
            for event in events:
                try:
                    self._handle(event)
                finally:
                    event.close()

    def _handle(self, event: ChangeEvent) -> None:
        if event.overflow:
            self._drop("change_events_overflow")
            self._rescan(Writer(0, None, comm="unknown: events lost in a queue overflow"))
            return
        if event.where is None:
            return
        directory = self._handles.get(event.where.handle.key)
        if directory is None:
            if event.where.handle.key not in self._retired:
                self._drop("unresolved_directory")
            return
        if event.mask & (FAN_DELETE_SELF | FAN_MOVE_SELF):
            # moved away or deleted: what is at its path now (a new ~/.ssh) is marked instead
            self._marked.discard(directory)
            self._handles.pop(event.where.handle.key, None)
            self._retired.add(event.where.handle.key)
            for added in self._replan():
                self._found_in_new(added, self.identifier.identify(event.pid, event.pidfd),
                                   self._clock())
            return
        name = os.fsdecode(event.where.name)
        now = self._clock()
        if event.mask & FAN_ONDIR and event.mask & (FAN_CREATE | FAN_MOVED_TO) \
                and dir_waits(self._plan, directory, name):
            writer = self.identifier.identify(event.pid, event.pidfd)
            for added in self._replan():
                self._found_in_new(added, writer, now)
        rule = self._plan.place_of(directory, name)
        if rule is None or event.mask & FAN_ONDIR:
            return
        path = os.path.join(directory, name)
        if self._in_burst(rule.path, name, event.pid, now, rule.place):
            return
        writer = self.identifier.identify(event.pid, event.pidfd)
        self._compare(path, rule.path, rule.place, describe_mask(event.mask), writer, now)

    def _found_in_new(self, directory: str, writer: Writer, now: float) -> None:
        """Entries already in a directory that appeared after start (written before its mark
        was in place): attributed to the process that made the directory."""
        for name in self._entries(directory):
            rule = self._plan.place_of(directory, name)
            path = os.path.join(directory, name)
            if rule is not None and os.path.isfile(path) and path not in self._content:
                self._compare(path, rule.path, rule.place, ("created",), writer, now,
                              note="in a directory made after start by this process")

    def _compare(self, path: str, place_path: str, place: Any, actions: tuple[str, ...],
                 writer: Writer, now: float, note: str = "") -> None:
        kind = place.kind
        new = self._read(path, kind)
        old = self._content.get(path)
        if new is None and os.path.isfile(path):
            note = note or (f"larger than persistence.content_limit "
                            f"({self.cfg.content_limit} bytes) or unreadable: not compared")
        changes = diff(kind, old, new)
        if new is None and not os.path.lexists(path) and "renamed out" not in actions \
                and ("written" in actions or "renamed in" in actions):
            # installed and removed again before the reader got to it
            changes = dataclasses.replace(changes, unseen=True)
            note = note or "gone before its content could be read"
        change = Change(now, path, place, actions, writer, changes, note)
        self._remember(path, new)
        self.changes_seen += 1
        with self._lock:
            if len(self._queue) >= QUEUE_LIMIT:
                self._drops["change_queue"] = self._drops.get("change_queue", 0) + 1
                return
            self._queue.append(change)

    def _rescan(self, writer: Writer, only: str = "",
                note: str = "found by a rescan after events were lost") -> None:
        """Compare every watched file (of place `only`, when given) with what was last seen:
        after lost events, and after a burst whose changes were only counted."""
        now = self._clock()
        for directory in list(self._plan.rules):
            for name in self._entries(directory):
                rule = self._plan.place_of(directory, name)
                if rule is None or (only and rule.path != only):
                    continue
                path = os.path.join(directory, name)
                new = self._read(path, rule.place.kind)
                if new != self._content.get(path):
                    self._compare(path, rule.path, rule.place, ("changed",), writer, now,
                                  note=note)

    def _close_bursts(self) -> None:
        """Bursts whose window has passed: their place is rescanned (a real change hidden in a
        flood of others is still compared) and a summary goes to the tick."""
        now = self._clock()
        for place_path, burst in list(self._bursts.items()):
            if now - burst.start <= self.cfg.burst_window:
                continue
            del self._bursts[place_path]
            if not burst.summarised:
                continue
            pids = list(burst.writers)
            writer = (self.identifier.identify(pids[0], -1) if len(pids) == 1 else
                      Writer(0, None, comm="unknown: one of several writers of a burst"))
            self._rescan(writer, place_path, "found by a rescan after a burst of changes")
            with self._lock:
                self._summaries.append((place_path, burst))

    def _in_burst(self, place_path: str, name: str, pid: int, now: float, place: Any) -> bool:
        burst = self._bursts.get(place_path)
        if burst is None or now - burst.start > self.cfg.burst_window:
            if burst is not None:
                self._close_bursts()
            burst = self._bursts[place_path] = Burst(now, place)
        burst.count += 1
        if burst.count <= self.cfg.burst_changes:
            return False
        burst.summarised += 1
        if len(burst.names) < 5:
            burst.names.append(visible(name))
        if len(burst.writers) < 5:
            burst.writers[pid] = None
        return True

    def _read(self, path: str, kind: str) -> Content | None:
        limit = self.cfg.content_limit
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
                return None
            data = os.read(fd, limit + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        if len(data) > limit or b"\0" in data:
            return None
        return read_content(kind, data)

    def _remember(self, path: str, content: Content | None) -> None:
        old = self._content.pop(path, None)
        if old is not None:
            self._content_bytes -= old.size
        self._content[path] = content
        if content is not None:
            self._content_bytes += content.size
        while self._content_bytes > self.cfg.cache_bytes and self._content:
            _path, dropped = self._content.popitem(last=False)
            if dropped is not None:
                self._content_bytes -= dropped.size

    def _read_renames(self) -> None:
        assert self._renames is not None
        for _ in range(64):
            events = self._renames.read_changes()
            if not events:
                return
            now = self._clock()
            for event in events:
                event.close()
                if event.overflow:
                    self._drop("rename_events_overflow")
                    continue
                if event.old is None or event.new is None:
                    continue
                with self._lock:
                    if len(self._rename_queue) >= QUEUE_LIMIT:
                        self._drops["rename_queue"] = self._drops.get("rename_queue", 0) + 1
                        continue
                    self._rename_queue.append((event.pid, self._path(event.old),
                                               self._path(event.new), now))

    def _path(self, where: DirName) -> str:
        name = os.fsdecode(where.name)
        directory = self._handles.get(where.handle.key)
        if directory is None:
            mount = self._mounts.get(where.fsid)
            if mount is not None:
                try:
                    fd = open_by_handle(mount, where.handle)
                    try:
                        directory = os.readlink(f"/proc/self/fd/{fd}")
                    finally:
                        os.close(fd)
                except OSError:
                    directory = None
        return os.path.join(directory or "?", name)


def _fsid(path: str) -> tuple[int, int] | None:
    """The file system id fanotify reports (two 32-bit halves, as statfs gives them)."""
    try:
        value = os.statvfs(path).f_fsid
    except OSError:
        return None
    lo, hi = value & 0xFFFFFFFF, (value >> 32) & 0xFFFFFFFF
    return (lo - (1 << 32) if lo >= 1 << 31 else lo, hi - (1 << 32) if hi >= 1 << 31 else hi)
