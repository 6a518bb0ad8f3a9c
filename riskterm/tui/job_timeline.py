"""JobTimeline: the events of a job in order; new events are appended while the job runs, and
the view follows the newest unless the cursor was moved up. enter opens a row whole."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import DataTable

from riskterm.tui import formatting as fmt

DETAIL_WIDTH = 38


def _cut(text: str) -> Text:
    """A detail cell: a DataTable crops a long cell silently, so it is cut here, with an
    ellipsis (enter opens the row whole)."""
    cell = Text(text.replace("\n", " "), no_wrap=True)
    if cell.cell_len > DETAIL_WIDTH:
        cell.truncate(DETAIL_WIDTH, overflow="ellipsis")
    return cell


class JobTimeline(DataTable[RenderableType]):
    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz
        self.shown = 0
        self.events: list[dict[str, Any]] = []

    def on_mount(self) -> None:
        self.add_column("Time", width=8, key="ts")
        self.add_column("Event", width=10, key="type")
        self.add_column("Detail", width=DETAIL_WIDTH, key="detail")

    def extend(self, events: list[dict[str, Any]]) -> int:
        """Append the events not shown yet (the timeline only grows)."""
        if len(events) < self.shown:  # a retry restarted the job's story: show it afresh
            self.clear()
            self.shown = 0
        new = events[self.shown:]
        # the timeline follows its end (a finished job opens at its last row) unless the cursor
        # was moved up to read an earlier row
        follow = self.row_count == 0 or self.cursor_row >= self.row_count - 1
        for event in new:
            ts = event.get("ts")
            when = fmt.parse_ts(ts) if isinstance(ts, str) else ts
            detail = event.get("detail")
            if not isinstance(detail, str):
                detail = "" if detail is None else str(detail)
            # Text cells: a DataTable parses plain strings as markup
            self.add_row(Text(fmt.clock(when, self.tz), style="dim"),
                         Text(fmt.safe(event.get("type", "")), style="bold"),
                         _cut(fmt.safe(detail)))
            self.shown += 1
        self.events = events
        if new and follow:
            self.move_cursor(row=self.row_count - 1, scroll=False)
            # after the next refresh (scroll_end waits for it): a table not laid out yet, on a
            # screen that just opened, has nothing to scroll
            self.scroll_end(animate=False, x_axis=False)
        return len(new)

    def _follow_end(self) -> None:
        # DataTable sizes itself lazily (its virtual size grows on a later idle), and a screen
        # that just opened is laid out after the rows arrive: the end is sought again whenever
        # the size changes, while the cursor is on the newest row
        if self.row_count and self.cursor_row >= self.row_count - 1:
            self.scroll_end(animate=False, x_axis=False)

    def watch_virtual_size(self) -> None:
        self._follow_end()

    def on_resize(self) -> None:
        self._follow_end()

    def full_text(self, row: int) -> tuple[str, Text] | None:
        """The title and the whole text of the event at `row` (for the row's own view)."""
        if not 0 <= row < len(self.events):
            return None
        event = self.events[row]
        ts = event.get("ts")
        when = fmt.parse_ts(ts) if isinstance(ts, str) else ts
        text = Text()
        text.append(fmt.stamp(when, self.tz), style="dim")
        text.append(f"  {fmt.safe(event.get('type', ''))}\n\n", style="bold")
        detail = event.get("detail")
        text.append(fmt.safe("" if detail is None else str(detail), newlines=True))
        return f"Timeline event {row + 1} of {len(self.events)}", text
