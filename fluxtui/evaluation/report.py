"""The evaluation's table (plain text for a terminal) and its JSON form.

Every string that came from a process (names, paths) was made visible by the observer; the
table is plain text, never markup.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxtui.evaluation.scoring import MODES, Rate, Result, max_risk, rates

JSON_VERSION = 1


@dataclass(frozen=True)
class Context:
    threshold: float
    model: str  # "" when a model was trained and used, else why not
    training: str  # one line about the training phase
    statuses: tuple[str, ...]  # the engine's collectors, one line each
    seconds: float


def _mark(value: bool | None, attack: bool) -> str:
    if value is None:
        return "n/a"
    if attack:
        return "DETECT" if value else "miss"
    return "ALARM" if value else "quiet"


def _rate_text(rate: Rate | None) -> str:
    if rate is None:
        return "unavailable"
    if rate.total == 0:
        return "none ran"
    return f"{rate.hits}/{rate.total} ({rate.percent:.0f}%)"


def _top(result: Result) -> tuple[float, str]:
    roles = ("actor",) if result.scenario.attack else ("actor", "support")
    members = result.observation.members(roles)
    if not members:
        return 0.0, "—"
    best = max(members, key=lambda p: (p.final, p.rules, p.model))
    if max(best.final, best.rules, best.model) <= 0:
        return 0.0, "—"
    return best.final, f"{best.name or '?'}({best.key.pid})"


def text_report(results: list[Result], ctx: Context) -> str:
    lines = [f"fluxtui evaluate · risk threshold {ctx.threshold:g} · "
             f"{len(results)} scenarios in {ctx.seconds:.0f} s",
             f"model: {'trained here' if not ctx.model else 'unavailable: ' + ctx.model}"
             f" · {ctx.training}"]
    lines += [f"  {s}" for s in ctx.statuses]
    lines.append("")
    header = (f"{'SCENARIO':<30} {'LABEL':<6} {'TECHNIQUE':<10} {'STATUS':<8} "
              f"{'RISK':>5} {'RULES':>5} {'MODEL':>5}  {'PROCESS':<22} "
              f"{'RULES':<6} {'MODEL':<6} {'BOTH':<6}")
    lines += [header, "-" * len(header)]
    for r in results:
        s = r.scenario
        roles = ("actor",) if s.attack else ("actor", "support")
        final, who = _top(r)
        rules_max = max_risk(r.observation, roles, "rules")
        model_max = max_risk(r.observation, roles, "model")
        status = r.status if r.clean else f"{r.status}!"
        lines.append(
            f"{s.name:<30} {s.label:<6} {s.technique or '—':<10} {status:<8} "
            f"{final:>5.0f} {rules_max:>5.0f} {model_max:>5.0f}  {who[:22]:<22} "
            + " ".join(f"{_mark(r.verdicts[m] if r.ran else None, s.attack):<6}"
                       for m in MODES))
        if r.detail:
            lines.append(f"    {r.status}: {r.detail}")
        if not r.clean:
            lines.append("    left something behind (processes, cgroup or directories)")
        for a in r.observation.alerts:
            lines.append(f"    alert {a.rule_id} {a.severity} {a.technique or '—'} on "
                         f"{a.process}({a.pid}) [{a.role}]")
        for a in r.observation.unattributed:
            lines.append(f"    alert {a.rule_id} {a.severity} {a.technique or '—'} on no "
                         "process (raised during the scenario, not attributed)")
        for g in r.observation.guard[:3]:
            lines.append(f"    guard {g}")
        if len(r.observation.guard) > 3:
            lines.append(f"    guard … {len(r.observation.guard) - 3} more decisions")
    lines.append("")
    lines.append(f"{'':<18}" + "".join(f"{m:<34}" for m in MODES))
    for attack, title in ((True, "detection rate"), (False, "false-alarm rate")):
        lines.append(f"{title:<18}" + "".join(
            f"{_rate_text(rates(results, attack, m)):<34}"
            for m in MODES))
    not_run = [r for r in results if not r.ran]
    if not_run:
        lines.append("not counted (did not run as written): "
                     + ", ".join(f"{r.scenario.name} ({r.status})" for r in not_run))
    lines.append("DETECT: a fitting alert at medium or above on the actor AND the actor at or "
                 "above the threshold; ALARM: any alert at medium or above, or any process "
                 "at or above the threshold. RISK: the actor's highest score (RULES and MODEL: "
                 "its parts). '!' after a status: something was left behind.")
    if ctx.model:
        lines.append(f"model columns unavailable: {ctx.model}")
    return "\n".join(lines)


def json_report(results: list[Result], ctx: Context) -> dict[str, Any]:
    scenarios = []
    for r in results:
        s = r.scenario
        roles = ("actor",) if s.attack else ("actor", "support")
        scenarios.append({
            "name": s.name, "label": s.label, "technique": s.technique or None,
            "fits": list(s.fits), "variant_of": s.variant_of or None, "title": s.title,
            "status": r.status, "detail": r.detail, "clean": r.clean,
            "seconds": round(r.seconds, 2),
            "max_risk": {m: max_risk(r.observation, roles, m) for m in MODES},
            "verdict": {m: (r.verdicts[m] if r.ran else None) for m in MODES},
            "alerts": [a.to_json() for a in r.observation.alerts],
            "unattributed_alerts": [a.to_json() for a in r.observation.unattributed],
            "guard": list(r.observation.guard),
            "processes": [{"pid": p.key.pid, "start_ticks": p.key.start_ticks,
                           "name": p.name, "role": p.role, "risk": p.final,
                           "rules": p.rules, "model": p.model, "reasons": list(p.reasons),
                           "model_reason": p.model_reason}
                          for p in r.observation.processes.values()],
            "ticks": r.observation.ticks,
        })
    summary: dict[str, Any] = {}
    for attack, name in ((True, "detection"), (False, "false_alarms")):
        summary[name] = {}
        for m in MODES:
            rate = rates(results, attack, m)
            summary[name][m] = rate.to_json() if rate is not None else {
                "unavailable": ctx.model or "no model"}
    return {"version": JSON_VERSION, "host": socket.gethostname(), "time": time.time(),
            "threshold": ctx.threshold, "model": ctx.model or "trained here",
            "training": ctx.training, "collectors": list(ctx.statuses),
            "seconds": round(ctx.seconds, 1), "summary": summary, "scenarios": scenarios}


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Atomic: write next to the target, fsync, rename."""
    directory = path.parent if str(path.parent) else Path(".")
    fd, tmp = tempfile.mkstemp(prefix=".fluxtui-eval.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=2, default=str)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise

