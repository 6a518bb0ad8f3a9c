"""A jump of the engine clock over weeks or centuries (a gap in a recording, a broker with a
bad clock) must not step through every day in between, and must keep short gaps exact."""

from __future__ import annotations

import time

from tests.helpers import fill, make_engine, records, ts

RULES = ("rules:\n  session_block_outside: {lockout: none}\n"
         "  daily_realized_loss: {limit: -500, warn_at: 0.5}\n")


def _session_end_violations(recs: list[dict]) -> list[str]:
    return [r["ts"] for r in recs
            if r["kind"] == "violation" and r["rule"] == "session_block_outside"]


def test_a_short_gap_fires_every_session_end_on_the_way() -> None:
    engine = make_engine(RULES)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 20000.0))  # Tue 09:00 Chicago
    records(engine)
    engine.process({"type": "clock", "ts": ts("2026-02-06T23:00:00Z")})  # Fri 17:00 Chicago
    # Tue, Wed, Thu, Fri at 15:00 Chicago (21:00 UTC): the dry run never closes the position
    assert _session_end_violations(records(engine)) == [
        "2026-02-03T21:00:00Z", "2026-02-04T21:00:00Z", "2026-02-05T21:00:00Z",
        "2026-02-06T21:00:00Z"]


def test_a_jump_of_centuries_is_quick_and_lands_on_the_right_day() -> None:
    engine = make_engine(RULES)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 20000.0))
    engine.process(fill("2026-02-03T15:01:00Z", "sell", 1, 19850.0))  # realizes -300: warning
    assert [r["kind"] for r in records(engine)].count("warning") == 1
    started = time.perf_counter()
    # (a replay rejects an event this far ahead, CONTRACT section 1: the clock jumps itself)
    engine.advance(ts("2426-02-03T15:00:00Z"))
    assert time.perf_counter() - started < 1.0  # was ~4 s: one reset per day for 400 years
    recs = records(engine)
    ends = _session_end_violations(recs)
    # the first session end, then the ones of the last three days before the target only
    assert ends[0] == "2026-02-03T21:00:00Z" and 1 < len(ends) <= 4, ends
    assert ends[-1] == "2426-02-02T21:00:00Z"
    assert engine.trading_day == "2426-02-03"
    acct = engine.accounts["A1"]
    assert acct.trading_day == "2426-02-03" and acct.realized == 0.0  # the day was reset
    # the recurring timers run on from there: the next session end fires in its time
    engine.process({"type": "clock", "ts": ts("2426-02-04T21:00:00Z")})
    assert _session_end_violations(records(engine)) == ["2426-02-03T21:00:00Z",
                                                          "2426-02-04T21:00:00Z"]
    # and a fresh loss on the new day warns again (the daily reset cleared the warnings)
    engine.process(fill("2426-02-04T21:01:00Z", "sell", 1, 19850.0))
    assert [r["kind"] for r in records(engine)].count("warning") == 1
