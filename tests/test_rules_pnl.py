"""The P&L and exposure rules of §5: daily_total_loss, daily_unrealized_loss, max_position_loss,
max_unrealized_profit, trailing_drawdown, max_position_value_pct, max_total_exposure.

A real Engine on a DryRunBroker; MNQ has point value 2 (tick 0.25, value 0.5), ES 50.
"""

from __future__ import annotations

import json
from typing import Any

from riskterm.engine import Engine, RestoredState
from tests.helpers import fill, make_engine, records, ts

T0 = "2026-02-03T15:00:00Z"
VWE = ("violation", "warning", "enforcement", "lockout")


def quote(engine: Engine, price: float, *, symbol: str = "MNQ", t: str = T0) -> None:
    engine.process({"type": "quote", "ts": ts(t), "symbol": symbol, "last": price})


def account(engine: Engine, *, t: str = T0, name: str = "A1", **fields: float) -> None:
    engine.process({"type": "account", "ts": ts(t), "account": name, **fields})


def position(engine: Engine, qty: int, avg: float | None = None, *, symbol: str = "MNQ",
             t: str = T0) -> None:
    ev: dict[str, Any] = {"type": "position", "ts": ts(t), "account": "A1", "symbol": symbol,
                          "qty": qty}
    if avg is not None:
        ev["avg_price"] = avg
    engine.process(ev)


def recs(engine: Engine) -> list[dict[str, Any]]:
    return records(engine, VWE)


def violation(rule: str, value: float, limit: float, message: str, actions: list[str], *,
              symbol: str | None = None, t: str = T0) -> dict[str, Any]:
    return {"kind": "violation", "ts": t, "rule": rule, "account": "A1", "symbol": symbol,
            "action": actions, "message": message, "value": value, "limit": limit}


def enforcement(rule: str, action: str, detail: str, *, symbol: str | None = None,
                status: str = "dry_run", t: str = T0) -> dict[str, Any]:
    return {"kind": "enforcement", "ts": t, "action": action, "account": "A1", "symbol": symbol,
            "rule": rule, "order_id": None, "status": status, "detail": detail}


def lockout(rule: str, until: str | None, *, t: str = T0) -> dict[str, Any]:
    return {"kind": "lockout", "ts": t, "account": "A1", "rule": rule, "state": "halted",
            "until": until}


def warning(rule: str, value: float, limit: float, message: str, *,
            symbol: str | None = None, t: str = T0) -> dict[str, Any]:
    return {"kind": "warning", "ts": t, "rule": rule, "account": "A1", "symbol": symbol,
            "message": message, "value": value, "limit": limit}


# ------------------------------------------------------------------ daily_total_loss


def test_daily_total_loss_warns_fires_at_limit_once_and_rearms():
    engine = make_engine("rules: {daily_total_loss: {limit: -100, warn_at: 0.5}}\n")
    account(engine, balance=10000.0)
    engine.process(fill(T0, "buy", 2, 1000.0))
    engine.process(fill(T0, "sell", 1, 990.0))  # realized -20, 1 left at 1000
    assert recs(engine) == []
    quote(engine, 985.0)  # -20 + -30 = -50: the warning at 50 %
    assert recs(engine) == [warning(
        "daily_total_loss", -50.0, -100.0,
        "A1 P&L today is -50.00 (realized -20.00, unrealized -30.00), limit -100.00 "
        "(warning at 50% of the limit)")]
    quote(engine, 960.005)  # -99.99: just inside
    quote(engine, 970.0)
    assert recs(engine) == []  # the warning is written once a day
    quote(engine, 960.0)  # -100: at the limit
    msg = "A1 P&L today is -100.00 (realized -20.00, unrealized -80.00), limit -100.00"
    fired = [
        violation("daily_total_loss", -100.0, -100.0, msg, ["flatten"]),
        enforcement("daily_total_loss", "flatten", "closed 1 MNQ long"),
        lockout("daily_total_loss", "2026-02-03T23:00:00Z"),
    ]
    assert recs(engine) == fired
    assert engine.accounts["A1"].state == "halted"
    quote(engine, 950.0)
    quote(engine, 959.0)
    assert recs(engine) == []  # edge-triggered: still breached
    quote(engine, 970.0)  # -80: clears and re-arms
    assert recs(engine) == []
    quote(engine, 960.0)
    assert recs(engine) == fired


def test_daily_total_loss_counts_fills_and_clears_on_new_day():
    engine = make_engine("rules: {daily_total_loss: {limit: -100, lockout: none}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 950.0, fee=0.5))  # realized -100.5
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]
    # the next trading day starts at 0: a new loss fires again
    t1 = "2026-02-04T15:00:00Z"
    engine.process(fill(t1, "buy", 1, 1000.0))
    engine.process(fill(t1, "sell", 1, 950.0))
    got = recs(engine)
    assert [(r["kind"], r["ts"]) for r in got] == [("violation", t1), ("enforcement", t1)]
    assert got[0]["value"] == -100.0


def test_daily_total_loss_pct_of_start_balance_tighter_applies():
    rules = "rules: {daily_total_loss: {limit: -100, limit_pct: 0.005, lockout: none}}\n"
    engine = make_engine(rules)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 960.0)  # -80: only the -100 limit is known
    assert recs(engine) == []
    account(engine, balance=10000.0)  # 0.5 % of 10000 = -50: tighter than -100
    got = recs(engine)
    assert got[0] == violation(
        "daily_total_loss", -80.0, -50.0,
        "A1 P&L today is -80.00 (realized 0.00, unrealized -80.00), limit -50.00", ["flatten"])
    # a loose pct leaves the fixed limit in charge
    engine = make_engine("rules: {daily_total_loss: {limit: -100, limit_pct: 0.5}}\n")
    account(engine, balance=10000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 950.005)
    assert recs(engine) == []
    quote(engine, 950.0)
    assert recs(engine)[0]["limit"] == -100.0


def test_daily_total_loss_pct_alone_waits_for_a_balance():
    engine = make_engine("rules: {daily_total_loss: {limit_pct: 0.01}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 500.0)  # -1000, but no start-of-day balance yet
    assert recs(engine) == []
    account(engine, balance=20000.0)  # limit -200
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement", "lockout"]


# ------------------------------------------------------------------ daily_unrealized_loss


def test_daily_unrealized_loss_sums_open_positions_flatten_no_lockout():
    engine = make_engine("rules: {daily_unrealized_loss: {limit: -100, warn_at: 0.8}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 20.0, symbol="ES"))
    quote(engine, 20.5, symbol="ES")  # ES -25
    quote(engine, 972.5)  # MNQ -55: -80 in all -> warning
    assert recs(engine) == [warning(
        "daily_unrealized_loss", -80.0, -100.0,
        "A1 open P&L is -80.00, limit -100.00 (warning at 80% of the limit)")]
    quote(engine, 962.505)  # -99.99
    assert recs(engine) == []
    quote(engine, 962.5)  # -100
    assert recs(engine) == [
        violation("daily_unrealized_loss", -100.0, -100.0, "A1 open P&L is -100.00, "
                  "limit -100.00", ["flatten"]),
        enforcement("daily_unrealized_loss", "flatten", "closed 1 ES short, 1 MNQ long"),
    ]
    assert engine.accounts["A1"].state == "active"
    quote(engine, 900.0)
    assert recs(engine) == []
    # closing the ES leg takes it back inside; a new low fires again
    engine.process(fill(T0, "buy", 1, 20.5, symbol="ES"))
    quote(engine, 951.0)  # -98
    assert recs(engine) == []
    quote(engine, 950.0)
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]


def test_realized_pnl_does_not_count_as_unrealized():
    engine = make_engine("rules: {daily_unrealized_loss: {limit: -100}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 900.0))  # -200 realized, flat
    quote(engine, 800.0)
    assert recs(engine) == []


# ------------------------------------------------------------------ max_position_loss


def test_max_position_loss_per_symbol_close_position():
    engine = make_engine("rules: {max_position_loss: {limit: -100, warn_at: 0.5}}\n")
    engine.process(fill(T0, "buy", 2, 1000.0))
    engine.process(fill(T0, "buy", 1, 20.0, symbol="ES"))
    quote(engine, 18.0, symbol="ES")  # ES -100: fires for ES only
    quote(engine, 987.5)  # MNQ -50: warning for MNQ
    assert recs(engine) == [
        violation("max_position_loss", -100.0, -100.0,
                  "A1 ES position of 1 is at -100.00 unrealized, limit -100.00",
                  ["close_position"], symbol="ES"),
        enforcement("max_position_loss", "close_position", "sell 1 ES to close", symbol="ES"),
        warning("max_position_loss", -50.0, -100.0,
                "A1 MNQ position of 2 is at -50.00 unrealized, limit -100.00 "
                "(warning at 50% of the limit)", symbol="MNQ"),
    ]
    quote(engine, 975.0025)  # -99.99
    quote(engine, 17.0, symbol="ES")  # ES still breached: once
    assert recs(engine) == []
    quote(engine, 975.0)
    assert recs(engine) == [
        violation("max_position_loss", -100.0, -100.0,
                  "A1 MNQ position of 2 is at -100.00 unrealized, limit -100.00",
                  ["close_position"], symbol="MNQ"),
        enforcement("max_position_loss", "close_position", "sell 2 MNQ to close",
                    symbol="MNQ"),
    ]
    assert engine.accounts["A1"].state == "active"  # no lockout


def test_max_position_loss_rearms_when_closed_and_reopened():
    engine = make_engine("rules: {max_position_loss: {limit: -100}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 940.0)
    assert len(recs(engine)) == 2
    engine.process(fill(T0, "sell", 1, 940.0))  # closed: re-armed
    engine.process(fill(T0, "buy", 1, 940.0))
    quote(engine, 900.0)  # -80: inside
    assert recs(engine) == []
    quote(engine, 890.0)  # -100
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]


def test_max_position_loss_pct_of_entry_notional():
    # entry notional of 2 MNQ at 1000 = 4000; 1 % = -40, tighter than -100
    engine = make_engine("rules: {max_position_loss: {limit: -100, limit_pct: 0.01}}\n")
    engine.process(fill(T0, "buy", 2, 1000.0))
    quote(engine, 990.0025)  # -39.99
    assert recs(engine) == []
    quote(engine, 990.0)
    assert recs(engine)[0] == violation(
        "max_position_loss", -40.0, -40.0,
        "A1 MNQ position of 2 is at -40.00 unrealized, limit -40.00", ["close_position"],
        symbol="MNQ")
    # a short position's entry notional is positive too
    engine = make_engine("rules: {max_position_loss: {limit_pct: 0.01}}\n")
    position(engine, -1, 20.0, symbol="ES")  # notional 1000 -> limit -10
    quote(engine, 20.2, symbol="ES")
    assert recs(engine)[-2:] == [
        violation("max_position_loss", -10.0, -10.0,
                  "A1 ES position of -1 is at -10.00 unrealized, limit -10.00",
                  ["close_position"], symbol="ES"),
        enforcement("max_position_loss", "close_position", "buy 1 ES to close", symbol="ES"),
    ]


# ------------------------------------------------------------------ max_unrealized_profit


def test_max_unrealized_profit_target_warn_once_and_rearm():
    engine = make_engine("rules: {max_unrealized_profit: {target: 100, warn_at: 0.8}}\n")
    engine.process(fill(T0, "sell", 1, 1000.0))
    quote(engine, 960.0)  # +80
    assert recs(engine) == [warning(
        "max_unrealized_profit", 80.0, 100.0,
        "A1 MNQ position of -1 is at 80.00 unrealized, target 100.00 "
        "(warning at 80% of the limit)", symbol="MNQ")]
    quote(engine, 950.005)  # 99.99
    assert recs(engine) == []
    quote(engine, 950.0)
    fired = [
        violation("max_unrealized_profit", 100.0, 100.0,
                  "A1 MNQ position of -1 is at 100.00 unrealized, target 100.00",
                  ["close_position"], symbol="MNQ"),
        enforcement("max_unrealized_profit", "close_position", "buy 1 MNQ to close",
                    symbol="MNQ"),
    ]
    assert recs(engine) == fired
    quote(engine, 900.0)
    assert recs(engine) == []
    quote(engine, 951.0)  # back under the target: re-armed
    quote(engine, 950.0)
    assert recs(engine) == fired
    assert engine.accounts["A1"].state == "active"


# ------------------------------------------------------------------ trailing_drawdown


def test_trailing_drawdown_intraday_follows_highs_flatten_permanent():
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, warn_at: 0.5}}\n")
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1300.0)  # equity 50600: the new mark
    quote(engine, 1050.0)  # drawdown 500: warning
    assert recs(engine) == [warning(
        "trailing_drawdown", 500.0, 1000.0,
        "A1 equity 50100.00 is 500.00 below the high-water mark 50600.00, limit 1000.00 "
        "(floor 49600.00) (warning at 50% of the limit)")]
    quote(engine, 800.005)  # 999.99
    assert recs(engine) == []
    quote(engine, 800.0)
    assert recs(engine) == [
        violation("trailing_drawdown", 1000.0, 1000.0,
                  "A1 equity 49600.00 is 1000.00 below the high-water mark 50600.00, "
                  "limit 1000.00 (floor 49600.00)", ["flatten"]),
        enforcement("trailing_drawdown", "flatten", "closed 1 MNQ long"),
        lockout("trailing_drawdown", None),
    ]
    quote(engine, 700.0)
    assert recs(engine) == []
    assert engine.accounts["A1"].rule_state["trailing_drawdown"]["mark"] == 50600.0


def test_trailing_drawdown_rearms_and_uses_broker_equity():
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, lockout: none}}\n")
    account(engine, balance=50000.0, equity=50000.0)
    account(engine, equity=51000.0)
    account(engine, equity=50000.0)
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 500.0)  # the broker's equity is what counts, not our marks
    account(engine, equity=50500.0)  # clears
    assert recs(engine) == []
    account(engine, equity=50000.0)
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]


def test_trailing_drawdown_floor_stops_at_start_balance():
    rules = "rules: {trailing_drawdown: {amount: 1000}}\n"
    engine = make_engine(rules)
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1750.0)  # equity 51500: the floor would be 50500, it stops at 50000
    quote(engine, 1250.0)  # equity 50500: 1000 below the mark, but above the floor
    quote(engine, 1000.005)  # 50000.01
    assert recs(engine) == []
    quote(engine, 1000.0)  # 50000: at the floor
    assert recs(engine)[0] == violation(
        "trailing_drawdown", 1000.0, 1000.0,
        "A1 equity 50000.00 is 1000.00 below the high-water mark 51000.00 (the mark 51500.00 "
        "capped at the starting balance 50000.00 plus the amount), limit 1000.00 "
        "(floor 50000.00)", ["flatten"])
    # without the stop the floor keeps rising
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, "
                         "stop_at_start_balance: false}}\n")
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1750.0)
    quote(engine, 1250.0)
    assert recs(engine)[0]["value"] == 1000.0


def test_trailing_drawdown_start_is_the_first_balance_ever():
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000}}\n")
    account(engine, balance=50000.0)
    account(engine, balance=52000.0)  # mark 52000, but the floor stops at 50000
    account(engine, balance=51000.0)
    assert recs(engine) == []
    st = engine.accounts["A1"].rule_state["trailing_drawdown"]
    assert st["start"] == 50000.0 and st["mark"] == 52000.0
    account(engine, balance=50000.0)
    assert recs(engine)[0]["value"] == 1000.0


def test_trailing_drawdown_realized_pnl_between_balances_counts():
    rules = "rules: {trailing_drawdown: {amount: 500, stop_at_start_balance: false}}\n"
    engine = make_engine(rules)
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1400.0)  # equity 50800
    # a profitable close before the broker books it is not a drawdown
    engine.process(fill(T0, "sell", 1, 1400.0))
    account(engine, balance=50800.0)
    assert recs(engine) == []
    # a realized loss the broker has not booked yet is one
    engine.process(fill(T0, "buy", 1, 1400.0))
    engine.process(fill(T0, "sell", 1, 1150.0))  # -500 realized
    assert recs(engine)[0] == violation(
        "trailing_drawdown", 500.0, 500.0,
        "A1 equity 50300.00 is 500.00 below the high-water mark 50800.00, limit 500.00 "
        "(floor 50300.00)", ["flatten"])


def test_trailing_drawdown_eod_moves_the_mark_only_at_the_reset():
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, mode: eod}}\n")
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1400.0)  # equity 50800: no new mark intraday
    quote(engine, 1000.0)
    assert recs(engine) == []
    assert engine.accounts["A1"].rule_state["trailing_drawdown"]["mark"] == 50000.0
    quote(engine, 1400.0, t="2026-02-03T22:00:00Z")
    # the daily reset (17:00 Chicago = 23:00Z) takes the mark to the equity then
    quote(engine, 1400.0, t="2026-02-04T14:00:00Z")
    assert engine.accounts["A1"].rule_state["trailing_drawdown"]["mark"] == 50800.0
    t1 = "2026-02-04T15:00:00Z"
    quote(engine, 900.005, t=t1)
    assert recs(engine) == []
    quote(engine, 900.0, t=t1)  # 49800: 1000 below the end-of-day mark
    assert recs(engine) == [
        violation("trailing_drawdown", 1000.0, 1000.0,
                  "A1 equity 49800.00 is 1000.00 below the high-water mark 50800.00, "
                  "limit 1000.00 (floor 49800.00)", ["flatten"], t=t1),
        enforcement("trailing_drawdown", "flatten", "closed 1 MNQ long", t=t1),
        lockout("trailing_drawdown", None, t=t1),
    ]


def test_trailing_drawdown_eod_intraday_loss_from_the_mark_fires():
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, mode: eod}}\n")
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1400.0)
    quote(engine, 500.0)  # 49000
    assert recs(engine)[0]["value"] == 1000.0


def _collect(engine: Engine, into: dict[str, Any]) -> list[dict[str, Any]]:
    """take_changes, remembering the persisted state the recorder would have written."""
    ch = engine.take_changes()
    for name, data in ch.accounts:
        into.setdefault("accounts", {})[name] = json.loads(data)
    for row in ch.positions:
        into.setdefault("positions", {})[row[:2]] = row
    if ch.engine_state is not None:
        into["engine_state"] = json.loads(ch.engine_state)
    into.setdefault("lockouts", []).extend(ch.lockouts_added)
    return [r for r in ch.records if r["kind"] in VWE]


def _restart(saved: dict[str, Any], rules: str) -> Engine:
    engine = make_engine(rules)
    engine.restore(RestoredState(
        accounts=saved.get("accounts", {}),
        positions=list(saved.get("positions", {}).values()),
        lockouts=saved.get("lockouts", []),
        engine_state=saved.get("engine_state", {}),
    ))
    return engine


def test_trailing_drawdown_mark_and_start_survive_a_restart():
    rules = "rules: {trailing_drawdown: {amount: 1000, lockout: none}}\n"
    saved: dict[str, Any] = {}
    engine = make_engine(rules)
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 1450.0)  # mark 50900
    engine.process(fill(T0, "sell", 1, 1450.0))  # +900 not yet booked by the broker
    assert _collect(engine, saved) == []
    st = saved["accounts"]["A1"]["rule_state"]["trailing_drawdown"]
    assert st == {"mark": 50900.0, "start": 50000.0, "unbooked": 900.0,
                  "day": "2026-02-03"}

    engine = _restart(saved, rules)
    t1 = "2026-02-03T16:00:00Z"
    engine.process(fill(t1, "buy", 1, 1450.0))
    quote(engine, 950.005, t=t1)  # 50000 + 900 - 999.99 = 49900.01
    assert _collect(engine, saved) == []
    quote(engine, 950.0, t=t1)  # 49900: 1000 below the restored mark
    assert _collect(engine, saved) == [
        violation("trailing_drawdown", 1000.0, 1000.0,
                  "A1 equity 49900.00 is 1000.00 below the high-water mark 50900.00, "
                  "limit 1000.00 (floor 49900.00)", ["flatten"], t=t1),
        enforcement("trailing_drawdown", "flatten", "closed 1 MNQ long", t=t1),
    ]


def test_trailing_drawdown_restart_keeps_fired_and_eod_catches_up_missed_reset():
    rules = "rules: {trailing_drawdown: {amount: 1000, mode: eod, lockout: none}}\n"
    saved: dict[str, Any] = {}
    engine = make_engine(rules)
    account(engine, balance=50000.0)
    account(engine, balance=50600.0)  # eod: the mark stays at 50000
    _collect(engine, saved)
    assert saved["accounts"]["A1"]["rule_state"]["trailing_drawdown"]["mark"] == 50000.0
    # restarted on the next trading day: the missed reset takes the mark to 50600
    engine = _restart(saved, rules)
    t1 = "2026-02-04T15:00:00Z"
    account(engine, balance=49600.0, t=t1)
    got = _collect(engine, saved)
    assert [r["kind"] for r in got] == ["violation", "enforcement"]
    assert got[0]["value"] == 1000.0
    # the violation stays fired through another restart
    engine = _restart(saved, rules)
    account(engine, balance=49500.0, t=t1)
    assert _collect(engine, saved) == []


# ------------------------------------------------------------------ max_position_value_pct


def test_max_position_value_pct_reduces_to_the_largest_size_within():
    engine = make_engine("rules: {max_position_value_pct: {max_pct: 0.5, warn_at: 0.8}}\n")
    account(engine, balance=10000.0, equity=10000.0)
    engine.process(fill(T0, "buy", 2, 1000.0))  # 4000 / 10000 = 40 %: the warning
    assert recs(engine) == [warning(
        "max_position_value_pct", 0.4, 0.5,
        "A1 MNQ position of 2 is worth 4000.00, 40% of equity 10000.00, limit 50% "
        "(warning at 80% of the limit)", symbol="MNQ")]
    quote(engine, 1250.0)  # exactly 50 %: within
    assert recs(engine) == []
    quote(engine, 1250.005)  # 5000.02: over
    assert recs(engine) == [
        violation("max_position_value_pct", 0.500002, 0.5,
                  "A1 MNQ position of 2 is worth 5000.02, 50% of equity 10000.00, limit 50%",
                  ["reduce_position"], symbol="MNQ"),
        enforcement("max_position_value_pct", "reduce_position", "sell 1 MNQ to reach 1",
                    symbol="MNQ"),
    ]
    quote(engine, 1300.0)
    assert recs(engine) == []  # once
    quote(engine, 1200.0)  # back within: re-armed
    engine.process(fill(T0, "buy", 3, 1200.0))  # 5 x 2400 = 12000 -> 120 %
    got = recs(engine)
    assert got[0]["value"] == 1.2
    assert got[1]["detail"] == "sell 3 MNQ to reach 2"  # 2 x 2400 = 4800 <= 5000
    assert engine.accounts["A1"].state == "active"


def test_max_position_value_pct_equity_from_balance_and_marks():
    engine = make_engine("rules: {max_position_value_pct: {max_pct: 0.5}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    assert recs(engine) == []  # no equity known yet
    account(engine, balance=4000.0)  # 2000 / 4000 = 50 %
    assert recs(engine) == []
    quote(engine, 990.0)  # 1980 / (4000 - 20) = 49.7 %
    assert recs(engine) == []
    account(engine, balance=3900.0)  # 1980 / 3880 = 51 %
    got = recs(engine)
    assert [r["kind"] for r in got] == ["violation", "enforcement"]
    assert got[1]["detail"] == "sell 1 MNQ to close"


def test_max_position_value_pct_short_position_and_close_rearms():
    engine = make_engine("rules: {max_position_value_pct: {max_pct: 0.25}}\n")
    account(engine, equity=10000.0)
    position(engine, -2, 20.0, symbol="ES")  # 2 x 20 x 50 = 2000: 20 %
    quote(engine, 30.0, symbol="ES")  # 3000: 30 %
    got = recs(engine)
    assert got[-1] == enforcement("max_position_value_pct", "reduce_position",
                                  "buy 1 ES to reach 1", symbol="ES")
    position(engine, 0, symbol="ES")
    position(engine, -2, 30.0, symbol="ES")
    assert [r["kind"] for r in recs(engine)][-2:] == ["violation", "enforcement"]


# ------------------------------------------------------------------ max_total_exposure


def test_max_total_exposure_alert_only():
    engine = make_engine("rules: {max_total_exposure: {limit: 5000, warn_at: 0.9}}\n")
    engine.process(fill(T0, "buy", 2, 1000.0))  # 4000
    engine.process(fill(T0, "sell", 1, 20.0, symbol="ES"))  # + 1000 = 5000: at the limit
    assert recs(engine) == [warning(
        "max_total_exposure", 5000.0, 5000.0,
        "A1 exposure is 5000.00 over 2 open positions, limit 5000.00 "
        "(warning at 90% of the limit)")]
    quote(engine, 20.0002, symbol="ES")  # 5000.01: over
    assert recs(engine) == [violation(
        "max_total_exposure", 5000.01, 5000.0,
        "A1 exposure is 5000.01 over 2 open positions, limit 5000.00", ["alert"])]
    quote(engine, 21.0, symbol="ES")
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 1, 21.0, symbol="ES"))  # closed: 4000
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 1, 1000.0))  # 6000
    assert recs(engine) == [violation(
        "max_total_exposure", 6000.0, 5000.0,
        "A1 exposure is 6000.00 over 1 open position, limit 5000.00", ["alert"])]
    assert engine.accounts["A1"].state == "active"


def test_rules_leave_other_accounts_alone():
    engine = make_engine("rules: {max_position_loss: {limit: -100}, "
                         "daily_unrealized_loss: {limit: -100}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0, account="B2"))
    engine.process(fill(T0, "buy", 1, 1100.0))
    quote(engine, 1050.0)  # A1 -100, B2 +100
    got = recs(engine)
    assert {r["account"] for r in got} == {"A1"}
    assert sorted(r["rule"] for r in got if r["kind"] == "violation") == [
        "daily_unrealized_loss", "max_position_loss"]
