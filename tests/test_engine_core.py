"""Engine behaviour: edge triggering, warnings, timers on the engine clock, lockouts."""

from riskterm.timefmt import iso
from tests.helpers import fill, make_engine, records, ts

LOSS = """rules:
  daily_realized_loss: {limit: -100, warn_at: 0.5}
"""


def _lose(engine, t, amount_points, qty=1, account="A1"):
    """Open and close a MNQ trade losing amount_points * 2 dollars per contract."""
    engine.process(fill(t, "buy", qty, 1000.0, account=account))
    engine.process(fill(t, "sell", qty, 1000.0 - amount_points, account=account))


def test_daily_realized_loss_fires_at_limit_once_with_flatten_and_lockout():
    engine = make_engine(LOSS)
    _lose(engine, "2026-02-03T15:00:00Z", 25)  # -50: the warning (0.5 x -100)
    recs = records(engine, ("warning", "violation"))
    assert [(r["kind"], r["value"]) for r in recs] == [("warning", -50.0)]
    _lose(engine, "2026-02-03T15:01:00Z", 25)  # -100: exactly the limit -> fires
    recs = records(engine)
    kinds = [r["kind"] for r in recs]
    assert kinds == ["violation", "enforcement", "lockout"]
    v, e, lk = recs
    assert v["rule"] == "daily_realized_loss" and v["value"] == -100.0 and v["limit"] == -100
    assert v["action"] == ["flatten"] and v["symbol"] is None
    assert e["action"] == "flatten" and e["status"] == "skipped"  # already flat
    # until_reset: the next 17:00 America/Chicago = 23:00Z in February
    assert lk["state"] == "halted" and lk["until"] == "2026-02-03T23:00:00Z"
    assert engine.accounts["A1"].state == "halted"


def test_just_inside_the_limit_does_not_fire_and_warning_is_once_per_day():
    engine = make_engine(LOSS)
    _lose(engine, "2026-02-03T15:00:00Z", 49.995)  # -99.99 after rounding to cents
    _lose(engine, "2026-02-03T15:00:01Z", 0)
    recs = records(engine, ("warning", "violation"))
    assert [r["kind"] for r in recs] == ["warning"]


def test_edge_trigger_rearms_after_condition_clears_and_daily_reset_unlocks():
    engine = make_engine("rules: {daily_realized_loss: {limit: -100, lockout: none}}\n")
    _lose(engine, "2026-02-03T15:00:00Z", 60)  # -120
    assert len(records(engine, ("violation",))) == 1
    _lose(engine, "2026-02-03T15:00:05Z", 0)  # still breached: no second violation
    assert records(engine, ("violation",)) == []
    engine.process(fill("2026-02-03T15:01:00Z", "buy", 1, 1000.0))
    engine.process(fill("2026-02-03T15:01:00Z", "sell", 1, 1030.0))  # +60 -> -60: clears
    assert records(engine, ("violation",)) == []
    _lose(engine, "2026-02-03T15:02:00Z", 30)  # -120 again: re-armed, fires
    assert len(records(engine, ("violation",))) == 1


def test_lockout_expires_at_daily_reset_with_due_time_as_ts():
    engine = make_engine("rules: {daily_realized_loss: {limit: -100}}\n")
    _lose(engine, "2026-02-03T15:00:00Z", 60)
    records(engine)
    engine.process({"type": "clock", "ts": ts("2026-02-04T01:00:00Z")})
    recs = records(engine)
    assert recs == [{"kind": "unlock", "ts": "2026-02-03T23:00:00Z", "account": "A1",
                     "rule": "daily_realized_loss", "reason": "daily_reset"}]
    assert engine.accounts["A1"].state == "active"
    assert engine.accounts["A1"].realized == 0.0  # new trading day


def test_duration_lockout_expires_on_the_engine_clock():
    engine = make_engine("rules: {daily_realized_loss: {limit: -100, lockout: 90s}}\n")
    _lose(engine, "2026-02-03T15:00:00Z", 60)
    lk = records(engine, ("lockout",))[0]
    assert lk["until"] == "2026-02-03T15:01:30Z"
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:01:29Z")})
    assert records(engine, ("unlock",)) == []
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:01:30Z")})
    assert [r["reason"] for r in records(engine, ("unlock",))] == ["expired"]


def test_halted_account_cancels_orders_and_closes_increases_only():
    engine = make_engine("rules: {daily_realized_loss: {limit: -100, lockout: permanent}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 1000.0, symbol="ES"))
    _lose(engine, "2026-02-03T15:00:00Z", 60)
    lk = records(engine, ("lockout",))[0]
    assert lk["until"] is None
    engine.process({"type": "order_placed", "ts": ts("2026-02-03T15:00:01Z"), "account": "A1",
                    "symbol": "MNQ", "order_id": "X9", "side": "buy", "qty": 1,
                    "order_type": "market"})
    v, e = records(engine)
    assert v["rule"] == "trading_while_locked" and v["action"] == ["cancel_order"]
    assert e["action"] == "cancel_order" and e["order_id"] == "X9" and e["status"] == "dry_run"
    # a reducing fill is allowed silently
    engine.process(fill("2026-02-03T15:00:02Z", "sell", 1, 1000.0, symbol="ES"))
    assert records(engine, ("violation",)) == []
    # an increasing fill is undone back to the size before it
    engine.process(fill("2026-02-03T15:00:03Z", "buy", 2, 1000.0, symbol="ES"))
    v, e = records(engine)
    assert v["rule"] == "trading_while_locked" and e["action"] == "reduce_position"
    assert e["detail"] == "sell 2 ES to reach 2"


def test_reducing_state_allows_orders_that_reduce():
    engine = make_engine(
        "rules: {daily_realized_loss: {limit: -100, lockout_state: reducing}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 3, 1000.0, symbol="ES"))
    _lose(engine, "2026-02-03T15:00:00Z", 60)
    assert records(engine, ("lockout",))[0]["state"] == "reducing"
    base = {"type": "order_placed", "ts": ts("2026-02-03T15:00:01Z"), "account": "A1",
            "symbol": "ES", "order_type": "market"}
    engine.process(base | {"order_id": "R1", "side": "sell", "qty": 2})
    assert records(engine, ("violation",)) == []
    engine.process(base | {"order_id": "R2", "side": "sell", "qty": 5})  # a reversal
    assert [r["rule"] for r in records(engine, ("violation",))] == ["trading_while_locked"]


def test_no_stop_loss_grace_fires_at_due_time_and_stop_rearms():
    engine = make_engine("rules: {no_stop_loss_grace: {grace_seconds: 30}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 1000.0))
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:29Z")})
    assert records(engine, ("violation",)) == []
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:01:00Z")})
    v, e = records(engine)
    assert v["ts"] == "2026-02-03T15:00:30Z" and v["rule"] == "no_stop_loss_grace"
    assert e["action"] == "close_position" and e["detail"] == "sell 1 MNQ to close"
    # a stop protects it; removing the stop starts a new grace period
    stop = {"type": "order_placed", "ts": ts("2026-02-03T15:01:10Z"), "account": "A1",
            "symbol": "MNQ", "order_id": "S1", "side": "sell", "qty": 1, "order_type": "stop",
            "stop_price": 990.0}
    engine.process(stop)
    engine.process({"type": "order_cancelled", "ts": ts("2026-02-03T15:01:20Z"),
                    "account": "A1", "order_id": "S1"})
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:02:00Z")})
    v = records(engine, ("violation",))
    assert [r["ts"] for r in v] == ["2026-02-03T15:01:50Z"]


def test_a_stop_on_the_wrong_side_does_not_protect():
    engine = make_engine("rules: {no_stop_loss_grace: {grace_seconds: 10}}\n")
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 1000.0))
    engine.process({"type": "order_placed", "ts": ts("2026-02-03T15:00:01Z"), "account": "A1",
                    "symbol": "MNQ", "order_id": "S1", "side": "buy", "qty": 1,
                    "order_type": "stop", "stop_price": 1010.0})
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:20Z")})
    assert len(records(engine, ("violation",))) == 1


def test_symbol_blocks_orders_and_fills_case_insensitive():
    engine = make_engine('rules: {symbol_blocks: {symbols: ["btc*", "DOGE"]}}\n')
    engine.process({"type": "order_placed", "ts": ts("2026-02-03T15:00:00Z"), "account": "A1",
                    "symbol": "BTCUSD", "order_id": "B1", "side": "buy", "qty": 1,
                    "order_type": "market"})
    v, e = records(engine)
    assert v["action"] == ["cancel_order"] and e["order_id"] == "B1"
    engine.process(fill("2026-02-03T15:00:01Z", "buy", 1, 5.0, symbol="doge", order_id="B2"))
    recs = records(engine, ("violation", "enforcement"))
    assert [r["kind"] for r in recs] == ["violation", "enforcement"]
    assert recs[0]["action"] == ["close_position"]
    engine.process(fill("2026-02-03T15:00:02Z", "buy", 1, 5.0, symbol="MNQ"))
    assert records(engine, ("violation",)) == []


def test_events_older_than_the_clock_do_not_move_it_back():
    engine = make_engine("rules: {}\n")
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:10Z")})
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 1000.0))
    assert iso(engine.clock) == "2026-02-03T15:00:10Z"


def test_a_balance_without_equity_drops_the_equity_of_the_older_balance():
    """An equity reported with an older balance no longer holds once a new balance comes
    without one: equity is then balance plus open P&L (the daily report's curve, the rules)."""
    engine = make_engine("rules: {}\n")
    t = "2026-02-03T15:00:00Z"
    engine.process({"type": "account", "ts": ts(t), "account": "A1", "balance": 50000.0,
                    "equity": 50100.0})
    assert engine.accounts["A1"].live_equity == 50100.0
    engine.process(fill("2026-02-03T15:00:01Z", "buy", 1, 100.0))
    engine.process({"type": "quote", "ts": ts("2026-02-03T15:00:02Z"), "symbol": "MNQ",
                    "last": 110.0})  # +10 points x 2 = +20 open
    engine.process({"type": "account", "ts": ts("2026-02-03T15:00:03Z"), "account": "A1",
                    "balance": 49700.0})
    assert engine.accounts["A1"].live_equity == 49720.0
