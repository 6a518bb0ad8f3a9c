"""Timestamps: engine time is float epoch seconds; records carry ISO-8601 UTC strings."""

from __future__ import annotations

from datetime import UTC, datetime


def iso(ts: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with a Z suffix (milliseconds only when present)."""
    dt = datetime.fromtimestamp(ts, UTC)
    ms = round((ts - int(ts)) * 1000) if ts >= 0 else dt.microsecond // 1000
    if ms >= 1000:
        ms = 0
        dt = datetime.fromtimestamp(round(ts), UTC)
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ms:03d}Z" if ms else f"{base}Z"


def parse_iso(text: str) -> float:
    """Parse an ISO-8601 string that carries an offset into epoch seconds.

    Raises ValueError when the text is not a real instant or has no offset.
    """
    dt = datetime.fromisoformat(text)
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError("timestamp has no UTC offset")
    return dt.timestamp()
