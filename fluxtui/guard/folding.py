"""Opens allowed from the verdict cache, folded per (process, file) in memory and handed to the
recorder in batches, so the common case (a program re-reading its key) costs no record each."""

from __future__ import annotations

from fluxtui.guard.inodes import ProtectedFile
from fluxtui.guard.processes import CachedProcess
from fluxtui.guard.requests import Fold
from fluxtui.guard.rules import Verdict

RECORD_INTERVAL = 0.1  # seconds between hand-overs of folded cached allowances


class Folds:
    def __init__(self) -> None:
        self._folds: dict[tuple[CachedProcess, str], Fold] = {}

    def add(self, proc: CachedProcess, protected: ProtectedFile, flags: tuple[str, ...],
            verdict: Verdict, ts: float, latency_us: float) -> bool:
        """Count one more allowed open; True when it started a new fold."""
        key = (proc, protected.path)
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
