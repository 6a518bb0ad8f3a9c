"""Implausible lines are rejected (CONTRACT section 1), changing nothing else: a quote at zero, a
quote below zero for an instrument without `negative_prices: true`, and in a replay an event
more than `max_clock_jump` ahead of the engine clock. Rejected lines before the first event of a
replay carry event time, not wall time.

Real `riskterm --no-ui` runs on real files and databases.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from riskterm.events import BelowZero, parse_line
from riskterm.timefmt import iso
from tests.helpers import HEADER, fill, make_engine, records, ts

ROOT = Path(__file__).resolve().parent.parent
RULES = HEADER + """\
rules:
  daily_realized_loss: {limit: -10, lockout: 90s}
  max_position_loss: {limit: -100}
"""
CRUDE = RULES.replace(
    "rules:\n", "  CL: {tick_size: 0.01, tick_value: 10.0, negative_prices: true}\nrules:\n")


def _ev(kind: str, t: str, **fields: Any) -> str:
    return json.dumps({"type": kind, "ts": t, **fields})


def _fill(t: str, side: str, qty: int, price: float, symbol: str = "MNQ", **kw: Any) -> str:
    return _ev("fill", t, account="A1", symbol=symbol, order_id=f"o{t}", side=side, qty=qty,
               price=price, **kw)


def _replay(tmp: Path, lines: list[str], name: str = "x", rules: str = RULES,
            db: Path | None = None) -> list[dict[str, Any]]:
    path = tmp / f"{name}.jsonl"
    path.write_text("".join(x + "\n" for x in lines))
    rules_path = tmp / "rules.yaml"
    rules_path.write_text(rules)
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{path}",
         "--rules", str(rules_path), "--db", str(db or tmp / f"{name}.db")],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return [json.loads(x) for x in res.stdout.splitlines()]


def _kinds(recs: list[dict[str, Any]]) -> list[str]:
    return [r["kind"] for r in recs if r["kind"] != "summary"]


# --- max_clock_jump ----------------------------------------------------------------------------

def test_a_line_stamped_in_9998_is_rejected_and_a_later_cooldown_still_expires(
        tmp_path: Path) -> None:
    recs = _replay(tmp_path, [
        _fill("2026-02-03T15:00:00Z", "buy", 1, 100.0),
        _ev("clock", "9998-01-01T00:00:00Z"),  # line 2: one bad heartbeat
        _fill("2026-02-03T15:01:00Z", "sell", 1, 90.0),  # realizes -20: a 90 s lockout
        _ev("clock", "2026-02-03T15:03:00Z"),  # 120 s later: the lockout has expired
    ])
    rejected = [r for r in recs if r["kind"] == "rejected"]
    assert rejected == [{
        "kind": "rejected", "ts": "2026-02-03T15:00:00Z", "line": 2,
        "error": "line 2: a clock stamped 9998-01-01T00:00:00Z is 2,911,679.4 days ahead of "
                 "the engine clock (2026-02-03T15:00:00Z), more than max_clock_jump (366d)"}]
    lockout = next(r for r in recs if r["kind"] == "lockout")
    assert (lockout["ts"], lockout["until"]) == ("2026-02-03T15:01:00Z", "2026-02-03T15:02:30Z")
    unlock = next(r for r in recs if r["kind"] == "unlock")
    assert (unlock["ts"], unlock["reason"]) == ("2026-02-03T15:02:30Z", "expired")
    summary = recs[-1]
    assert (summary["events"], summary["rejected"]) == (3, 1)
    assert summary["ts"] == "2026-02-03T15:03:00Z"  # the engine clock never left 2026


def test_max_clock_jump_comes_from_the_rules_file_and_a_jump_within_it_is_taken(
        tmp_path: Path) -> None:
    rules = RULES.replace("rules:\n", "max_clock_jump: 2h\nrules:\n")
    recs = _replay(tmp_path, [
        _ev("clock", "2026-02-03T15:00:00Z"),
        _ev("clock", "2026-02-03T17:00:00Z"),  # exactly 2 h: taken
        _ev("clock", "2026-02-03T19:00:00.001Z"),  # a millisecond more: rejected
        _ev("clock", "2026-02-03T18:00:00Z"),
    ], rules=rules)
    assert [(r["line"], r["ts"]) for r in recs if r["kind"] == "rejected"] == [
        (3, "2026-02-03T17:00:00Z")]
    assert recs[-1]["ts"] == "2026-02-03T18:00:00Z"


def test_the_engine_checks_the_jump_only_in_a_replay() -> None:
    later = ts("2030-01-01T00:00:00+00:00")
    live = make_engine("rules: {}\n", live=True, wall=lambda: later)
    live.process({"type": "clock", "ts": ts("2026-02-03T15:00:00+00:00")})
    live.process({"type": "clock", "ts": ts("2026-02-03T15:00:00+00:00")})
    assert records(live) == [] and live.clock == later
    replay = make_engine("rules: {}\n")
    replay.process({"type": "clock", "ts": ts("2026-02-03T15:00:00+00:00")}, 1)
    replay.process({"type": "clock", "ts": later}, 2)
    assert [r["line"] for r in records(replay, ("rejected",))] == [2]
    assert replay.clock == ts("2026-02-03T15:00:00+00:00") and replay.n_events == 1


# --- prices ------------------------------------------------------------------------------------

def test_a_quote_at_zero_is_rejected_and_flattens_nothing(tmp_path: Path) -> None:
    recs = _replay(tmp_path, [
        _fill("2026-02-03T15:00:00Z", "buy", 1, 20000.0),
        _ev("quote", "2026-02-03T15:00:01Z", symbol="MNQ", bid=0, ask=0),
        _ev("quote", "2026-02-03T15:00:02Z", symbol="MNQ", last=0.0),
    ])
    assert _kinds(recs) == ["rejected", "rejected"]
    assert [r["error"] for r in recs if r["kind"] == "rejected"] == [
        "line 2: field 'bid' of a quote for MNQ is 0, not a price (a zero tick must not mark "
        "positions at a loss)",
        "line 3: field 'last' of a quote for MNQ is 0, not a price (a zero tick must not mark "
        "positions at a loss)"]


def test_a_quote_below_zero_counts_only_where_the_instrument_allows_it(tmp_path: Path) -> None:
    recs = _replay(tmp_path, [
        _fill("2026-02-03T15:00:00Z", "buy", 1, 20000.0),  # MNQ: no negative prices
        _fill("2026-02-03T15:00:00Z", "buy", 1, 1.0, symbol="CLK0"),  # CL by its root
        _ev("quote", "2026-02-03T15:00:01Z", symbol="MNQ", bid=-1.0, ask=1.0),
        _ev("quote", "2026-02-03T15:00:02Z", symbol="CLK0", last=-37.63),
    ], rules=CRUDE)
    rejected = [r for r in recs if r["kind"] == "rejected"]
    assert [(r["line"], r["error"]) for r in rejected] == [
        (3, "line 3: field 'bid' of a quote for MNQ is below zero (-1) and its instrument "
            "does not say negative_prices: true")]
    # crude at -37.63 is real: the CL position is marked there and breaches its loss limit
    violations = [r for r in recs if r["kind"] == "violation"]
    assert [(v["rule"], v["symbol"], v["ts"]) for v in violations] == [
        ("max_position_loss", "CLK0", "2026-02-03T15:00:02Z")]
    assert recs[-1]["events"] == 3 and recs[-1]["rejected"] == 1


def test_the_parser_hands_a_quote_below_zero_to_the_engine_with_its_sentence() -> None:
    raw = b'{"type": "quote", "ts": 1770130800, "symbol": "CL", "last": -1.5}'
    result = parse_line(raw, 4)
    assert isinstance(result, BelowZero)
    assert result.event == {"type": "quote", "ts": 1770130800.0, "symbol": "CL", "last": -1.5}
    engine = make_engine("rules: {}\n")  # no CL instrument here: rejected
    engine.process(fill("2026-02-03T15:00:00+00:00", "buy", 1, 1.0, symbol="CL"), 1)
    engine.reject(4, result)
    assert [r["error"] for r in records(engine, ("rejected",))] == [result.error]
    assert "CL" not in engine.marks


# --- rejected lines before the first event -----------------------------------------------------

def test_rejected_lines_before_the_first_event_carry_its_time_in_line_order(
        tmp_path: Path) -> None:
    recs = _replay(tmp_path, ["{oops", "", "[1]", _ev("clock", "2026-02-03T15:00:00Z"),
                              "{again"])
    assert [(r["kind"], r["line"], r["ts"]) for r in recs if r["kind"] == "rejected"] == [
        ("rejected", 1, "2026-02-03T15:00:00Z"), ("rejected", 3, "2026-02-03T15:00:00Z"),
        ("rejected", 5, "2026-02-03T15:00:00Z")]
    db = sqlite3.connect(tmp_path / "x.db")  # durable, in the same order and time
    stored = [(kind, t, json.loads(body)["line"]) for kind, t, body in db.execute(
        "SELECT kind, ts, body FROM records WHERE kind = 'rejected' ORDER BY id")]
    db.close()
    assert stored == [("rejected", "2026-02-03T15:00:00Z", n) for n in (1, 3, 5)]


def test_without_any_event_they_carry_the_databases_clock_else_wall_time(
        tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    _replay(tmp_path, [_ev("clock", "2026-02-03T15:00:00Z")], name="first", db=db)
    recs = _replay(tmp_path, ["{oops", "{again"], name="second", db=db)
    assert [(r["line"], r["ts"]) for r in recs if r["kind"] == "rejected"] == [
        (1, "2026-02-03T15:00:00Z"), (2, "2026-02-03T15:00:00Z")]
    before = time.time()
    recs = _replay(tmp_path, ["{oops"], name="fresh")  # a fresh database: wall time at last
    after = time.time()
    [rej] = [r for r in recs if r["kind"] == "rejected"]
    assert iso(before - 1) <= rej["ts"] <= iso(after + 1)


def test_the_resume_point_stops_short_of_held_lines() -> None:
    engine = make_engine("rules: {}\n")
    engine.reject(1, "line 1 is not valid JSON: expected a value at column 1")
    engine.cursor = 7  # the host moved on past line 7, all blank or rejected
    assert engine.cursor == 0
    assert engine.take_changes().cursor is None  # line 1 is not durable yet: resume before it
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:00+00:00")}, 8)
    engine.cursor = 8
    changes = engine.take_changes()
    assert changes.cursor == 8
    assert [(r["kind"], r["ts"]) for r in changes.records] == [
        ("rejected", "2026-02-03T15:00:00Z")]


# --- the first event, before the clock has started ---------------------------------------------

def test_a_first_line_stamped_in_9998_is_rejected_and_a_cooldown_expires_in_event_time(
        tmp_path: Path) -> None:
    # a fresh database: the first line is judged against the current time
    recs = _replay(tmp_path, [
        _ev("clock", "9998-01-01T00:00:00Z"),  # line 1: before the clock has started
        _fill("2026-02-03T15:00:00Z", "buy", 1, 100.0),
        _fill("2026-02-03T15:01:00Z", "sell", 1, 90.0),  # realizes -20: a 90 s lockout
        _ev("clock", "2026-02-03T15:03:00Z"),  # 120 s later: the lockout has expired
    ])
    [rejected] = [r for r in recs if r["kind"] == "rejected"]
    assert (rejected["line"], rejected["ts"]) == (1, "2026-02-03T15:00:00Z")
    assert re.fullmatch(r"line 1: a clock stamped 9998-01-01T00:00:00Z is [\d,]+\.\d days "
                        r"ahead of the current time \(\S+Z\), more than max_clock_jump \(366d\)",
                        rejected["error"]), rejected["error"]
    lockout = next(r for r in recs if r["kind"] == "lockout")
    assert (lockout["ts"], lockout["until"]) == ("2026-02-03T15:01:00Z", "2026-02-03T15:02:30Z")
    unlock = next(r for r in recs if r["kind"] == "unlock")
    assert (unlock["ts"], unlock["reason"]) == ("2026-02-03T15:02:30Z", "expired")
    summary = recs[-1]
    assert (summary["events"], summary["rejected"], summary["ts"]) == (
        3, 1, "2026-02-03T15:03:00Z")


def test_a_first_event_is_judged_by_the_clock_the_database_was_left_at(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    day = 86400.0
    ahead = time.time() + 3 * 300 * day  # a database written in event time years from now
    _replay(tmp_path, [_ev("clock", iso(time.time() + n * 300 * day)) for n in range(4)],
            name="first", db=db)
    stored = sqlite3.connect(db)
    (clock,) = stored.execute("SELECT value FROM engine_state WHERE key = 'clock'").fetchone()
    stored.close()
    assert abs(json.loads(clock)["ts"] - ahead) < 60
    # within max_clock_jump of that clock, though more than a year ahead of now: taken
    later = iso(ahead + 200 * day)
    recs = _replay(tmp_path, [_ev("clock", later)], name="second", db=db)
    assert [r["kind"] for r in recs] == ["summary"] and recs[-1]["ts"] == later
    # more than max_clock_jump ahead of it: rejected, naming the clock it was judged against
    too_far = iso(ahead + 600 * day)
    recs = _replay(tmp_path, [_ev("clock", too_far), _ev("clock", later)], name="third", db=db)
    [rejected] = [r for r in recs if r["kind"] == "rejected"]
    assert rejected["error"] == (
        f"line 1: a clock stamped {too_far} is 400.0 days ahead of the clock this database was "
        f"left at ({later}), more than max_clock_jump (366d)")
    assert recs[-1]["ts"] == later


def test_the_engine_judges_its_first_event_by_wall_time_in_a_replay() -> None:
    now = ts("2026-12-04T00:00:00+00:00")
    engine = make_engine("rules: {}\n", wall=lambda: now)
    engine.process({"type": "clock", "ts": now + 367 * 86400}, 1)
    assert not engine.started and engine.n_events == 0
    engine.process({"type": "clock", "ts": now + 366 * 86400}, 2)  # exactly the jump: taken
    assert engine.clock == now + 366 * 86400
    assert [(r["line"], r["ts"]) for r in records(engine, ("rejected",))] == [
        (1, "2027-12-05T00:00:00Z")]


def _paced_replay(tmp: Path, lines: list[str], name: str) -> tuple[float, list[dict[str, Any]]]:
    path = tmp / f"{name}.jsonl"
    path.write_text("".join(x + "\n" for x in lines))
    rules_path = tmp / "rules.yaml"
    rules_path.write_text(RULES)
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--speed", "1", "--source",
         f"replay:{path}", "--rules", str(rules_path), "--db", str(tmp / f"{name}.db")],
        capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return time.monotonic() - t0, [json.loads(x) for x in res.stdout.splitlines()]


def test_a_paced_replay_neither_waits_for_nor_anchors_on_a_line_it_rejects(
        tmp_path: Path) -> None:
    """At --speed 1 a line stamped in 9998 in the middle must not make the replay wait for
    centuries (the subprocess would time out), and one on line 1 must not become the pacing
    anchor (which would turn pacing off: the 2 s between the real events would not be kept)."""
    far = _ev("clock", "9998-01-01T00:00:00Z")
    real = [_ev("clock", "2026-02-03T15:00:00Z"), _ev("clock", "2026-02-03T15:00:02Z")]
    _, recs = _paced_replay(tmp_path, [real[0], far, real[1]], "middle")
    assert [r["line"] for r in recs if r["kind"] == "rejected"] == [2]
    elapsed, recs = _paced_replay(tmp_path, [far, *real], "first")
    assert [r["line"] for r in recs if r["kind"] == "rejected"] == [1]
    assert elapsed >= 2.0  # the two real events were paced 2 s apart
