"""Validation of stream documents against the ECS field definitions of the declared version
(tests/data/ecs_flat-<version>.yml.gz, generated/ecs/ecs_flat.yml of elastic/ecs)."""

from __future__ import annotations

import functools
import gzip
import ipaddress
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from fluxtui.ecs import ECS_VERSION

DATA = Path(__file__).parent / "data"
# Namespaces of our own: anything below them is fluxtui's (ECS: custom fields go in a
# namespace of their own, never inside an ECS one).
CUSTOM = ("fluxtui",)
KEYWORDS = {"keyword", "constant_keyword", "wildcard", "match_only_text", "text", "flattened"}


@functools.cache
def definitions() -> dict[str, Any]:
    with gzip.open(DATA / f"ecs_flat-{ECS_VERSION}.yml.gz", "rt", encoding="utf-8") as f:
        return yaml.safe_load(f)


@functools.cache
def allowed(field: str) -> dict[str, list[str]]:
    """name -> expected event types (for event.category), or name -> [] for the others."""
    return {v["name"]: v.get("expected_event_types") or []
            for v in definitions()[field].get("allowed_values", [])}


def leaves(doc: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from leaves(value, name + ".")
        else:
            yield name, value


def _type_ok(ecs_type: str, value: Any) -> bool:
    if ecs_type in KEYWORDS:
        return isinstance(value, str)
    if ecs_type == "long":
        return isinstance(value, int) and not isinstance(value, bool) and -2**63 <= value < 2**63
    if ecs_type in ("float", "scaled_float", "double", "half_float"):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if ecs_type == "boolean":
        return isinstance(value, bool)
    if ecs_type == "date":
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return value.endswith("Z") or "+" in value[10:]
    if ecs_type == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if ecs_type == "object":
        return isinstance(value, dict)
    return False


def problems(doc: dict[str, Any]) -> list[str]:
    """Everything in one document that ECS (as declared) does not accept."""
    defs = definitions()
    out = []
    for name, value in leaves(doc):
        if name.split(".")[0] in CUSTOM:
            continue
        spec = defs.get(name)
        if spec is None:
            parent = name.rsplit(".", 1)[0]
            if defs.get(parent, {}).get("type") == "object":  # e.g. labels.*
                continue
            out.append(f"{name}: not an ECS {ECS_VERSION} field")
            continue
        if value is None:
            continue
        values = value if isinstance(value, list) else [value]
        if "array" in spec.get("normalize", []) and not isinstance(value, list):
            out.append(f"{name}: ECS keeps it as an array, got {value!r}")
        for item in values:
            if not _type_ok(spec["type"], item):
                out.append(f"{name}: {item!r} is not a {spec['type']}")
        listed = list(allowed(name)) if spec.get("allowed_values") else \
            spec.get("expected_values") or []
        for item in values if listed else ():
            if item not in listed:
                out.append(f"{name}: {item!r} is not an allowed value")
    event = doc.get("event", {})
    categories = event.get("category", [])
    types = event.get("type", [])
    pairs = allowed("event.category")
    for category in categories:
        expected = pairs.get(category, [])
        odd = [t for t in types if t not in expected]
        if odd:
            out.append(f"event.type {odd} not expected with event.category {category!r}")
    if categories and not types:
        out.append("event.category without event.type")
    for required in ("@timestamp", "ecs.version", "event.kind", "event.dataset", "host.name"):
        if required not in dict(leaves(doc)):
            out.append(f"{required} missing")
    return out
