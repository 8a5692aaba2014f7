"""The credential catalogue: which files are protected, in which group, and who may read them.

Built from `GuardConfig`: groups of glob patterns relative to each home (homes from the password
database unless `guard.homes` lists them), absolute patterns for system files, and exclusions
for public parts (*.pub, authorized_keys, known_hosts). A pattern is matched one path component
at a time: `*` stays inside a component, `**` spans any number of directories.
"""

from __future__ import annotations

import os
import pwd
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

from fluxtui.config import AllowedProgram, CredentialGroup, GuardConfig

_GLOB_CHARS = re.compile(r"[*?\[]")


class CatalogueError(Exception):
    """A catalogue entry that cannot be used; the message names the config key."""


def has_glob(segment: str) -> bool:
    return _GLOB_CHARS.search(segment) is not None


@dataclass(frozen=True)
class IdRanges:
    """uid ranges like "0,1000-60000"; empty means any."""

    ranges: tuple[tuple[int, int], ...] = ()

    @classmethod
    def parse(cls, text: str, key: str) -> IdRanges:
        ranges: list[tuple[int, int]] = []
        for part in filter(None, (p.strip() for p in text.split(","))):
            low, sep, high = part.partition("-")
            try:
                lo = int(low)
                hi = int(high) if sep else lo
            except ValueError:
                raise CatalogueError(
                    f"{key}: expected ids like \"0\" or \"1000-60000\", got {text!r}") from None
            if lo < 0 or hi < lo:
                raise CatalogueError(f"{key}: range {part!r} is empty or negative")
            ranges.append((lo, hi))
        return cls(tuple(ranges))

    def __contains__(self, value: int) -> bool:
        return not self.ranges or any(lo <= value <= hi for lo, hi in self.ranges)

    def __str__(self) -> str:
        return ",".join(f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in self.ranges)


@dataclass(frozen=True)
class ProgramRule:
    """One allowed program of a group, compiled from an `AllowedProgram` entry."""

    path: str  # a full path (symlinks resolved when it has no glob) or a glob
    uids: IdRanges
    euids: IdRanges
    parent: str
    args: str
    deny_args: tuple[re.Pattern[str], ...] = ()

    @classmethod
    def compile(cls, entry: AllowedProgram, key: str) -> ProgramRule:
        if not entry.path.startswith("/"):
            raise CatalogueError(f"{key}.path: expected a full executable path, got "
                                 f"{entry.path!r}")
        path = entry.path if has_glob(entry.path) else os.path.realpath(entry.path)
        deny: list[re.Pattern[str]] = []
        for index, pattern in enumerate(entry.deny_args):
            try:
                deny.append(re.compile(pattern))
            except re.error as exc:
                raise CatalogueError(f"{key}.deny_args[{index}]: not a regular expression: "
                                     f"{exc}") from None
        return cls(path, IdRanges.parse(entry.uids, f"{key}.uids"),
                   IdRanges.parse(entry.euids, f"{key}.euids"), entry.parent, entry.args,
                   tuple(deny))

    def denied_by(self, argv: tuple[str, ...]) -> str | None:
        """The deny_args pattern found in the command line, or None."""
        if not self.deny_args:
            return None
        line = "\0".join(argv)
        return next((p.pattern for p in self.deny_args if p.search(line)), None)

    def matches(self, exe: str, uid: int, euid: int, parent_exe: str,
                argv: tuple[str, ...]) -> bool:
        """`argv`: the whole command line, argv[0] included."""
        args = argv[1:]
        if not (exe == self.path or (has_glob(self.path) and fnmatchcase(exe, self.path))):
            return False
        if uid not in self.uids or euid not in self.euids:
            return False
        if self.parent and not fnmatchcase(parent_exe, self.parent):
            return False
        if self.args and not fnmatchcase(" ".join(args), self.args):
            return False
        return self.denied_by(argv) is None

    def describe(self) -> str:
        extra = [f"{name} {value}" for name, value in (
            ("uids", str(self.uids)), ("euids", str(self.euids)), ("parent", self.parent),
            ("args", self.args)) if value]
        if self.deny_args:
            extra.append(f"{len(self.deny_args)} argument forms excluded")
        return self.path + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Group:
    name: str
    technique: str
    patterns: tuple[tuple[str, ...], ...]  # split into components
    programs: tuple[ProgramRule, ...]
    absolute: bool  # system files: patterns are absolute, not relative to homes

    def allowed_program(self, exe: str, uid: int, euid: int, parent_exe: str,
                        argv: tuple[str, ...]) -> ProgramRule | None:
        for rule in self.programs:
            if rule.matches(exe, uid, euid, parent_exe, argv):
                return rule
        return None


@dataclass(frozen=True)
class Catalogue:
    groups: tuple[Group, ...]
    homes: tuple[str, ...]  # real paths
    exclude: tuple[str, ...]
    unmarked_dirs: frozenset[str]
    system_dirs: tuple[str, ...]

    def excluded(self, name: str) -> bool:
        return any(fnmatchcase(name, pattern) for pattern in self.exclude)

    def group(self, name: str) -> Group | None:
        return next((g for g in self.groups if g.name == name), None)


def _split(pattern: str, key: str, absolute: bool) -> tuple[str, ...]:
    if absolute != pattern.startswith("/"):
        want = "an absolute pattern" if absolute else "a pattern relative to the home"
        raise CatalogueError(f"{key}: expected {want}, got {pattern!r}")
    parts = tuple(p for p in pattern.strip("/").split("/") if p)
    if not parts or any(p in (".", "..") for p in parts):
        raise CatalogueError(f"{key}: pattern {pattern!r} has no file name or uses . or ..")
    if parts[-1] == "**":
        raise CatalogueError(f"{key}: pattern {pattern!r} must end with a file name glob")
    return parts


def compile_group(entry: CredentialGroup, key: str, absolute: bool) -> Group:
    if not entry.name:
        raise CatalogueError(f"{key}.name: every group needs a name")
    if not entry.patterns:
        raise CatalogueError(f"{key}.patterns: group {entry.name!r} has no pattern")
    patterns = tuple(_split(p, f"{key}.patterns[{i}]", absolute)
                     for i, p in enumerate(entry.patterns))
    programs = tuple(ProgramRule.compile(p, f"{key}.allowed[{i}]")
                     for i, p in enumerate(entry.allowed))
    return Group(entry.name, entry.technique, patterns, programs, absolute)


def read_login_defs(path: str = "/etc/login.defs") -> tuple[int, int]:
    """UID_MIN and UID_MAX of regular users (1000 and 60000 when the file does not say)."""
    values = {"UID_MIN": 1000, "UID_MAX": 60000}
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] in values and fields[1].isdigit():
                    values[fields[0]] = int(fields[1])
    except OSError:
        pass
    return values["UID_MIN"], values["UID_MAX"]


def homes_from_passwd(entries: list[pwd.struct_passwd] | None = None,
                      login_defs: str = "/etc/login.defs") -> list[str]:
    """Root's home and the home of every regular user (UID_MIN..UID_MAX), existing ones only.
    `entries`: the password database (all of it by default)."""
    uid_min, uid_max = read_login_defs(login_defs)
    homes: list[str] = []
    for entry in pwd.getpwall() if entries is None else entries:
        if entry.pw_uid == 0 or uid_min <= entry.pw_uid <= uid_max:
            homes.append(entry.pw_dir)
    return homes


def usable_homes(candidates: list[str]) -> tuple[str, ...]:
    """Real paths of existing home directories; never "/" (a top-level pattern would then put a
    directory mark on the root directory)."""
    out: list[str] = []
    for home in candidates:
        if not home.startswith("/"):
            continue
        real = os.path.realpath(home)
        if real != "/" and os.path.isdir(real) and real not in out:
            out.append(real)
    return tuple(out)


def build_catalogue(config: GuardConfig) -> Catalogue:
    groups: list[Group] = []
    names: set[str] = set()
    for key, entries, absolute in (("guard.groups", config.groups, False),
                                   ("guard.system_files", config.system_files, True)):
        for index, entry in enumerate(entries):
            group = compile_group(entry, f"{key}[{index}]", absolute)
            if group.name in names:
                raise CatalogueError(f"{key}[{index}].name: group {group.name!r} given twice")
            names.add(group.name)
            groups.append(group)
    for index, home in enumerate(config.homes):
        if not home.startswith("/"):
            raise CatalogueError(f"guard.homes[{index}]: expected an absolute path, got {home!r}")
    homes = usable_homes(list(config.homes) if config.homes else homes_from_passwd())
    unmarked = frozenset(os.path.realpath(d) for d in config.unmarked_dirs)
    system_dirs = tuple(d.rstrip("/") for d in config.system_dirs)
    return Catalogue(tuple(groups), homes, tuple(config.exclude), unmarked, system_dirs)
