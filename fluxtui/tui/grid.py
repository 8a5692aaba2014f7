"""A fast table for live data: one cached Strip per row, rebuilt only when that row changes.

Textual's DataTable re-renders every visible cell through Rich whenever any cell changes, which
at one tick per second over a thousand processes costs more CPU than the rest of the dashboard.
Here a row is a tuple of (text, style) cells, drawn as plain segments: no markup is ever parsed,
so untrusted text stays literal.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.scrollbar import ScrollBar, ScrollBarRender
from textual.strip import Strip

from fluxtui.tui.grid_parts import (
    Cell,
    Column,
    RowList,
    RowSource,
    fit,
    layout_widths,
    resolve_style,
)
from fluxtui.tui.line_regions import line_runs

__all__ = ["Cell", "Column", "FastTable", "RowList", "RowSource"]

# Two colours told apart: the comparison of two drawings of the scrollbar is about where its
# thumb is, whatever the theme's colours.
_BACK, _BAR = Color.parse("#000000"), Color.parse("#ffffff")

class FastTable(ScrollView, can_focus=True):
    COMPONENT_CLASSES = {"fast-table--header", "fast-table--cursor"}
    DEFAULT_CSS = """
    FastTable {
        height: 1fr;
        background: $surface;
    }
    FastTable > .fast-table--header {
        text-style: bold;
        background: $panel;
        color: $foreground;
    }
    FastTable > .fast-table--cursor {
        background: $block-cursor-background 70%;
        color: $block-cursor-foreground;
    }
    FastTable:focus > .fast-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
        text-style: $block-cursor-text-style;
    }
    """
    BINDINGS = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Details", id="details"),
    ]

    cursor_row: reactive[int] = reactive(0, always_update=True)

    class RowSelected(Message):
        def __init__(self, table: FastTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> FastTable:
            return self.table

    class HeaderClicked(Message):
        def __init__(self, table: FastTable, column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

        @property
        def control(self) -> FastTable:
            return self.table

    def __init__(self, columns: Sequence[Column], **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.columns = list(columns)
        self.labels = {c.key: c.label for c in self.columns}
        self._source: RowSource = RowList(())
        self._cursor_key: str | None = None  # the cursor's row as of the last update or move
        # What the visible lines showed at the last update: (top row, (key, cells) per line).
        self._drawn: tuple[int, list[tuple[str | None, tuple[Cell, ...] | None]]] = (0, [])
        self._strips: dict[str, tuple[tuple[Cell, ...], Style, Strip]] = {}
        self.widths = [c.min_width for c in self.columns]
        self._total_width = sum(w + 1 for w in self.widths)
        self._wanted: dict[str, int] = {}
        self._frame_style: Style | None = None  # rich_style during one render_lines

    # --- data --------------------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._source)

    @property
    def keys(self) -> list[str]:
        """Every row's key in order (built on demand: the table itself reads only what it
        draws)."""
        source = self._source
        return [source.key_at(i) for i in range(len(source))]

    @property
    def cursor_key(self) -> str | None:
        if 0 <= self.cursor_row < len(self._source):
            return self._source.key_at(self.cursor_row)
        return None

    def cell(self, key: str, column: str) -> str:
        index = next(i for i, c in enumerate(self.columns) if c.key == column)
        return self._source.cells_of(key)[index][0]

    def set_source(self, source: RowSource) -> None:
        """Show `source`, which may be the same object as before, changed in place since the
        last call: nothing of it is read but the lines on screen and the cursor's row. The
        cursor stays on the same key when it is still there, except that a view showing the
        top of the order keeps showing it: rows arriving above (the exits of a busy machine, a
        new risky process) do not drag the view down after the selected row; when that row
        leaves the first page the cursor goes to the first row (as after a sort change)."""
        keep = self._cursor_key
        page = max(1, self.size.height - 1)
        at_top = int(self.scroll_y) == 0 and self.cursor_row < page
        self._source = source
        count = len(source)
        size = Size(self._total_width, count + 1)
        before = self.virtual_size
        view = self.container_size.height
        if size != before and (size.width != before.width or before.height <= view
                               or size.height <= view):
            self.virtual_size = size  # a layout: the scrollbar may come or go
        elif size != before:
            # More or fewer rows (processes come and go every tick) past a page both times: the
            # scrollbar stays and follows, without the layout of the whole screen that setting
            # `virtual_size` asks for.
            self.set_reactive(FastTable.virtual_size, size)
            if self._same_scrollbar(before.height, size.height):
                # the bar looks the same (a thousand rows and one more): its figure follows,
                # without redrawing it
                self.vertical_scrollbar.set_reactive(ScrollBar.window_virtual_size, size.height)
            else:
                self._scroll_update(size)
        index = None if keep is None else source.index_of(keep)
        if index is not None:
            cursor = index if not at_top or index < page else 0
        else:
            cursor = min(self.cursor_row, max(0, count - 1))
        top = int(self.scroll_y)
        if cursor != self.cursor_row and not top <= cursor < top + page:
            self.cursor_row = cursor  # scrolls to it and redraws the whole view
            self._drawn = (int(self.scroll_y), self._window())
        else:
            # The cursor follows its row on screen: the lines it leaves and enters are drawn
            # again, with those that changed, not the whole view.
            moved = (self.cursor_row, cursor) if cursor != self.cursor_row else ()
            self.set_reactive(FastTable.cursor_row, cursor)
            self._refresh_changed(moved)
        self._cursor_key = self.cursor_key
        self._forget_strips()

    def _same_scrollbar(self, before: int, after: int) -> bool:
        """Would the vertical scrollbar be drawn the same for `after` rows as for `before`
        (asked of Textual's own scrollbar drawing)? Rows come and go every tick on a busy
        machine, and redrawing the bar, every line of it, on each tick was a good part of
        the table's drawing cost; past a few hundred rows its thumb rarely moves."""
        bar = self.vertical_scrollbar
        renderer = bar.renderer
        if (not self.show_vertical_scrollbar or bar.window_virtual_size != before
                or not issubclass(renderer, ScrollBarRender)
                or self.scroll_y != self.validate_scroll_y(self.scroll_y)):
            return False
        height, window, position = bar.size.height, bar.window_size, bar.position

        def drawn(rows: int) -> list[Segment]:
            shown = window if window < rows else 0
            return list(renderer.render_bar(
                size=height, virtual_size=rows, window_size=shown, position=position,
                thickness=bar.thickness, vertical=True, back_color=_BACK, bar_color=_BAR
            ).segments)

        return drawn(before) == drawn(after)

    def _window(self) -> list[tuple[str | None, tuple[Cell, ...] | None]]:
        """(key, cells) of each visible line below the header; (None, None) past the rows."""
        source = self._source
        count = len(source)
        top = int(self.scroll_y)
        lines: list[tuple[str | None, tuple[Cell, ...] | None]] = []
        for index in range(top, top + max(0, self.size.height - 1)):
            if index < count:
                key = source.key_at(index)
                lines.append((key, source.cells_of(key)))
            else:
                lines.append((None, None))
        return lines

    def _refresh_changed(self, also: tuple[int, ...] = ()) -> None:
        """Redraw only the visible lines whose row moved or whose cells changed (and the rows
        at the indexes `also`): a tick over a thousand sleeping processes then redraws a
        handful of lines, not the whole view. When the view scrolled or was resized since the
        last update, it is all redrawn."""
        top = int(self.scroll_y)
        drawn_top, drawn = self._drawn
        window = self._window()
        self._drawn = (top, window)
        if drawn_top != top or len(drawn) != len(window):
            self.refresh()
            return
        width = self.size.width
        marked = {index - top + 1 for index in also}
        runs = line_runs((y for y, (old, new) in enumerate(zip(drawn, window, strict=True),
                                                           start=1)
                          if old[0] != new[0] or old[1] is not new[1] or y in marked), width)
        if runs:
            self.refresh(*runs)

    def _forget_strips(self) -> None:
        """Cached lines are kept for the rows on screen; past a few pages of them (rows gone or
        scrolled past) only those on screen are kept."""
        if len(self._strips) > 4 * max(16, self.size.height):
            shown = {key for key, _ in self._drawn[1] if key is not None}
            self._strips = {k: v for k, v in self._strips.items() if k in shown}

    def on_resize(self) -> None:
        self._relayout()
        self._drawn = (int(self.scroll_y), self._window())  # all of it is drawn again

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: object) -> None:
        self._strips.clear()  # cells name theme colours
        self.refresh()

    def want_width(self, column: str, width: int) -> None:
        """Ask for `column` to be at least `width` wide where the room allows (0: no wish)."""
        if self._wanted.get(column, 0) != width:
            self._wanted[column] = width
            self._relayout()

    def _relayout(self) -> None:
        widths = layout_widths(self.columns, self.scrollable_content_region.width, self._wanted)
        if widths != self.widths:
            self.widths = widths
            self._total_width = sum(w + 1 for w in widths)
            self._strips.clear()
            self.virtual_size = Size(self._total_width, len(self._source) + 1)
            self.refresh()

    def set_labels(self, labels: dict[str, str]) -> None:
        self.labels = {c.key: labels.get(c.key, c.label) for c in self.columns}
        self.refresh(Region(0, 0, self.size.width, 1))

    # --- drawing -----------------------------------------------------------------------------

    def _row_strip(self, key: str, base: Style) -> Strip:
        cells = self._source.cells_of(key)
        cached = self._strips.get(key)
        if cached is not None and cached[0] is cells and cached[1] == base:
            return cached[2]
        segments = []
        for column, width, (text, style) in zip(self.columns, self.widths, cells, strict=True):
            segments.append(Segment(fit(text, width, column.right),
                                    base + resolve_style(style, self.app.theme_variables)))
            segments.append(Segment(" ", base))
        strip = Strip(segments, self._total_width)
        self._strips[key] = (cells, base, strip)
        return strip

    def _cursor_strip(self, key: str, base: Style) -> Strip:
        """The selected row: the cursor's colours win over the cells' own (an alarm colour on
        the cursor's background could be unreadable), so the selection shows in every theme."""
        cursor = base + self.get_component_rich_style("fast-table--cursor")
        segments = []
        for column, width, (text, _style) in zip(self.columns, self.widths,
                                                 self._source.cells_of(key),
                                                 strict=True):
            segments.append(Segment(fit(text, width, column.right), cursor))
            segments.append(Segment(" ", cursor))
        return Strip(segments, self._total_width)

    def _header_strip(self) -> Strip:
        style = self.get_component_rich_style("fast-table--header")
        segments = []
        for column, width in zip(self.columns, self.widths, strict=True):
            segments.append(Segment(fit(self.labels[column.key], width, column.right), style))
            segments.append(Segment(" ", style))
        return Strip(segments, self._total_width)

    def render_lines(self, crop: Region) -> list[Strip]:
        # The widget's style walks every ancestor's styles: once per frame, not once a line.
        self._frame_style = self.rich_style
        try:
            return super().render_lines(crop)
        finally:
            self._frame_style = None

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        base = self._frame_style if self._frame_style is not None else self.rich_style
        if y == 0:
            strip = self._header_strip()
        else:
            index = scroll_y + y - 1
            if index >= len(self._source):
                return Strip.blank(width, base)
            key = self._source.key_at(index)
            if index == self.cursor_row:
                fill = base + self.get_component_rich_style("fast-table--cursor")
                strip = self._cursor_strip(key, base)
                return strip.crop_extend(scroll_x, scroll_x + width, fill)
            strip = self._row_strip(key, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    # --- cursor and mouse --------------------------------------------------------------------

    def _page_rows(self) -> int:
        return max(1, self.size.height - 2)

    def watch_cursor_row(self, row: int) -> None:
        # force: before the screen's layout has shown the scrollbar, Textual ignores a scroll
        # (allow_vertical_scroll is False) and the cursor would stay off screen; the offset is
        # still bounded by max_scroll_y, which follows virtual_size at once.
        self._cursor_key = self.cursor_key
        top = int(self.scroll_y)
        visible = max(1, self.size.height - 1)
        if row < top:
            self.scroll_to(y=row, animate=False, force=True)
        elif row >= top + visible:
            self.scroll_to(y=row - visible + 1, animate=False, force=True)
        self.refresh()

    def move_cursor_to(self, row: int) -> None:
        if len(self._source):
            self.cursor_row = max(0, min(len(self._source) - 1, row))

    def action_cursor(self, delta: int) -> None:
        self.move_cursor_to(self.cursor_row + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor_to(self.cursor_row + direction * self._page_rows())

    def action_jump(self, row: int) -> None:
        self.move_cursor_to(row if row >= 0 else len(self._source) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def _column_at(self, x: int) -> str | None:
        left = 0
        for column, width in zip(self.columns, self.widths, strict=True):
            if left <= x < left + width + 1:
                return column.key
            left += width + 1
        return None

    def scroll_home_keep(self) -> None:
        """Show the top of the order; the cursor stays on its row when that row is on the first
        page, else it goes to the first row."""
        if self.cursor_row >= max(1, self.size.height - 1):
            self.cursor_row = 0
        self.scroll_to(y=0, animate=False, force=True)
        self.refresh()

    def on_click(self, event: events.Click) -> None:
        scroll_x, scroll_y = self.scroll_offset
        if event.y == 0:
            column = self._column_at(event.x + scroll_x)
            if column is not None:
                self.post_message(self.HeaderClicked(self, column))
            return
        index = scroll_y + event.y - 1
        if 0 <= index < len(self._source):
            if index == self.cursor_row and event.chain >= 2:
                self.action_select()
            self.move_cursor_to(index)
