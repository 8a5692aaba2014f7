"""Themes: WCAG AA contrast of every text colour on every background of each bundled theme,
the figures drawn in the theme's colours, and an unknown theme as a start-up error."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.style import Style

from fluxtui.tui import panels
from fluxtui.tui.app import FluxApp
from fluxtui.tui.themes import bundled_themes, contrast_ratio, theme_error
from tests.fakes import StaticEngine, snapshot
from tests.tui_support import until

REPO = Path(__file__).resolve().parents[1]
THEMES = bundled_themes()
TEXT = ("foreground", "primary", "secondary", "accent", "success", "warning", "error")
BACKGROUNDS = ("background", "surface", "panel")
AA = 4.5


def test_contrast_ratio_matches_wcag_reference_values() -> None:
    assert contrast_ratio("#000000", "#FFFFFF") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.01)
    assert contrast_ratio("#FF8700", "#F6F7F9") == pytest.approx(2.25, abs=0.01)


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.name)
def test_every_text_colour_meets_aa_on_every_background(theme) -> None:  # type: ignore[no-untyped-def]
    failures = []
    for text in TEXT:
        for background in BACKGROUNDS:
            ratio = contrast_ratio(getattr(theme, text), getattr(theme, background))
            if ratio < AA:
                failures.append(f"{text} on {background}: {ratio:.2f}")
    assert not failures, f"{theme.name}: {failures}"


@pytest.mark.parametrize("theme", THEMES, ids=lambda t: t.name)
@pytest.mark.parametrize("cpu", [20.0, 60.0, 80.0, 95.0])
async def test_cpu_figure_is_drawn_in_a_theme_colour_that_meets_aa(theme, cpu: float,  # type: ignore[no-untyped-def]
                                                                 monkeypatch) -> None:
    monkeypatch.setattr(panels, "host_identity", lambda: ("demo-host", "6.1.0-demo"))
    app = FluxApp(StaticEngine(snapshot(cpu=cpu)), privileged=True, theme_name=theme.name)
    async with app.run_test(size=(160, 48)) as pilot:
        panel = app.query_one("#cpu-panel")
        await until(pilot, lambda: "CPU" in str(panel.render()))
        text = panel.render()
        figure = f"{cpu:.1f}%"
        span = next(s for s in text.spans  # type: ignore[attr-defined]
                    if text.plain[s.start:s.end] == figure)  # type: ignore[attr-defined]
        style = span.style
        if isinstance(style, str):
            style = Style.parse(style)
        if isinstance(style, Style):  # Rich
            color = style.color.get_truecolor().hex  # type: ignore[union-attr]
        else:  # Textual's
            color = style.foreground.hex  # type: ignore[union-attr]
        ratio = contrast_ratio(color, theme.surface)
        assert ratio >= AA, f"{figure} in {color} on {theme.surface}: {ratio:.2f}"


def test_unknown_theme_is_named_by_the_check_before_start() -> None:
    assert theme_error("fluxtui-light") is None
    assert theme_error("nord") is None  # Textual's own
    problem = theme_error("nope")
    assert problem is not None and "'nope'" in problem and "fluxtui-dark" in problem


@pytest.mark.parametrize("how", ["option", "config"])
def test_unknown_theme_is_a_start_up_error(tmp_path: Path, how: str) -> None:
    config = tmp_path / "config.yml"
    config.write_text("general:\n  theme: nope\n" if how == "config" else "{}\n")
    config.chmod(0o600)
    argv = [sys.executable, "-m", "fluxtui", "--config", str(config)]
    if how == "option":
        argv += ["--theme", "nope"]
    result = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60,
                            stdin=subprocess.DEVNULL)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown theme 'nope'" in lines[0], result.stderr
    assert "\x1b" not in result.stdout  # the UI never started
