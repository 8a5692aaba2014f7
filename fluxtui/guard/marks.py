"""What to mark: protected files, the directories that hold them, and the directories to watch.

A plan is computed from the catalogue by reading the file system (`plan_marks`, safe to run on a
worker thread); `Marks` applies the difference to a fanotify group and an inotify instance and
remembers the inode of every file it marked, so that the same file opened through another path
(a hard link, a bind mount) is still recognised.

- Each protected file gets an inode mark (FAN_OPEN_PERM).
- Each directory that holds protected files gets a directory mark with FAN_EVENT_ON_CHILD, so a
  file replaced by rename or created later is covered at once (except `unmarked_dirs`).
- Every directory on the way from a home to a pattern's directory, and the marked directories
  themselves, are watched with inotify: a new credential directory or file leads to a re-plan.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from fnmatch import fnmatchcase

from fluxtui.collectors import inotify
from fluxtui.collectors.fanotify import (
    FAN_EVENT_ON_CHILD,
    FAN_MARK_ONLYDIR,
    FAN_OPEN_PERM,
    FanotifyError,
    FanotifyGroup,
)
from fluxtui.guard.catalogue import Catalogue, Group, has_glob
from fluxtui.guard.ignores import IgnoreMarks
from fluxtui.guard.inodes import ProtectedFile, ProtectedInodes

__all__ = ["MarkPlan", "Marks", "ProtectedFile", "plan_marks"]

MAX_WALK_DIRS = 4000  # bound on directories visited for "**" patterns
MAX_DEPTH = 16
WATCH_MASK = (inotify.IN_CREATE | inotify.IN_MOVED_TO | inotify.IN_MOVED_FROM
              | inotify.IN_DELETE | inotify.IN_DELETE_SELF | inotify.IN_MOVE_SELF
              | inotify.IN_ONLYDIR)
DIR_MARK_MASK = FAN_OPEN_PERM | FAN_EVENT_ON_CHILD


@dataclass(frozen=True)
class DirRule:
    group: Group
    glob: str  # file name glob for entries of the directory


@dataclass
class MarkPlan:
    dirs: dict[str, tuple[DirRule, ...]] = field(default_factory=dict)  # real dir -> rules
    files: dict[str, Group] = field(default_factory=dict)  # existing protected files
    watch: set[str] = field(default_factory=set)
    marked_dirs: set[str] = field(default_factory=set)
    others: list[str] = field(default_factory=list)  # non-credential files in marked dirs
    problems: list[str] = field(default_factory=list)

    def match(self, path: str, catalogue: Catalogue) -> Group | None:
        """The group of `path` (a real path) by its directory and name, or None."""
        parent, _, name = path.rpartition("/")
        rules = self.dirs.get(parent or "/")
        if not rules or catalogue.excluded(name):
            return None
        for rule in rules:
            if fnmatchcase(name, rule.glob):
                return rule.group
        return None


def _isdir(path: str) -> bool:
    try:
        return os.path.isdir(path)
    except OSError:
        return False


def _subdirs(path: str) -> list[str]:
    try:
        with os.scandir(path) as it:
            return [e.name for e in it if e.is_dir(follow_symlinks=True)]
    except OSError:
        return []


class _Planner:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.plan = MarkPlan()
        self.rules: dict[str, list[DirRule]] = {}
        self.walked = 0

    def add_pattern(self, base: str, group: Group, parts: tuple[str, ...]) -> None:
        self._walk(os.path.realpath(base), group, parts[:-1], parts[-1], 0, set())

    def _walk(self, current: str, group: Group, dirs: tuple[str, ...], glob: str, depth: int,
              seen: set[str]) -> None:
        if depth > MAX_DEPTH or self.walked > MAX_WALK_DIRS:
            self.plan.problems.append(f"stopped walking at {current}: too many directories")
            return
        self.walked += 1
        self.plan.watch.add(current)
        if not dirs:
            self.rules.setdefault(current, [])
            rule = DirRule(group, glob)
            if rule not in self.rules[current]:
                self.rules[current].append(rule)
            return
        head, rest = dirs[0], dirs[1:]
        if head == "**":
            key = f"{current}\0{len(rest)}"
            if key in seen:  # a symlink loop or a repeated visit
                return
            seen.add(key)
            self._walk(current, group, rest, glob, depth + 1, seen)
            for name in _subdirs(current):
                self._walk(os.path.realpath(os.path.join(current, name)), group, dirs, glob,
                           depth + 1, seen)
        elif has_glob(head):
            for name in _subdirs(current):
                if fnmatchcase(name, head):
                    self._walk(os.path.realpath(os.path.join(current, name)), group, rest,
                               glob, depth + 1, seen)
        else:
            nxt = os.path.join(current, head)
            if _isdir(nxt):
                self._walk(os.path.realpath(nxt), group, rest, glob, depth + 1, seen)

    def finish(self) -> MarkPlan:
        plan = self.plan
        plan.dirs = {d: tuple(r) for d, r in self.rules.items()}
        for directory, rules in plan.dirs.items():
            if directory not in self.catalogue.unmarked_dirs:
                plan.marked_dirs.add(directory)
            try:
                entries = list(os.scandir(directory))
            except OSError as exc:
                plan.problems.append(f"cannot list {directory}: {exc.strerror}")
                continue
            marked = directory in plan.marked_dirs and directory in self.catalogue.homes
            for entry in entries:
                rule = None
                if not self.catalogue.excluded(entry.name):
                    rule = next((r for r in rules if fnmatchcase(entry.name, r.glob)), None)
                if rule is None:
                    with contextlib.suppress(OSError):
                        if marked and entry.is_file(follow_symlinks=False):
                            plan.others.append(entry.path)
                    continue
                try:
                    if not entry.is_file(follow_symlinks=True):
                        continue
                except OSError:
                    continue
                plan.files.setdefault(os.path.realpath(entry.path), rule.group)
        return plan


def plan_marks(catalogue: Catalogue) -> MarkPlan:
    planner = _Planner(catalogue)
    for group in catalogue.groups:
        bases = ("/",) if group.absolute else catalogue.homes
        for base in bases:
            for parts in group.patterns:
                planner.add_pattern(base, group, parts)
    return planner.finish()


@dataclass(slots=True)
class MarkedDir:
    path: str  # where it was when last planned
    fd: int
    ident: tuple[int, int]


class Marks:
    """The marks in place. Owned by the responder thread (single writer)."""

    def __init__(self, catalogue: Catalogue, state_path: str | None = None) -> None:
        self.catalogue = catalogue
        self.plan = MarkPlan()
        # Every inode that is or was a planned credential, by identity (see guard.inodes).
        self.protected = ProtectedInodes(catalogue, state_path)
        self.ignores = IgnoreMarks()  # the other files of marked directories (guard.ignores)
        # Marked directories by identity (st_dev, st_ino), not by path: a directory renamed
        # away keeps no mark, a new one at the same path gets one. Each holds an fd to its
        # directory (to unmark it wherever it went); closed by `close`.
        self.marked_dirs: dict[tuple[int, int], MarkedDir] = {}
        self.watches: dict[int, str] = {}  # inotify wd -> directory
        self.problems: list[str] = []

    @property
    def inodes(self) -> dict[tuple[int, int], ProtectedFile]:
        return self.protected.inodes

    def lookup(self, dev: int, ino: int, path_of: str | None) -> ProtectedFile | None:
        found = self.inodes.get((dev, ino))
        if found is not None or path_of is None:
            return found
        group = self.plan.match(path_of, self.catalogue)
        return None if group is None else ProtectedFile(path_of, group)

    def apply(self, plan: MarkPlan, fan: FanotifyGroup, notify: inotify.Inotify | None) -> bool:
        """Swap in `plan` first (so events are matched against it at once), then add the marks
        and watches it needs and forget the ones whose directories are gone. True when a new
        watch was added: what was created in that directory between the plan's walk and the
        watch went unseen, so the caller plans once more."""
        added_watch = False
        self.plan = plan
        problems = list(plan.problems)
        planned: set[tuple[int, int]] = set()
        for directory in sorted(plan.marked_dirs):
            try:
                st = os.stat(directory)
            except OSError:
                continue  # gone since the plan: the re-plan that follows sees it
            ident = (st.st_dev, st.st_ino)
            planned.add(ident)
            if ident in self.marked_dirs:
                self.marked_dirs[ident].path = directory
                continue
            try:
                marked = self._mark_dir(directory, fan)
            except (OSError, FanotifyError) as exc:
                problems.append(str(exc))
                continue
            self.marked_dirs[marked.ident] = marked
            planned.add(marked.ident)
        for ident in [i for i in self.marked_dirs if i not in planned]:
            # Renamed away, deleted or no longer a credential directory: unmark it through
            # its fd, wherever it is now (a deleted directory took its mark with it).
            marked = self.marked_dirs.pop(ident)
            with contextlib.suppress(FanotifyError):
                fan.unmark_fd(marked.fd, DIR_MARK_MASK, FAN_MARK_ONLYDIR, marked.path)
            os.close(marked.fd)
        # Planned files are protected by inode from now on; an inode keeps its protection
        # when it leaves the plan (renamed, linked, replaced) until its last link is gone.
        self.protected.problems = []
        for path, group in plan.files.items():
            problem = self.protected.track_path(path, group, fan)
            if problem:
                problems.append(problem)
        self.protected.prune()
        problems += self.protected.problems
        for path in plan.others:
            if self.ignorable(path):
                self.ignores.ignore_path(path, fan, self.protected.protects)
        if notify is not None:
            watched = set(self.watches.values())
            for directory in sorted(plan.watch - watched):
                try:
                    self.watches[notify.add_watch(directory, WATCH_MASK)] = directory
                    added_watch = True
                except OSError as exc:
                    problems.append(f"cannot watch {directory}: {exc.strerror}")
        self.problems = problems
        return added_watch

    @staticmethod
    def _mark_dir(directory: str, fan: FanotifyGroup) -> MarkedDir:
        # Opened before it is marked (opening a marked directory itself raises no event, as
        # the mask has no FAN_ONDIR), then marked through the fd: the identity is that of the
        # directory marked, even if the path changes meanwhile.
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            fan.mark_fd(fd, DIR_MARK_MASK, FAN_MARK_ONLYDIR, directory)
        except BaseException:
            os.close(fd)
            raise
        return MarkedDir(directory, fd, (st.st_dev, st.st_ino))

    # --- at once, on an inotify event (before the re-plan that follows) -----------------------

    def on_new_entry(self, directory: str, name: str, fan: FanotifyGroup) -> None:
        """A file appeared in a marked directory (created, renamed or linked there): a
        credential name is protected at once (its ignore mark, if any, removed), any other
        name is ignored (unless its inode is a protected one)."""
        path = os.path.join(directory, name)
        group = self.plan.match(path, self.catalogue)
        if group is not None:
            self.protected.track_path(path, group, fan)
        elif self.ignorable(path):
            self.ignores.ignore_path(path, fan, self.protected.protects)

    def ignorable(self, path: str) -> bool:
        """Whether the file at `path` (by name) may get an ignore mark: it is a child of a home
        (never of a directory that holds credentials: there a rename onto a credential name
        would leave it unprotected until inotify reports it, measured at up to hundreds of
        opens under load), its name matches no credential pattern, and it does not contain
        one either (`.netrc.tmp`, the way tools write a credential before renaming it)."""
        parent, _, name = path.rpartition("/")
        if parent not in self.catalogue.homes or parent not in self.plan.marked_dirs:
            return False
        return not any(fnmatchcase(name, f"*{rule.glob}*")
                       for rule in self.plan.dirs.get(parent, ()))

    def adopt_dir(self, path: str, fan: FanotifyGroup, notify: inotify.Inotify | None,
                  depth: int = 0) -> None:
        """A directory appeared (created or renamed) where a credential pattern expects one:
        mark and watch it now, protect the credentials already in it, and go down the
        directories it already holds, instead of waiting for the re-plan on a worker (which
        still follows). Patterns with ** are left to the re-plan."""
        rules, on_the_way = self._expected(path)
        if (not rules and not on_the_way) or depth > MAX_DEPTH:
            return
        if notify is not None and path not in self.watches.values():
            with contextlib.suppress(OSError):
                self.watches[notify.add_watch(path, WATCH_MASK)] = path
        if rules:
            current = self.plan.dirs.get(path, ())
            self.plan.dirs[path] = tuple(dict.fromkeys((*current, *rules)))
            if path not in self.catalogue.unmarked_dirs:
                self.plan.marked_dirs.add(path)
                try:
                    marked = self._mark_dir(path, fan)
                except (OSError, FanotifyError):
                    return
                if marked.ident in self.marked_dirs:
                    os.close(marked.fd)
                else:
                    self.marked_dirs[marked.ident] = marked
        try:
            entries = list(os.scandir(path))
        except OSError:
            return
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                self.adopt_dir(entry.path, fan, notify, depth + 1)
            elif rules:
                self.on_new_entry(path, entry.name, fan)

    def _expected(self, path: str) -> tuple[tuple[DirRule, ...], bool]:
        """(rules if `path` is a directory a home pattern names, whether it lies on the way to
        one)."""
        rules: list[DirRule] = []
        on_the_way = False
        for home in self.catalogue.homes:
            if not path.startswith(home + "/"):
                continue
            rel = tuple(path[len(home) + 1:].split("/"))
            for group in self.catalogue.groups:
                if group.absolute:
                    continue
                for parts in group.patterns:
                    dirs = parts[:-1]
                    if "**" in dirs or len(rel) > len(dirs):
                        continue
                    if all(fnmatchcase(r, d) for r, d in zip(rel, dirs, strict=False)):
                        if len(rel) == len(dirs):
                            rules.append(DirRule(group, parts[-1]))
                        else:
                            on_the_way = True
        return tuple(rules), on_the_way

    def marked_paths(self) -> set[str]:
        return {m.path for m in tuple(self.marked_dirs.values())}

    def close(self) -> None:
        """Close the directory fds (the marks go with the fanotify group)."""
        for marked in self.marked_dirs.values():
            with contextlib.suppress(OSError):
                os.close(marked.fd)
        self.marked_dirs.clear()

    def forget_watch(self, wd: int) -> None:
        self.watches.pop(wd, None)

    def needs_replan(self, event: inotify.InotifyEvent) -> bool:
        """Whether an inotify event may change the plan: a directory appeared or went, a file
        named like a protected one appeared or went, or events were lost."""
        if event.mask & (inotify.IN_Q_OVERFLOW | inotify.IN_IGNORED | inotify.IN_DELETE_SELF
                         | inotify.IN_MOVE_SELF | inotify.IN_ISDIR):
            return True
        directory = self.watches.get(event.wd)
        if directory is None:
            return False
        rules = self.plan.dirs.get(directory, ())
        return any(fnmatchcase(event.name, r.glob) for r in rules)
