"""Load config.yml into typed, frozen dataclasses, with one precise error per bad value.

Each section is a dataclass; a field's type says what is accepted and `field(metadata=...)` may add
`range=(low, high)` for numbers. Unknown keys, wrong types and out-of-range values raise
`ConfigError`, whose message names the file, the key, the line and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from fluxtui.files import UnsafeFileError, refuse_if_writable_by_others

SYSTEM_CONFIG = Path("/etc/fluxtui/config.yml")


class ConfigError(Exception):
    """A configuration problem, already phrased for the user."""


def _range(low: float, high: float) -> dict[str, Any]:
    return {"range": (low, high)}


@dataclass(frozen=True)
class GeneralConfig:
    refresh_interval: float = field(default=1.0, metadata=_range(0.1, 60))
    theme: str = "fluxtui-dark"
    history_seconds: int = field(default=300, metadata=_range(10, 3600))
    max_alerts: int = field(default=500, metadata=_range(10, 100000))


@dataclass(frozen=True)
class SyscallConfig:
    enabled: bool = True
    ring_buffer_pages: int = field(default=64, metadata=_range(1, 4096))


@dataclass(frozen=True)
class RiskConfig:
    risk_threshold: float = field(default=50.0, metadata=_range(0, 100))
    anomaly_weight: float = field(default=0.3, metadata=_range(0, 1))
    decay_factor: float = field(default=0.9, metadata=_range(0, 1))
    decay_interval: float = field(default=10.0, metadata=_range(0.1, 3600))
    default_risk_score: float = field(default=0.0, metadata=_range(0, 100))
    base_risk_scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class GuardConfig:
    enabled: bool = True
    mode: Literal["enforce", "monitor"] = "enforce"
    homes: list[str] = field(default_factory=list)
    decision_timeout: float = field(default=30.0, metadata=_range(1, 3600))
    interaction_cap: float = field(default=120.0, metadata=_range(1, 3600))
    default_action: Literal["allow", "deny"] = "deny"
    rules_file: str = "/var/lib/fluxtui/rules.yml"
    audit_db: str = "/var/lib/fluxtui/audit.db"


@dataclass(frozen=True)
class NetworkConfig:
    enabled: bool = True


@dataclass(frozen=True)
class Config:
    general: GeneralConfig = field(default_factory=GeneralConfig)
    syscalls: SyscallConfig = field(default_factory=SyscallConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    guard: GuardConfig = field(default_factory=GuardConfig)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    source: str = field(default="<defaults>", metadata={"internal": True})


def default_config_path(explicit: str | None) -> Path | None:
    """--config wins; otherwise /etc/fluxtui/config.yml if present; otherwise built-in defaults."""
    if explicit:
        return Path(explicit)
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    return None


def load_config(path: Path | None) -> Config:
    if path is None:
        return Config()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    try:
        refuse_if_writable_by_others(path)
    except UnsafeFileError as exc:
        raise ConfigError(str(exc)) from None
    return parse_config(text, str(path))


def parse_config(text: str, source: str) -> Config:
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}{where}: not valid YAML: {problem}") from None
    if root is None:
        return dataclasses.replace(Config(), source=source)
    cfg = _build(Config, root, source, "")
    return dataclasses.replace(cfg, source=source)


# --- the generic validator -------------------------------------------------------------------


def _fail(source: str, node: yaml.Node, key: str, expected: str) -> typing.NoReturn:
    shown = node.value if isinstance(node, yaml.ScalarNode) else _node_kind(node)
    raise ConfigError(
        f"{source}:{node.start_mark.line + 1}: {key or '<top>'}: expected {expected}, got {shown!r}"
    )


def _node_kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return "a value"


def _build(cls: type, node: yaml.Node, source: str, prefix: str) -> Any:
    if not isinstance(node, yaml.MappingNode):
        _fail(source, node, prefix, "a mapping of settings")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if not f.metadata.get("internal")}
    values: dict[str, Any] = {}
    for key_node, value_node in node.value:
        name = key_node.value
        key = f"{prefix}.{name}" if prefix else str(name)
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(
                f"{source}:{key_node.start_mark.line + 1}: {key}: unknown key (known: {known})"
            )
        if name in values:
            raise ConfigError(f"{source}:{key_node.start_mark.line + 1}: {key}: given twice")
        values[name] = _convert(hints[name], fields[name], value_node, source, key)
    return cls(**values)


def _convert(tp: Any, fld: dataclasses.Field[Any] | None, node: yaml.Node, source: str, key: str
             ) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, node, source, key)  # type: ignore[arg-type]
    if origin in (typing.Union, types.UnionType):
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], fld, node, source, key)
    if origin is Literal:
        value = _scalar(node, source, key, "one of " + ", ".join(map(str, args)))
        if value not in args:
            _fail(source, node, key, "one of " + ", ".join(map(str, args)))
        return value
    if origin is list:
        if not isinstance(node, yaml.SequenceNode):
            _fail(source, node, key, "a list")
        return [_convert(args[0], None, item, source, f"{key}[{i}]")
                for i, item in enumerate(node.value)]
    if origin is dict:
        if not isinstance(node, yaml.MappingNode):
            _fail(source, node, key, "a mapping")
        out: dict[Any, Any] = {}
        for k_node, v_node in node.value:
            k = _convert(args[0], None, k_node, source, key)
            out[k] = _convert(args[1], fld, v_node, source, f"{key}.{k}")
        return out
    if tp is bool:
        value = _scalar(node, source, key, "true or false")
        if not isinstance(value, bool):
            _fail(source, node, key, "true or false")
        return value
    if tp in (int, float):
        expected = "a whole number" if tp is int else "a number"
        bounds = fld.metadata.get("range") if fld is not None else None
        if bounds:
            expected += f" from {bounds[0]} to {bounds[1]}"
        value = _scalar(node, source, key, expected)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(source, node, key, expected)
        if tp is int and not isinstance(value, int):
            _fail(source, node, key, expected)
        if bounds and not bounds[0] <= value <= bounds[1]:
            _fail(source, node, key, expected)
        return tp(value)
    if tp is str:
        value = _scalar(node, source, key, "a string")
        if not isinstance(value, str):
            _fail(source, node, key, "a string")
        return value
    raise TypeError(f"config type {tp!r} for {key} is not supported")


_LOADER = yaml.SafeLoader("")


def _scalar(node: yaml.Node, source: str, key: str, expected: str) -> Any:
    if not isinstance(node, yaml.ScalarNode):
        _fail(source, node, key, expected)
    return _LOADER.construct_object(node, deep=True)


def config_from_env_or_file(explicit: str | None) -> Config:
    """The configuration a command should run with (see `default_config_path`)."""
    return load_config(default_config_path(explicit or os.environ.get("FLUXTUI_CONFIG")))
