"""JobTimeline: the events of a job in order; new events are appended while the job runs."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text
from textual.widgets import DataTable

from riskterm.tui import formatting as fmt


class JobTimeline(DataTable[RenderableType]):
    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.tz = tz
        self.shown = 0

    def on_mount(self) -> None:
        self.add_column("Time", width=8, key="ts")
        self.add_column("Event", width=10, key="type")
        self.add_column("Detail", width=38, key="detail")

    def extend(self, events: list[dict[str, Any]]) -> int:
        """Append the events not shown yet (the timeline only grows)."""
        if len(events) < self.shown:  # a retry restarted the job's story: show it afresh
            self.clear()
            self.shown = 0
        new = events[self.shown:]
        for event in new:
            ts = event.get("ts")
            when = fmt.parse_ts(ts) if isinstance(ts, str) else ts
            detail = event.get("detail")
            if not isinstance(detail, str):
                detail = "" if detail is None else str(detail)
            # Text cells: a DataTable parses plain strings as markup
            self.add_row(Text(fmt.clock(when, self.tz), style="dim"),
                         Text(fmt.safe(event.get("type", "")), style="bold"),
                         Text(fmt.safe(detail), no_wrap=True, overflow="ellipsis"))
            self.shown += 1
        if new:
            self.move_cursor(row=self.row_count - 1)
        return len(new)
