"""Book arithmetic: average cost, partial fills, reversals, fees, point values."""

import pytest

from riskterm.book import Position
from tests.helpers import fill, make_engine


def test_average_cost_and_realized_with_point_value():
    pos = Position("A", "MNQ", point_value=2.0)
    assert pos.apply_fill("buy", 1, 100.0, 0) == 0
    assert pos.apply_fill("buy", 3, 104.0, 1) == 0
    assert pos.qty == 4 and pos.avg_price == pytest.approx(103.0)
    assert pos.apply_fill("sell", 2, 105.0, 2) == pytest.approx(2 * 2 * 2.0)
    assert pos.qty == 2 and pos.avg_price == pytest.approx(103.0)


def test_reversal_long_to_short_opens_remainder_at_fill_price():
    pos = Position("A", "ES", point_value=50.0)
    pos.apply_fill("buy", 2, 5000.0, 0)
    realized = pos.apply_fill("sell", 5, 4990.0, 10)
    assert realized == pytest.approx(-10 * 2 * 50.0)
    assert pos.qty == -3 and pos.avg_price == 4990.0 and pos.opened_ts == 10


def test_short_position_profit_and_unrealized():
    pos = Position("A", "MNQ", point_value=2.0)
    pos.apply_fill("sell", 2, 200.0, 0)
    pos.mark = 190.0
    assert pos.unrealized == pytest.approx(40.0)
    assert pos.apply_fill("buy", 2, 195.0, 1) == pytest.approx(20.0)
    assert pos.qty == 0 and pos.opened_ts is None and pos.unrealized == 0


def test_engine_fees_and_broker_realized_pnl():
    engine = make_engine("rules: {}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 20000.0, fee=1.0))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 20010.0, fee=1.0))
    acct = engine.accounts["A1"]
    # (20010 - 20000) * 1 * point value 2 = 20, minus 2 fees of 1
    assert acct.realized == pytest.approx(18.0)
    engine.process(fill("2026-02-03T15:00:02Z", "sell", 1, 0.0, realized_pnl=-7.5, fee=0.5))
    assert acct.realized == pytest.approx(18.0 - 7.5 - 0.5)


def test_partial_fills_reduce_the_working_order():
    engine = make_engine("rules: {}\n")
    engine.process({"type": "order_placed", "ts": 1e9, "account": "A1", "symbol": "MNQ",
                    "order_id": "L1", "side": "buy", "qty": 5, "order_type": "limit",
                    "price": 100.0})
    engine.process({"type": "fill", "ts": 1e9 + 1, "account": "A1", "symbol": "MNQ",
                    "order_id": "L1", "side": "buy", "qty": 2, "price": 100.0})
    assert engine.accounts["A1"].orders["L1"].qty == 3
    engine.process({"type": "fill", "ts": 1e9 + 2, "account": "A1", "symbol": "MNQ",
                    "order_id": "L1", "side": "buy", "qty": 3, "price": 100.0})
    assert "L1" not in engine.accounts["A1"].orders
    assert engine.accounts["A1"].positions["MNQ"].qty == 5


def test_unrealized_from_quote_last_else_mid():
    engine = make_engine("rules: {}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0))
    engine.process({"type": "quote", "ts": 1.8e9, "symbol": "MNQ", "bid": 104.0, "ask": 106.0})
    assert engine.accounts["A1"].unrealized == pytest.approx(10.0)
    engine.process({"type": "quote", "ts": 1.8e9, "symbol": "MNQ", "bid": 104.0, "ask": 106.0,
                    "last": 101.0})
    assert engine.accounts["A1"].unrealized == pytest.approx(2.0)


def test_position_event_drift_takes_broker_size_and_warns():
    engine = make_engine("rules: {}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 2, 100.0))
    engine.take_changes()
    engine.process({"type": "position", "ts": 1.8e9, "account": "A1", "symbol": "MNQ",
                    "qty": 3, "avg_price": 101.0})
    recs = engine.take_changes().records
    assert [r["rule"] for r in recs] == ["position_drift"]
    assert recs[0]["kind"] == "warning" and recs[0]["value"] == 3 and recs[0]["limit"] == 2
    pos = engine.accounts["A1"].positions["MNQ"]
    assert pos.qty == 3 and pos.avg_price == 101.0


def test_unknown_symbol_uses_point_value_one_with_one_warning():
    engine = make_engine("rules: {}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 10.0, symbol="ZZZ"))
    engine.process(fill("2026-02-03T15:00:01Z", "sell", 1, 12.0, symbol="ZZZ"))
    engine.process(fill("2026-02-03T15:00:01Z", "buy", 1, 12.0, symbol="ZZZ", account="A2"))
    warnings = [r for r in engine.take_changes().records if r["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["rule"] == "unknown_instrument"
    assert engine.accounts["A1"].realized == pytest.approx(2.0)
