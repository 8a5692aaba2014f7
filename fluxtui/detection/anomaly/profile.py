"""What each executable did in training: the syscalls it made, the bigrams, its peak rates.

A syscall an executable never made in training ("/usr/bin/ssh-keygen called ptrace, never seen in
training") is the model's strongest and most explainable finding. It only counts for an
executable seen in at least `min_windows` training windows (one short run says little about what
a program does); for the others the machine-wide set of syscalls is the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluxtui.collectors.syscalls import FX_NR_OTHER, FX_NR_START
from fluxtui.detection.anomaly.features import (
    COMPAT_SLOT,
    NATIVE_SLOTS,
    OTHER_SLOT,
    SCALAR_BASE,
    FeatureWindow,
)

NEW_SYSCALL_SCORE = 90.0  # an executable's first call to a syscall it never made in training
RATE_FACTOR = 10.0  # a syscall this many times its peak training rate (of its executable) ...
RATE_MIN_CALLS = 20  # ... in a window with at least this many calls to it scores RATE_SCORE,
RATE_SCORE = 50.0  # plus RATE_STEP per further factor of ten, at most RATE_MAX_SCORE
RATE_STEP = 10.0
RATE_MAX_SCORE = 80.0
MAX_NAMED = 3  # syscalls or bigrams named in one reason
_IGNORED = frozenset({FX_NR_START, FX_NR_OTHER})


@dataclass
class ExecutableProfile:
    windows: int = 0
    syscalls: set[int] = field(default_factory=set)
    bigrams: set[tuple[int, int]] = field(default_factory=set)
    peak_rate: dict[int, float] = field(default_factory=dict)  # calls/s in its busiest window


@dataclass(frozen=True)
class ProfileVerdict:
    score: float  # NEW_SYSCALL_SCORE when a syscall is new, else rate_score(), else 0
    reasons: tuple[str, ...]
    new_syscalls: tuple[int, ...] = ()


def rate_score(factor: float) -> float:
    """Score of a syscall `factor` times its executable's peak training rate."""
    if factor < RATE_FACTOR:
        return 0.0
    return min(RATE_MAX_SCORE, RATE_SCORE + RATE_STEP * math.log10(factor / RATE_FACTOR))


@dataclass(frozen=True)
class PeakTable:
    """The profiles as matrices, for judging a whole tick at once. Row 0 stands for "no
    profile" (an executable seen in fewer than `min_windows` windows, or unknown): its `seen` is
    the machine's syscalls, its peaks are 0 (no rate check). One row per other executable."""

    rows: dict[str, int]
    seen: np.ndarray  # (len(rows) + 1, NATIVE_SLOTS) bool: syscall made in training
    columns: np.ndarray  # syscall numbers that have a peak for some executable
    peaks: np.ndarray  # (len(rows) + 1, len(columns)) calls/s; 0 where never made


class Profiles:
    def __init__(self, min_windows: int = 5) -> None:
        self.min_windows = min_windows
        self.executables: dict[str, ExecutableProfile] = {}
        self.machine: set[int] = set()  # every syscall any process made in training
        self._peaks: PeakTable | None = None

    @classmethod
    def build(cls, windows: Iterable[FeatureWindow], min_windows: int = 5) -> Profiles:
        profiles = cls(min_windows)
        for w in windows:
            profiles.add(w)
        return profiles

    def add(self, w: FeatureWindow) -> None:
        self._peaks = None
        self.machine.update(w.counts)
        if not w.exe:
            return
        p = self.executables.setdefault(w.exe, ExecutableProfile())
        p.windows += 1
        p.syscalls.update(w.counts)
        p.bigrams.update(w.bigrams)
        if w.window_s > 0:
            for nr, n in w.counts.items():
                rate = n / w.window_s
                if rate > p.peak_rate.get(nr, 0.0):
                    p.peak_rate[nr] = rate

    def new_syscalls(self, w: FeatureWindow) -> set[int]:
        """Syscalls of the window its executable never made in training (the machine never
        made, for an executable seen in fewer than `min_windows` windows). Cheap: set
        operations only, run for every window of every tick."""
        profile = self.executables.get(w.exe) if w.exe else None
        if profile is not None and profile.windows >= self.min_windows:
            return w.counts.keys() - profile.syscalls - _IGNORED
        return w.counts.keys() - self.machine - _IGNORED

    def peak_table(self) -> PeakTable:
        if self._peaks is None:
            known = [(exe, p) for exe, p in sorted(self.executables.items())
                     if p.windows >= self.min_windows]
            seen = np.zeros((len(known) + 1, NATIVE_SLOTS), dtype=bool)
            seen[0, [nr for nr in self.machine if 0 <= nr < NATIVE_SLOTS]] = True
            columns = np.array(sorted({nr for _, p in known for nr in p.peak_rate
                                       if 0 <= nr < NATIVE_SLOTS}), dtype=np.intp)
            where = {int(nr): j for j, nr in enumerate(columns)}
            peaks = np.zeros((len(known) + 1, len(columns)))
            for i, (_, p) in enumerate(known, start=1):
                seen[i, [nr for nr in p.syscalls if 0 <= nr < NATIVE_SLOTS]] = True
                for nr, rate in p.peak_rate.items():
                    if nr in where:
                        peaks[i, where[nr]] = rate
            self._peaks = PeakTable({exe: i for i, (exe, _) in enumerate(known, start=1)},
                                    seen, columns, peaks)
        return self._peaks

    def screen(self, windows: Sequence[FeatureWindow], x: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """For a whole tick at once, from the feature rows `x`: whether each window makes a
        syscall new for its executable (as new_syscalls() says), and the rate_score() of its
        syscall furthest above its executable's peak."""
        table = self.peak_table()
        n = len(windows)
        if not n:
            return np.zeros(0, dtype=bool), np.zeros(0)
        index = np.array([table.rows.get(w.exe, 0) for w in windows], dtype=np.intp)
        made = x[:, :NATIVE_SLOTS] > 0
        new = (made & ~table.seen[index]).any(axis=1)
        # 32-bit calls and numbers past the layout share one column: judged one by one.
        for i in np.flatnonzero((x[:, COMPAT_SLOT] > 0) | (x[:, OTHER_SLOT] > 0)):
            new[i] = bool(self.new_syscalls(windows[i]))
        if not len(table.columns):
            return new, np.zeros(n)
        rates = x[:, table.columns] * np.expm1(x[:, SCALAR_BASE])[:, None]  # calls/s
        peaks = table.peaks[index]
        window_s = np.array([w.window_s for w in windows])
        enough = (rates * window_s[:, None] >= RATE_MIN_CALLS - 1e-9) & (peaks > 0)
        factor = np.where(enough, rates / np.where(peaks > 0, peaks, 1.0), 0.0).max(axis=1)
        above = factor >= RATE_FACTOR
        return new, np.where(above, np.minimum(RATE_MAX_SCORE, RATE_SCORE + RATE_STEP * np.log10(
            np.where(above, factor, RATE_FACTOR) / RATE_FACTOR)), 0.0)

    def judge(self, w: FeatureWindow, name: Callable[[int], str]) -> ProfileVerdict:
        """The window against its executable's profile (or the machine's, for an executable
        too rarely seen), with reasons that name what deviated."""
        profile = self.executables.get(w.exe) if w.exe else None
        known = profile is not None and profile.windows >= self.min_windows
        new = sorted(self.new_syscalls(w))
        reasons: list[str] = []
        if new:
            names = ", ".join(name(nr) for nr in new[:MAX_NAMED])
            more = f" and {len(new) - MAX_NAMED} more" if len(new) > MAX_NAMED else ""
            if known and profile is not None:
                reasons.append(f"{w.exe} called {names}{more}, never seen in training "
                               f"({profile.windows} windows)")
            else:
                who = w.exe or "a process of unknown executable"
                reasons.append(f"{who} called {names}{more}, never seen on this machine "
                               "in training")
        rate = 0.0
        if known and profile is not None:
            factors = self._rates(w, profile, name)
            rate = rate_score(factors[0][0]) if factors else 0.0
            reasons.extend(text for _, text in factors)
            pairs = sorted(p for p in w.bigrams if p not in profile.bigrams
                           and p[0] not in _IGNORED and p[1] not in _IGNORED)
            if pairs:
                shown = ", ".join(f"{name(a)}->{name(b)}" for a, b in pairs[:MAX_NAMED])
                more = f" and {len(pairs) - MAX_NAMED} more" if len(pairs) > MAX_NAMED else ""
                reasons.append(f"bigram {shown}{more} never seen for {w.exe}")
        elif w.exe and profile is None:
            reasons.append(f"{w.exe} never ran in training")
        return ProfileVerdict(NEW_SYSCALL_SCORE if new else rate, tuple(reasons), tuple(new))

    @staticmethod
    def _rates(w: FeatureWindow, profile: ExecutableProfile, name: Callable[[int], str]
               ) -> list[tuple[float, str]]:
        if w.window_s <= 0:
            return []
        out: list[tuple[float, str]] = []
        for nr, n in w.counts.items():
            peak = profile.peak_rate.get(nr)
            if peak is None or peak <= 0 or n < RATE_MIN_CALLS or not 0 <= nr < NATIVE_SLOTS:
                continue
            factor = n / w.window_s / peak
            if factor >= RATE_FACTOR:
                out.append((factor, f"{name(nr)} {factor:,.0f}x its training rate"))
        out.sort(key=lambda item: -item[0])
        return out[:MAX_NAMED]

    # --- saved as plain data (JSON-compatible), never as pickled objects ---------------------

    def to_data(self) -> dict[str, Any]:
        return {
            "min_windows": self.min_windows,
            "machine": sorted(self.machine),
            "executables": {
                exe: {"windows": p.windows, "syscalls": sorted(p.syscalls),
                      "bigrams": sorted([a, b] for a, b in p.bigrams),
                      "peak_rate": [[nr, rate] for nr, rate in sorted(p.peak_rate.items())]}
                for exe, p in sorted(self.executables.items())},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Profiles:
        profiles = cls(int(data["min_windows"]))
        profiles.machine = {int(nr) for nr in data["machine"]}
        for exe, p in data["executables"].items():
            profiles.executables[str(exe)] = ExecutableProfile(
                windows=int(p["windows"]), syscalls={int(nr) for nr in p["syscalls"]},
                bigrams={(int(a), int(b)) for a, b in p["bigrams"]},
                peak_rate={int(nr): float(rate) for nr, rate in p["peak_rate"]})
        return profiles
