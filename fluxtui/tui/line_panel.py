"""A `Static` that repaints only the lines whose text changed (issue 13).

`Static.update` re-renders every line of a widget, its border and padding included, even when
one figure changed. At 1 Hz, the header and the metric panels re-rendered that way were most of
the dashboard's own drawing cost; most of their lines (memory, swap, idle interfaces, the
collectors' statuses) are the same from one tick to the next. Here each line is kept as a
`Strip`, rendered by Textual's own path (so it looks exactly as before: styles, theme, CSS
overflow), and a tick asks Textual to repaint only the lines that differ.
"""

from __future__ import annotations

from collections.abc import Hashable

from rich.text import Text
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widgets import Static

from fluxtui.tui.line_regions import line_runs


def _line_key(line: Text) -> Hashable:
    """What a line shows: its characters and their styles."""
    return line.plain, tuple(line.spans), line.style


class LinePanel(Static):
    """Shown with `show_text(text, layout)`: the lines that changed are repainted (a layout of
    the screen when `layout`, for a change of size)."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self._text = Text()
        self._lines: list[Text] = []
        self._keys: list[Hashable] = []
        self._strips: list[Strip | None] = []
        self._strips_width = -1
        self._visual: Visual | None = None
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def render(self) -> Visual:
        """The whole text (for a layout, a text selection, and tests)."""
        if self._visual is None:
            self._visual = visualize(self, self._text, markup=False)
        return self._visual

    def show_text(self, text: Text, layout: bool) -> int:
        """Show `text`; returns how many lines were asked to repaint (all of them, with a
        layout)."""
        lines = list(text.split("\n", allow_blank=True))
        keys = [_line_key(line) for line in lines]
        self._text, self._visual = text, None
        old = self._keys
        self._lines, self._keys = lines, keys
        if layout or len(keys) != len(old) or not self.is_mounted:
            self._strips = [None] * len(lines)
            self.refresh(layout=layout)
            return len(lines)
        changed = [y for y, (before, now) in enumerate(zip(old, keys, strict=True))
                   if before != now]
        for y in changed:
            self._strips[y] = None
        regions = line_runs(changed, self.size.width)
        if regions:
            self.refresh(*regions)
        return sum(region.height for region in regions)

    def refresh(self, *regions: Region, repaint: bool = True, layout: bool = False,
                recompose: bool = False) -> LinePanel:
        if repaint and not regions:  # all of it: a style, theme or size change
            self._strips = [None] * len(self._lines)
        return super().refresh(*regions, repaint=repaint, layout=layout, recompose=recompose)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.text_selection is not None:  # the whole text, as Static draws it
            return super().render_line(y)
        if width != self._strips_width:
            self._strips = [None] * len(self._lines)
            self._strips_width = width
        if y >= len(self._lines):
            return Strip.blank(width, self.visual_style.rich_style)
        strip = self._strips[y]
        if strip is None:
            self._render_missing(width)
            strip = self._strips[y]
            assert strip is not None
        return strip

    def _render_missing(self, width: int) -> None:
        """Every line not rendered yet, in one pass of Textual's renderer (each call has a
        fixed cost, larger than that of a line)."""
        missing = [y for y, strip in enumerate(self._strips) if strip is None]
        text = Text("\n").join(self._lines[y] for y in missing)
        visual = visualize(self, text, markup=False)
        rendered = Visual.to_strips(self, visual, width, len(missing), self.visual_style)
        blank = Strip.blank(width, self.visual_style.rich_style)
        for index, y in enumerate(missing):
            strip = rendered[index] if index < len(rendered) else blank
            # rendered as line `index` of the text above: Textual's text selection reads the
            # line each character is on
            self._strips[y] = strip.apply_offsets(0, y) if index != y else strip
