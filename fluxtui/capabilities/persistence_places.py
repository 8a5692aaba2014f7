"""Which directories the persistence watch marks, for which entries, from the catalogue.

A place is a file (its directory is marked, only its name counts), or a directory (every entry
counts, and subdirectories down to the place's `depth`). "~/" places are looked for in every
home (`persistence.homes`, or each user of /etc/passwd with a log-in shell). A place whose
directory does not exist yet (a new ~/.config/systemd/user) is waited for: its nearest existing
ancestor is marked for the next missing component, and the plan is made again when that is
created. Nothing here imports textual.
"""

from __future__ import annotations

import fnmatch
import os
import pwd
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field

from fluxtui.config import PersistencePlace

NO_LOGIN_SHELLS = ("nologin", "false", "sync", "halt", "shutdown")


def login_homes(passwd: Iterable[pwd.struct_passwd] | None = None) -> list[str]:
    """Homes of users with a log-in shell (root included), existing directories only."""
    homes: dict[str, None] = {}
    for entry in passwd if passwd is not None else pwd.getpwall():
        shell = os.path.basename(entry.pw_shell or "")
        if not shell or shell in NO_LOGIN_SHELLS:
            continue
        home = os.path.normpath(entry.pw_dir or "")
        if home not in ("", "/") and os.path.isdir(home):
            homes[home] = None
    return list(homes)


@dataclass(frozen=True)
class Rule:
    """In a marked directory: entries named `name` (a glob; "*" for all) belong to `place`, at
    `path` (the catalogue's path in this home)."""

    name: str
    place: PersistencePlace
    path: str


@dataclass
class Plan:
    rules: dict[str, list[Rule]] = field(default_factory=dict)  # directory -> rules
    # directory -> names whose creation there brings a place closer (re-plan when they appear)
    pending: dict[str, set[str]] = field(default_factory=dict)

    def add(self, directory: str, rule: Rule) -> None:
        rules = self.rules.setdefault(directory, [])
        if rule not in rules:
            rules.append(rule)

    def place_of(self, directory: str, name: str) -> Rule | None:
        """The most specific rule for an entry (a place's own directory before an ancestor's
        place that reaches it through `depth`)."""
        matching = [rule for rule in self.rules.get(directory, ())
                    if rule.name == "*" or fnmatch.fnmatchcase(name, rule.name)]
        return max(matching, key=lambda r: len(r.path)) if matching else None

    def directories(self) -> set[str]:
        return set(self.rules) | set(self.pending)

    def waits_for(self, directory: str, name: str) -> bool:
        return name in self.pending.get(directory, ())


def _is_dir(path: str) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def expand(places: Iterable[PersistencePlace], homes: Iterable[str]
           ) -> list[tuple[str, PersistencePlace]]:
    homes = list(homes)
    out: list[tuple[str, PersistencePlace]] = []
    for place in places:
        if place.path.startswith("~/"):
            out += [(os.path.join(home, place.path[2:]), place) for home in homes]
        elif place.path.startswith("/"):
            out.append((os.path.normpath(place.path), place))
    return out


def _subdirectories(directory: str, depth: int, limit: int = 256) -> list[str]:
    found: list[str] = []
    if depth <= 0:
        return found
    try:
        with os.scandir(directory) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False) and len(found) < limit:
                    found.append(entry.path)
                    found += _subdirectories(entry.path, depth - 1, limit)
    except OSError:
        pass
    return found


def make_plan(targets: Iterable[tuple[str, PersistencePlace]]) -> Plan:
    plan = Plan()
    for path, place in targets:
        if _is_dir(path):
            plan.add(path, Rule("*", place, path))
            for sub in _subdirectories(path, place.depth):
                plan.add(sub, Rule("*", place, path))
            if place.depth:  # a new subdirectory (a new *.wants) is marked when it appears
                plan.pending.setdefault(path, set()).add("*")
            continue
        parent, name = os.path.split(path)
        if _is_dir(parent):
            plan.add(parent, Rule(name, place, path))
            plan.pending.setdefault(parent, set()).add(name)  # it may become a directory
            continue
        # Wait for the missing directories: mark the nearest existing ancestor.
        missing = parent
        while missing not in ("/", "") and not _is_dir(os.path.dirname(missing)):
            missing = os.path.dirname(missing)
        ancestor, component = os.path.split(missing)
        if _is_dir(ancestor):
            plan.pending.setdefault(ancestor, set()).add(component)
    return plan


def dir_waits(plan: Plan, directory: str, name: str) -> bool:
    """A directory created at directory/name changes the plan."""
    names = plan.pending.get(directory, set())
    return "*" in names or name in names
