"""ViolationsFeed: the live feed of violations, warnings, lockouts and unlocks, newest first.

A Line API widget over a bounded deque: adding a batch is an appendleft per record and one
refresh; only the visible lines are ever rendered, each from a strip built once per record.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from riskterm.tui import formatting as fmt
from riskterm.tui.view import SEVERITY_STYLE, severity

SIZE_STEP = 64  # the scrollable height grows in steps of this many lines
GLYPH = {"critical": "⛔", "high": "▲", "medium": "▲", "low": "●", "info": "✓"}


def feed_line(rec: dict[str, Any], tz: ZoneInfo) -> Text | None:
    """One feed line for a record, or None for records the feed leaves out. Its strings come
    from the broker (account, symbol, message, detail): shown with fmt.safe, never as markup."""
    safe = fmt.safe
    level = severity(rec)
    if level is None:
        return None
    style = SEVERITY_STYLE[level]
    kind = rec["kind"]
    ts = fmt.parse_ts(rec.get("ts"))
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(fmt.clock(ts, tz) if ts is not None else fmt.DASH, style="dim")
    text.append(f" {GLYPH[level]} ", style=style)
    account = safe(rec.get("account") or "*")
    if kind == "lockout":
        until = fmt.until(fmt.parse_ts(rec.get("until")), ts or 0.0, tz) if rec.get(
            "until") else "permanent"
        text.append(f"{account} {safe(rec['state']).upper()} by {safe(rec['rule'])} "
                    f"until {until}",
                    style=style)
    elif kind == "unlock":
        text.append(f"{account} unlocked ({safe(rec['reason'])}): {safe(rec['rule'])}",
                    style=style)
    elif kind == "enforcement":
        text.append(f"{account} {safe(rec['action'])} FAILED: ", style=style)
        text.append(safe(rec.get("detail", "")))
    else:
        label = safe(rec.get("rule", ""))
        if rec.get("symbol"):
            label += f" {safe(rec['symbol'])}"
        text.append(label, style=style)
        text.append(" · ", style="dim")
        message = safe(rec.get("message", ""))
        if not message.startswith(account):
            text.append(f"{account} ", style="bold")
        text.append(message, style="" if kind == "violation" else "dim")
    return text


class ViolationsFeed(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    ViolationsFeed { overflow-x: hidden; }
    """

    def __init__(self, tz: ZoneInfo, maxlen: int = 500, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        # [record, strip, width]: the line is built when first drawn (most lines never are) and
        # its strip is kept while the line lives and the width stays
        self._lines: deque[list[Any]] = deque(maxlen=maxlen)
        self.total = 0  # records shown since start, for tests and the title

    def add_records(self, records: Iterable[dict[str, Any]]) -> int:
        added = 0
        for rec in records:
            if severity(rec) is not None:
                self._lines.appendleft([rec, None, 0])
                added += 1
        if added:
            self.total += added
            self._size_for(len(self._lines))
            self.refresh()
        return added

    def _size_for(self, lines: int) -> None:
        # a new virtual size means a new layout: once the feed scrolls, grow it in steps
        height = lines if lines <= self.size.height else -(-lines // SIZE_STEP) * SIZE_STEP
        if height != self.virtual_size.height or self.virtual_size.width != self.size.width:
            self.virtual_size = Size(self.size.width, height)

    @property
    def lines(self) -> list[str]:
        """The plain text of the feed, newest first."""
        return [self._text(entry[0]).plain for entry in self._lines]

    def _text(self, rec: dict[str, Any]) -> Text:
        return feed_line(rec, self.tz) or Text()

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.scrollable_content_region.width  # a scrollbar takes its share
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        entry = self._lines[index]
        strip = entry[1]
        if strip is None or entry[2] != width:
            # built for this width: a line longer than the feed ends in an ellipsis
            text = self._text(entry[0])
            if text.cell_len > width:
                text.truncate(width, overflow="ellipsis")
            segments = [s for s in text.render(self.app.console) if s.text != "\n"]
            strip = entry[1] = Strip(segments)
            entry[2] = width
        base: Style = self.rich_style
        return strip.crop_extend(0, width, base).apply_style(base)

    def on_resize(self) -> None:
        self._size_for(len(self._lines))

