"""The re-sync rule of CONTRACT section 9: on connect the broker's view is authoritative.

Engine level: a restored book meets a broker Snapshot. End to end: `riskterm --no-ui --source
sim` restarted on an old database (another --seed, or the same one) never acts on what the new
simulator does not have.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from helpers import fill, make_engine, records, ts

from riskterm.config import load_rules
from riskterm.enforcement import Closing
from riskterm.engine import Engine, RestoredState, Snapshot
from riskterm.host import EngineHost, RunOptions

T0 = "2026-02-03T15:00:00Z"
T1 = "2026-02-03T15:10:00Z"
T2 = "2026-02-03T15:20:00Z"

RULES = """rules:
  max_contracts_per_instrument: {limits: {MNQ: 2}, action: reduce_position}
  daily_realized_loss: {limit: -100, action: flatten, lockout: until_reset}
"""


def _placed(t: str, order_id: str, *, account: str = "A1", qty: int = 1,
            side: str = "buy", price: float = 990.0) -> dict[str, Any]:
    return {"type": "order_placed", "ts": ts(t), "account": account, "symbol": "MNQ",
            "order_id": order_id, "side": side, "qty": qty, "order_type": "limit",
            "price": price}


def _restart(old: Engine, rules: str = RULES) -> Engine:
    """A new engine on what `old` would have left in the database."""
    old.take_changes()
    state = RestoredState(
        accounts={n: json.loads(old._account_json(n)) for n in old.accounts},
        positions=[p.to_row() for a in old.accounts.values() for p in a.positions.values()],
        lockouts=[dataclasses.replace(lk) for lk in old.lockouts.all()],
        engine_state={"trading_day": old.trading_day, "marks": old.marks,
                      "next_lockout_id": old.lockouts.next_id},
    )
    engine = make_engine(rules)
    engine.restore(state)
    return engine


def _book(engine: Engine) -> dict[tuple[str, str], int]:
    return {(a.name, s): p.qty for a in engine.accounts.values()
            for s, p in a.positions.items() if p.qty}


def _old_engine() -> Engine:
    """A1 long 2 MNQ with a working order; B1 long 1 MNQ."""
    engine = make_engine(RULES)
    engine.process({"type": "account", "ts": ts(T0), "account": "A1", "balance": 50_000.0})
    engine.process(fill(T0, "buy", 2, 1000.0))
    engine.process(_placed(T0, "w1"))
    engine.process(fill(T0, "buy", 1, 1000.0, account="B1"))
    return engine


# -- engine level -----------------------------------------------------------------------------


def test_restored_position_and_order_not_in_the_snapshot_are_dropped_without_enforcement():
    engine = _restart(_old_engine())
    assert _book(engine) == {("A1", "MNQ"): 2, ("B1", "MNQ"): 1}
    engine.enforcer.closing[("A1", "MNQ")] = Closing(2, "sell", ts(T2), None, "test")
    engine.enforcer.cancelling[("A1", "w1")] = (ts(T2), None)
    unreported = engine.resync(Snapshot(ts(T1), accounts=[
        {"account": "A1", "balance": 50_000.0}, {"account": "B1", "balance": 25_000.0}]))
    assert unreported == []
    assert _book(engine) == {}
    assert engine.accounts["A1"].orders == {}
    # the in-flight ledger forgets what no longer exists
    assert ("A1", "MNQ") not in engine.enforcer.closing
    assert ("A1", "w1") not in engine.enforcer.cancelling
    recs = records(engine)
    assert [r["kind"] for r in recs] == ["warning", "warning"]
    a1, b1 = recs
    assert (a1["rule"], a1["account"], a1["symbol"], a1["value"], a1["limit"]) == \
        ("resync", "A1", None, 2, None)
    assert "MNQ +2" in a1["message"] and "w1" in a1["message"]
    assert (b1["rule"], b1["account"], b1["value"]) == ("resync", "B1", 1)
    assert a1["ts"] == "2026-02-03T15:10:00Z"
    changes = engine.take_changes()
    assert changes.records == []
    # and a quote for the dropped symbol neither judges nor enforces anything
    engine.process({"type": "quote", "ts": ts(T2), "symbol": "MNQ", "last": 900.0})
    assert records(engine) == []


def test_positions_of_an_account_new_to_the_book_are_adopted_without_drift():
    """A first connect on a fresh database: nothing to disagree with, so no position_drift;
    an account the database knew, with another size, is still drift (the test above)."""
    engine = _restart(_old_engine())
    engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}, {"account": "NEW"}],
                           positions=[{"account": "A1", "symbol": "MNQ", "qty": 1,
                                       "avg_price": 1000.0},
                                      {"account": "NEW", "symbol": "ES", "qty": -3,
                                       "avg_price": 5000.0}]))
    drift = [(r["account"], r["symbol"]) for r in records(engine)
             if r.get("rule") == "position_drift"]
    assert drift == [("A1", "MNQ")]
    assert _book(engine)[("NEW", "ES")] == -3


def test_stored_positions_after_a_resync_are_the_brokers():
    engine = _restart(_old_engine())
    engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}, {"account": "B1"}],
                           positions=[{"account": "A1", "symbol": "MNQ", "qty": 2,
                                       "avg_price": 1000.0}]))
    rows = {(a, s): q for a, s, q, _, _ in engine.take_changes().positions}
    assert rows == {("A1", "MNQ"): 2, ("B1", "MNQ"): 0}  # B1's dropped: stored flat
    assert _book(engine) == {("A1", "MNQ"): 2}


def test_a_snapshot_size_the_book_disagrees_with_is_position_drift():
    engine = _restart(_old_engine())
    engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}, {"account": "B1"}],
                           positions=[{"account": "A1", "symbol": "MNQ", "qty": 1,
                                       "avg_price": 1000.0},
                                      {"account": "B1", "symbol": "MNQ", "qty": 1,
                                       "avg_price": 1000.0}],
                           orders=[{"account": "A1", "symbol": "MNQ", "order_id": "w1",
                                    "side": "buy", "qty": 1, "order_type": "limit",
                                    "price": 990.0}]))
    recs = records(engine)
    assert [(r["kind"], r["rule"], r["account"], r["value"], r["limit"]) for r in recs] == [
        ("warning", "position_drift", "A1", 1, 2)]
    assert _book(engine) == {("A1", "MNQ"): 1, ("B1", "MNQ"): 1}
    assert list(engine.accounts["A1"].orders) == ["w1"]


def test_orders_the_engine_does_not_know_are_placed_and_judged():
    engine = _restart(_old_engine())
    engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}, {"account": "B1"}],
                           positions=[{"account": "A1", "symbol": "MNQ", "qty": 2}],
                           orders=[{"account": "A1", "symbol": "MNQ", "order_id": "w2",
                                    "side": "buy", "qty": 3, "order_type": "limit",
                                    "price": 980.0}]))
    assert set(engine.accounts["A1"].orders) == {"w2"}
    assert engine.accounts["A1"].orders["w2"].qty == 3
    recs = records(engine)
    assert [(r["kind"], r["rule"]) for r in recs] == [("warning", "resync"), ("warning", "resync")]
    assert "w1" in recs[0]["message"] and "MNQ" in recs[1]["message"]


def test_an_unreported_account_is_kept_but_neither_judged_nor_enforced_until_named_again():
    engine = _restart(_old_engine())
    unreported = engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}],
                                        positions=[{"account": "A1", "symbol": "MNQ",
                                                    "qty": 2}]))
    assert unreported == ["B1"]
    b1 = engine.accounts["B1"]
    assert not b1.reported and not b1.positions.get("MNQ").qty
    changes = engine.take_changes()
    assert [r["rule"] for r in changes.records] == ["resync"]  # A1's order w1; nothing for B1
    saved = dict(changes.accounts)
    assert json.loads(saved["B1"])["reported"] is False
    assert ("B1", "MNQ", 0, 0.0, None) in changes.positions
    # nothing judges it: a breach by a timer-driven or manual path writes nothing of its kind
    engine.violate("daily_realized_loss", b1, None, -500.0, -100, "test",
                   actions=("flatten",))
    assert records(engine) == []
    recs = engine.execute_action("B1", "flatten", rule="manual")
    assert [(r["status"], r["account"]) for r in recs] == [("skipped", "B1")]
    assert "not reported" in recs[0]["detail"]
    records(engine)
    assert engine.account_snapshot("B1")["reported"] is False
    from riskterm.tui.view import account_rows  # the dashboard says so, not "active"
    assert account_rows(engine)["B1"].state == "unreported"
    assert account_rows(engine)["A1"].state == "active"
    # a restart keeps it unreported
    again = _restart(engine)
    assert not again.accounts["B1"].reported
    # an event from the broker for it: reported, judged again
    again.process({"type": "account", "ts": ts(T2), "account": "B1", "balance": 25_000.0})
    assert again.accounts["B1"].reported
    again.process(fill(T2, "buy", 3, 1000.0, account="B1", order_id="x"))
    recs = records(again, ("violation", "enforcement"))
    assert [(r["kind"], r["rule"], r["account"]) for r in recs] == [
        ("violation", "max_contracts_per_instrument", "B1"),
        ("enforcement", "max_contracts_per_instrument", "B1")]
    assert json.loads(again._account_json("B1"))["reported"] is True


def test_a_lockout_survives_the_resync_and_still_holds():
    engine = make_engine(RULES)
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process(fill(T0, "sell", 1, 900.0))  # -200: flatten, locked until the reset
    engine.process(fill(T0, "buy", 1, 1000.0, account="B1"))
    engine.process(fill(T0, "sell", 1, 900.0, account="B1"))
    assert engine.accounts["A1"].state == "halted"
    engine = _restart(engine)
    unreported = engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}],
                                        orders=[{"account": "A1", "symbol": "MNQ",
                                                 "order_id": "n1", "side": "buy", "qty": 1,
                                                 "order_type": "limit", "price": 990.0}]))
    assert unreported == ["B1"]
    assert engine.accounts["A1"].state == "halted"
    assert engine.accounts["B1"].state == "halted"  # unreported, still locked
    assert len(engine.lockouts.active("A1")) == 1 and len(engine.lockouts.active("B1")) == 1
    recs = records(engine)
    assert [(r["kind"], r["rule"]) for r in recs] == [
        ("violation", "trading_while_locked"), ("enforcement", "trading_while_locked")]
    assert recs[1]["action"] == "cancel_order" and recs[1]["order_id"] == "n1"
    assert not any(r["kind"] == "unlock" for r in recs)


def test_the_quote_gate_judges_afresh_after_a_resync():
    engine = make_engine("rules: {daily_total_loss: {limit: -100, lockout: none}}\n")
    engine.process(fill(T0, "buy", 1, 1000.0))
    engine.process({"type": "quote", "ts": ts(T0), "symbol": "MNQ", "last": 1000.0})
    acct = engine.accounts["A1"]
    assert not acct.stale
    engine.resync(Snapshot(ts(T1), accounts=[{"account": "A1"}],
                           positions=[{"account": "A1", "symbol": "MNQ", "qty": 1}]))
    assert acct.stale
    engine.process({"type": "quote", "ts": ts(T2), "symbol": "MNQ", "last": 1000.0})
    assert not acct.stale


# -- the simulator, end to end ----------------------------------------------------------------


def _riskterm(db: Path, seed: int) -> tuple[list[dict[str, Any]], str]:
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "sim", "--seed", str(seed),
         "--speed", "0", "--max-events", "3000", "--db", str(db)],
        capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()], res.stderr


def _rows(db: Path) -> tuple[dict[tuple[str, str], int], dict[str, dict[str, Any]]]:
    with sqlite3.connect(db) as conn:
        positions = {(a, s): q for a, s, q in
                     conn.execute("SELECT account, symbol, qty FROM positions WHERE qty != 0")}
        accounts = {a: json.loads(d) for a, d in conn.execute("SELECT account, data FROM accounts")}
    return positions, accounts


def test_another_seed_on_an_old_database_never_acts_on_the_old_accounts(tmp_path):
    db = tmp_path / "rt.db"
    _riskterm(db, 1)
    before, accounts1 = _rows(db)
    assert before, "the first run should leave open positions"
    second, err = _riskterm(db, 2)
    after, accounts2 = _rows(db)
    named2 = {r["account"] for r in second if r.get("account")}
    seed2 = {a for a, d in accounts2.items() if d["reported"]}
    old_only = set(accounts1) - seed2
    assert old_only == set(accounts1), "seeds 1 and 2 share no account names"
    assert "not reported by the simulator" in err
    # kept in the database, marked, and nothing written about them in run 2
    assert set(accounts1) <= set(accounts2)
    assert all(accounts2[a]["reported"] is False for a in old_only)
    assert named2 & old_only == set()
    assert not [r for r in second if r["kind"] in ("violation", "enforcement", "lockout")
                and (r["account"], r.get("symbol")) in before]
    # the first run's positions are gone; what is open belongs to seed 2's accounts
    assert {a for a, _ in after} <= seed2
    assert not set(before) & set(after)


async def _sim_run(db: Path, seed: int) -> tuple[dict[tuple[str, str], int], EngineHost]:
    """One in-process run of the simulator host; returns the simulator's own positions once
    the engine has taken every event it sent."""
    config = load_rules(Path(__file__).parent.parent / "riskterm" / "default_rules.yaml")
    opts = RunOptions(source="sim", db_path=db, seed=seed, speed=0.0, max_events=3000)
    host = EngineHost(opts, config, with_jobs=False, diagnostics=lambda _: None)

    async def no_ticker() -> None:  # timers fire with events only: none after the last one
        return None

    host._ticker = no_ticker  # type: ignore[method-assign]
    await host.open()
    try:
        await host.run_source()
        sim = host.sim
        for _ in range(1000):  # what the last events' enforcements caused, taken in too
            if not sim._out:
                break
            host.engine.process(sim._out.popleft())
        await host.finish(wait_for_jobs=False)
    finally:
        await host.close()
    assert not sim._out  # the engine took in every event the simulator sent
    held = {(a.name, s): p.qty for a in sim.accounts.values()
            for s, p in a.positions.items() if p.qty}
    return held, host


def test_the_same_seed_restarted_drops_the_old_book_and_stores_the_simulators(tmp_path):
    db = tmp_path / "rt.db"
    _riskterm(db, 1)
    before, accounts1 = _rows(db)
    assert before
    working = {a for a, d in accounts1.items() if d["orders"]}
    sim_held, _ = asyncio.run(_sim_run(db, 1))
    after, accounts = _rows(db)
    assert after == sim_held
    assert all(d["reported"] for d in accounts.values())
    with sqlite3.connect(db) as conn:
        resync = [json.loads(d) for (d,) in conn.execute(
            "SELECT body FROM records WHERE kind = 'warning'")]
    dropped = {r["account"] for r in resync if r.get("rule") == "resync"}
    assert dropped == {a for a, _ in before} | working  # the new simulator starts flat
