"""The pieces of the fast table (grid.py) that are not a widget: a row's cells, where the
rows come from, column widths, styles, fitting text to a width."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from rich.cells import cell_len, set_cell_size
from rich.style import Style

Cell = tuple[str, str]  # text shown as is, Rich style string ("" for none)


class RowSource(Protocol):
    """The rows a table shows, read only where it draws: a source kept up to date by its owner
    (e.g. only the rows that changed placed anew) costs the table nothing per row off screen."""

    def __len__(self) -> int: ...
    def key_at(self, index: int) -> str: ...
    def index_of(self, key: str) -> int | None: ...
    def cells_of(self, key: str) -> tuple[Cell, ...]: ...


class RowList:
    """A RowSource over a list of (key, cells) rows."""

    def __init__(self, rows: Sequence[tuple[str, tuple[Cell, ...]]]) -> None:
        self._keys = [key for key, _ in rows]
        self._cells = dict(rows)

    def __len__(self) -> int:
        return len(self._keys)

    def key_at(self, index: int) -> str:
        return self._keys[index]

    def index_of(self, key: str) -> int | None:
        return self._keys.index(key) if key in self._cells else None

    def cells_of(self, key: str) -> tuple[Cell, ...]:
        return self._cells[key]


ARROW_ROOM = 2  # " ▼": every header keeps room for the sort arrow


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  # the narrowest it gets (never narrower than its header and arrow)
    right: bool = False  # right-align (numbers)
    grow: int = 0  # share of the width left over (0: fixed)

    @property
    def min_width(self) -> int:
        return max(self.width, cell_len(self.label) + ARROW_ROOM)


def layout_widths(columns: Sequence[Column], available: int,
                  wanted: Mapping[str, int] | None = None) -> list[int]:
    """Each column's width: its minimum; then what `wanted` asks for a column (the longest
    text it holds, e.g. names in a deep tree) as far as the room allows; then a share of what is
    left for growing columns. With less room than the minimums, the table scrolls sideways
    instead of cutting headers."""
    widths = [c.min_width for c in columns]
    spare = available - sum(w + 1 for w in widths)
    for i, column in enumerate(columns):
        extra = min(max(0, spare), max(0, (wanted or {}).get(column.key, 0) - widths[i]))
        widths[i] += extra
        spare -= extra
    weights = sum(c.grow for c in columns)
    if spare <= 0 or not weights:
        return widths
    given = 0
    growing = [i for i, c in enumerate(columns) if c.grow]
    for i in growing:
        share = spare * columns[i].grow // weights
        widths[i] += share
        given += share
    widths[growing[0]] += spare - given  # rounding left-over to the first
    return widths


@lru_cache(maxsize=256)
def parse_style(style: str) -> Style:
    return Style.parse(style) if style else Style()


_VARIABLE = re.compile(r"\$([a-z][a-z0-9-]*)")


def resolve_style(style: str, variables: Mapping[str, str]) -> Style:
    """A cell style; `$name` words are the theme's colours (`bold $error`)."""
    if "$" in style:
        style = _VARIABLE.sub(lambda m: variables.get(m.group(1), "default"), style)
    return parse_style(style)


def fit(text: str, width: int, right: bool) -> str:
    """`text` cut or padded to exactly `width` cells; cut text ends with an ellipsis."""
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…" if width > 1 else set_cell_size(text, width)
    padding = " " * (width - length)
    return padding + text if right else text + padding
