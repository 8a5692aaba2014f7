"""Themes shipped in the package (fluxtui/themes/*.yml: a name and Textual's colour variables),
found through importlib.resources: a source checkout, an editable install, a wheel and
`pip install --user` read them the same way."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

import yaml
from textual.theme import Theme

THEME_KEYS = {"name", "dark", "primary", "secondary", "accent", "foreground", "background",
              "surface", "panel", "success", "warning", "error"}


def theme_files() -> list[Traversable]:
    """The bundled theme files, by name."""
    folder = files("fluxtui").joinpath("themes")
    return sorted((f for f in folder.iterdir() if f.name.endswith(".yml") and f.is_file()),
                  key=lambda f: f.name)


def load_theme(path: Traversable) -> Theme:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "name" not in data or "primary" not in data:
        raise ValueError(f"{path}: a theme needs at least 'name' and 'primary'")
    unknown = set(data) - THEME_KEYS
    if unknown:
        raise ValueError(f"{path}: unknown theme keys: {', '.join(sorted(unknown))}")
    return Theme(**data)


def bundled_themes() -> list[Theme]:
    return [load_theme(f) for f in theme_files()]


def theme_error(name: str) -> str | None:
    """Why `name` cannot be used as the theme (None: it can): checked before the UI starts."""
    from textual.theme import BUILTIN_THEMES

    known = sorted({t.name for t in bundled_themes()} | set(BUILTIN_THEMES))
    if name in known:
        return None
    return f"unknown theme {name!r}; available: {', '.join(known)}"


# Severity levels in the colours of the theme in use; the ANSI names are for themes that do
# not define them (Textual's own), as Textual itself falls back.
DEFAULT_LEVELS = {"success": "green", "warning": "yellow", "error": "red"}
TOKEN_LEVELS = {"success": "$success", "warning": "$warning", "error": "$error"}


def level_colors(theme: Theme | None) -> dict[str, str]:
    if theme is None:
        return dict(DEFAULT_LEVELS)
    return {name: getattr(theme, name) or fallback for name, fallback in DEFAULT_LEVELS.items()}


def _luminance(hex_color: str) -> float:
    from textual.color import Color

    color = Color.parse(hex_color)

    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)


def contrast_ratio(first: str, second: str) -> float:
    """WCAG 2 contrast ratio of two colours (1 to 21; AA for text is 4.5)."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
