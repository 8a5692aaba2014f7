"""Lines of a widget to repaint, as regions: one per run of adjacent lines, so that a single
`refresh(*regions)` covers them all (each refresh call costs Textual a walk of the widget's
geometry)."""

from __future__ import annotations

from collections.abc import Iterable

from textual.geometry import Region


def line_runs(lines: Iterable[int], width: int) -> list[Region]:
    """`lines`: line numbers in ascending order."""
    runs: list[Region] = []
    for y in lines:
        last = runs[-1] if runs else None
        if last is not None and last.bottom == y:
            runs[-1] = Region(0, last.y, width, last.height + 1)
        else:
            runs.append(Region(0, y, width, 1))
    return runs
