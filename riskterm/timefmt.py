"""Timestamps: engine time is float epoch seconds; records carry ISO-8601 UTC strings."""

from __future__ import annotations

from datetime import UTC, datetime

_cache: dict[int, str] = {}
_CYCLE_YEARS = 400
_CYCLE = 146097 * 86400  # seconds in 400 Gregorian years: the calendar repeats exactly


def iso(ts: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with a Z suffix (milliseconds only when present).

    An instant past the year 9999 (a ten-year lockout that starts in 9998) is written in
    ISO-8601's expanded form, "+10008-01-03T15:00:00Z", rather than failing.
    """
    ms = round(ts * 1000)
    sec, frac = divmod(ms, 1000)
    base = _cache.get(sec)
    if base is None:
        if len(_cache) > 4096:  # records come in time order: a small cache of seconds suffices
            _cache.clear()
        try:
            base = _seconds(datetime.fromtimestamp(sec, UTC))
        except (OverflowError, ValueError, OSError):
            base = _expanded(sec)
        _cache[sec] = base
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


def _expanded(sec: int) -> str:
    """Seconds beyond datetime's years 1..9999: shifted by whole 400-year cycles into range,
    formatted, and the year put back (with a sign, as ISO-8601 writes years past 9999)."""
    cycles = (sec - 200 * 365 * 86400) // _CYCLE  # lands in 1770..2170, well inside the range
    text = _seconds(datetime.fromtimestamp(sec - cycles * _CYCLE, UTC))
    year = int(text[:4]) + cycles * _CYCLE_YEARS
    return f"{'+' if year > 0 else '-'}{abs(year):04d}{text[4:]}"


def _seconds(dt: datetime) -> str:
    """YYYY-MM-DDTHH:MM:SS, the year always four digits (strftime's %Y is not, for year 2)."""
    return dt.replace(tzinfo=None).isoformat(timespec="seconds")


def parse_iso(text: str) -> float:
    """Parse an ISO-8601 string that carries an offset into epoch seconds.

    Raises ValueError when the text is not a real instant or has no offset.
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset")
    return dt.timestamp()
