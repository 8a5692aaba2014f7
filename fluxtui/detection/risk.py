"""Risk score 0-100 per process, with the reasons that make it up. Nothing here imports textual.

Three parts add up, capped at 100:
- syscall mix: each syscall the process used contributes its base weight (`base_risk_scores`,
  `default_risk_score` for the rest). How often it was called does not matter, that it was used
  does: a process calling ptrace once and one calling it a million times are both "a process
  that uses ptrace";
- events: points from detection rules (ptrace attach, exec from /tmp, uid 0, ...) and from other
  capabilities (`TickContext.add_risk`), each with its reason. The same principle holds: a kind
  of event (a rule, or a reason) counts once, at its largest recent value, however often it
  happens, so a busy normal program repeating memfd_create or bpf(PROG_LOAD) does not climb;
- anomaly: the anomaly model's verdict for the process (0-100, `set_anomalies`) times
  `anomaly_weight`, added to the other parts with the model's reasons: the verdict of this tick,
  or the strongest earlier one (decayed like the rest) when that is higher, so that a window
  judged abnormal still counts when the process is scored on its whole life at exit (the tick
  after its last window). Without a verdict it is a real 0 with the reason why (no model
  trained, refused, not scored this tick); it never scales the other parts down, so a rule
  finding weighs the same with or without a model.
Everything decays: every `decay_interval` seconds it is multiplied by `decay_factor` (applied
continuously, so a value halfway through an interval has decayed by the square root). `now` is a
monotonic clock (time.monotonic() in the scorer), so a wall-clock step does not decay or freeze
scores.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from fluxtui.config import RiskConfig
from fluxtui.events import AnomalyInput, ProcessKey

MAX_REASONS = 5
NEGLIGIBLE = 0.05  # points below which a contribution is forgotten
NO_MODEL = "no model trained"
NO_VERDICT = "the anomaly model gave no verdict on this process this tick"


@dataclass(frozen=True, slots=True)
class RiskScore:
    score: float  # 0-100
    reasons: tuple[str, ...]  # largest contributions first, "reason (+points)"
    syscall_points: float
    event_points: float
    anomaly: float  # 0-100; 0 while no model is trained
    anomaly_reason: str
    technique_id: str = ""  # of the largest tagged event contribution
    technique_name: str = ""


ZERO = RiskScore(0.0, (), 0.0, 0.0, 0.0, NO_MODEL)


@dataclass
class _Contribution:
    points: float
    reason: str
    technique_id: str = ""
    technique_name: str = ""


@dataclass
class _Peak:
    """The strongest anomaly verdict of a process so far (decayed), with its reasons."""

    score: float
    reasons: tuple[str, ...]
    updated: float


@dataclass(slots=True)
class _ProcessState:
    updated: float
    syscalls: dict[str, float] = field(default_factory=dict)  # name -> recency, 1 when used
    events: dict[str, _Contribution] = field(default_factory=dict)  # group -> largest


class RiskModel:
    def __init__(self, config: RiskConfig) -> None:
        self.config = config
        self._state: dict[ProcessKey, _ProcessState] = {}
        self._anomalies: Mapping[ProcessKey, AnomalyInput] = {}
        self._peaks: dict[ProcessKey, _Peak] = {}
        self._no_model = NO_MODEL
        self._zeros: dict[tuple[float, str], RiskScore] = {}

    def set_anomalies(self, verdicts: Mapping[ProcessKey, AnomalyInput], why_none: str,
                      now: float | None = None) -> None:
        """This tick's anomaly verdicts; `why_none` is why there are none ("" when a model
        ran). With `now`, each process's strongest verdict is also kept (decaying) for its
        whole-life score."""
        self._anomalies = verdicts
        self._no_model = why_none
        if now is None:
            return
        for key, verdict in verdicts.items():
            score = max(0.0, min(100.0, verdict.score))
            peak = self._peak(key, now)
            if score > 0 and (peak is None or score >= peak.score):
                self._peaks[key] = _Peak(score, verdict.reasons, now)

    def _peak(self, key: ProcessKey, now: float) -> _Peak | None:
        peak = self._peaks.get(key)
        if peak is None:
            return None
        factor = self._decay(now - peak.updated)
        if factor != 1.0:
            peak.score *= factor
            peak.updated = max(peak.updated, now)
        if peak.score * self.config.anomaly_weight < NEGLIGIBLE:
            del self._peaks[key]
            return None
        return peak

    def weight(self, syscall: str) -> float:
        return self.config.base_risk_scores.get(syscall, self.config.default_risk_score)

    def _decay(self, elapsed: float) -> float:
        if elapsed <= 0:
            return 1.0
        return float(self.config.decay_factor ** (elapsed / self.config.decay_interval))

    def _at(self, key: ProcessKey, now: float, create: bool = True) -> _ProcessState | None:
        state = self._state.get(key)
        if state is None:
            if not create:
                return None
            state = self._state[key] = _ProcessState(updated=now)
            return state
        factor = self._decay(now - state.updated)
        if factor != 1.0:
            state.syscalls = {name: v * factor for name, v in state.syscalls.items()
                              if v * factor * self.weight(name) >= NEGLIGIBLE}
            for reason in [r for r, c in state.events.items() if c.points * factor < NEGLIGIBLE]:
                del state.events[reason]
            for contribution in state.events.values():
                contribution.points *= factor
        state.updated = max(state.updated, now)
        return state

    # --- inputs ------------------------------------------------------------------------------

    def observe_syscalls(self, key: ProcessKey, counts: Mapping[str, int], now: float) -> None:
        """Syscalls the process made since the last observation (name -> calls)."""
        used = [name for name, n in counts.items() if n > 0 and self.weight(name) > 0]
        if not used:
            return
        state = self._at(key, now)
        assert state is not None
        for name in used:
            state.syscalls[name] = 1.0

    def add(self, key: ProcessKey, points: float, reason: str, now: float,
            technique_id: str = "", technique_name: str = "", group: str = "") -> None:
        """Points for one event. Events of one `group` (default: the reason) count once: the
        largest (after decay) is kept, with its reason."""
        if points <= 0:
            return
        state = self._at(key, now)
        assert state is not None
        existing = state.events.get(group or reason)
        if existing is None or points >= existing.points:
            state.events[group or reason] = _Contribution(points, reason, technique_id,
                                                          technique_name)

    def forget(self, key: ProcessKey) -> None:
        self._state.pop(key, None)
        self._peaks.pop(key, None)

    def retain(self, alive: Iterable[ProcessKey]) -> None:
        """Drop every process not in `alive` (exited ones whose exit event was not seen)."""
        keep = set(alive)
        for key in [k for k in self._state if k not in keep]:
            del self._state[key]
        for key in [k for k in self._peaks if k not in keep]:
            del self._peaks[key]

    def tracked(self) -> set[ProcessKey]:
        """The processes with anything against them (decaying: their score changes with
        time); every other process scores zero."""
        return self._state.keys() | self._peaks.keys()

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, key: object) -> bool:
        return key in self._state

    # --- output ------------------------------------------------------------------------------

    def _anomaly(self, key: ProcessKey, now: float) -> tuple[float, str, tuple[str, ...]]:
        """(score 0-100, reason, the model's reasons): the process's verdict this tick, or its
        strongest earlier one (decayed) when higher."""
        verdict = self._anomalies.get(key)
        peak = self._peak(key, now)
        score = 0.0 if verdict is None else max(0.0, min(100.0, verdict.score))
        if peak is not None and peak.score > score:
            return peak.score, "; ".join(peak.reasons), peak.reasons
        if verdict is None:
            return 0.0, self._no_model or NO_VERDICT, ()
        return score, "; ".join(verdict.reasons), verdict.reasons

    def _zero(self, anomaly: float, anomaly_reason: str) -> RiskScore:
        """The score of a process with nothing against it: one object per (anomaly, reason),
        not a new one per process and tick (most of a table of thousands scores this)."""
        zero = self._zeros.get((anomaly, anomaly_reason))
        if zero is None:
            if len(self._zeros) >= 64:
                self._zeros.clear()
            zero = ZERO if anomaly_reason == NO_MODEL and anomaly == 0.0 else \
                dataclasses.replace(ZERO, anomaly=anomaly, anomaly_reason=anomaly_reason)
            self._zeros[(anomaly, anomaly_reason)] = zero
        return zero

    def score(self, key: ProcessKey, now: float) -> RiskScore:
        state = self._at(key, now, create=False)
        anomaly, anomaly_reason, anomaly_reasons = self._anomaly(key, now)
        anomaly_points = anomaly * self.config.anomaly_weight
        if state is None and anomaly_points <= 0:
            return self._zero(anomaly, anomaly_reason)
        parts: list[tuple[float, str]] = []
        syscall_points = 0.0
        event_points = 0.0
        technique = ("", "")
        if state is not None:
            for name, recency in state.syscalls.items():
                points = self.weight(name) * recency
                syscall_points += points
                parts.append((points, f"uses {name}"))
            top_event = 0.0
            for contribution in state.events.values():
                event_points += contribution.points
                parts.append((contribution.points, contribution.reason))
                if contribution.technique_id and contribution.points > top_event:
                    top_event = contribution.points
                    technique = (contribution.technique_id, contribution.technique_name)
            if not state.syscalls and not state.events:
                del self._state[key]
        if anomaly_points > 0:
            shown = ", ".join(anomaly_reasons[:2]) or "unlike this machine's training"
            parts.append((anomaly_points, f"anomaly {anomaly:.0f}/100: {shown}"))
        # The anomaly part adds its weighted points; it never scales the rules' part down.
        score = min(100.0, syscall_points + event_points + anomaly_points)
        parts.sort(key=lambda p: -p[0])
        reasons = tuple(f"{text} (+{points:.0f})" for points, text in parts[:MAX_REASONS]
                        if points >= 0.5)
        return RiskScore(round(score, 1), reasons, syscall_points, event_points, anomaly,
                         anomaly_reason, *technique)
