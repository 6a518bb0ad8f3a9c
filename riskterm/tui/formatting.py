"""Plain text and Rich formatting shared by the widgets: money, P&L, bars, times, durations, and
text from outside made safe to show (`safe`, `safe_text`)."""

from __future__ import annotations

import math
from datetime import datetime
from zoneinfo import ZoneInfo

from rich.text import Span, Text

from riskterm.safetext import has_controls, visible

DASH = "—"

STATE_STYLE = {
    "active": "green",
    "reducing": "bold black on yellow",
    "halted": "bold white on red",
    "unreported": "dim italic",
}
STATE_LABEL = {"active": "active", "reducing": "REDUCING", "halted": "⛔ HALTED",
               "unreported": "unreported"}


def safe(value: object, *, newlines: bool = False) -> str:
    """str(value) with control characters made visible (riskterm.safetext): for every string
    from a broker, a file or a model. Widgets take it as plain text, never as markup."""
    return visible(value if isinstance(value, str) else str(value), newlines=newlines)


def safe_text(text: Text, *, newlines: bool = False) -> Text:
    """`text` with control characters made visible, its styles kept on the same characters."""
    plain = text.plain
    if not has_controls(plain, newlines=newlines):
        return text
    # where each old offset lands once every character is replaced by its visible form
    starts = [0]
    for char in plain:
        starts.append(starts[-1] + len(visible(char, newlines=newlines)))
    out = text.blank_copy(visible(plain, newlines=newlines))
    out.spans = [Span(starts[s.start], starts[min(s.end, len(plain))], s.style)
                 for s in text.spans]
    return out


def money(value: float | None, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return DASH
    value = round(value, 2) + 0.0  # -0.004 and -0.0 are shown as 0.00, never -0.00
    if signed:
        return f"{value:+,.2f}"
    return f"{value:,.2f}"


def pnl(value: float | None) -> Text:
    """P&L with its sign, green when positive, red when negative."""
    if value is None:
        return Text(DASH, style="dim", justify="right")
    value = round(value, 2)
    style = "green" if value > 0 else "red" if value < 0 else "dim"
    return Text(money(value, signed=value != 0), style=style, justify="right")


def right(text: str, style: str = "") -> Text:
    return Text(text, style=style, justify="right")


def price(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4f}"


def level_style(fraction: float) -> str:
    if fraction >= 1.0:
        return "bold white on red"
    if fraction >= 0.8:
        return "bold red"
    if fraction >= 0.5:
        return "yellow"
    return "green"


def bar(fraction: float | None, width: int = 10) -> Text:
    """A horizontal bar with its percentage: `██████░░░░  62%`, coloured by level."""
    if fraction is None:
        return Text(DASH, style="dim")
    shown = max(0.0, fraction)
    filled = min(width, round(shown * width))
    style = level_style(shown)
    text = Text()
    text.append("█" * filled, style=style if shown < 1 else "red")
    text.append("░" * (width - filled), style="grey37")
    text.append(f" {shown * 100:4.0f}%", style=style)
    return text


def duration(seconds: float | None) -> str:
    """Compact duration: 42s, 5m12s, 1h05m, 2d03h."""
    if seconds is None or not math.isfinite(seconds):
        return DASH
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


def local(ts: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(ts, tz)


def clock(ts: float | None, tz: ZoneInfo) -> str:
    """Time of day in the rules' time zone: 14:30:05."""
    if ts is None:
        return DASH
    return local(ts, tz).strftime("%H:%M:%S")


def stamp(ts: float | None, tz: ZoneInfo) -> str:
    """Date and time with the zone: 2026-03-02 08:30:00 CST."""
    if ts is None:
        return DASH
    return local(ts, tz).strftime("%Y-%m-%d %H:%M:%S %Z")


def until(ts: float | None, now: float, tz: ZoneInfo) -> str:
    """When a lockout ends: 17:00 CST today, else with the date; None is permanent."""
    if ts is None:
        return "permanent"
    when = local(ts, tz)
    if when.date() == local(now, tz).date():
        return when.strftime("%H:%M %Z")
    return when.strftime("%b %d %H:%M %Z")


def parse_ts(text: str | None) -> float | None:
    """ISO-8601 (a record's ts) to epoch seconds; None stays None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def compact(value: object, limit: int = 80) -> str:
    """A one-line rendering of a parameter value or JSON argument, shortened to `limit`."""
    if isinstance(value, dict):
        text = ", ".join(f"{k}={compact(v, limit)}" for k, v in value.items())
        text = "{" + text + "}"
    elif isinstance(value, list | tuple | frozenset | set):
        text = "[" + ", ".join(compact(v, limit) for v in value) + "]"
    elif isinstance(value, float):
        text = f"{value:g}"
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
