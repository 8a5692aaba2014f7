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

from fluxtui.collectors.bpf_structs import FX_NR_OTHER, FX_NR_START
from fluxtui.detection.anomaly.features import (
    COMPAT_SLOT,
    NATIVE_SLOTS,
    OTHER_SLOT,
    SCALAR_BASE,
    FeatureWindow,
)

NEW_SYSCALL_SCORE = 90.0  # an executable's first call to a syscall it never made in training
# ... when the executable (or, unprofiled, the machine) kept making new syscalls in training
# more often than the false-alarm rate allows (interpreters, shells): named, under the alarm line
NEW_SYSCALL_WEAK_SCORE = 40.0
RATE_FACTOR = 10.0  # at least: a syscall this many times its peak training rate (of its executable)
# (fit_models raises it to what the held-out benign windows reach: Profiles.rate_factor) ...
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
    # Replaying training in time order: windows judged against this profile once it had
    # min_windows windows, and how many of them made a syscall new to it.
    judged: int = 0
    novel: int = 0

    def novelty(self) -> float:
        return self.novel / self.judged if self.judged else 0.0


@dataclass(frozen=True)
class ProfileVerdict:
    score: float  # NEW_SYSCALL_SCORE when a syscall is new, else rate_score(), else 0
    reasons: tuple[str, ...]
    new_syscalls: tuple[int, ...] = ()


def rate_score(factor: float, threshold: float = RATE_FACTOR) -> float:
    """Score of a syscall `factor` times its executable's peak training rate."""
    if factor < threshold:
        return 0.0
    return min(RATE_MAX_SCORE, RATE_SCORE + RATE_STEP * math.log10(factor / threshold))


@dataclass(frozen=True)
class PeakTable:
    """The profiles as matrices, for judging a whole tick at once. Row 0 stands for "no
    profile" (an executable seen in fewer than `min_windows` windows, or unknown): its `seen` is
    the machine's syscalls, its peaks are 0 (no rate check). One row per other executable."""

    rows: dict[str, int]
    seen: np.ndarray  # (len(rows) + 1, NATIVE_SLOTS) bool: syscall made in training
    strong: np.ndarray  # (len(rows) + 1,) bool: a new syscall scores NEW_SYSCALL_SCORE
    columns: np.ndarray  # syscall numbers that have a peak for some executable
    peaks: np.ndarray  # (len(rows) + 1, len(columns)) calls/s; 0 where never made


class Profiles:
    """`novelty_limit`: an executable that made new syscalls in more than this share of its
    training windows (judged as they came, after its first `min_windows`) gets the weak score
    for a new syscall; the same for the machine-wide reference. fit_models passes the
    false-alarm rate: a rule that by itself would alarm more often is not a strong finding."""

    def __init__(self, min_windows: int = 5, novelty_limit: float = 0.01,
                 rate_factor: float = RATE_FACTOR) -> None:
        self.min_windows = min_windows
        self.novelty_limit = novelty_limit
        # How many times its executable's peak training rate a syscall must reach to score
        # RATE_SCORE: at least RATE_FACTOR, raised by fit_models to the (1 - false-alarm rate)
        # quantile of what held-out benign windows reach (calibrate_rate).
        self.rate_factor = rate_factor
        self.executables: dict[str, ExecutableProfile] = {}
        self.machine = ExecutableProfile()  # every process (the unprofiled ones are judged)
        self._peaks: PeakTable | None = None

    @classmethod
    def build(cls, windows: Iterable[FeatureWindow], min_windows: int = 5,
              novelty_limit: float = 0.01) -> Profiles:
        """From windows in time order (the novelty replay depends on it)."""
        profiles = cls(min_windows, novelty_limit)
        for w in windows:
            profiles.add(w)
        return profiles

    def _reference(self, w: FeatureWindow) -> ExecutableProfile:
        profile = self.executables.get(w.exe) if w.exe else None
        if profile is not None and profile.windows >= self.min_windows:
            return profile
        return self.machine

    def add(self, w: FeatureWindow) -> None:
        self._peaks = None
        reference = self._reference(w)
        if reference.windows >= self.min_windows:
            reference.judged += 1
            reference.novel += bool(w.counts.keys() - reference.syscalls - _IGNORED)
        self.machine.windows += 1
        self.machine.syscalls.update(w.counts)
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
        made, for an executable seen in fewer than `min_windows` windows)."""
        return w.counts.keys() - self._reference(w).syscalls - _IGNORED

    def new_syscall_score(self, w: FeatureWindow) -> float:
        strong = self._reference(w).novelty() <= self.novelty_limit
        return NEW_SYSCALL_SCORE if strong else NEW_SYSCALL_WEAK_SCORE

    def peak_table(self) -> PeakTable:
        if self._peaks is None:
            known = [(exe, p) for exe, p in sorted(self.executables.items())
                     if p.windows >= self.min_windows]
            seen = np.zeros((len(known) + 1, NATIVE_SLOTS), dtype=bool)
            seen[0, [nr for nr in self.machine.syscalls if 0 <= nr < NATIVE_SLOTS]] = True
            strong = np.array([p.novelty() <= self.novelty_limit
                               for p in (self.machine, *(p for _, p in known))])
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
                                    seen, strong, columns, peaks)
        return self._peaks

    def screen(self, windows: Sequence[FeatureWindow], x: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
        """For a whole tick at once, from the feature rows `x`: the score of a new syscall
        (new_syscall_score() where new_syscalls() finds one, else 0), and the rate_score() of
        its syscall furthest above its executable's peak."""
        table = self.peak_table()
        n = len(windows)
        if not n:
            return np.zeros(0, dtype=bool), np.zeros(0)
        index = np.array([table.rows.get(w.exe, 0) for w in windows], dtype=np.intp)
        made = x[:, :NATIVE_SLOTS] > 0
        new = (made & ~table.seen[index]).any(axis=1)
        # 32-bit calls and numbers past the layout share one column: judged one by one.
        for i in np.flatnonzero((x[:, COMPAT_SLOT] > 0) | (x[:, OTHER_SLOT] > 0)):
            new[i] = bool(self.new_syscalls(windows[int(i)]))
        new_score = np.where(new, np.where(table.strong[index], NEW_SYSCALL_SCORE,
                                           NEW_SYSCALL_WEAK_SCORE), 0.0)
        factor = self.rate_factors(windows, x, index)
        threshold = self.rate_factor
        above = factor >= threshold
        steps = np.log10(np.where(above, factor, threshold) / threshold)
        rate = np.minimum(RATE_MAX_SCORE, RATE_SCORE + RATE_STEP * steps)
        return new_score, np.where(above, rate, 0.0)

    def rate_factors(self, windows: Sequence[FeatureWindow], x: np.ndarray,
                     index: np.ndarray | None = None) -> np.ndarray:
        """Per window: how many times its executable's peak training rate its furthest syscall
        is (0 when none has RATE_MIN_CALLS calls or a peak)."""
        table = self.peak_table()
        n = len(windows)
        if not n or not len(table.columns):
            return np.zeros(n)
        if index is None:
            index = np.array([table.rows.get(w.exe, 0) for w in windows], dtype=np.intp)
        rates = x[:, table.columns] * np.expm1(x[:, SCALAR_BASE])[:, None]  # calls/s
        peaks = table.peaks[index]
        window_s = np.array([w.window_s for w in windows])
        enough = (rates * window_s[:, None] >= RATE_MIN_CALLS - 1e-9) & (peaks > 0)
        return np.where(enough, rates / np.where(peaks > 0, peaks, 1.0), 0.0).max(axis=1)

    def calibrate_rate(self, windows: Sequence[FeatureWindow], x: np.ndarray,
                       false_alarm_rate: float) -> float:
        """Raise `rate_factor` so that at most `false_alarm_rate` of these held-out benign
        windows (not used to build the profiles), and of their processes, reach it; never below
        RATE_FACTOR."""
        factors = self.rate_factors(windows, x)
        if len(factors):
            per_process: dict[Any, float] = {}
            for w, f in zip(windows, factors.tolist(), strict=True):
                per_process[w.key] = max(per_process.get(w.key, 0.0), f)
            reached = max(float(np.quantile(factors, 1.0 - false_alarm_rate)),
                          float(np.quantile(list(per_process.values()), 1.0 - false_alarm_rate)))
            self.rate_factor = max(RATE_FACTOR, float(np.nextafter(reached, np.inf)))
        return self.rate_factor

    def judge(self, w: FeatureWindow, name: Callable[[int], str]) -> ProfileVerdict:
        """The window against its executable's profile (or the machine's, for an executable
        too rarely seen), with reasons that name what deviated."""
        profile = self.executables.get(w.exe) if w.exe else None
        known = profile is not None and profile.windows >= self.min_windows
        new = sorted(self.new_syscalls(w))
        new_score = self.new_syscall_score(w) if new else 0.0
        reasons: list[str] = []
        if new:
            names = ", ".join(name(nr) for nr in new[:MAX_NAMED])
            more = f" and {len(new) - MAX_NAMED} more" if len(new) > MAX_NAMED else ""
            reference = self._reference(w)
            weak = ("" if new_score == NEW_SYSCALL_SCORE else
                    f"; it made new ones in {reference.novelty():.0%} of its training windows")
            if known and profile is not None:
                reasons.append(f"{w.exe} called {names}{more}, never seen in training "
                               f"({profile.windows} windows{weak})")
            else:
                who = w.exe or "a process of unknown executable"
                weak = weak.replace("its training", "the machine's training")
                reasons.append(f"{who} called {names}{more}, never seen on this machine "
                               f"in training{' (' + weak[2:] + ')' if weak else ''}")
        rate = 0.0
        if known and profile is not None:
            factors = self._rates(w, profile, name)
            rate = rate_score(factors[0][0], self.rate_factor) if factors else 0.0
            reasons.extend(text for _, text in factors)
            pairs = sorted(p for p in w.bigrams if p not in profile.bigrams
                           and p[0] not in _IGNORED and p[1] not in _IGNORED)
            if pairs:
                shown = ", ".join(f"{name(a)}->{name(b)}" for a, b in pairs[:MAX_NAMED])
                more = f" and {len(pairs) - MAX_NAMED} more" if len(pairs) > MAX_NAMED else ""
                reasons.append(f"bigram {shown}{more} never seen for {w.exe}")
        elif w.exe and profile is None:
            reasons.append(f"{w.exe} never ran in training")
        return ProfileVerdict(max(new_score, rate), tuple(reasons), tuple(new))

    def _rates(self, w: FeatureWindow, profile: ExecutableProfile, name: Callable[[int], str]
               ) -> list[tuple[float, str]]:
        if w.window_s <= 0:
            return []
        out: list[tuple[float, str]] = []
        for nr, n in w.counts.items():
            peak = profile.peak_rate.get(nr)
            if peak is None or peak <= 0 or n < RATE_MIN_CALLS or not 0 <= nr < NATIVE_SLOTS:
                continue
            factor = n / w.window_s / peak
            if factor >= self.rate_factor:
                out.append((factor, f"{name(nr)} {factor:,.0f}x its training rate"))
        out.sort(key=lambda item: -item[0])
        return out[:MAX_NAMED]

    # --- saved as plain data (JSON-compatible), never as pickled objects ---------------------

    def to_data(self) -> dict[str, Any]:
        return {
            "min_windows": self.min_windows,
            "novelty_limit": self.novelty_limit,
            "rate_factor": self.rate_factor,
            "machine": _profile_data(self.machine),
            "executables": {exe: _profile_data(p) for exe, p in sorted(self.executables.items())},
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> Profiles:
        profiles = cls(int(data["min_windows"]), float(data["novelty_limit"]),
                       float(data.get("rate_factor", RATE_FACTOR)))
        profiles.machine = _profile_from(data["machine"])
        for exe, p in data["executables"].items():
            profiles.executables[str(exe)] = _profile_from(p)
        return profiles


def _profile_data(p: ExecutableProfile) -> dict[str, Any]:
    return {"windows": p.windows, "judged": p.judged, "novel": p.novel,
            "syscalls": sorted(p.syscalls), "bigrams": sorted([a, b] for a, b in p.bigrams),
            "peak_rate": [[nr, rate] for nr, rate in sorted(p.peak_rate.items())]}


def _profile_from(p: dict[str, Any]) -> ExecutableProfile:
    return ExecutableProfile(
        windows=int(p["windows"]), syscalls={int(nr) for nr in p["syscalls"]},
        bigrams={(int(a), int(b)) for a, b in p["bigrams"]},
        peak_rate={int(nr): float(rate) for nr, rate in p["peak_rate"]},
        judged=int(p["judged"]), novel=int(p["novel"]))
