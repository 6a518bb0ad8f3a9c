"""Timestamps: engine time is float epoch seconds; records carry ISO-8601 UTC strings."""

from __future__ import annotations

from datetime import UTC, datetime

_cache: dict[int, str] = {}


def iso(ts: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with a Z suffix (milliseconds only when present)."""
    ms = round(ts * 1000)
    sec, frac = divmod(ms, 1000)
    base = _cache.get(sec)
    if base is None:
        if len(_cache) > 4096:  # records come in time order: a small cache of seconds suffices
            _cache.clear()
        base = _cache[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{frac:03d}Z" if frac else f"{base}Z"


def parse_iso(text: str) -> float:
    """Parse an ISO-8601 string that carries an offset into epoch seconds.

    Raises ValueError when the text is not a real instant or has no offset.
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset")
    return dt.timestamp()
