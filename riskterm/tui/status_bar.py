"""StatusBar: the source (a broker and its connection, or a replay), events/s, engine clock,
job queue depth and running jobs, pause state, rejected input lines.

One line, never cut silently: when the parts do not fit the width, the less important ones go
first, in this order: events/s, the job queue, the event count, the clock's date and zone (the
time of day stays), then the pause notice shrinks to "⏸ PAUSED" and the separators tighten,
then the time of day goes; the source, its connection, the engine state and the rejected lines
stay (the last resort is an ellipsis)."""

from __future__ import annotations

from typing import NamedTuple
from zoneinfo import ZoneInfo

from rich.text import Text
from textual import events
from textual.widgets import Static

from riskterm.tui import formatting as fmt


class LinkInfo(NamedTuple):
    """A live broker's connection as last polled (riskterm.brokers.base.Link)."""

    broker: str  # how the dashboard names the broker: "sim", "ProjectX"
    state: str  # connecting, connected, reconnecting, disconnected
    attempt: int  # reconnect attempts since the link was lost
    since: float  # when `state` began (epoch seconds)
    reason: str  # why the link was lost


class StatusInfo(NamedTuple):
    source: str
    events: int
    rate: float | None  # events/s; None when deterministic output is asked for
    clock: float | None  # engine time
    queued: int | None  # None: no job pool
    running: int | None
    paused: bool
    state: str  # "starting", "live", "ended", "stopping", "failed"
    link: LinkInfo | None = None  # None: a replay, which has no connection
    rejected: int = 0  # input lines rejected in this run (CONTRACT §1)


LINK_STYLE = {"connected": "green", "connecting": "yellow", "reconnecting": "bold yellow",
              "disconnected": "bold red"}


def link_text(link: LinkInfo, tz: ZoneInfo) -> str:
    """connected · connecting · reconnecting (attempt 3, since 14:02:11) · disconnected since
    14:02:11."""
    if link.state == "connected":
        return "connected"
    since = fmt.clock(link.since, tz)
    if link.state in ("reconnecting", "connecting"):
        if link.attempt or link.state == "reconnecting":
            return f"{link.state} (attempt {max(link.attempt, 1)}, since {since})"
        return link.state
    return f"{link.state} since {since}"


class StatusBar(Static):
    DEFAULT_CSS = """
    StatusBar { height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.tz = tz
        self.info: StatusInfo | None = None

    def show(self, info: StatusInfo) -> None:
        if info == self.info:
            return
        self.info = info
        self.update(self.fitted(info, self.content_size.width), layout=False)  # one line

    def on_resize(self, event: events.Resize) -> None:
        if self.info is not None:
            self.update(self.fitted(self.info, self.content_size.width), layout=False)

    def fitted(self, info: StatusInfo, width: int) -> Text:
        """The line for `info` in `width` cells, the less important parts left out first."""
        steps = ({}, {"rate": False}, {"jobs": False}, {"count": False}, {"date": False},
                 {"short_pause": True}, {"tight": True}, {"clock": False})
        shown: dict[str, bool] = {}
        text = Text()
        for step in steps:
            shown |= step
            text = self.render_info(info, **shown)
            if width <= 0 or text.cell_len <= width:
                break
        return text

    def render_info(self, info: StatusInfo, *, rate: bool = True, jobs: bool = True,
                    count: bool = True, date: bool = True, short_pause: bool = False,
                    tight: bool = False, clock: bool = True) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        bar = " │ " if tight else "  │  "  # tight: the last step before an ellipsis
        dot = {"live": "green", "ended": "yellow", "failed": "red"}.get(info.state, "grey50")
        link = info.link
        if link is not None and info.state == "live" and link.state != "connected":
            dot = LINK_STYLE.get(link.state, "yellow").removeprefix("bold ")
        text.append("● ", style=dot)
        text.append(fmt.safe(info.source), style="bold")  # a replay's file name, a plugin's
        if link is not None and info.state in ("live", "starting"):
            text.append(" · ")
            text.append(link_text(link, self.tz), style=LINK_STYLE.get(link.state, ""))
        if info.state != "live":
            text.append(f" ({info.state})", style=dot)
        if info.paused:  # early in the line: a narrow terminal cuts the end off
            text.append(bar)
            text.append(" ⏸ PAUSED " if short_pause else
                        " ⏸ PAUSED — display frozen, rules still enforced ",
                        style="bold black on yellow")
        if info.rejected:
            text.append(bar)
            text.append(f"{info.rejected:,} rejected line{'s' if info.rejected != 1 else ''}",
                        style="bold red")
        if rate and info.rate is not None:
            text.append(bar)
            text.append(f"{info.rate:,.0f}", style="bold")
            text.append(" ev/s")
        if count:
            text.append(bar)
            text.append(f"{info.events:,}", style="bold")
            text.append(" events")
        if clock:
            text.append(bar)
            text.append(fmt.stamp(info.clock, self.tz) if date else
                        fmt.clock(info.clock, self.tz), style="bold")
        if not jobs:
            return text
        text.append(bar + "jobs: ")
        if info.queued is None:
            text.append("no pool", style="dim")
        else:
            text.append(f"{info.queued}", style="bold")
            text.append(" queued · ")
            text.append(f"{info.running}", style="bold cyan" if info.running else "bold")
            text.append(" running")
        return text
