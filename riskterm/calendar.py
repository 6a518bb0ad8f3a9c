"""Trading-day and session arithmetic on epoch seconds, DST-correct in the configured zone.

Decisions:
- A local wall time that does not exist (spring forward: 02:30 on 2026-03-08 in Chicago) happens
  at the end of the gap (03:00 local). One that happens twice (fall back: 01:30 on 2026-11-01)
  happens at its first occurrence. This applies to the daily reset and to session bounds.
- Trading day: the reset instants split time into trading days. A timestamp at or after the local
  ``daily_reset`` belongs to the next calendar day's trading day (CME style: with the default 17:00
  reset, Monday 18:00 is Tuesday's trading day). For a reset before noon (00:00, 04:00) the label
  is the calendar day the trading day starts on instead, so that a midnight reset gives the
  calendar date itself rather than tomorrow.
- Sessions include their start and exclude their end. A session whose start is later than its end
  spans midnight and is labelled by the calendar day it ends on (CME: the session opening Sunday
  17:00 is Monday's); ``days`` and ``holidays`` apply to that label. Start equal to end is refused
  by the config.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from riskterm.config import SessionConfig

_DAY = timedelta(days=1)
_NOON = time(12, 0)


def local_instant(day: date, at: time, tz: ZoneInfo) -> float:
    """Epoch seconds of wall time ``at`` on ``day``: first occurrence, or the end of a DST gap."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=tz, fold=0).timestamp()
    if datetime.fromtimestamp(first, tz).replace(tzinfo=None) == wall:
        return first  # exists (fold=0 is the first of two occurrences when ambiguous)
    # In a gap: fold=1 reads the wall time with the later offset (an instant before the gap),
    # fold=0 with the earlier one (an instant after it). The gap ends at the first instant
    # whose wall time is >= the requested one; transitions fall on whole seconds.
    lo, hi = int(wall.replace(tzinfo=tz, fold=1).timestamp()), int(first)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid
    return float(hi)


class TradingCalendar:
    def __init__(self, tz: ZoneInfo, daily_reset: time, session: SessionConfig) -> None:
        self.tz = tz
        self.daily_reset = daily_reset
        self.session = session
        self._overnight = session.start > session.end
        # labels searched for a held session before giving up (holidays can skip whole weeks)
        self._horizon = 7 * (len(session.holidays) + 2)

    # ----------------------------------------------------------------- trading day

    def _local_date(self, ts: float) -> date:
        return datetime.fromtimestamp(ts, self.tz).date()

    def reset_at(self, day: date) -> float:
        """The daily reset instant on calendar day ``day``."""
        return local_instant(day, self.daily_reset, self.tz)

    def _day_start(self, ts: float) -> date:
        """Calendar date of the reset that starts the trading day containing ts."""
        d = self._local_date(ts)
        return d if ts >= self.reset_at(d) else d - _DAY

    def trading_day(self, ts: float) -> date:
        start = self._day_start(ts)
        return start + _DAY if self.daily_reset >= _NOON else start

    def trading_day_bounds(self, ts: float) -> tuple[float, float]:
        """[start, end) of the trading day containing ts (23 or 25 hours across DST switches)."""
        start = self._day_start(ts)
        return self.reset_at(start), self.reset_at(start + _DAY)

    def next_reset(self, ts: float) -> float:
        d = self._local_date(ts)
        for k in range(3):
            t = self.reset_at(d + k * _DAY)
            if t > ts:
                return t
        raise AssertionError("unreachable: a reset happens every calendar day")

    # ----------------------------------------------------------------- sessions

    def is_session_day(self, label: date) -> bool:
        return label.weekday() in self.session.days and label not in self.session.holidays

    def session_bounds(self, label: date) -> tuple[float, float]:
        """[start, end) of the session labelled ``label`` (held or not)."""
        first = label - _DAY if self._overnight else label
        return (local_instant(first, self.session.start, self.tz),
                local_instant(label, self.session.end, self.tz))

    def _sessions_from(self, ts: float) -> Iterator[tuple[float, float]]:
        """Held sessions in order, from the one that may contain ts on."""
        label = self._local_date(ts) - _DAY
        for _ in range(self._horizon + 2):
            if self.is_session_day(label):
                yield self.session_bounds(label)
            label += _DAY

    def in_session(self, ts: float) -> bool:
        for start, end in self._sessions_from(ts):
            if start > ts:
                return False
            if ts < end:
                return True
        return False

    def next_session_start(self, ts: float) -> float:
        for start, _ in self._sessions_from(ts):
            if start > ts:
                return start
        raise ValueError("no trading session held: check session days and holidays")

    def next_session_end(self, ts: float) -> float:
        for _, end in self._sessions_from(ts):
            if end > ts:
                return end
        raise ValueError("no trading session held: check session days and holidays")
