"""LinkBanner: a bar across the top of every screen while a live broker's connection is down
(lost and reconnecting, disconnected, or a first connect that keeps failing); gone once the
broker is connected again."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from rich.text import Text
from textual.widgets import Static

from riskterm.tui import formatting as fmt
from riskterm.tui.status_bar import LinkInfo


def link_down(link: LinkInfo | None) -> bool:
    """Whether the banner is up for this link."""
    if link is None:
        return False
    return link.state in ("reconnecting", "disconnected") or (
        link.state == "connecting" and link.attempt > 0)


class LinkBanner(Static):
    DEFAULT_CSS = """
    LinkBanner { height: 2; background: $warning; color: black; padding: 0 1;
                 text-style: bold; display: none; }
    LinkBanner.-down { display: block; }
    LinkBanner.-disconnected { background: $error; color: $text; }
    """

    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.tz = tz
        self._shown: LinkInfo | None = None

    def show(self, link: LinkInfo | None) -> None:
        down = link if link_down(link) else None
        if down == self._shown:
            return
        was_shown = self._shown is not None
        self._shown = down
        self.set_class(down is not None, "-down")
        self.set_class(down is not None and down.state == "disconnected", "-disconnected")
        text = Text(no_wrap=True, overflow="ellipsis")  # two lines, each cut to the width
        if down is not None:
            since = fmt.clock(down.since, self.tz)
            broker = fmt.safe(down.broker)
            if down.state == "disconnected":
                text.append(f"⛔ {broker} DISCONNECTED since {since}")
            elif down.state == "reconnecting":
                text.append(f"⚠ {broker} CONNECTION LOST since {since} — reconnecting, "
                            f"attempt {max(down.attempt, 1)}")
            else:
                text.append(f"⚠ {broker} NOT CONNECTED — connecting since {since}, "
                            f"attempt {down.attempt}")
            text.append("\n")
            if down.reason:
                text.append(f"{fmt.safe(down.reason)} · ", style="not bold")
            text.append("the data shown may be stale", style="not bold")
        # a fixed height: only showing or hiding the banner moves the rest of the screen
        self.update(text, layout=(down is not None) != was_shown)
