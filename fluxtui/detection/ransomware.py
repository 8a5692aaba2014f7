"""Ransomware-like activity (T1486): one process renaming or rewriting many files within seconds.

The counts come from the kernel (the syscall capture's per-process counts of the rename,
unlink and write families each tick); the names, where a file system is marked for FAN_RENAME,
from fanotify. Renames that keep the name (a move to another directory) or that drop a suffix
(an atomic save: `file.tmp` -> `file`, dpkg's `file.dpkg-new` -> `file`) are what programs do
every day; renames that give files new names (`report.pdf` -> `report.pdf.locked`, or random
names) by the hundred are what encryption for impact does. When no names are known (a file
system not marked) the count decides alone, except for the verified bulk renamers of
`persistence.ransomware.bulk_renamers`. Nothing here imports textual.
"""

from __future__ import annotations

import os
from collections import deque
from dataclasses import dataclass, field

from fluxtui.config import RansomwareConfig
from fluxtui.detection.syscall_rules import Finding
from fluxtui.events import ProcessKey, Severity
from fluxtui.untrusted_text import visible

RULE_RENAME = "ransomware.mass_rename"
RULE_REWRITE = "ransomware.mass_rewrite"
TECHNIQUE = ("T1486", "Data Encrypted for Impact")
RENAMES = frozenset({"rename", "renameat", "renameat2"})
UNLINKS = frozenset({"unlink", "unlinkat"})
WRITES = frozenset({"write", "writev", "pwrite64", "pwritev", "pwritev2"})
SAMPLES = 8  # old -> new names kept per process
DIRECTORIES = 8  # directories named per process
MAX_PROCESSES = 4096
NAMES_GRACE = 3.0  # seconds the names of counted renames may take to arrive


def renames_name(old: str, new: str) -> bool:
    """Whether a rename gives the file a new name (not a move, not a temporary name dropped)."""
    old_base, new_base = os.path.basename(old), os.path.basename(new)
    return bool(new_base) and new_base not in old_base


@dataclass
class _Activity:
    counts: deque[tuple[float, int, int, int]] = field(default_factory=deque)  # t, ren, unl, wr
    names: deque[tuple[float, bool]] = field(default_factory=deque)  # t, renames the name
    samples: deque[str] = field(default_factory=lambda: deque(maxlen=SAMPLES))
    directories: dict[str, None] = field(default_factory=dict)
    alerted: set[str] = field(default_factory=set)
    unnamed_since: float | None = None  # over the count, no names yet


@dataclass(frozen=True)
class Totals:
    renames: int
    unlinks: int
    writes: int
    named: int  # renames whose names fanotify reported
    renaming: int  # of those, renames that gave a new name


class RansomwareDetector:
    def __init__(self, config: RansomwareConfig) -> None:
        self.config = config
        self._activity: dict[ProcessKey, _Activity] = {}

    def _get(self, key: ProcessKey) -> _Activity:
        activity = self._activity.get(key)
        if activity is None:
            if len(self._activity) >= MAX_PROCESSES:
                self._activity.pop(next(iter(self._activity)))
            activity = self._activity[key] = _Activity()
        return activity

    def observe_counts(self, key: ProcessKey, counts: dict[str, int], now: float) -> None:
        renames = sum(counts.get(n, 0) for n in RENAMES)
        unlinks = sum(counts.get(n, 0) for n in UNLINKS)
        writes = sum(counts.get(n, 0) for n in WRITES)
        if renames or unlinks or key in self._activity:
            self._get(key).counts.append((now, renames, unlinks, writes))

    def observe_rename(self, key: ProcessKey, old: str, new: str, now: float) -> None:
        activity = self._get(key)
        changing = renames_name(old, new)
        activity.names.append((now, changing))
        if changing:
            activity.samples.append(visible(f"{old} -> {new}"))
        for directory in (os.path.dirname(old), os.path.dirname(new)):
            if directory not in activity.directories and len(activity.directories) < DIRECTORIES:
                activity.directories[visible(directory)] = None

    def totals(self, key: ProcessKey, now: float) -> Totals:
        activity = self._activity.get(key)
        if activity is None:
            return Totals(0, 0, 0, 0, 0)
        since = now - self.config.window
        while activity.counts and activity.counts[0][0] < since:
            activity.counts.popleft()
        while activity.names and activity.names[0][0] < since:
            activity.names.popleft()
        return Totals(sum(c[1] for c in activity.counts), sum(c[2] for c in activity.counts),
                      sum(c[3] for c in activity.counts), len(activity.names),
                      sum(1 for _t, changing in activity.names if changing))

    def check(self, key: ProcessKey, now: float, bulk_renamer: bool,
              names_expected: bool = True) -> list[Finding]:
        """Findings for one process (each rule once per process); `bulk_renamer`: it runs a
        verified program of `bulk_renamers`; `names_expected`: a file system is marked for
        rename names, which arrive apart from the counts (they are waited for NAMES_GRACE s)."""
        totals = self.totals(key, now)
        activity = self._activity.get(key)
        if activity is None:
            return []
        cfg = self.config
        found: list[Finding] = []
        extra = {"renames": totals.renames, "unlinks": totals.unlinks, "writes": totals.writes,
                 "window_s": cfg.window, "directories": list(activity.directories),
                 "samples": list(activity.samples)}
        where = ", ".join(list(activity.directories)[:3]) or "directories not known"
        sample = "; ".join(list(activity.samples)[:3])
        if RULE_RENAME not in activity.alerted and totals.renames >= cfg.renames:
            # With names: most renames gave new names. Without: the count alone.
            if totals.named:
                suspicious = totals.renaming * 2 >= totals.named
            elif names_expected:
                if activity.unnamed_since is None:
                    activity.unnamed_since = now
                suspicious = (now - activity.unnamed_since >= NAMES_GRACE
                              and not bulk_renamer)
            else:
                suspicious = not bulk_renamer
            if suspicious:
                named = (f", {totals.renaming} of {totals.named} named renames gave files new "
                         f"names" if totals.named else " (names not known: a file system not "
                         "marked)")
                reason = (f"{totals.renames} renames in {cfg.window:g} s{named} in {where}"
                          + (f"; e.g. {sample}" if sample else ""))
                activity.alerted.add(RULE_RENAME)
                found.append(Finding(key, RULE_RENAME, "Many files renamed by one process "
                                     "(ransomware-like)", visible(reason), cfg.risk, TECHNIQUE,
                                     Severity.HIGH, extra))
        if (RULE_REWRITE not in activity.alerted and not bulk_renamer
                and totals.unlinks >= cfg.rewrites and totals.writes >= cfg.rewrites):
            reason = (f"{totals.unlinks} files deleted and {totals.writes} writes in "
                      f"{cfg.window:g} s in {where}")
            activity.alerted.add(RULE_REWRITE)
            found.append(Finding(key, RULE_REWRITE, "Many files rewritten and deleted by one "
                                 "process (ransomware-like)", visible(reason), cfg.risk,
                                 TECHNIQUE, Severity.HIGH, extra))
        return found

    def idle(self, key: ProcessKey, now: float) -> bool:
        """Nothing of the process within the window any more."""
        self.totals(key, now)
        activity = self._activity.get(key)
        return activity is None or not (activity.counts or activity.names)

    def active(self) -> list[ProcessKey]:
        return list(self._activity)

    def forget(self, key: ProcessKey) -> None:
        self._activity.pop(key, None)
