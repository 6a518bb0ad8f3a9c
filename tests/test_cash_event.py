"""The `cash` event (CONTRACT sections 1 and 5): money in or out of an account that is not P&L.

The parser on its own, the engine on a DryRunBroker (MNQ point value 2), and the real
`riskterm --no-ui --source replay:` on a real SQLite file for the state a restart keeps.
"""

from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskterm.engine import Engine
from riskterm.events import parse_line
from tests.helpers import HEADER, fill, make_engine, records, ts

ROOT = Path(__file__).resolve().parent.parent
T0 = "2026-02-03T15:00:00Z"  # a Tuesday, 09:00 in Chicago
VWE = ("violation", "warning", "enforcement", "lockout")


def cash(engine: Engine, amount: float, reason: str = "withdrawal", *, t: str = T0,
         name: str = "A1") -> None:
    engine.process({"type": "cash", "ts": ts(t), "account": name, "amount": amount,
                    "reason": reason})


def account(engine: Engine, *, t: str = T0, **fields: float) -> None:
    engine.process({"type": "account", "ts": ts(t), "account": "A1", **fields})


def quote(engine: Engine, price: float, *, t: str = T0) -> None:
    engine.process({"type": "quote", "ts": ts(t), "symbol": "MNQ", "last": price})


def recs(engine: Engine) -> list[dict[str, Any]]:
    return records(engine, VWE)


def kinds(engine: Engine) -> list[tuple[str, str]]:
    return [(r["kind"], r["rule"]) for r in recs(engine)]


# --- the parser --------------------------------------------------------------------------------

def _line(**fields: Any) -> bytes:
    ev: dict[str, Any] = {"type": "cash", "ts": T0, "account": "A1", "amount": -1000,
                          "reason": "withdrawal"}
    for key, value in fields.items():
        if value is ...:
            del ev[key]
        else:
            ev[key] = value
    return json.dumps(ev).encode()


@pytest.mark.parametrize("reason", ["deposit", "withdrawal", "payout", "fee", "adjustment"])
def test_every_reason_of_the_contract_is_accepted(reason: str) -> None:
    parsed = parse_line(_line(reason=reason, note="ignored"), 1)
    assert parsed == {"type": "cash", "ts": ts("2026-02-03T15:00:00+00:00"), "account": "A1",
                      "amount": -1000.0, "reason": reason}
    assert isinstance(parsed, dict) and parsed["amount"].__class__ is float


def test_a_zero_amount_is_accepted() -> None:
    # a broker's zero adjustment moves nothing: rejecting it would only add a rejected record
    parsed = parse_line(_line(amount=0), 2)
    assert isinstance(parsed, dict) and parsed["amount"] == 0.0


@pytest.mark.parametrize(("fields", "error"), [
    ({"amount": ...}, "line 7: a cash event is missing the required field 'amount'"),
    ({"reason": ...}, "line 7: a cash event is missing the required field 'reason'"),
    ({"account": ...}, "line 7: a cash event is missing the required field 'account'"),
    ({"reason": "gift"}, "line 7: field 'reason' must be 'deposit', 'withdrawal', 'payout', "
                         "'fee' or 'adjustment', got 'gift'"),
    ({"reason": "Deposit"}, "line 7: field 'reason' must be 'deposit', 'withdrawal', "
                            "'payout', 'fee' or 'adjustment', got 'Deposit'"),
    ({"reason": 5}, "line 7: field 'reason' must be 'deposit', 'withdrawal', 'payout', 'fee' "
                    "or 'adjustment', got 5"),
    ({"amount": "-1000"}, "line 7: field 'amount' of a cash event must be a number, "
                          "got '-1000'"),
    ({"amount": True}, "line 7: field 'amount' of a cash event must be a number, got true"),
    ({"amount": None}, "line 7: field 'amount' of a cash event must be a number, got null"),
    ({"account": ""}, "line 7: field 'account' of a cash event must not be empty"),
    ({"account": 12}, "line 7: field 'account' of a cash event must be a string, got 12 "
                      '(identifiers are strings: write "12")'),
    ({"ts": "2026-02-03T15:00:00"}, "line 7: field 'ts' has no UTC offset: "
                                    "'2026-02-03T15:00:00'"),
])
def test_a_bad_cash_event_is_rejected_with_a_sentence(fields: dict[str, Any],
                                                      error: str) -> None:
    assert parse_line(_line(**fields), 7) == error


@pytest.mark.parametrize(("text", "shown"), [("1e400", "Infinity"), ("NaN", "NaN"),
                                             ("-Infinity", "-Infinity")])
def test_an_amount_that_is_not_finite_is_rejected(text: str, shown: str) -> None:
    raw = (f'{{"type": "cash", "ts": "{T0}", "account": "A1", "amount": {text}, '
           '"reason": "fee"}').encode()
    assert parse_line(raw, 3) == (
        f"line 3: field 'amount' of a cash event must be a finite number, got {shown}")


def test_reason_stays_free_text_on_the_other_events() -> None:
    raw = json.dumps({"type": "order_rejected", "ts": T0, "account": "A1", "order_id": "o1",
                      "reason": "gift"}).encode()
    parsed = parse_line(raw, 1)
    assert isinstance(parsed, dict) and parsed["reason"] == "gift"
    raw = json.dumps({"type": "connection", "ts": T0, "status": "connected",
                      "reason": 5}).encode()
    assert parse_line(raw, 1) == (
        "line 1: field 'reason' of a connection event must be a string, got 5")


# --- the engine: balance and equity move, the day's P&L does not -------------------------------

def test_cash_moves_balance_and_a_reported_equity_not_the_pnl() -> None:
    engine = make_engine("rules: {daily_realized_loss: {limit: -100}}\n")
    account(engine, balance=50000.0, equity=50200.0)
    cash(engine, -1000.0)
    cash(engine, 250.0, "deposit")
    acct = engine.accounts["A1"]
    assert (acct.balance, acct.equity, acct.realized, acct.cash_moved) == (
        49250.0, 49450.0, 0.0, -750.0)
    assert acct.sod_balance == 50000.0  # the day start is the balance at the reset
    assert recs(engine) == []
    assert engine.account_snapshot("A1")["cash_today"] == -750.0


def test_cash_before_any_balance_waits_for_the_brokers_balance() -> None:
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000}}\n")
    cash(engine, 5000.0, "deposit")
    acct = engine.accounts["A1"]
    assert (acct.balance, acct.equity, acct.cash_moved) == (None, None, 5000.0)
    assert "trailing_drawdown" not in acct.rule_state
    account(engine, balance=55000.0)  # the broker's first balance, the deposit in it
    assert acct.balance == 55000.0
    assert acct.rule_state["trailing_drawdown"]["mark"] == 55000.0


@pytest.mark.parametrize("broker_equity", [False, True])
def test_a_withdrawal_does_not_trip_trailing_drawdown_a_loss_does(broker_equity: bool) -> None:
    rules = "rules: {trailing_drawdown: {amount: 1000, lockout: none}}\n"
    start = {"balance": 50000.0, **({"equity": 50000.0} if broker_equity else {})}
    # the same 1,000 off the equity as a loss: 1,000 below the mark, the floor
    lost = make_engine(rules)
    account(lost, **start)
    account(lost, balance=49000.0, **({"equity": 49000.0} if broker_equity else {}))
    assert kinds(lost) == [("violation", "trailing_drawdown"),
                           ("enforcement", "trailing_drawdown")]
    # ... as a withdrawal: the mark moves with it, the distance to the floor is kept
    engine = make_engine(rules)
    account(engine, **start)
    cash(engine, -1000.0)
    assert recs(engine) == []
    st = engine.accounts["A1"].rule_state["trailing_drawdown"]
    assert st["mark"] == 49000.0
    # and the floor is 1,000 below the moved mark: 999.99 passes, 1,000 trips
    engine.process(fill(T0, "buy", 1, 1000.0))
    if broker_equity:
        account(engine, equity=48000.01)
    else:
        quote(engine, 500.005)
    assert recs(engine) == []
    if broker_equity:
        account(engine, equity=48000.0)
    else:
        quote(engine, 500.0)
    assert [(r["kind"], r.get("value"), r.get("message")) for r in recs(engine)][:1] == [
        ("violation", 1000.0, "A1 equity 48000.00 is 1000.00 below the high-water mark "
                              "49000.00, limit 1000.00 (floor 48000.00)")]


def test_a_deposit_raises_the_mark_so_a_loss_after_it_trips_at_the_same_distance() -> None:
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, "
                         "stop_at_start_balance: false, lockout: none}}\n")
    account(engine, balance=50000.0)
    cash(engine, 2000.0, "deposit")
    st = engine.accounts["A1"].rule_state["trailing_drawdown"]
    assert st["mark"] == 52000.0
    engine.process(fill(T0, "buy", 1, 1000.0))
    quote(engine, 500.0)  # equity 51000: 1,000 below the moved mark
    assert recs(engine)[0]["message"] == (
        "A1 equity 51000.00 is 1000.00 below the high-water mark 52000.00, limit 1000.00 "
        "(floor 51000.00)")


def test_a_payout_lowers_an_eod_mark_too() -> None:
    engine = make_engine("rules: {trailing_drawdown: {amount: 1000, mode: eod}}\n")
    account(engine, balance=50000.0)
    cash(engine, -600.0, "payout")
    assert engine.accounts["A1"].rule_state["trailing_drawdown"]["mark"] == 49400.0
    assert recs(engine) == []


def test_a_withdrawal_does_not_trip_daily_total_loss_a_loss_does() -> None:
    rules = "rules: {daily_total_loss: {limit: -500, lockout: none}}\n"
    lost = make_engine(rules)
    account(lost, balance=50000.0)
    lost.process(fill(T0, "buy", 1, 1000.0))
    quote(lost, 750.0)  # -500 open
    assert kinds(lost)[:1] == [("violation", "daily_total_loss")]

    engine = make_engine(rules)
    account(engine, balance=50000.0)
    engine.process(fill(T0, "buy", 1, 1000.0))
    cash(engine, -1000.0)
    cash(engine, -35.0, "fee")  # a platform fee is cash too, not a trading loss
    quote(engine, 900.0)  # -200 open: equity 48765, but the day's P&L is -200
    assert recs(engine) == []
    quote(engine, 750.0)  # -500: equity - cash moved (-1035) = day start - 500
    assert recs(engine)[0]["message"] == (
        "A1 P&L today is -500.00 (realized 0.00, unrealized -500.00, cash moved -1035.00 not "
        "counted), limit -500.00")


def test_a_deposit_does_not_count_as_profit() -> None:
    engine = make_engine("rules:\n"
                         "  daily_realized_profit: {target: 500}\n"
                         "  daily_total_loss: {limit: -500, lockout: none}\n")
    account(engine, balance=50000.0)
    cash(engine, 5000.0, "deposit")
    assert recs(engine) == [] and engine.accounts["A1"].realized == 0.0
    # nor does it cover a loss: equity is 4,400 above the day start, the day's P&L is -600
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 700.0))
    assert [(r["kind"], r["rule"], r.get("value")) for r in recs(engine)][:1] == [
        ("violation", "daily_total_loss", -600.0)]
    # a real profit does count: +1,100 realized on top of the -600
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 1550.0))
    assert [(r["kind"], r["rule"], r.get("value")) for r in recs(engine)
            if r["kind"] == "violation"] == [("violation", "daily_realized_profit", 500.0)]


def test_cash_is_not_a_loss_for_the_fill_rules() -> None:
    engine = make_engine("rules:\n"
                         "  daily_realized_loss: {limit: -100, lockout: none}\n"
                         "  consecutive_losses: {max_losses: 2, lockout: none}\n"
                         "  cooldown_after_loss: {tiers: [{loss: -50, lockout: 5m}]}\n")
    account(engine, balance=50000.0)
    cash(engine, -5000.0)
    cash(engine, -10.0, "fee")
    assert recs(engine) == [] and engine.accounts["A1"].state == "active"
    # one losing trade is one loss (had the cash counted, this were the third), -20 is within
    # the daily limit and under the cooldown's tier
    engine.process(fill(T0, "buy", 1, 1000.0, order_id="o1"))
    engine.process(fill(T0, "sell", 1, 990.0, order_id="o2"))
    assert recs(engine) == [] and engine.accounts["A1"].realized == -20.0
    engine.process(fill(T0, "buy", 1, 1000.0, order_id="o3"))
    engine.process(fill(T0, "sell", 1, 990.0, order_id="o4"))  # the second loss
    assert [r["rule"] for r in recs(engine) if r["kind"] == "violation"] == [
        "consecutive_losses"]


def test_a_withdrawal_judges_max_position_value_pct_at_once() -> None:
    engine = make_engine("rules: {max_position_value_pct: {max_pct: 0.5}}\n")
    account(engine, balance=10000.0)
    engine.process(fill(T0, "buy", 2, 1000.0))  # 4,000 of 10,000: 40%
    assert recs(engine) == []
    cash(engine, -3000.0)  # 4,000 of 7,000
    assert recs(engine)[0]["message"] == (
        "A1 MNQ position of 2 is worth 4000.00, 57.14% of equity 7000.00, limit 50%")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_quote_gate_judges_after_cash_as_without_it(seed: int) -> None:
    """Cash moves equity outside the marks: the gated engine writes what an ungated one does."""
    rng = random.Random(seed)
    rules = ("rules:\n"
             "  trailing_drawdown: {amount: 300, lockout: none, warn_at: 0.8}\n"
             "  daily_total_loss: {limit: -400, lockout: none, warn_at: 0.7}\n"
             "  max_position_value_pct: {max_pct: 0.9, action: alert}\n")
    steps: list[tuple[str, float]] = []
    for _ in range(300):
        if rng.random() < 0.1:
            steps.append(("cash", rng.choice([-1, 1]) * rng.uniform(10, 400)))
        else:
            steps.append(("quote", rng.uniform(900, 1100)))

    def run(gate: bool) -> list[dict[str, Any]]:
        engine = make_engine(rules)
        engine.gate_quotes = gate
        account(engine, balance=3000.0)
        engine.process(fill(T0, "buy", 1, 1000.0))
        out = []
        for i, (kind, value) in enumerate(steps):
            t = f"2026-02-03T15:{i // 60:02d}:{i % 60:02d}Z"
            if kind == "cash":
                cash(engine, round(value, 2), "adjustment", t=t)
            else:
                quote(engine, round(value, 2), t=t)
            out += records(engine)
        return out

    gated = run(True)
    assert gated == run(False)
    assert any(r["kind"] == "violation" for r in gated)  # the sequence does reach the limits


# --- across a restart and the daily reset: the real CLI on a real SQLite file ------------------

RULES = HEADER + """\
rules:
  trailing_drawdown: {amount: 1000, lockout: none}
  daily_total_loss: {limit: -500, lockout: none}
"""


def _replay(tmp: Path, lines: list[dict[str, Any]], name: str, db: Path,
            *extra: str) -> list[dict[str, Any]]:
    path = tmp / f"{name}.jsonl"
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{path}",
         "--rules", str(rules), "--db", str(db), *extra],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return [json.loads(x) for x in res.stdout.splitlines()]


def _row(db: Path) -> dict[str, Any]:
    conn = sqlite3.connect(db)
    try:
        (data,) = conn.execute("SELECT data FROM accounts WHERE account = 'A1'").fetchone()
    finally:
        conn.close()
    return json.loads(data)


def _ev(kind: str, t: str, **fields: Any) -> dict[str, Any]:
    return {"type": kind, "ts": t, **({"account": "A1"} if kind != "quote" else {}), **fields}


def test_cash_moved_survives_a_restart_and_resets_at_the_daily_reset(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    first = _replay(tmp_path, [
        _ev("account", "2026-02-03T15:00:00Z", balance=50000.0),
        _ev("cash", "2026-02-03T15:01:00Z", amount=-1000, reason="withdrawal"),
        {"type": "cash", "ts": "2026-02-03T15:01:30Z", "account": "A1", "amount": 1,
         "reason": "bonus"},  # rejected: changes nothing
        _ev("fill", "2026-02-03T15:02:00Z", symbol="MNQ", order_id="o1", side="buy", qty=1,
            price=1000.0),
    ], "first", db, "--record", str(tmp_path / "recorded.jsonl"))
    assert [(r["kind"], r.get("line"), r.get("error")) for r in first[:-1]] == [
        ("rejected", 3, "line 3: field 'reason' must be 'deposit', 'withdrawal', 'payout', "
                        "'fee' or 'adjustment', got 'bonus'")]
    assert (first[-1]["kind"], first[-1]["events"], first[-1]["rejected"]) == ("summary", 3, 1)
    row = _row(db)
    assert (row["balance"], row["cash_moved"], row["sod_balance"]) == (49000.0, -1000.0, 50000.0)
    assert row["rule_state"]["trailing_drawdown"]["mark"] == 49000.0
    # the recording holds the cash line as section 1 writes it (a replay of it is the session)
    recorded = (tmp_path / "recorded.jsonl").read_text().splitlines()
    assert recorded[1] == ('{"type":"cash","ts":"2026-02-03T15:01:00Z","account":"A1",'
                           '"amount":-1000.0,"reason":"withdrawal"}')

    # a restart on the same database, the same trading day: the withdrawal is still not P&L,
    # and the loss limit's message still knows about it
    second = _replay(tmp_path, [
        _ev("quote", "2026-02-03T16:00:00Z", symbol="MNQ", last=900.0),   # -200
        _ev("quote", "2026-02-03T16:01:00Z", symbol="MNQ", last=750.0),   # -500
    ], "second", db)
    assert [(r["kind"], r["rule"], r["value"], r["message"]) for r in second
            if r["kind"] == "violation"] == [
        ("violation", "daily_total_loss", -500.0,
         "A1 P&L today is -500.00 (realized 0.00, unrealized -500.00, cash moved -1000.00 not "
         "counted), limit -500.00")]
    assert _row(db)["cash_moved"] == -1000.0

    # the daily reset (17:00 Chicago = 23:00Z) starts the count again; the balance keeps it
    third = _replay(tmp_path, [
        _ev("clock", "2026-02-03T23:00:00Z"),
        _ev("cash", "2026-02-03T23:30:00Z", amount=250.0, reason="deposit"),
    ], "third", db)
    assert [r["kind"] for r in third if r["kind"] == "violation"] == []
    row = _row(db)
    assert (row["trading_day"], row["cash_moved"], row["balance"], row["sod_balance"]) == (
        "2026-02-04", 250.0, 49250.0, 49000.0)
    # and the mark: lowered by the withdrawal, raised by the deposit
    assert row["rule_state"]["trailing_drawdown"]["mark"] == 49250.0
