"""HaltBanner: a red bar across the top of every screen while any account is halted."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from rich.text import Text
from textual.widgets import Static

from riskterm.tui import formatting as fmt
from riskterm.tui.view import AccountRow


class HaltBanner(Static):
    DEFAULT_CSS = """
    HaltBanner { height: 2; background: $error; color: $text; padding: 0 1;
                 text-style: bold; display: none; }
    HaltBanner.-halted { display: block; }
    HaltBanner.-reducing { display: block; background: $warning; color: black; }
    """

    def __init__(self, tz: ZoneInfo, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self.tz = tz
        self._shown: tuple[tuple[str, str, str | None, float | None], ...] | None = None

    def show(self, rows: list[AccountRow], now: float) -> None:
        locked = tuple((r.account, r.state, r.lockout, r.lockout_until)
                       for r in rows if r.state != "active")
        if locked == self._shown:
            return
        self._shown = locked
        halted = [x for x in locked if x[1] == "halted"]
        shown = self.has_class("-halted") or self.has_class("-reducing")
        self.set_class(bool(halted), "-halted")
        self.set_class(bool(locked) and not halted, "-reducing")
        text = Text(no_wrap=False, overflow="ellipsis")
        for state, glyph in (("halted", "⛔"), ("reducing", "⚠")):
            group = [x for x in locked if x[1] == state]
            if not group:
                continue
            if text:
                text.append("   ")
            text.append(f"{glyph} {len(group)} {state.upper()}: ")
            for i, (account, _, rule, until) in enumerate(group):
                if i:
                    text.append(" · ", style="not bold")
                text.append(fmt.safe(account))
                when = "permanent" if until is None else "until " + fmt.until(until, now, self.tz)
                text.append(f" ({fmt.safe(rule)}, {when})", style="not bold")
        # a fixed height: only showing or hiding the banner moves the rest of the screen
        self.update(text, layout=bool(locked) != shown)
