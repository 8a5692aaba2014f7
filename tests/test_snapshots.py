"""SVG snapshots of the main screen fed by a deterministic engine (fixed size, no live data).

Update after an intended visual change with: .venv/bin/python -m pytest tests/test_snapshots.py
--snapshot-update, then look at the SVGs before committing them."""

from __future__ import annotations

import dataclasses

import pytest

from fluxtui.tui import panels
from fluxtui.tui.app import FluxApp
from tests.fakes import StaticEngine, row, snapshot

SIZE = (150, 42)


@pytest.fixture(autouse=True)
def fixed_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(panels, "host_identity", lambda: ("demo-host", "6.1.0-demo"))


def test_main_screen_dark(snap_compare) -> None:
    app = FluxApp(StaticEngine(snapshot()), privileged=True, theme_name="fluxtui-dark")
    assert snap_compare(app, terminal_size=SIZE)


def test_main_screen_passive_high_contrast(snap_compare) -> None:
    snap = snapshot([row(1, "systemd", ppid=0, cpu=0.5, risk=3.0),
                     row(77, "[bold]not markup[/bold]", cpu=91.0, risk=95.0)])
    app = FluxApp(StaticEngine(snap), privileged=False, theme_name="fluxtui-contrast")
    assert snap_compare(app, terminal_size=SIZE)


def test_tree_view_light(snap_compare) -> None:
    app = FluxApp(StaticEngine(snapshot()), privileged=True, theme_name="fluxtui-light")
    assert snap_compare(app, press=["t"], terminal_size=SIZE)


TAB_KEYS = {"processes": "1", "connections": "2", "alerts": "3", "guard": "4"}


@pytest.mark.parametrize("size", [(80, 24), (200, 60)], ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("tab", list(TAB_KEYS))
def test_each_tab(snap_compare, tab: str, size: tuple[int, int]) -> None:
    from tests.test_tui_loop import STATUSES, full_snapshot

    app = FluxApp(StaticEngine(full_snapshot(STATUSES)), privileged=True,
                  theme_name="fluxtui-dark")
    assert snap_compare(app, press=[TAB_KEYS[tab]], terminal_size=size)


def exited_rows_snapshot():
    from tests.test_tui_exited import exited

    rows = [row(1, "systemd", ppid=0, cpu=0.5, risk=3.0),
            row(300, "bash", ppid=1, cpu=2.0, risk=7.0),
            row(301, "vim", ppid=300, cpu=12.5, risk=1.0),
            exited(302, "ptracer", risk=57.0, user="0"),
            exited(303, "", risk=7.0)]
    return snapshot([dataclasses.replace(r, ppid=300) if r.pid in (302, 303) else r
                     for r in rows])


@pytest.mark.parametrize("theme", ["fluxtui-dark", "fluxtui-light", "fluxtui-contrast"])
def test_exited_rows_80x24(snap_compare, theme: str) -> None:
    """Exited processes: muted italic, "exited", — for what only a live process has; the
    top of the risk order in view; the selection on the first row."""
    app = FluxApp(StaticEngine(exited_rows_snapshot()), privileged=True, theme_name=theme)
    assert snap_compare(app, terminal_size=(80, 24))


def test_exited_rows_in_the_tree_100x30(snap_compare) -> None:
    app = FluxApp(StaticEngine(exited_rows_snapshot()), privileged=True,
                  theme_name="fluxtui-dark")
    assert snap_compare(app, press=["t"], terminal_size=(100, 30))
