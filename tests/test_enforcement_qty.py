"""Idempotent enforcement per target and quantity (issue 12, item 3; CONTRACT §2).

Never more closing quantity in flight than the position holds: one event breaching a `flatten`
rule and a `close_position` rule sends one close for the position's size, never two (a real
broker would reverse the position, and the engine would then blame the trader for it).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from riskterm.brokers.base import BrokerError, CancelOrder, Command, MarketOrder
from riskterm.brokers.replay import DryRunBroker
from riskterm.config import load_rules_text
from riskterm.engine import Engine
from riskterm.events import parse_line
from riskterm.sources.sim import Simulator
from tests.helpers import fill, make_engine, records, ts

T0 = "2026-02-03T15:00:00Z"
BOTH = """\
rules:
  daily_unrealized_loss: {limit: -100, action: flatten, lockout: 1h}
  max_position_loss: {limit: -50, action: close_position}
"""


class Broker:
    """Executes like a real broker: a market order fills in full against its own book; the
    fills come back to the engine when the test calls `answer`."""

    executes = True

    def __init__(self, fail_symbols: tuple[str, ...] = ()) -> None:
        self.sent: list[Command] = []
        self.book: dict[tuple[str, str], int] = {}
        self.pending: list[dict[str, Any]] = []
        self.fail_symbols = set(fail_symbols)

    def submit(self, command: Command) -> None:
        if isinstance(command, MarketOrder) and command.symbol in self.fail_symbols:
            self.fail_symbols.discard(command.symbol)
            raise BrokerError(f"no liquidity in {command.symbol}")
        self.sent.append(command)
        if isinstance(command, MarketOrder):
            key = (command.account, command.symbol)
            signed = command.qty if command.side == "buy" else -command.qty
            self.book[key] = self.book.get(key, 0) + signed
            self.pending += [
                {"type": "fill", "account": command.account, "symbol": command.symbol,
                 "order_id": f"R{len(self.sent)}", "side": command.side, "qty": command.qty,
                 "price": 80.0},
                {"type": "position", "account": command.account, "symbol": command.symbol,
                 "qty": self.book[key]},
            ]

    def closing_qty(self, symbol: str = "MNQ") -> int:
        return sum(c.qty for c in self.sent if isinstance(c, MarketOrder) and c.symbol == symbol)

    def answer(self, engine: Engine, t: str) -> None:
        events, self.pending = self.pending, []
        for ev in events:
            engine.process({**ev, "ts": ts(t)})


def _long(engine: Engine, broker: Broker, qty: int = 5, symbol: str = "MNQ") -> None:
    broker.book[("A1", symbol)] = qty
    engine.process(fill(T0, "buy", qty, 100.0, symbol=symbol))


def test_a_flatten_and_a_close_on_one_event_send_one_close() -> None:
    broker = Broker()
    engine = make_engine(BOTH, broker)
    _long(engine, broker)
    engine.process({"type": "quote", "ts": ts(T0), "symbol": "MNQ", "last": 80.0})  # -200
    recs = records(engine)
    got = [(r["rule"], r.get("action"), r.get("status"), r.get("detail")) for r in recs
           if r["kind"] == "enforcement"]
    assert got == [
        ("daily_unrealized_loss", "flatten", "ok", "closed 5 MNQ long"),
        ("max_position_loss", "close_position", "skipped",
         "sell 5 MNQ already in flight (flatten by daily_unrealized_loss): A1 will hold 0 of 5"),
    ]
    assert broker.closing_qty() == 5
    # the broker's answer: the position is flat, not reversed; nobody is blamed for it
    broker.answer(engine, "2026-02-03T15:00:01Z")
    assert engine.accounts["A1"].positions["MNQ"].qty == 0
    assert broker.book[("A1", "MNQ")] == 0
    later = records(engine)
    assert not [r for r in later if r["kind"] == "violation"], later


@pytest.mark.parametrize("actions", [
    ["flatten", "close_position"], ["close_position", "flatten"],
    ["reduce_position", "close_position", "flatten"], ["close_position", "close_position"],
])
def test_closing_actions_of_one_violation_never_close_more_than_held(actions: list[str]) -> None:
    broker = Broker()
    engine = make_engine("rules: {max_contracts_per_instrument: {limits: {MNQ: 2}, action: "
                         f"[{', '.join(actions)}]}}}}\n", broker)
    _long(engine, broker)
    statuses = [r["status"] for r in records(engine, ("enforcement",))]
    assert broker.closing_qty() == 5  # a reduce to the limit sends 3, a close the rest
    assert statuses[0] == "ok" and statuses.count("skipped") >= len(actions) - 2
    broker.answer(engine, "2026-02-03T15:00:01Z")
    assert broker.book[("A1", "MNQ")] == 0 == engine.accounts["A1"].positions["MNQ"].qty


def test_a_partial_fill_leaves_only_the_rest_in_flight() -> None:
    broker = Broker()
    engine = make_engine(BOTH, broker)
    _long(engine, broker)
    engine.execute_action("A1", "close_position", symbol="MNQ", rule="manual")
    engine.process({**fill("2026-02-03T15:00:01Z", "sell", 2, 99.0), "order_id": "R1"})
    engine.execute_action("A1", "flatten", rule="manual")  # 3 still closing: nothing to send
    engine.process({"type": "position", "ts": ts("2026-02-03T15:00:02Z"), "account": "A1",
                    "symbol": "MNQ", "qty": 3})
    engine.execute_action("A1", "close_position", symbol="MNQ", rule="manual")
    recs = records(engine, ("enforcement",))
    assert [(r["action"], r["status"]) for r in recs] == [
        ("close_position", "ok"), ("flatten", "skipped"), ("close_position", "skipped")]
    assert recs[1]["detail"] == ("flatten already in flight (already in flight: "
                                 "3 MNQ (close_position by manual))")
    assert broker.closing_qty() == 5
    # the broker says the position is 1 (the trader bought back 2 meanwhile): 1 is closing,
    # nothing more is sent until it lapses
    engine.process({"type": "position", "ts": ts("2026-02-03T15:00:03Z"), "account": "A1",
                    "symbol": "MNQ", "qty": 1})
    engine.process({"type": "position", "ts": ts("2026-02-03T15:00:03Z"), "account": "A1",
                    "symbol": "MNQ", "qty": 4})
    engine.execute_action("A1", "close_position", symbol="MNQ", rule="manual")
    (rec,) = records(engine, ("enforcement",))
    assert rec["detail"] == "sell 3 MNQ to close (1 already in flight, close_position by manual)"
    assert broker.closing_qty() == 8
    # once it lapses (no answer within the in-flight time, 30 s) a close is sent again in full
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:40Z")})
    engine.execute_action("A1", "close_position", symbol="MNQ", rule="manual")
    (rec,) = records(engine, ("enforcement",))
    assert rec["detail"] == "sell 4 MNQ to close"


def test_a_retried_flatten_resends_only_what_failed() -> None:
    broker = Broker(fail_symbols=("ES",))
    engine = make_engine("rules: {max_contracts: {limit: 3, action: flatten}}\n", broker)
    engine.process(fill(T0, "buy", 2, 100.0, symbol="ES"))
    engine.process({"type": "order_placed", "ts": ts(T0), "account": "A1", "symbol": "MNQ",
                    "order_id": "w1", "side": "buy", "qty": 1, "order_type": "limit",
                    "price": 90.0})
    engine.process(fill(T0, "buy", 2, 100.0))  # 4 > 3: flatten
    engine.process({"type": "clock", "ts": ts("2026-02-03T15:00:02Z")})  # the retry at +1 s
    recs = records(engine, ("enforcement",))
    assert [r["status"] for r in recs] == ["failed", "ok"]
    assert recs[1]["detail"] == ("closed 2 ES long; "
                                 "already in flight: 2 MNQ (flatten by max_contracts)")
    markets = [(c.symbol, c.qty) for c in broker.sent if isinstance(c, MarketOrder)]
    cancels = [c.order_id for c in broker.sent if isinstance(c, CancelOrder)]
    assert sorted(markets) == [("ES", 2), ("MNQ", 2)] and cancels == ["w1"]


def test_a_dry_run_writes_one_close_per_position_per_event() -> None:
    broker = DryRunBroker()
    engine = make_engine(BOTH, broker)
    engine.process(fill(T0, "buy", 5, 100.0))
    engine.process({"type": "quote", "ts": ts(T0), "symbol": "MNQ", "last": 80.0})
    recs = records(engine, ("enforcement",))
    assert [r["status"] for r in recs] == ["dry_run", "skipped"]
    assert sum(c.qty for c in broker.commands if isinstance(c, MarketOrder)) == 5
    # a later event judges afresh: nothing is in flight in a dry run
    engine.process({"type": "quote", "ts": ts("2026-02-03T15:00:01Z"), "symbol": "MNQ",
                    "last": 79.0})
    engine.execute_action("A1", "close_position", symbol="MNQ", rule="manual")
    (rec,) = records(engine, ("enforcement",))
    assert (rec["status"], rec["detail"]) == ("dry_run", "sell 5 MNQ to close")


SIM_RULES = """\
timezone: America/Chicago
daily_reset: "17:00"
rules:
  daily_unrealized_loss: {limit: -60, action: flatten, lockout: 2m}
  max_position_loss: {limit: -40, action: [close_position, reduce_position]}
  max_unrealized_profit: {target: 80, action: [flatten, close_position]}
  max_contracts_per_instrument: {limits: {MNQ: 2, MES: 2}, default_limit: 3}
"""


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_simulator_never_sees_the_engine_reverse_a_position(seed: int) -> None:
    """With the simulator as the broker, every fill the engine caused reduces a position (never
    reverses or grows it) and no trader is flagged for a fill of the engine's own orders."""
    sim = Simulator(seed=seed, start=ts(T0), accounts=6, rate=5)
    engine = Engine(load_rules_text(SIM_RULES), sim, live=False)
    ours: set[str] = set()  # order ids of the fills that answer the engine's commands
    blamed: list[str] = []
    closes = 0
    for n, raw in enumerate(sim.steps()):
        if n == 30_000:
            break
        ev = parse_line(json.dumps(raw).encode(), n + 1)
        assert isinstance(ev, dict), ev
        if ev["type"] == "fill" and raw.get("origin") == "riskterm":
            pos = engine.accounts[ev["account"]].positions.get(ev["symbol"])
            before = pos.qty if pos is not None else 0
            after = before + (ev["qty"] if ev["side"] == "buy" else -ev["qty"])
            ours.add(ev["order_id"])
            assert abs(after) < abs(before) and after * before >= 0, (ev, before)
        engine.process(ev)
        for rec in engine.take_changes().records:
            if rec["kind"] == "enforcement" and rec["status"] == "ok" \
                    and rec["action"] in ("flatten", "close_position", "reduce_position"):
                closes += 1
            if rec["kind"] == "violation" and rec["rule"] == "trading_while_locked" \
                    and "the fill of order" in rec["message"]:
                blamed.append(rec["message"].split("the fill of order ")[1].split(" ")[0])
    assert len(ours) > 20 and closes > 20, (len(ours), closes)
    assert not ours & set(blamed)  # a trader may be flagged for his own fills, never ours
