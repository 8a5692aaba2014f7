"""Keeping the marks right while the file system changes: inotify events on the watched
directories lead to a re-plan (on a worker: it reads the file system), applied on the responder
thread. A new or vanished directory re-plans at once; new files in marked directories are
batched for REPLAN_DELAY."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from fluxtui.collectors.fanotify import FanotifyGroup
from fluxtui.collectors.inotify import (
    IN_CREATE,
    IN_IGNORED,
    IN_ISDIR,
    IN_MOVE_SELF,
    IN_MOVED_TO,
    Inotify,
)
from fluxtui.guard.marks import MarkPlan, Marks
from fluxtui.guard.timers import Timers

REPLAN_DELAY = 0.25  # seconds: new files in marked directories are re-planned in batches
TIMER = "replan"


class Replanner:
    def __init__(self, marks: Marks, fan: FanotifyGroup, notify: Inotify | None,
                 workers: ThreadPoolExecutor, planner: Callable[[], MarkPlan],
                 post: Callable[[tuple[Any, ...]], None], timers: Timers) -> None:
        self.marks = marks
        self.fan = fan
        self.notify = notify
        self.workers = workers
        self.planner = planner
        self.post = post
        self.timers = timers
        self._running = False
        self._again = False

    def on_inotify(self, now: float) -> None:
        assert self.notify is not None
        now_dir = False
        later = False
        for event in self.notify.read_events():
            directory = self.marks.watches.get(event.wd)
            if directory is not None and event.mask & (IN_CREATE | IN_MOVED_TO) and event.name:
                # At once, before any re-plan: the window in which a renamed, linked or new
                # file (or directory) is not yet protected is this loop's latency.
                if event.mask & IN_ISDIR:
                    self.marks.adopt_dir(os.path.join(directory, event.name), self.fan,
                                         self.notify)
                else:
                    self.marks.on_new_entry(directory, event.name, self.fan)
            if self.marks.needs_replan(event):
                if event.mask & IN_ISDIR or event.wd not in self.marks.watches:
                    now_dir = True  # a directory came or went: re-plan at once
                else:
                    later = True
            if event.mask & IN_IGNORED:  # the watch is gone
                self.marks.forget_watch(event.wd)
            elif event.mask & IN_MOVE_SELF:
                # The watch follows the directory to its new name: drop it, so the re-plan
                # watches whatever is at the planned path now.
                with contextlib.suppress(OSError):
                    self.notify.rm_watch(event.wd)
                self.marks.forget_watch(event.wd)
        if now_dir:
            self.timers.cancel(TIMER)
            self.request()
        elif later:
            self.timers.set_once(TIMER, now + REPLAN_DELAY)

    def request(self) -> None:
        if self._running:
            self._again = True
            return
        self._running = True
        future = self.workers.submit(self.planner)
        future.add_done_callback(lambda f: self.post(("plan", f)))

    def on_plan(self, future: Future[MarkPlan]) -> str | None:
        """Apply a finished plan; returns an error to report, or None."""
        self._running = False
        error = None
        try:
            plan = future.result()
        except Exception as exc:
            error = f"cannot re-plan marks: {exc}"
        else:
            if self.marks.apply(plan, self.fan, self.notify):
                self._again = True  # see Marks.apply: a new watch may have missed events
        if self._again:
            self._again = False
            self.request()
        return error
