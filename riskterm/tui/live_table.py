"""LiveTable: a table kept in step with a dict of rows by key, drawn line by line.

`sync(rows)` is the keyed diff: rows that disappeared are dropped, rows whose values changed are
re-rendered, new rows are added, and the dict's order is the display order. Nothing is ever
cleared and rebuilt, and the cursor stays on its row's key.

Why not DataTable: its render caches are keyed by a table-wide update counter, so one
`update_cell` re-renders every visible cell; at ten flushes a second on a busy account list that
alone cost 30-80 ms a frame. Here each row's rendered line is cached until that row changes, and
a repaint crops cached strips, so a flush costs what changed.

A table narrower than its columns fits them (`fit_columns`): first the NARROW columns narrow to
their minimum (their text cut with an ellipsis, never silently), then the DROP columns go, in
that order, the narrowed ones widening again into what a dropped column frees. Each table states
its order in its docstring; what is left scrolls sideways only below the last step.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from riskterm.tui.formatting import safe, safe_text
from riskterm.tui.table_query import TableQuery

PAD = 1  # blank cells each side of a column
Column = tuple[str, str, int]  # key, label, width


def fit_columns(columns: Sequence[Column], width: int, narrow: Mapping[str, int],
                drop: Sequence[str]) -> list[Column]:
    """The columns shown in `width` cells: all at their own width when they fit; else the
    `narrow` columns narrowed (to their minimum at most), then the `drop` columns dropped in
    order until the rest fits (or nothing is left to drop)."""
    if sum(w + 2 * PAD for _, _, w in columns) <= width:
        return list(columns)
    dropped: set[str] = set()
    order = [key for key in drop if any(c[0] == key for c in columns)]
    while True:
        shown = [c for c in columns if c[0] not in dropped]
        least = sum(min(w, narrow.get(key, w)) + 2 * PAD for key, _, w in shown)
        if least <= width or len(dropped) == len(order):
            break
        dropped.add(order[len(dropped)])
    spare = max(0, width - least)
    fitted = []
    for key, label, w in shown:  # the narrowed columns take the spare cells back, in order
        low = min(w, narrow.get(key, w))
        grow = min(w - low, spare)
        spare -= grow
        fitted.append((key, label, low + grow))
    return fitted


def _cell_text(cell: RenderableType, width: int) -> Text:
    # every cell is plain text, never markup, and shows control characters as escapes: the
    # widgets build cells from broker strings with fmt.safe, and this catches what slips by
    text = safe_text(cell.copy()) if isinstance(cell, Text) else Text(safe(cell))
    text.no_wrap = True
    if text.cell_len > width:
        text.truncate(width, overflow="ellipsis")
    gap = width - text.cell_len
    if gap > 0:
        if text.justify == "right":
            text.pad_left(gap)
        else:
            text.pad_right(gap)
    return text


class LiveTable(ScrollView, can_focus=True):
    #: (column key, label, width); a label may have several lines ("PA-APEX\n544")
    COLUMNS: ClassVar[Sequence[tuple[str, str, int]]] = ()
    #: column key -> the fewest cells it narrows to in a narrow table (see fit_columns)
    NARROW: ClassVar[Mapping[str, int]] = {}
    #: column keys dropped in a narrow table, the first first (see fit_columns)
    DROP: ClassVar[Sequence[str]] = ()
    #: the scrollable height grows in steps of this many rows: a new virtual size means a new
    #: layout, too costly on every position opened or closed. 1 for tables sized to their rows.
    SIZE_STEP: ClassVar[int] = 1
    #: column key -> the index of its value in the row tuple, where that is not the column's
    #: own index (a row holding more than is shown); filtering and sorting read it there
    ROW_FIELDS: ClassVar[Mapping[str, int]] = {}

    BINDINGS: ClassVar[list[Any]] = [
        Binding("up", "cursor(-1)", "Up", show=False),
        Binding("down", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "select", "Select", show=False),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "live-table--header", "live-table--cursor", "live-table--cursor-blurred",
        "live-table--even",
    }

    DEFAULT_CSS = """
    LiveTable { height: auto; max-height: 100%; overflow-x: auto; overflow-y: auto; }
    LiveTable > .live-table--header { background: $panel; color: $foreground; text-style: bold; }
    LiveTable > .live-table--cursor { background: $block-cursor-background; }
    LiveTable > .live-table--cursor-blurred { background: $block-cursor-blurred-background; }
    LiveTable > .live-table--even { background: $surface-lighten-1 30%; }
    """

    class RowHighlighted(Message):
        """The cursor moved onto a row."""

        def __init__(self, table: LiveTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LiveTable:
            return self.table

    def row_fields(self) -> list[int]:
        """Per column (shown or dropped), the index of its value in a row."""
        return [self.ROW_FIELDS.get(key, i) for i, (key, _, _) in enumerate(self._all_columns)]

    class HeaderClicked(Message):
        """A click on the header, on the column at index `column` (the table sorts by it)."""

        def __init__(self, table: LiveTable, column: int) -> None:
            super().__init__()
            self.table = table
            self.column = column

        @property
        def control(self) -> LiveTable:
            return self.table

    class RowSelected(Message):
        """A row was chosen (enter, or a click on the row under the cursor)."""

        def __init__(self, table: LiveTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> LiveTable:
            return self.table

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._all_columns: list[Column] = list(self.COLUMNS)
        self._columns: list[Column] = list(self.COLUMNS)  # those shown, as fitted
        self._fitted_width = -1
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._raw: dict[str, tuple[Any, ...]] = {}
        self._strips: dict[str, Strip] = {}
        self._header: list[Strip] | None = None
        self.cursor_row = 0
        self._announced: str | None = None
        #: the `/` filter and the sort order (riskterm/tui/table_query.py), once either is used
        self.query: TableQuery | None = None

    # -- what subclasses provide -------------------------------------------------------------

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        """The cells of a row from its plain values."""
        return [str(v) for v in raw]

    # -- columns -----------------------------------------------------------------------------

    def ensure_columns(self, columns: Sequence[tuple[str, str, int]]) -> None:
        """Add the columns not there yet (a table whose columns follow the data: accounts)."""
        known = {key for key, _, _ in self._all_columns}
        added = [c for c in columns if c[0] not in known]
        if added:
            self._all_columns += added
            self._fitted_width = -1
            self._fit()
            self._resize()

    @property
    def shown_columns(self) -> list[str]:
        """The keys of the columns on screen (after fitting the width)."""
        return [key for key, _, _ in self._columns]

    def column_width(self, key: str) -> int | None:
        """How wide a column is drawn, None when it is dropped."""
        return next((w for k, _, w in self._columns if k == key), None)

    def _fit(self) -> bool:
        """Fit the columns to the width the table has; True when they changed."""
        width = self.scrollable_content_region.width
        if width <= 0 or width == self._fitted_width:
            return False
        self._fitted_width = width
        columns = fit_columns(self._all_columns, width, self.NARROW, self.DROP)
        if columns == self._columns:
            return False
        self._columns = columns
        self._strips.clear()
        self._header = None
        self.refresh()
        return True

    @property
    def header_height(self) -> int:
        return max((label.count("\n") + 1 for _, label, _ in self._columns), default=1)

    @property
    def total_width(self) -> int:
        return sum(width + 2 * PAD for _, _, width in self._columns)

    # -- keyed rows ----------------------------------------------------------------------------

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    def raw(self, key: str) -> tuple[Any, ...] | None:
        return self._raw.get(key)

    def get_row_index(self, key: str) -> int:
        return self._index[key]

    def selected_key(self) -> str | None:
        if not self._order:
            return None
        return self._order[min(self.cursor_row, len(self._order) - 1)]

    def sync(self, rows: Mapping[str, tuple[Any, ...]]) -> int:
        """Bring the table to `rows` (in their order); returns how many rows were added,
        changed or removed (each of those is re-rendered; the others keep their cached line).
        With a filter or a sort order, the rows shown are those of `self.query`."""
        if self.query is not None:
            rows = self.query.apply(rows)
            subtitle = self.query.describe()
            if subtitle != self.border_subtitle:
                self.border_subtitle = subtitle
        raw = self._raw
        selected = self.selected_key()
        changed = 0
        dirty: list[str] = []
        for key in [k for k in raw if k not in rows]:
            del raw[key]
            self._strips.pop(key, None)
            changed += 1
        for key, values in rows.items():
            if raw.get(key) != values:
                raw[key] = values
                self._strips.pop(key, None)
                dirty.append(key)
                changed += 1
        order = list(rows)
        reordered = order != self._order
        if reordered:
            resized = len(order) != len(self._order)
            self._order = order
            self._index = {key: i for i, key in enumerate(order)}
            if selected is not None and selected in self._index:
                self.cursor_row = self._index[selected]
            else:
                self.cursor_row = max(0, min(self.cursor_row, len(order) - 1))
            if resized:
                self._resize()
        if reordered:
            self.refresh()
        elif dirty:
            self._refresh_rows(dirty)
        if changed or reordered:
            self._announce()
        return changed

    def _refresh_rows(self, keys: list[str]) -> None:
        """Repaint only the lines of these rows (the others keep what is on screen)."""
        top = round(self.scroll_offset.y)
        hh = self.header_height
        visible = self.scrollable_content_region.height - hh
        width = self.scrollable_content_region.width
        regions = []
        for key in keys:
            y = self._index[key] - top
            if 0 <= y < visible:
                regions.append(Region(0, hh + y, width, 1))
        if regions:
            self.refresh(*regions)

    # -- cursor ------------------------------------------------------------------------------

    def move_cursor(self, *, row: int) -> None:
        if not self._order:
            return
        self.cursor_row = max(0, min(row, len(self._order) - 1))
        self._scroll_to_cursor()
        self.refresh()
        self._announce()

    def _announce(self) -> None:
        key = self.selected_key()
        if key is not None and key != self._announced:
            self._announced = key
            self.post_message(self.RowHighlighted(self, key))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.scrollable_content_region.height - self.header_height)
        top = round(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def action_cursor(self, step: int) -> None:
        self.move_cursor(row=self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        page = max(1, self.scrollable_content_region.height - self.header_height - 1)
        self.move_cursor(row=self.cursor_row + direction * page)

    def action_edge(self, end: int) -> None:
        self.move_cursor(row=len(self._order) - 1 if end else 0)

    def action_select(self) -> None:
        key = self.selected_key()
        if key is not None:
            self.post_message(self.RowSelected(self, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y < self.header_height:
            x = round(self.scroll_offset.x) + offset.x
            keys = [key for key, _, _ in self._all_columns]  # the index among all columns,
            for key, _, width in self._columns:  # whichever were dropped to fit the width
                x -= width + 2 * PAD
                if x < 0:
                    self.post_message(self.HeaderClicked(self, keys.index(key)))
                    break
            return
        row = round(self.scroll_offset.y) + offset.y - self.header_height
        if 0 <= row < len(self._order):
            if row == self.cursor_row:
                self.action_select()
            else:
                self.move_cursor(row=row)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    # -- drawing -----------------------------------------------------------------------------

    def _resize(self) -> None:
        rows = len(self._order)
        if rows + self.header_height > self.scrollable_content_region.height:  # it scrolls
            rows = -(-rows // self.SIZE_STEP) * self.SIZE_STEP
        size = Size(self.total_width, self.header_height + rows)
        if size != self.virtual_size:
            self.virtual_size = size

    def on_resize(self) -> None:
        self._fit()
        self._resize()

    def watch_show_vertical_scrollbar(self) -> None:
        # a scrollbar coming or going changes the width left for the columns
        if self._fit():
            self._resize()

    def _row_strip(self, key: str) -> Strip:
        strip = self._strips.get(key)
        if strip is None:
            line = Text(no_wrap=True, end="")
            cells = self.render_row(self._raw[key])
            widths = {k: w for k, _, w in self._columns}
            for (column, _, _), cell in zip(self._all_columns, cells, strict=False):
                width = widths.get(column)
                if width is None:  # dropped to fit a narrow table
                    continue
                line.append(" " * PAD)
                line.append_text(_cell_text(cell, width))
                line.append(" " * PAD)
            segments = [s for s in line.render(self.app.console) if s.text != "\n"]
            strip = self._strips[key] = Strip(segments, line.cell_len)
        return strip

    def _header_strips(self) -> list[Strip]:
        if self._header is None:
            lines = []
            style = self.get_component_rich_style("live-table--header")
            for i in range(self.header_height):
                line = Text(no_wrap=True, end="")
                for _, label, width in self._columns:
                    parts = label.split("\n")
                    line.append(" " * PAD)
                    line.append_text(_cell_text(parts[i] if i < len(parts) else "", width))
                    line.append(" " * PAD)
                segments = [s for s in line.render(self.app.console) if s.text != "\n"]
                lines.append(Strip(Segment.apply_style(segments, style), line.cell_len))
            self._header = lines
        return self._header

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base: Style = self.rich_style
        header = self._header_strips()
        if y < len(header):
            strip = header[y]
            style = self.get_component_rich_style("live-table--header")
            return strip.crop_extend(scroll_x, scroll_x + width, base + style)
        index = scroll_y + y - len(header)
        if not 0 <= index < len(self._order):
            return Strip.blank(width, base)
        strip = self._row_strip(self._order[index]).crop_extend(scroll_x, scroll_x + width, None)
        if index == self.cursor_row:  # a background under the cells: a red badge stays red
            cursor = self.get_component_rich_style(
                "live-table--cursor" if self.has_focus else "live-table--cursor-blurred")
            return Strip(Segment.apply_style(strip, base + Style(bgcolor=cursor.bgcolor)), width)
        if index % 2:
            even = self.get_component_rich_style("live-table--even")
            return Strip(Segment.apply_style(strip, base + Style(bgcolor=even.bgcolor)), width)
        return Strip(Segment.apply_style(strip, base), width)
