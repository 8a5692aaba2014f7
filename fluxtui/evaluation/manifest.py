"""The scenario manifest (demo/scenarios.yml): load, validate, and say which alerts fit.

Every problem is one `ManifestError` line naming the file, the scenario and the key.
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

MANIFEST_NAME = "scenarios.yml"
LABELS = ("attack", "benign")
VIEWS = ("processes", "guard", "connections")
TECHNIQUE = re.compile(r"^T\d{4}(?:\.\d{3})?$")
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
DEFAULT_TIMEOUT = 30.0
MAX_TIMEOUT = 120.0
_KEYS = {"name", "label", "script", "title", "view", "timeout", "technique", "fits",
         "variant_of", "varies", "note"}


class ManifestError(Exception):
    """A problem with the scenario manifest, already phrased for the user."""


@dataclass(frozen=True)
class Scenario:
    name: str
    label: str  # "attack" or "benign"
    script: Path  # absolute
    title: str
    view: str
    timeout: float
    technique: str = ""  # attacks only
    fits: tuple[str, ...] = ()  # techniques that fit, the scenario's own first
    variant_of: str = ""
    varies: str = ""
    note: str = ""

    @property
    def attack(self) -> bool:
        return self.label == "attack"


def base_technique(technique: str) -> str:
    return technique.split(".", 1)[0]


def technique_fits(alert_technique: str, fits: tuple[str, ...]) -> bool:
    """An alert's technique fits when it shares its base technique with one that fits
    (T1055 fits T1055.008 and the other way round); an alert naming none never fits."""
    if not alert_technique:
        return False
    base = base_technique(alert_technique)
    return any(base_technique(f) == base for f in fits)


def default_demo_dir() -> Path | None:
    """demo/ next to the package (a checkout), or the installed copy; None when neither."""
    candidates = [Path(__file__).resolve().parents[2] / "demo",
                  Path(sys.prefix) / "share" / "fluxtui" / "demo",
                  Path("/usr/local/share/fluxtui/demo"), Path("/usr/share/fluxtui/demo")]
    return next((c for c in candidates if (c / MANIFEST_NAME).is_file()), None)


def load_manifest(directory: Path) -> list[Scenario]:
    path = directory / MANIFEST_NAME
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    except UnicodeDecodeError:
        raise ManifestError(f"{path}: not UTF-8 text") from None
    if not isinstance(data, dict) or data.get("version") != 1:
        raise ManifestError(f"{path}: expected a mapping with version: 1")
    entries = data.get("scenarios")
    if not isinstance(entries, list) or not entries:
        raise ManifestError(f"{path}: scenarios: expected a non-empty list")
    scenarios = [_scenario(path, directory, i, entry) for i, entry in enumerate(entries)]
    _check_relations(path, scenarios)
    return scenarios


def _scenario(path: Path, directory: Path, index: int, entry: Any) -> Scenario:
    where = f"{path}: scenarios[{index}]"
    if not isinstance(entry, dict):
        raise ManifestError(f"{where}: expected a mapping")
    name = entry.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise ManifestError(f"{where}: name: expected lower-case letters, digits and dashes")
    where = f"{path}: {name}"
    unknown = sorted(set(entry) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise ManifestError(f"{where}: unknown key {unknown[0]} (known: {known})")

    def text(key: str, required: bool = True) -> str:
        value = entry.get(key, "")
        if not isinstance(value, str) or (required and not value.strip()):
            raise ManifestError(f"{where}: {key}: expected a non-empty string")
        return value.strip()

    label = text("label")
    if label not in LABELS:
        raise ManifestError(f"{where}: label: expected attack or benign, got {label!r}")
    view = text("view")
    if view not in VIEWS:
        raise ManifestError(f"{where}: view: expected one of {', '.join(VIEWS)}")
    timeout = entry.get("timeout", DEFAULT_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) \
            or not 1 <= timeout <= MAX_TIMEOUT:
        raise ManifestError(f"{where}: timeout: expected seconds from 1 to {MAX_TIMEOUT:g}")
    script = (directory / text("script")).resolve()
    if not script.is_file() or directory.resolve() not in script.parents:
        raise ManifestError(f"{where}: script: {text('script')} is not a file in {directory}")
    if not os.access(script, os.X_OK):
        raise ManifestError(f"{where}: script: {script} is not executable")
    technique = text("technique", required=label == "attack")
    fits_raw = entry.get("fits", [])
    if not isinstance(fits_raw, list) or not all(isinstance(f, str) for f in fits_raw):
        raise ManifestError(f"{where}: fits: expected a list of ATT&CK technique ids")
    if label == "attack":
        for t in (technique, *fits_raw):
            if not TECHNIQUE.match(t):
                raise ManifestError(f"{where}: {t!r} is not an ATT&CK technique id (T1234 or "
                                    "T1234.001)")
    else:
        for key in ("technique", "fits", "variant_of", "varies"):
            if key in entry:
                raise ManifestError(f"{where}: {key}: only attacks have it")
    variant_of = text("variant_of", required=False)
    varies = text("varies", required=False)
    if bool(variant_of) != bool(varies):
        raise ManifestError(f"{where}: a variant needs both variant_of and varies")
    return Scenario(name=name, label=label, script=script, title=text("title"), view=view,
                    timeout=float(timeout), technique=technique,
                    fits=tuple(dict.fromkeys([technique, *fits_raw])) if technique else (),
                    variant_of=variant_of, varies=varies, note=text("note", required=False))


def _check_relations(path: Path, scenarios: list[Scenario]) -> None:
    by_name: dict[str, Scenario] = {}
    for s in scenarios:
        if s.name in by_name:
            raise ManifestError(f"{path}: {s.name}: name given twice")
        by_name[s.name] = s
    for s in scenarios:
        if not s.variant_of:
            continue
        main = by_name.get(s.variant_of)
        if main is None or not main.attack or main.variant_of:
            raise ManifestError(f"{path}: {s.name}: variant_of: {s.variant_of!r} is not a main "
                                "attack scenario")
    varied = {s.variant_of for s in scenarios if s.variant_of}
    for s in scenarios:
        if s.attack and not s.variant_of and s.name not in varied:
            raise ManifestError(f"{path}: {s.name}: an attack needs at least one variant "
                                "(a scenario with variant_of: " + s.name + ")")


def select(scenarios: list[Scenario], names: list[str] | None) -> list[Scenario]:
    """The scenarios named (in manifest order), all of them when `names` is empty."""
    if not names:
        return list(scenarios)
    known = {s.name for s in scenarios}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ManifestError(f"unknown scenario {unknown[0]!r} (known: {', '.join(sorted(known))})")
    wanted = set(names)
    return [s for s in scenarios if s.name in wanted]
