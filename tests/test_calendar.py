"""Trading-day and session arithmetic, DST switches in America/Chicago included."""

from __future__ import annotations

from datetime import date, datetime, time
from zoneinfo import ZoneInfo

import pytest

from riskterm.calendar import TradingCalendar, local_instant
from riskterm.config import SessionConfig

CHI = ZoneInfo("America/Chicago")
HOUR = 3600.0
RTH = SessionConfig(start=time(8, 30), end=time(15, 0),
                    holidays=frozenset({date(2026, 4, 3)}))          # Good Friday
GLOBEX = SessionConfig(start=time(17, 0), end=time(16, 0),
                       holidays=frozenset({date(2026, 1, 19)}))      # MLK day (a Monday)


def at(text: str) -> float:
    """Epoch seconds of a Chicago wall time (first occurrence when ambiguous)."""
    return datetime.fromisoformat(text).replace(tzinfo=CHI).timestamp()


def utc(text: str) -> float:
    return datetime.fromisoformat(text + "+00:00").timestamp()


def cal(reset: time = time(17, 0), session: SessionConfig = RTH) -> TradingCalendar:
    return TradingCalendar(CHI, reset, session)


# --------------------------------------------------------------------------- trading day


def test_trading_day_around_the_reset() -> None:
    c = cal()
    assert c.trading_day(at("2026-03-02T16:59:59")) == date(2026, 3, 2)
    assert c.trading_day(at("2026-03-02T17:00:00")) == date(2026, 3, 3)   # at the reset: next
    assert c.trading_day(at("2026-03-02T23:59:59")) == date(2026, 3, 3)
    assert c.trading_day(at("2026-03-03T00:00:00")) == date(2026, 3, 3)
    assert c.trading_day(at("2026-03-03T16:59:59.999")) == date(2026, 3, 3)


def test_trading_day_with_a_morning_reset_is_the_calendar_day() -> None:
    c = cal(reset=time(0, 0))
    assert c.trading_day(at("2026-03-02T00:00")) == date(2026, 3, 2)
    assert c.trading_day(at("2026-03-02T23:59")) == date(2026, 3, 2)
    c = cal(reset=time(4, 0))
    assert c.trading_day(at("2026-03-02T03:59")) == date(2026, 3, 1)
    assert c.trading_day(at("2026-03-02T04:00")) == date(2026, 3, 2)


def test_next_reset_is_strictly_after() -> None:
    c = cal()
    assert c.next_reset(at("2026-03-02T12:00")) == at("2026-03-02T17:00")
    assert c.next_reset(at("2026-03-02T17:00")) == at("2026-03-03T17:00")
    assert c.next_reset(at("2026-03-02T16:59:59.5")) == at("2026-03-02T17:00")


def test_spring_forward_trading_day_is_23_hours() -> None:
    c = cal()
    first = c.next_reset(at("2026-03-07T12:00"))
    second = c.next_reset(first)
    assert first == utc("2026-03-07T23:00")      # 17:00 CST
    assert second == utc("2026-03-08T22:00")     # 17:00 CDT
    assert second - first == 23 * HOUR
    assert c.trading_day_bounds(first + 1) == (first, second)
    assert c.trading_day(first) == c.trading_day(second - 1) == date(2026, 3, 8)


def test_fall_back_trading_day_is_25_hours() -> None:
    c = cal()
    first = c.next_reset(at("2026-10-31T12:00"))
    second = c.next_reset(first)
    assert first == utc("2026-10-31T22:00")      # 17:00 CDT
    assert second == utc("2026-11-01T23:00")     # 17:00 CST
    assert second - first == 25 * HOUR
    assert c.trading_day(second - 1) == date(2026, 11, 1)
    assert c.trading_day(second) == date(2026, 11, 2)


def test_reset_in_the_spring_forward_gap_happens_at_its_end() -> None:
    c = cal(reset=time(2, 30))
    reset = c.next_reset(at("2026-03-08T01:00"))
    assert reset == utc("2026-03-08T08:00")      # 03:00 CDT, where the gap ends
    assert local_instant(date(2026, 3, 8), time(2, 30), CHI) == reset
    assert c.next_reset(reset) == at("2026-03-09T02:30")
    assert c.trading_day(reset - 1) == date(2026, 3, 7)
    assert c.trading_day(reset) == date(2026, 3, 8)


def test_ambiguous_reset_happens_at_its_first_occurrence() -> None:
    c = cal(reset=time(1, 30))
    reset = c.next_reset(utc("2026-11-01T05:00"))  # 00:00 CDT
    assert reset == utc("2026-11-01T06:30")        # the first 01:30 (CDT)
    assert c.next_reset(reset) == utc("2026-11-02T07:30")   # 01:30 CST, 25 hours later
    # the second 01:10 (CST) comes after the reset: it stays in the new trading day
    assert c.trading_day(utc("2026-11-01T07:10")) == date(2026, 11, 1)
    assert c.trading_day(utc("2026-11-01T06:20")) == date(2026, 10, 31)


# --------------------------------------------------------------------------- day sessions


def test_session_window_start_inclusive_end_exclusive() -> None:
    c = cal()
    assert not c.in_session(at("2026-03-02T08:29:59"))
    assert c.in_session(at("2026-03-02T08:30"))
    assert c.in_session(at("2026-03-02T14:59:59.999"))
    assert not c.in_session(at("2026-03-02T15:00"))


def test_weekends_and_holidays_are_closed() -> None:
    c = cal()
    assert not c.in_session(at("2026-03-07T10:00"))   # Saturday
    assert not c.in_session(at("2026-03-08T10:00"))   # Sunday
    assert not c.in_session(at("2026-04-03T10:00"))   # Good Friday holiday
    assert c.in_session(at("2026-04-02T10:00"))


def test_next_session_start_skips_weekends_and_holidays() -> None:
    c = cal()
    assert c.next_session_start(at("2026-03-02T07:00")) == at("2026-03-02T08:30")
    assert c.next_session_start(at("2026-03-02T08:30")) == at("2026-03-03T08:30")  # strictly
    assert c.next_session_start(at("2026-03-06T15:00")) == at("2026-03-09T08:30")  # weekend
    assert c.next_session_start(at("2026-04-02T15:00")) == at("2026-04-06T08:30")  # + holiday


def test_next_session_end_of_held_sessions() -> None:
    c = cal()
    assert c.next_session_end(at("2026-03-02T09:00")) == at("2026-03-02T15:00")
    assert c.next_session_end(at("2026-03-02T15:00")) == at("2026-03-03T15:00")
    assert c.next_session_end(at("2026-03-07T12:00")) == at("2026-03-09T15:00")
    assert c.next_session_end(at("2026-04-02T16:00")) == at("2026-04-06T15:00")


def test_day_session_across_spring_forward() -> None:
    every_day = SessionConfig(start=time(1, 0), end=time(5, 0), days=frozenset(range(7)))
    c = cal(session=every_day)
    start, end = c.session_bounds(date(2026, 3, 8))
    assert end - start == 3 * HOUR
    assert c.in_session(at("2026-03-08T01:59:59")) and c.in_session(at("2026-03-08T03:00"))


# --------------------------------------------------------------------------- overnight sessions


def test_overnight_session_belongs_to_the_day_it_ends() -> None:
    c = cal(session=GLOBEX)
    assert c.session_bounds(date(2026, 3, 3)) == (at("2026-03-02T17:00"), at("2026-03-03T16:00"))
    assert c.in_session(at("2026-03-01T17:00"))        # Sunday evening opens Monday's session
    assert not c.in_session(at("2026-03-01T16:59:59"))
    assert c.in_session(at("2026-03-02T00:30"))
    assert c.in_session(at("2026-03-02T15:59:59"))
    assert not c.in_session(at("2026-03-02T16:00"))    # daily break 16:00-17:00
    assert c.in_session(at("2026-03-02T17:00"))
    assert c.in_session(at("2026-03-06T15:59"))        # Friday
    assert not c.in_session(at("2026-03-06T17:00"))    # Friday evening: Saturday, no session
    assert not c.in_session(at("2026-03-07T12:00"))


def test_overnight_session_next_start_and_end() -> None:
    c = cal(session=GLOBEX)
    assert c.next_session_start(at("2026-03-06T16:30")) == at("2026-03-08T17:00")
    assert c.next_session_end(at("2026-03-06T16:30")) == at("2026-03-09T16:00")
    assert c.next_session_end(at("2026-03-02T03:00")) == at("2026-03-02T16:00")
    # the weekend session opens on the DST switch day, after the switch: 17:00 CDT
    start, end = c.session_bounds(date(2026, 3, 9))
    assert (start, end - start) == (utc("2026-03-08T22:00"), 23 * HOUR)


def test_overnight_session_holiday_applies_to_its_label() -> None:
    c = cal(session=GLOBEX)
    # Monday 2026-01-19 is a holiday: no session from Sunday 17:00 to Monday 16:00
    assert not c.in_session(at("2026-01-18T18:00"))
    assert not c.in_session(at("2026-01-19T10:00"))
    assert c.next_session_start(at("2026-01-16T16:00")) == at("2026-01-19T17:00")
    assert c.in_session(at("2026-01-19T17:00"))


@pytest.mark.parametrize("day", [date(2026, 3, 8), date(2026, 11, 1)])
def test_trading_day_bounds_contain_their_instants(day: date) -> None:
    c = cal()
    start, end = c.trading_day_bounds(c.reset_at(day) - 1)
    assert c.trading_day(start) == c.trading_day(end - 0.001) == day
    assert c.trading_day(end) == date.fromordinal(day.toordinal() + 1)
