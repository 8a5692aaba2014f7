"""Opens allowed from the verdict cache, folded per (process, inode) in memory and handed to the
recorder in batches, so the common case (a program re-reading its key) costs no record each.
A file with several links gets one fold per name it was opened through."""

from __future__ import annotations

from fluxtui.guard.access_rules import Verdict
from fluxtui.guard.inodes import ProtectedFile
from fluxtui.guard.processes import CachedProcess
from fluxtui.guard.requests import Fold

RECORD_INTERVAL = 0.1  # seconds between hand-overs of folded cached allowances


class Folds:
    def __init__(self) -> None:
        self._folds: dict[tuple[CachedProcess, tuple[int, int], str | None], Fold] = {}

    def get(self, proc: CachedProcess, inode: tuple[int, int]) -> Fold | None:
        """The fold of a file with one link (by inode: no need to name it again)."""
        return self._folds.get((proc, inode, None))

    def add(self, proc: CachedProcess, inode: tuple[int, int], name: str | None,
            protected: ProtectedFile, flags: tuple[str, ...], verdict: Verdict, ts: float,
            latency_us: float) -> bool:
        """Count one more allowed open (`name`: the name it came through, for a file with
        several links, else None); True when it started a new fold."""
        key = (proc, inode, name)
        fold = self._folds.get(key)
        if fold is not None:
            fold.add(ts, latency_us)
            return False
        self._folds[key] = Fold(proc.info, proc.verification, flags, protected, verdict, ts,
                                latency_us)
        return True

    def take(self) -> list[Fold]:
        folds, self._folds = self._folds, {}
        return list(folds.values())

    def __bool__(self) -> bool:
        return bool(self._folds)
