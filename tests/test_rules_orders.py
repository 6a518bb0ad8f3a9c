"""The order, count and session rules of §5: max_contracts, max_order_size, order_rate_limit,
daily_realized_profit, trade_frequency_limit, cooldown_after_loss, consecutive_losses,
session_block_outside, auth_loss_guard.

A real Engine on a DryRunBroker; MNQ has point value 2 (tick 0.25, value 0.5), ES 50. The session
is 08:30-15:00 America/Chicago, Monday to Friday: 14:30Z-21:00Z in February (CST, UTC-6).
2026-02-03 is a Tuesday.
"""

from __future__ import annotations

from typing import Any

from riskterm.brokers.replay import DryRunBroker
from riskterm.config import load_rules_text
from riskterm.engine import Engine, RestoredState
from tests.helpers import HEADER, fill, make_engine, records, ts

T0 = "2026-02-03T15:00:00Z"
VWE = ("violation", "warning", "enforcement", "lockout", "unlock")


# --------------------------------------------------------------------------- builders


def recs(engine: Engine) -> list[dict[str, Any]]:
    return records(engine, VWE)


def order(engine: Engine, t: str, order_id: str, *, side: str = "buy", qty: int = 1,
          symbol: str = "MNQ", order_type: str = "limit", account: str = "A1",
          **extra: Any) -> None:
    engine.process({"type": "order_placed", "ts": ts(t), "account": account, "symbol": symbol,
                    "order_id": order_id, "side": side, "qty": qty, "order_type": order_type,
                    **extra})


def clock(engine: Engine, t: str) -> None:
    engine.process({"type": "clock", "ts": ts(t)})


def violation(rule: str, value: Any, limit: Any, message: str, actions: list[str], *,
              symbol: str | None = None, t: str = T0, account: str = "A1") -> dict[str, Any]:
    return {"kind": "violation", "ts": t, "rule": rule, "account": account, "symbol": symbol,
            "action": actions, "message": message, "value": value, "limit": limit}


def enforcement(rule: str, action: str, detail: str, *, symbol: str | None = None,
                status: str = "dry_run", order_id: str | None = None,
                t: str = T0) -> dict[str, Any]:
    return {"kind": "enforcement", "ts": t, "action": action, "account": "A1", "symbol": symbol,
            "rule": rule, "order_id": order_id, "status": status, "detail": detail}


def lockout(rule: str, until: str | None, *, t: str = T0, state: str = "halted") -> dict[str, Any]:
    return {"kind": "lockout", "ts": t, "account": "A1", "rule": rule, "state": state,
            "until": until}


def warning(rule: str, value: Any, limit: Any, message: str, *, symbol: str | None = None,
            t: str = T0) -> dict[str, Any]:
    return {"kind": "warning", "ts": t, "rule": rule, "account": "A1", "symbol": symbol,
            "message": message, "value": value, "limit": limit}


def round_trip(engine: Engine, t: str, points: float, *, qty: int = 1,
               symbol: str = "MNQ", **extra: Any) -> None:
    """Buy at 1000 and sell at 1000 + points (MNQ: 2 dollars a point and contract)."""
    engine.process(fill(t, "buy", qty, 1000.0, symbol=symbol))
    engine.process(fill(t, "sell", qty, 1000.0 + points, symbol=symbol, **extra))


# --------------------------------------------------------------------------- max_contracts

MC = "max_contracts"


def test_max_contracts_net_fires_over_the_limit_once_reducing_the_event_symbol():
    engine = make_engine("rules: {max_contracts: {limit: 3, warn_at: 0.6}}\n")
    engine.process(fill(T0, "buy", 2, 100.0))  # 2 >= 0.6 x 3: warning
    assert recs(engine) == [warning(
        MC, 2, 3, "A1 holds 2 contracts (net) over all symbols, limit 3 "
        "(warning at 60% of the limit)")]
    engine.process(fill(T0, "buy", 1, 100.0, symbol="ES"))  # 3: at the limit, allowed
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 2, 100.0, symbol="ES"))  # 5 > 3: ES 3 -> 1
    assert recs(engine) == [
        violation(MC, 5, 3, "A1 holds 5 contracts (net) over all symbols, limit 3",
                  ["reduce_position"], symbol="ES"),
        enforcement(MC, "reduce_position", "sell 2 ES to reach 1", symbol="ES"),
    ]
    # still over, on another symbol: edge-triggered per account, nothing more
    engine.process(fill(T0, "buy", 1, 100.0))
    engine.process({"type": "position", "ts": ts(T0), "account": "A1", "symbol": "ES",
                    "qty": 3})
    assert recs(engine) == []
    assert engine.accounts["A1"].state == "active"  # default lockout: none


def test_max_contracts_rearms_after_clearing():
    engine = make_engine("rules: {max_contracts: {limit: 2}}\n")
    engine.process(fill(T0, "buy", 3, 100.0))
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]
    engine.process(fill(T0, "sell", 1, 100.0))  # 2: within, re-armed
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 4, 100.0, symbol="ES"))  # 6: fires again, on ES
    assert recs(engine) == [
        violation(MC, 6, 2, "A1 holds 6 contracts (net) over all symbols, limit 2",
                  ["reduce_position"], symbol="ES"),
        enforcement(MC, "reduce_position", "sell 4 ES to close", symbol="ES"),
    ]


def test_max_contracts_gross_counts_a_hedge_and_net_does_not():
    net = make_engine("rules: {max_contracts: {limit: 3}}\n")
    gross = make_engine("rules: {max_contracts: {limit: 3, count: gross, lockout: 15m}}\n")
    for engine in (net, gross):
        engine.process(fill(T0, "buy", 2, 100.0))
        engine.process(fill(T0, "sell", 2, 100.0, symbol="ES"))
    assert recs(net) == []
    assert recs(gross) == [
        violation(MC, 4, 3, "A1 holds 4 contracts (gross) over all symbols, limit 3",
                  ["reduce_position"], symbol="ES"),
        enforcement(MC, "reduce_position", "buy 1 ES to reach 1", symbol="ES"),
        lockout(MC, "2026-02-03T15:15:00Z"),
    ]


def test_max_contracts_net_leaves_a_hedging_position_alone():
    engine = make_engine("rules: {max_contracts: {limit: 3}}\n")
    engine.process(fill(T0, "sell", 2, 100.0, symbol="ES"))
    engine.process(fill(T0, "buy", 5, 100.0))  # net 3
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 1, 100.0, symbol="ES"))  # ES -2 -> -1: net 4
    assert recs(engine) == [
        violation(MC, 4, 3, "A1 holds 4 contracts (net) over all symbols, limit 3",
                  ["reduce_position"], symbol="ES"),
        enforcement(MC, "reduce_position", "A1 holds 1 ES, already within 1", symbol="ES",
                    status="skipped"),
    ]


# --------------------------------------------------------------------------- max_order_size

MOS = "max_order_size"


def test_max_order_size_qty_fires_per_offending_order_with_cancel_order():
    engine = make_engine("rules: {max_order_size: {max_qty: 5, warn_at: 0.8}}\n")
    order(engine, T0, "O1", qty=3)
    assert recs(engine) == []
    order(engine, T0, "O2", qty=4)  # 4 >= 0.8 x 5: warning, once a day
    order(engine, T0, "O3", qty=5)  # at the bound: allowed
    assert recs(engine) == [warning(
        MOS, 4, 5, "A1 order O2 (buy 4 MNQ) is 4 contracts, max_qty 5 "
        "(warning at 80% of the limit)", symbol="MNQ")]
    order(engine, T0, "O4", qty=6, side="sell")
    order(engine, T0, "O5", qty=9)  # one violation per offending order
    assert recs(engine) == [
        violation(MOS, 6, 5, "A1 order O4 (sell 6 MNQ) is over max_qty 5", ["cancel_order"],
                  symbol="MNQ"),
        enforcement(MOS, "cancel_order", "cancel order O4 (sell 6 MNQ)", symbol="MNQ",
                    order_id="O4"),
        violation(MOS, 9, 5, "A1 order O5 (buy 9 MNQ) is over max_qty 5", ["cancel_order"],
                  symbol="MNQ"),
        enforcement(MOS, "cancel_order", "cancel order O5 (buy 9 MNQ)", symbol="MNQ",
                    order_id="O5"),
    ]
    assert engine.accounts["A1"].state == "active"


def test_max_order_size_notional_from_price_stop_price_or_mark():
    engine = make_engine(
        "rules: {max_order_size: {max_notional: 100000, min_notional: 1000, lockout: 5m}}\n")
    # ES point value 50: 1 x 2000 x 50 = 100000 at the bound
    order(engine, T0, "L1", symbol="ES", price=2000.0)
    assert recs(engine) == []
    order(engine, T0, "S1", symbol="ES", order_type="stop", stop_price=2000.01)
    assert recs(engine) == [
        violation(MOS, 100000.5, 100000.0,
                  "A1 order S1 (buy 1 ES) has notional 100000.50, max_notional 100000.00",
                  ["cancel_order"], symbol="ES"),
        enforcement(MOS, "cancel_order", "cancel order S1 (buy 1 ES)", symbol="ES",
                    order_id="S1"),
        lockout(MOS, "2026-02-03T15:05:00Z"),
    ]


def test_max_order_size_min_notional_and_market_orders_use_the_mark():
    engine = make_engine("rules: {max_order_size: {min_notional: 1000}}\n")
    order(engine, T0, "M1", order_type="market")  # no price known: only max_qty applies
    assert recs(engine) == []
    engine.process({"type": "quote", "ts": ts(T0), "symbol": "MNQ", "bid": 499.0, "ask": 500.0})
    order(engine, T0, "M2", order_type="market")  # 1 x 499.5 x 2 = 999 < 1000
    order(engine, T0, "M3", order_type="market", qty=2)  # 1998
    out = recs(engine)
    assert out == [
        violation(MOS, 999.0, 1000.0,
                  "A1 order M2 (buy 1 MNQ) has notional 999.00, min_notional 1000.00",
                  ["cancel_order"], symbol="MNQ"),
        enforcement(MOS, "cancel_order", "cancel order M2 (buy 1 MNQ)", symbol="MNQ",
                    order_id="M2"),
    ]


# --------------------------------------------------------------------------- order_rate_limit

ORL = "order_rate_limit"


def test_order_rate_limit_fires_per_order_over_the_rolling_window():
    engine = make_engine("rules: {order_rate_limit: {max_orders: 2}}\n")
    order(engine, "2026-02-03T15:00:00Z", "A")
    order(engine, "2026-02-03T15:00:00.500Z", "B")
    assert recs(engine) == []
    order(engine, "2026-02-03T15:00:00.900Z", "C")  # third within 1s
    order(engine, "2026-02-03T15:00:01Z", "D")  # (0.0, 1.0]: B, C, D
    assert recs(engine) == [
        violation(ORL, 3, 2, "A1 placed 3 orders within 1s, limit 2: order C (buy 1 MNQ)",
                  ["cancel_order"], symbol="MNQ", t="2026-02-03T15:00:00.900Z"),
        enforcement(ORL, "cancel_order", "cancel order C (buy 1 MNQ)", symbol="MNQ",
                    order_id="C", t="2026-02-03T15:00:00.900Z"),
        violation(ORL, 3, 2, "A1 placed 3 orders within 1s, limit 2: order D (buy 1 MNQ)",
                  ["cancel_order"], symbol="MNQ", t="2026-02-03T15:00:01Z"),
        enforcement(ORL, "cancel_order", "cancel order D (buy 1 MNQ)", symbol="MNQ",
                    order_id="D", t="2026-02-03T15:00:01Z"),
    ]
    # exactly per_seconds after D and C are outside the window: (1.9, 2.9] holds E and F only
    order(engine, "2026-02-03T15:00:01.900Z", "E")
    order(engine, "2026-02-03T15:00:02.900Z", "F")
    assert recs(engine) == []


def test_order_rate_limit_warning_and_lockout():
    engine = make_engine(
        "rules: {order_rate_limit: {max_orders: 4, per_seconds: 10, warn_at: 0.75, "
        "lockout: 30s}}\n")
    for i, t in enumerate(("15:00:00", "15:00:01", "15:00:02")):
        order(engine, f"2026-02-03T{t}Z", f"O{i}")
    assert recs(engine) == [warning(
        ORL, 3, 4, "A1 placed 3 orders within 10s, limit 4 (warning at 75% of the limit)",
        t="2026-02-03T15:00:02Z")]
    order(engine, "2026-02-03T15:00:03Z", "O3")
    assert recs(engine) == []
    order(engine, "2026-02-03T15:00:04Z", "O4", symbol="ES")
    assert recs(engine) == [
        violation(ORL, 5, 4, "A1 placed 5 orders within 10s, limit 4: order O4 (buy 1 ES)",
                  ["cancel_order"], symbol="ES", t="2026-02-03T15:00:04Z"),
        enforcement(ORL, "cancel_order", "cancel order O4 (buy 1 ES)", symbol="ES",
                    order_id="O4", t="2026-02-03T15:00:04Z"),
        lockout(ORL, "2026-02-03T15:00:34Z", t="2026-02-03T15:00:04Z"),
    ]


def test_order_rate_limit_counts_per_account_and_survives_a_restart():
    engine = make_engine("rules: {order_rate_limit: {max_orders: 1, per_seconds: 60}}\n")
    order(engine, T0, "X", account="B2")
    order(engine, T0, "A")
    assert recs(engine) == []
    state = engine.accounts["A1"].to_json()
    again = make_engine("rules: {order_rate_limit: {max_orders: 1, per_seconds: 60}}\n")
    again.restore(RestoredState(accounts={"A1": state}))
    order(again, "2026-02-03T15:00:30Z", "B")
    assert [r["kind"] for r in recs(again)] == ["violation", "enforcement"]


# --------------------------------------------------------------------------- daily_realized_profit

DRP = "daily_realized_profit"


def test_daily_realized_profit_warns_fires_at_target_and_locks_until_reset():
    engine = make_engine("rules: {daily_realized_profit: {target: 100, warn_at: 0.5}}\n")
    round_trip(engine, T0, 25)  # +50
    assert recs(engine) == [warning(
        DRP, 50.0, 100.0, "A1 realized P&L today is 50.00, target 100.00 "
        "(warning at 50% of the limit)")]
    round_trip(engine, T0, 24.995)  # +99.99
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 1000.01))  # +0.02 -> 100.01
    assert recs(engine) == [
        violation(DRP, 100.01, 100.0, "A1 realized P&L today is 100.01, target 100.00",
                  ["flatten"]),
        enforcement(DRP, "flatten", "A1 is already flat with no working orders",
                    status="skipped"),
        lockout(DRP, "2026-02-03T23:00:00Z"),
    ]


def test_daily_realized_profit_exactly_at_target_once_and_rearmed_next_day():
    engine = make_engine("rules: {daily_realized_profit: {target: 100, lockout: none}}\n")
    round_trip(engine, T0, 50)  # +100 exactly
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]
    round_trip(engine, T0, 10)  # still over: nothing
    assert recs(engine) == []
    round_trip(engine, "2026-02-04T15:00:00Z", 60)  # new trading day: +120
    out = recs(engine)
    assert [(r["kind"], r["ts"]) for r in out] == [
        ("violation", "2026-02-04T15:00:00Z"), ("enforcement", "2026-02-04T15:00:00Z")]
    assert out[0]["value"] == 120.0


# --------------------------------------------------------------------------- trade_frequency_limit

TFL = "trade_frequency_limit"


def test_trade_frequency_per_minute_alert_with_cooldown_per_fill():
    engine = make_engine("rules: {trade_frequency_limit: {per_minute: 2}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    engine.process(fill("2026-02-03T15:00:10Z", "sell", 1, 100.0))
    assert recs(engine) == []
    engine.process(fill("2026-02-03T15:00:20Z", "buy", 1, 100.0, order_id="F3"))
    assert recs(engine) == [
        violation(TFL, 3, 2, "A1 has 3 fills in the last minute, limit 2 (fill of order F3: "
                  "buy 1 MNQ)", ["alert"], symbol="MNQ", t="2026-02-03T15:00:20Z"),
        lockout(TFL, "2026-02-03T15:01:20Z", t="2026-02-03T15:00:20Z"),
    ]
    # a closing fill passes the lockout and is itself a fourth fill: one violation each
    engine.process(fill("2026-02-03T15:00:30Z", "sell", 1, 100.0, order_id="F4"))
    out = recs(engine)
    assert [(r["kind"], r.get("value")) for r in out] == [("violation", 4), ("lockout", None)]
    assert out[1]["until"] == "2026-02-03T15:01:30Z"


def test_trade_frequency_windows_in_order_and_their_cooldowns():
    engine = make_engine(
        "rules: {trade_frequency_limit: {per_minute: 3, per_hour: 4, per_session: 5, "
        "warn_at: 0.75}}\n")
    for minute in range(3):  # 3 fills in 3 minutes: 3 >= 0.75 x 4 warns for the hour
        engine.process(fill(f"2026-02-03T15:0{minute}:00Z", "buy", 1, 100.0))
    assert recs(engine) == [warning(TFL, 3, 4, "A1 has 3 fills in the last hour, limit 4 "
                                    "(warning at 75% of the limit)", t="2026-02-03T15:02:00Z")]
    engine.process(fill("2026-02-03T15:03:00Z", "buy", 1, 100.0))
    engine.process(fill("2026-02-03T15:04:00Z", "buy", 1, 100.0, order_id="H5"))
    assert recs(engine) == [
        violation(TFL, 5, 4, "A1 has 5 fills in the last hour, limit 4 (fill of order H5: "
                  "buy 1 MNQ)", ["alert"], symbol="MNQ", t="2026-02-03T15:04:00Z"),
        lockout(TFL, "2026-02-03T15:34:00Z", t="2026-02-03T15:04:00Z"),
    ]


def test_trade_frequency_minute_decides_before_hour_and_session():
    engine = make_engine(
        "rules: {trade_frequency_limit: {per_minute: 1, per_hour: 1, per_session: 1}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 100.0))
    out = recs(engine)
    assert out[0]["message"].startswith("A1 has 2 fills in the last minute, limit 1")
    assert out[1]["until"] == "2026-02-03T15:01:01Z"


def test_trade_frequency_per_session_counts_the_trading_day_and_resets():
    engine = make_engine(
        "rules: {trade_frequency_limit: {per_session: 2, cooldown: {per_session: 2h}}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    engine.process(fill("2026-02-03T18:00:00Z", "sell", 1, 100.0))
    assert recs(engine) == []
    engine.process(fill("2026-02-03T22:59:59Z", "buy", 1, 100.0, order_id="S3"))
    assert recs(engine) == [
        violation(TFL, 3, 2, "A1 has 3 fills this trading day, limit 2 (fill of order S3: "
                  "buy 1 MNQ)", ["alert"], symbol="MNQ", t="2026-02-03T22:59:59Z"),
        lockout(TFL, "2026-02-04T00:59:59Z", t="2026-02-03T22:59:59Z"),
    ]
    # 17:00 Chicago (23:00Z) starts a new trading day; the count starts again
    engine.process(fill("2026-02-04T01:00:00Z", "sell", 1, 100.0))
    engine.process(fill("2026-02-04T01:00:01Z", "buy", 1, 100.0))
    assert [r["kind"] for r in recs(engine)] == ["unlock"]
    engine.process(fill("2026-02-04T01:00:02Z", "sell", 1, 100.0))
    assert [r["kind"] for r in recs(engine)] == ["violation", "lockout"]


def test_trade_frequency_session_count_of_an_older_day_is_dropped_after_a_restart():
    rules = "rules: {trade_frequency_limit: {per_session: 1}}\n"
    engine = make_engine(rules)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    state = engine.accounts["A1"].to_json()
    same_day = make_engine(rules)
    same_day.restore(RestoredState(accounts={"A1": state}, engine_state={
        "trading_day": "2026-02-03"}))
    same_day.process(fill("2026-02-03T16:00:00Z", "sell", 1, 100.0))
    assert [r["kind"] for r in recs(same_day)] == ["violation", "lockout"]
    next_day = make_engine(rules)
    next_day.restore(RestoredState(accounts={"A1": state}, engine_state={
        "trading_day": "2026-02-03"}))
    next_day.process(fill("2026-02-04T16:00:00Z", "sell", 1, 100.0))
    assert recs(next_day) == []


# --------------------------------------------------------------------------- cooldown_after_loss

CAL = "cooldown_after_loss"
TIERS = "rules: {cooldown_after_loss: {tiers: [{loss: -100, lockout: 5m}, " \
        "{loss: -300, lockout: 1h}]}}\n"


def test_cooldown_after_loss_fires_at_a_tier_with_its_lockout():
    engine = make_engine(TIERS)
    round_trip(engine, T0, -49.995)  # -99.99: inside
    assert recs(engine) == []
    engine.process(fill(T0, "buy", 2, 1000.0))
    engine.process(fill(T0, "sell", 1, 950.0, order_id="L1"))  # -100 exactly
    assert recs(engine) == [
        violation(CAL, -100.0, -100.0,
                  "A1 fill of order L1 on MNQ realized -100.00, tier -100.00: lockout 5m",
                  ["flatten"], symbol="MNQ"),
        enforcement(CAL, "flatten", "closed 1 MNQ long", symbol="MNQ"),
        lockout(CAL, "2026-02-03T15:05:00Z"),
    ]


def test_cooldown_after_loss_deepest_tier_wins_and_fees_count():
    engine = make_engine(TIERS)
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 855.0, order_id="L2", fee=10.0))  # -290 - 10 = -300
    out = recs(engine)
    assert out[0]["value"] == -300.0 and out[0]["limit"] == -300.0
    assert out[2] == lockout(CAL, "2026-02-03T16:00:00Z")


def test_cooldown_after_loss_fires_once_escalates_and_rearms():
    engine = make_engine(TIERS)
    engine.process(fill(T0, "buy", 3, 1000.0))
    engine.process(fill(T0, "sell", 1, 900.0))  # -200: tier -100, 5m
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement", "lockout"]
    engine.process(fill(T0, "sell", 1, 900.0))  # the same tier again: nothing
    assert recs(engine) == []
    engine.process(fill(T0, "sell", 1, 800.0, order_id="L3"))  # -400: a deeper tier, 1h
    assert recs(engine) == [
        violation(CAL, -400.0, -300.0,
                  "A1 fill of order L3 on MNQ realized -400.00, tier -300.00: lockout 1h",
                  ["flatten"], symbol="MNQ"),
        enforcement(CAL, "flatten", "A1 is already flat with no working orders",
                    symbol="MNQ", status="skipped"),
        lockout(CAL, "2026-02-03T16:00:00Z"),
    ]
    clock(engine, "2026-02-03T16:00:00Z")
    assert [r["reason"] for r in recs(engine)] == ["expired"]
    round_trip(engine, "2026-02-03T16:01:00Z", 10)  # a win re-arms
    round_trip(engine, "2026-02-03T16:02:00Z", -60)  # -120: fires again
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement", "lockout"]


# --------------------------------------------------------------------------- consecutive_losses

CL = "consecutive_losses"


def test_consecutive_losses_fires_at_max_losses_with_flatten_and_1h():
    engine = make_engine("rules: {consecutive_losses: {max_losses: 3, warn_at: 0.6}}\n")
    round_trip(engine, "2026-02-03T15:00:00Z", -1)
    assert recs(engine) == []
    round_trip(engine, "2026-02-03T15:01:00Z", -1)  # 2 >= 0.6 x 3
    assert recs(engine) == [warning(
        CL, 2, 3, "A1 has 2 losing closing fills in a row, limit 3 "
        "(warning at 60% of the limit)", t="2026-02-03T15:01:00Z")]
    round_trip(engine, "2026-02-03T15:02:00Z", -1)
    assert recs(engine) == [
        violation(CL, 3, 3, "A1 has 3 losing closing fills in a row, limit 3", ["flatten"],
                  t="2026-02-03T15:02:00Z"),
        enforcement(CL, "flatten", "A1 is already flat with no working orders",
                    status="skipped", t="2026-02-03T15:02:00Z"),
        lockout(CL, "2026-02-03T16:02:00Z", t="2026-02-03T15:02:00Z"),
    ]


def test_consecutive_losses_win_resets_opening_and_flat_fills_do_not_count():
    engine = make_engine("rules: {consecutive_losses: {max_losses: 2, lockout: none}}\n")
    round_trip(engine, T0, -1)
    round_trip(engine, T0, 1)  # a win: back to 0
    round_trip(engine, T0, -1)
    round_trip(engine, T0, 0)  # closes at 0.00: neither
    engine.process(fill(T0, "buy", 1, 1000.0))  # opens: nothing
    engine.process(fill(T0, "buy", 1, 990.0))  # adds: nothing
    assert recs(engine) == []
    engine.process(fill(T0, "sell", 1, 994.0))  # avg 995: a partial close at a loss
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]


def test_consecutive_losses_once_per_streak_and_a_new_streak_fires_again():
    engine = make_engine("rules: {consecutive_losses: {max_losses: 2, lockout: none}}\n")
    round_trip(engine, T0, -1)
    round_trip(engine, T0, -1)
    assert len(recs(engine)) == 2
    round_trip(engine, T0, -1)  # the streak restarted at the violation: 1
    assert recs(engine) == []
    round_trip(engine, T0, -1)  # 2 again
    assert [r["kind"] for r in recs(engine)] == ["violation", "enforcement"]


def test_consecutive_losses_streak_restarts_at_the_daily_reset():
    engine = make_engine("rules: {consecutive_losses: {max_losses: 2}}\n")
    round_trip(engine, "2026-02-03T22:00:00Z", -1)
    round_trip(engine, "2026-02-03T23:30:00Z", -1)  # after the 17:00 Chicago reset
    assert recs(engine) == []


# --------------------------------------------------------------------------- session_block_outside

SBO = "session_block_outside"
WINDOW = "08:30-15:00 America/Chicago"


def test_session_block_outside_order_before_the_open_flattens_until_session_start():
    engine = make_engine("rules: {session_block_outside: {}}\n")
    order(engine, "2026-02-03T14:29:59Z", "P1")
    assert recs(engine) == [
        violation(SBO, "2026-02-03T08:29:59-06:00", WINDOW,
                  "A1 order P1 (buy 1 MNQ) at 2026-02-03T08:29:59-06:00 is outside the "
                  f"trading session ({WINDOW})", ["flatten"], symbol="MNQ",
                  t="2026-02-03T14:29:59Z"),
        enforcement(SBO, "flatten", "cancelled orders P1", symbol="MNQ",
                    t="2026-02-03T14:29:59Z"),
        lockout(SBO, "2026-02-03T14:30:00Z", t="2026-02-03T14:29:59Z"),
    ]
    order(engine, "2026-02-03T14:30:00Z", "P2")  # the session includes its start
    assert [r["kind"] for r in recs(engine)] == ["unlock"]


def test_session_block_outside_once_per_order_end_excluded_and_weekend():
    engine = make_engine(
        "rules: {session_block_outside: {action: cancel_order, lockout: none, "
        "flatten_at_close: false}}\n")
    order(engine, "2026-02-03T20:59:59Z", "IN")
    assert recs(engine) == []
    order(engine, "2026-02-03T21:00:00Z", "X1")  # the session excludes its end
    order(engine, "2026-02-03T21:00:01Z", "X2")
    order(engine, "2026-02-07T16:00:00Z", "SAT")  # Saturday 10:00
    out = recs(engine)
    assert [(r["kind"], r["order_id"] if r["kind"] == "enforcement" else r["value"])
            for r in out] == [
        ("violation", "2026-02-03T15:00:00-06:00"), ("enforcement", "X1"),
        ("violation", "2026-02-03T15:00:01-06:00"), ("enforcement", "X2"),
        ("violation", "2026-02-07T10:00:00-06:00"), ("enforcement", "SAT"),
    ]


def test_session_block_outside_opening_fills_only_and_holidays():
    config = load_rules_text(HEADER.replace(
        "days: [mon, tue, wed, thu, fri]}", 'days: [mon, tue, wed, thu, fri], '
        'holidays: ["2026-02-05"]}') + "rules: {session_block_outside: {lockout: none, "
        "action: alert, flatten_at_close: false}}\n")
    engine = Engine(config, DryRunBroker())
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    engine.process(fill("2026-02-03T22:00:00Z", "sell", 1, 100.0))  # closing after hours: ok
    assert recs(engine) == []
    engine.process(fill("2026-02-03T22:00:01Z", "sell", 3, 100.0, order_id="R"))  # reverses
    engine.process(fill("2026-02-05T16:00:00Z", "sell", 1, 100.0, order_id="H"))  # holiday
    out = recs(engine)
    assert [(r["kind"], r["symbol"], r["ts"]) for r in out] == [
        ("violation", "MNQ", "2026-02-03T22:00:01Z"),
        ("violation", "MNQ", "2026-02-05T16:00:00Z"),  # Thursday 10:00, a holiday
    ]
    assert out[0]["message"] == (
        "A1 fill of order R (sell 3 MNQ) at 2026-02-03T16:00:01-06:00 is outside the "
        f"trading session ({WINDOW})")


def test_session_block_outside_flattens_open_positions_at_the_session_end():
    engine = make_engine("rules: {session_block_outside: {}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    engine.process(fill("2026-02-03T15:00:00Z", "sell", 1, 100.0, symbol="ES"))
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0, account="B2"))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 100.0, account="B2"))  # flat
    clock(engine, "2026-02-03T21:00:05Z")
    close = "2026-02-03T21:00:00Z"
    assert recs(engine) == [
        violation(SBO, 3, 0, "A1 still holds 2 MNQ long, 1 ES short at the session end "
                  "(2026-02-03T15:00:00-06:00)", ["flatten"], t=close),
        enforcement(SBO, "flatten", "closed 1 ES short, 2 MNQ long", t=close),
        lockout(SBO, "2026-02-04T14:30:00Z", t=close),
    ]
    # re-armed for the next session end (after the session_start unlock)
    clock(engine, "2026-02-04T21:00:00Z")
    assert [(r["kind"], r["ts"]) for r in recs(engine)] == [
        ("unlock", "2026-02-04T14:30:00Z"), ("violation", "2026-02-04T21:00:00Z"),
        ("enforcement", "2026-02-04T21:00:00Z"), ("lockout", "2026-02-04T21:00:00Z")]


def test_session_block_outside_without_flatten_at_close_leaves_positions():
    engine = make_engine("rules: {session_block_outside: {flatten_at_close: false}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    clock(engine, "2026-02-04T03:00:00Z")
    assert recs(engine) == []


# --------------------------------------------------------------------------- auth_loss_guard

ALG = "auth_loss_guard"


def conn(engine: Engine, t: str, status: str, **extra: Any) -> None:
    engine.process({"type": "connection", "ts": ts(t), "status": status, **extra})


def test_auth_loss_guard_alerts_once_per_disconnect_and_rearms_on_connect():
    engine = make_engine("rules: {auth_loss_guard: {}}\n")
    engine.process(fill(T0, "buy", 1, 100.0))
    conn(engine, T0, "disconnected", account="A1", reason="token expired")
    assert recs(engine) == [
        violation(ALG, 1, 1, "broker connection lost for A1: token expired", ["alert"]),
    ]
    conn(engine, T0, "disconnected", account="A1")
    assert recs(engine) == []
    conn(engine, "2026-02-03T15:01:00Z", "connected", account="A1")
    conn(engine, "2026-02-03T15:02:00Z", "disconnected", account="A1")
    assert recs(engine) == [violation(ALG, 1, 1, "broker connection lost for A1", ["alert"],
                                      t="2026-02-03T15:02:00Z")]
    assert engine.accounts["A1"].state == "active"


def test_auth_loss_guard_without_account_concerns_every_account_and_can_lock():
    engine = make_engine("rules: {auth_loss_guard: {lockout: 10m, action: cancel_orders}}\n")
    engine.process(fill(T0, "buy", 1, 100.0))
    engine.process(fill(T0, "buy", 1, 100.0, account="B2"))
    conn(engine, T0, "disconnected")
    out = recs(engine)
    assert [(r["kind"], r["account"]) for r in out] == [
        ("violation", "A1"), ("enforcement", "A1"), ("lockout", "A1"),
        ("violation", "B2"), ("enforcement", "B2"), ("lockout", "B2")]
    assert out[1]["status"] == "skipped" and out[2]["until"] == "2026-02-03T15:10:00Z"


def test_session_block_outside_close_follows_a_reloaded_session():
    engine = make_engine("rules: {session_block_outside: {}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    later = HEADER.replace('end: "15:00"', 'end: "16:00"')
    engine.set_config(load_rules_text(later + "rules: {session_block_outside: {}}\n"))
    clock(engine, "2026-02-03T21:30:00Z")  # 15:30 Chicago: still in the session now
    assert recs(engine) == []
    clock(engine, "2026-02-03T22:00:00Z")
    assert [(r["kind"], r["ts"]) for r in recs(engine)] == [
        ("violation", "2026-02-03T22:00:00Z"), ("enforcement", "2026-02-03T22:00:00Z"),
        ("lockout", "2026-02-03T22:00:00Z")]


def test_max_contracts_does_not_fire_again_after_a_restart_while_still_over():
    rules = "rules: {max_contracts: {limit: 1}}\n"
    engine = make_engine(rules)
    engine.process(fill(T0, "buy", 2, 100.0))
    assert len(recs(engine)) == 2
    again = make_engine(rules)
    again.restore(RestoredState(
        accounts={"A1": engine.accounts["A1"].to_json()},
        positions=[engine.accounts["A1"].positions["MNQ"].to_row()],
        engine_state={"fired": [list(k) for k in engine.fired]}))
    again.process(fill("2026-02-03T15:01:00Z", "buy", 1, 100.0, symbol="ES"))
    assert recs(again) == []
    again.process(fill("2026-02-03T15:02:00Z", "sell", 3, 100.0))  # MNQ -1, ES 1: net 0
    again.process(fill("2026-02-03T15:03:00Z", "buy", 3, 100.0))  # net 3: fires again
    assert [r["kind"] for r in recs(again)] == ["violation", "enforcement"]


def test_cooldown_after_loss_standing_tier_survives_a_restart():
    engine = make_engine(TIERS)
    engine.process(fill(T0, "buy", 3, 1000.0))
    engine.process(fill(T0, "sell", 1, 900.0))  # -200: tier -100 fires
    recs(engine)
    acct = engine.accounts["A1"]
    again = make_engine(TIERS)
    again.restore(RestoredState(
        accounts={"A1": acct.to_json()}, positions=[acct.positions["MNQ"].to_row()],
        engine_state={"fired": [list(k) for k in engine.fired]}))
    again.process(fill("2026-02-03T15:00:10Z", "sell", 1, 900.0))  # same tier: nothing
    assert recs(again) == []
    again.process(fill("2026-02-03T15:00:20Z", "sell", 1, 800.0))  # deeper: fires
    assert [r["kind"] for r in recs(again)] == ["violation", "enforcement", "lockout"]
