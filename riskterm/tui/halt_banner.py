"""HaltBanner: a red bar across the top of every screen while any account is halted.

Two lines, each fitted to the width: every locked account is named, with its rules and until
when it is locked while that fits; else the names alone; else as many names as fit and
"… +N more". With one group (halted, or reduce-only) whose first line holds only names, the
second line gives each account's rules; with both groups, one line each. Nothing is ever cut
silently: a cut ends in an ellipsis.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo

from rich.text import Text
from textual import events
from textual.widgets import Static

from riskterm.tui import formatting as fmt
from riskterm.tui.view import AccountRow

Locked = tuple[str, str, str | None, float | None]  # account, state, rules, until


def fit_names(prefix: str, names: list[str], width: int) -> str:
    """`prefix` and the names joined by " · ", as many as fit in `width`, then "… +N more"."""
    whole = prefix + " · ".join(names)
    if len(whole) <= width:
        return whole
    for shown in range(len(names) - 1, -1, -1):
        more = f"… +{len(names) - shown} more"
        text = prefix + " · ".join(names[:shown]) + (" " if shown else "") + more
        if len(text) <= width or shown == 0:
            return text
    return whole  # not reached: shown == 0 returns


def cut(text: str, width: int) -> str:
    """`text` cut to `width` with an ellipsis."""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


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
        self._shown: tuple[Locked, ...] | None = None
        self._width = 0
        self._now = 0.0
        self._rows: list[AccountRow] = []

    def show(self, rows: list[AccountRow], now: float) -> None:
        locked = tuple((r.account, r.state, r.lockout, r.lockout_until)
                       for r in rows if r.state != "active")
        if locked == self._shown and self._width == self.content_size.width:
            return
        shown = self.has_class("-halted") or self.has_class("-reducing")
        self._shown = locked
        self._rows = rows
        self._now = now
        self._width = self.content_size.width
        halted = [x for x in locked if x[1] == "halted"]
        self.set_class(bool(halted), "-halted")
        self.set_class(bool(locked) and not halted, "-reducing")
        # a fixed height: only showing or hiding the banner moves the rest of the screen
        self.update(self.banner_text(locked, self._width or 200), layout=bool(locked) != shown)

    def on_resize(self, event: events.Resize) -> None:
        if self._shown:
            self._width = -1  # refit the lines to the new width at once
            self.show(self._rows, self._now)

    def _detail(self, x: Locked) -> str:
        account, _, rule, until = x
        when = "permanent" if until is None else "until " + fmt.until(until, self._now, self.tz)
        return f"{fmt.safe(account)} ({fmt.safe(rule)}, {when})"

    def banner_text(self, locked: tuple[Locked, ...], width: int) -> Text:
        groups = []
        for state, glyph in (("halted", "⛔"), ("reducing", "⚠")):
            group = [x for x in locked if x[1] == state]
            if group:
                groups.append((f"{glyph} {len(group)} {state.upper()}: ", group))
        lines: list[str] = []
        for prefix, group in groups:
            full = prefix + " · ".join(self._detail(x) for x in group)
            if len(full) <= width:
                lines.append(full)
            else:
                lines.append(fit_names(prefix, [fmt.safe(x[0]) for x in group], width))
                if len(groups) == 1:  # the second line is free: each account's rules there
                    lines.append(cut(" · ".join(self._detail(x) for x in group), width))
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, line in enumerate(lines[:2]):
            if i:
                text.append("\n")
            text.append(line, style="" if i == 0 or len(groups) > 1 else "not bold")
        return text
