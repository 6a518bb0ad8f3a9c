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

GLYPH = {"critical": "⛔", "high": "▲", "medium": "▲", "low": "●", "info": "✓"}


def feed_line(rec: dict[str, Any], tz: ZoneInfo) -> Text | None:
    """One feed line for a record, or None for records the feed leaves out."""
    level = severity(rec)
    if level is None:
        return None
    style = SEVERITY_STYLE[level]
    kind = rec["kind"]
    ts = fmt.parse_ts(rec.get("ts"))
    text = Text(no_wrap=True, overflow="ellipsis", end="")
    text.append(fmt.clock(ts, ZoneInfo("UTC") if ts is None else tz), style="dim")
    text.append(f" {GLYPH[level]} ", style=style)
    text.append(f"{rec.get('account') or '*':<15} ", style="bold")
    if kind == "lockout":
        until = rec.get("until") or "permanent"
        text.append(f"{rec['state'].upper()} by {rec['rule']} until {until}", style=style)
    elif kind == "unlock":
        text.append(f"unlocked ({rec['reason']}) {rec['rule']}", style=style)
    elif kind == "enforcement":
        text.append(f"{rec['action']} FAILED ", style=style)
        text.append(str(rec.get("detail", "")))
    else:
        label = rec.get("rule", "")
        if rec.get("symbol"):
            label += f" {rec['symbol']}"
        text.append(f"{label:<28} ", style=style)
        text.append(str(rec.get("message", "")), style="" if kind == "violation" else "dim")
    return text


class ViolationsFeed(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    ViolationsFeed { overflow-x: hidden; }
    """

    def __init__(self, tz: ZoneInfo, maxlen: int = 500, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.tz = tz
        self._lines: deque[Text] = deque(maxlen=maxlen)
        self._strips: dict[int, Strip] = {}
        self.total = 0  # records shown since start, for tests and the title

    def add_records(self, records: Iterable[dict[str, Any]]) -> int:
        added = 0
        for rec in records:
            line = feed_line(rec, self.tz)
            if line is not None:
                self._lines.appendleft(line)
                added += 1
        if added:
            self.total += added
            self._strips.clear()
            self.virtual_size = Size(self.size.width, len(self._lines))
            self.refresh()
        return added

    @property
    def lines(self) -> list[str]:
        """The plain text of the feed, newest first."""
        return [t.plain for t in self._lines]

    def render_line(self, y: int) -> Strip:
        index = y + self.scroll_offset.y
        width = self.size.width
        if index >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        strip = self._strips.get(index)
        if strip is None:
            text = self._lines[index]
            segments = [s for s in text.render(self.app.console) if s.text != "\n"]
            strip = self._strips[index] = Strip(segments)
        base: Style = self.rich_style
        return strip.crop_extend(0, width, base).apply_style(base)

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._lines))

