"""StatusBar: the source (a broker and its connection, or a replay), events/s, engine clock,
job queue depth and running jobs, pause state."""

from __future__ import annotations

from typing import NamedTuple
from zoneinfo import ZoneInfo

from rich.text import Text
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
        self.update(self.render_info(info), layout=False)  # one line, always

    def render_info(self, info: StatusInfo) -> Text:
        text = Text(no_wrap=True, overflow="ellipsis")
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
            text.append("  │  ")
            text.append(" ⏸ PAUSED — display frozen, rules still enforced ",
                        style="bold black on yellow")
        text.append("  │  ")
        if info.rate is not None:
            text.append(f"{info.rate:,.0f}", style="bold")
            text.append(" ev/s  ")
        text.append(f"{info.events:,}", style="bold")
        text.append(" events  │  ")
        text.append(fmt.stamp(info.clock, self.tz), style="bold")
        text.append("  │  jobs: ")
        if info.queued is None:
            text.append("no pool", style="dim")
        else:
            text.append(f"{info.queued}", style="bold")
            text.append(" queued · ")
            text.append(f"{info.running}", style="bold cyan" if info.running else "bold")
            text.append(" running")
        return text
