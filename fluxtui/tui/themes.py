"""Themes from the themes/ directory (YAML: a name and Textual's colour variables)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from textual.theme import Theme

THEME_KEYS = {"name", "dark", "primary", "secondary", "accent", "foreground", "background",
              "surface", "panel", "success", "warning", "error"}


def theme_dirs() -> list[Path]:
    """The repository's themes/ (source checkout, editable install), then the installed copy."""
    repo = Path(__file__).resolve().parents[2] / "themes"
    return [repo, Path(sys.prefix) / "share" / "fluxtui" / "themes"]


def load_theme(path: Path) -> Theme:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "name" not in data or "primary" not in data:
        raise ValueError(f"{path}: a theme needs at least 'name' and 'primary'")
    unknown = set(data) - THEME_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown theme keys: {', '.join(sorted(unknown))}")
    return Theme(**data)


def bundled_themes() -> list[Theme]:
    for directory in theme_dirs():
        files = sorted(directory.glob("*.yml"))
        if files:
            return [load_theme(f) for f in files]
    return []
