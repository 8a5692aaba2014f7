"""Number formatting and text sparklines for the dashboard."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

SPARK = "▁▂▃▄▅▆▇█"
DASH = "—"  # a value no collector provides (yet)


def human_bytes(value: float | None, suffix: str = "") -> str:
    if value is None:
        return DASH
    for unit in ("B", "K", "M", "G", "T"):
        if abs(value) < 1024 or unit == "T":
            if unit == "B":
                return f"{value:.0f}{unit}{suffix}"
            return f"{value:.1f}{unit}{suffix}"
        value /= 1024
    raise AssertionError("unreachable")


def human_rate(value: float | None) -> str:
    return human_bytes(value, "/s")


def percent(value: float | None) -> str:
    return DASH if value is None else f"{value:.1f}"


def duration(seconds: float) -> str:
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    return f"{days}d {hours:02d}:{minutes:02d}" if days else f"{hours:02d}:{minutes:02d}"


def sparkline(values: Sequence[float], width: int, ceiling: float | None = None) -> str:
    """The last `width` values as block characters, scaled to `ceiling` (or the maximum)."""
    tail = list(values)[-width:]
    if not tail:
        return ""
    top = ceiling if ceiling is not None else max(tail)
    if top <= 0:
        return SPARK[0] * len(tail)
    last = len(SPARK) - 1
    return "".join(SPARK[min(last, max(0, round(v / top * last)))] for v in tail)


_ANSI_LEVELS = {"success": "green", "warning": "yellow", "error": "red"}


def level_style(value: float, colors: Mapping[str, str] = _ANSI_LEVELS) -> str:
    """Colour thresholds at 50/70/90 percent, in `colors` (the theme's success, warning and
    error: fixed ANSI colours are unreadable on a light background)."""
    if value >= 90:
        return f"bold {colors['error']}"
    if value >= 70:
        return f"bold {colors['warning']}"
    if value >= 50:
        return colors["warning"]
    return colors["success"]


def bar(value: float, width: int) -> str:
    filled = max(0, min(width, round(value / 100 * width)))
    return "█" * filled + "░" * (width - filled)
