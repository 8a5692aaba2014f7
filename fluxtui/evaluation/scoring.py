"""Verdicts per scenario and the rates, for rules alone, the model alone, and both.

One run gives all three: every alert says where it comes from (a rule, the anomaly model, or
the risk threshold), and every score has its parts (syscall mix + rule findings, anomaly).
- rules: alerts of the detection rules; a risk-threshold alert counts when the rules' part of
  its score (syscall mix + findings) had crossed by itself; risk = that part.
- model: alerts of the anomaly model; risk = the anomaly part of the score (0-100). A model
  names no ATT&CK technique, so its alerts fit any attack; the anomaly part reaching the
  threshold raises the threshold alert by itself, so "model" is that part crossing it.
- both: every alert; risk = the score the product shows.
An attack is detected when a fitting alert at medium or above names one of its actor's
processes (the script and everything it started; not the listeners and victims it set up) AND
one of them reached the threshold. A benign scenario is alarmed when any of its processes got
an alert at medium or above or reached the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxtui.evaluation.manifest import Scenario, technique_fits
from fluxtui.evaluation.observer import AlertRecord, Observation

MODES = ("rules", "model", "both")
RAN = "ok"


@dataclass
class Result:
    scenario: Scenario
    status: str  # ok, skipped, failed, timeout, error
    detail: str  # why, when not ok (a line of the script's output)
    observation: Observation
    clean: bool  # nothing left afterwards (processes, cgroups, directories)
    seconds: float
    verdicts: dict[str, bool | None]  # mode -> detected (attacks) / alarmed (benign)

    @property
    def ran(self) -> bool:
        return self.status == RAN


def _alert_fits(alert: AlertRecord, mode: str, scenario: Scenario, threshold: float) -> bool:
    if not alert.medium_or_higher:
        return False
    fits = technique_fits(alert.technique, scenario.fits) if scenario.attack else True
    if alert.source == "rules":
        return mode in ("rules", "both") and fits
    if alert.source == "model":
        return mode in ("model", "both")
    # The risk-threshold alert: for one part alone, only when that part crossed by itself.
    if mode == "rules":
        return fits and (alert.rules_part or 0) >= threshold
    if mode == "model":
        return (alert.model_part or 0) >= threshold
    return fits


def max_risk(observation: Observation, roles: tuple[str, ...], mode: str) -> float:
    attr = {"rules": "rules", "model": "model", "both": "final"}[mode]
    return max((getattr(p, attr) for p in observation.members(roles)), default=0.0)


def verdict(scenario: Scenario, observation: Observation, mode: str, threshold: float,
            model_available: bool) -> bool | None:
    if mode == "model" and not model_available:
        return None
    roles = ("actor",) if scenario.attack else ("actor", "support")
    risk = max_risk(observation, roles, mode)
    alerts = [a for a in observation.alerts if a.role in roles]
    if scenario.attack:
        if mode == "model":  # crossing the threshold is the model's alert
            return risk >= threshold
        return risk >= threshold and any(_alert_fits(a, mode, scenario, threshold)
                                         for a in alerts)
    return risk >= threshold or any(_alert_fits(a, mode, scenario, threshold) for a in alerts)


def verdicts(scenario: Scenario, observation: Observation, threshold: float,
             model_available: bool) -> dict[str, bool | None]:
    return {mode: verdict(scenario, observation, mode, threshold, model_available)
            for mode in MODES}


@dataclass(frozen=True)
class Rate:
    hits: int
    total: int
    names: tuple[str, ...]  # the scenarios counted as hits

    @property
    def percent(self) -> float | None:
        return None if self.total == 0 else 100.0 * self.hits / self.total

    def to_json(self) -> dict[str, Any]:
        return {"hits": self.hits, "total": self.total, "percent": self.percent,
                "scenarios": list(self.names)}


def rates(results: list[Result], attack: bool, mode: str) -> Rate | None:
    """Detection rate (attacks) or false-alarm rate (benign) over the scenarios that ran;
    None when the mode could not be measured."""
    ran = [r for r in results if r.ran and r.scenario.attack == attack]
    if any(r.verdicts[mode] is None for r in ran):
        return None
    hits = tuple(r.scenario.name for r in ran if r.verdicts[mode])
    return Rate(len(hits), len(ran), hits)
