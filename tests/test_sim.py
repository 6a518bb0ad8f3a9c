"""The built-in simulated broker: determinism, contract shape, consistency, enforcement."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from riskterm.brokers.base import BrokerError, CancelOrder, LimitOrder, MarketOrder, StopOrder
from riskterm.sources.sim import DEFAULT_INSTRUMENTS, EXOTIC_INSTRUMENTS, Simulator

START_A = 1_767_225_600.0  # 2026-01-01T00:00:00Z
START_B = 1_700_000_123.456

_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {  # type -> required field -> allowed types
    "account": {"account": (str,)},
    "order_placed": {
        "account": (str,),
        "symbol": (str,),
        "order_id": (str,),
        "side": (str,),
        "qty": (int,),
        "order_type": (str,),
    },
    "order_updated": {"account": (str,), "order_id": (str,)},
    "order_cancelled": {"account": (str,), "order_id": (str,)},
    "order_rejected": {"account": (str,), "order_id": (str,)},
    "fill": {
        "account": (str,),
        "symbol": (str,),
        "order_id": (str,),
        "side": (str,),
        "qty": (int,),
        "price": (float, int),
    },
    "position": {"account": (str,), "symbol": (str,), "qty": (int,)},
    "quote": {"symbol": (str,)},
    "connection": {"status": (str,)},
    "clock": {},
}
_MONEY = (
    "balance",
    "equity",
    "price",
    "stop_price",
    "fee",
    "realized_pnl",
    "avg_price",
    "bid",
    "ask",
    "last",
)


def _take(sim: Simulator, n: int) -> list[dict[str, Any]]:
    return list(itertools.islice(sim.steps(), n))


def _relative(events: list[dict[str, Any]], start: float) -> list[tuple[float, str]]:
    return [
        (
            round(e["ts"] - start, 6),
            json.dumps({k: v for k, v in e.items() if k != "ts"}, sort_keys=True),
        )
        for e in events
    ]


def _check_shape(event: dict[str, Any]) -> None:
    kind = event["type"]
    assert kind in _FIELDS, event
    assert isinstance(event["ts"], float) and math.isfinite(event["ts"]), event
    for field, types in _FIELDS[kind].items():
        assert isinstance(event[field], types) and not isinstance(event[field], bool), event
    for field in ("account", "symbol", "order_id"):
        if field in event:
            assert 0 < len(event[field]) <= 64, event
    if "qty" in event:
        assert type(event["qty"]) is int, event
        if kind == "position":
            assert abs(event["qty"]) <= 1_000_000, event
        else:
            assert 0 < event["qty"] <= 1_000_000, event
    if "side" in event:
        assert event["side"] in ("buy", "sell"), event
    if kind == "order_placed":
        assert event["order_type"] in ("market", "limit", "stop", "stop_limit"), event
        if event["order_type"] == "limit":
            assert event["price"] > 0, event
        if event["order_type"] == "stop":
            assert event["stop_price"] > 0, event
    if kind == "connection":
        assert event["status"] in ("connected", "disconnected"), event
    if kind == "quote":
        assert event["bid"] < event["ask"], event
    for field in _MONEY:
        if field in event:
            value = event[field]
            assert isinstance(value, float | int) and not isinstance(value, bool), event
            assert math.isfinite(value), event


def test_same_seed_same_stream_whatever_the_start() -> None:
    a = _take(Simulator(seed=7, start=START_A), 5000)
    b = _take(Simulator(seed=7, start=START_B), 5000)
    assert _relative(a, START_A) == _relative(b, START_B)
    assert a[0]["ts"] == START_A


def test_different_seeds_differ() -> None:
    a = _take(Simulator(seed=1, start=START_A), 2000)
    b = _take(Simulator(seed=2, start=START_A), 2000)
    assert _relative(a, START_A) != _relative(b, START_A)
    names_a = sorted(Simulator(seed=1, start=0).accounts)
    names_b = sorted(Simulator(seed=2, start=0).accounts)
    assert names_a != names_b


def test_events_are_contract_shaped_and_ascending() -> None:
    events = _take(Simulator(seed=3, start=START_A), 30_000)
    last = START_A
    kinds = Counter()
    for event in events:
        _check_shape(event)
        assert event["ts"] >= last
        last = event["ts"]
        kinds[event["type"]] += 1
    for kind in (
        "account",
        "order_placed",
        "order_updated",
        "order_cancelled",
        "order_rejected",
        "fill",
        "position",
        "quote",
    ):
        assert kinds[kind] > 0, kind


def test_events_pass_the_project_parser() -> None:
    events = pytest.importorskip("riskterm.events")
    for event in _take(Simulator(seed=4, start=START_A), 20_000):
        parsed = events.parse_line(json.dumps(event).encode(), 1)
        assert isinstance(parsed, dict), (parsed, event)


def test_order_ids_unique_and_prop_firm_names() -> None:
    sim = Simulator(seed=5, start=START_A)
    placed = [e["order_id"] for e in _take(sim, 30_000) if e["type"] == "order_placed"]
    assert len(placed) == len(set(placed))
    assert all(oid.startswith("SIM-") for oid in placed)
    assert len(sim.accounts) == 8
    for name in sim.accounts:
        assert name.split("-")[0] in ("PA", "EVAL", "LIVE"), name
    personalities = {a.trader.personality for a in sim.accounts.values()}
    assert personalities == {"disciplined", "forgetful", "overtrader", "revenge", "dabbler"}


def _check_positions(events: list[dict[str, Any]]) -> int:
    held: defaultdict[tuple[str, str], int] = defaultdict(int)
    checked = 0
    for event in events:
        key = (event.get("account", ""), event.get("symbol", ""))
        if event["type"] == "fill":
            held[key] += event["qty"] if event["side"] == "buy" else -event["qty"]
        elif event["type"] == "position":
            assert event["qty"] == held[key], event
            checked += 1
    return checked


def test_positions_agree_with_the_fills() -> None:
    assert _check_positions(_take(Simulator(seed=6, start=START_A), 50_000)) > 100


def test_all_symbols_and_accounts_appear_early() -> None:
    sim = Simulator(seed=8, start=START_A)
    events = _take(sim, 5000)
    quoted = {e["symbol"] for e in events if e["type"] == "quote"}
    assert quoted == set(DEFAULT_INSTRUMENTS) | set(EXOTIC_INSTRUMENTS)
    accounts = {e["account"] for e in events if e["type"] == "account"}
    assert accounts == set(sim.accounts)
    traded = {e["account"] for e in events if e["type"] == "fill"}
    assert len(traded) >= 4


def test_realistic_prices() -> None:
    events = _take(Simulator(seed=9, start=START_A), 5000)
    last = {e["symbol"]: e for e in events if e["type"] == "quote"}
    assert 19_000 < last["MNQ"]["bid"] < 23_000
    assert last["MNQ"]["ask"] - last["MNQ"]["bid"] == pytest.approx(0.25)
    assert 5_400 < last["ES"]["bid"] < 6_600
    assert 60 < last["CL"]["bid"] < 80
    assert 2_300 < last["GC"]["bid"] < 2_900


def test_custom_instruments_and_rate() -> None:
    sim = Simulator(seed=1, start=0.0, instruments={"MNQ": (0.25, 0.5)}, accounts=2, rate=50)
    events = _take(sim, 5000)
    assert {e["symbol"] for e in events if e["type"] == "quote"} == {"MNQ", "BTC", "MBT"}
    assert len(sim.accounts) == 2
    assert sim.t < 30  # rate 1 would take some 700 sim seconds for 5000 events


def test_cancel_order_is_answered_with_order_cancelled() -> None:
    sim = Simulator(seed=10, start=START_A)
    stream = sim.steps()
    for event in stream:
        if event["type"] == "order_placed" and event["order_type"] in ("limit", "stop"):
            break
    target = event["order_id"]
    sim.submit(CancelOrder(event["account"], target))
    with pytest.raises(BrokerError, match="not working"):
        sim.submit(CancelOrder(event["account"], target))  # already cancelled
    after = list(itertools.islice(stream, 5000))
    cancelled = [e for e in after if e["type"] == "order_cancelled" and e["order_id"] == target]
    assert len(cancelled) == 1
    assert after.index(cancelled[0]) < 10
    assert not [e for e in after if e.get("order_id") == target and e["type"] == "fill"]


def _open_position(sim: Simulator, stream: Iterator[dict[str, Any]]) -> tuple[str, str, int]:
    """Run until a quote arrives while some position is open; returns (account, symbol, qty)."""
    held: defaultdict[tuple[str, str], int] = defaultdict(int)
    for event in stream:
        if event["type"] == "position":
            held[(event["account"], event["symbol"])] = event["qty"]
        elif event["type"] == "quote":
            for (account, symbol), qty in held.items():
                if qty:
                    return account, symbol, qty
    raise AssertionError("no position opened")


def test_market_order_flattens_a_position() -> None:
    sim = Simulator(seed=11, start=START_A)
    stream = sim.steps()
    account, symbol, qty = _open_position(sim, stream)
    side = "sell" if qty > 0 else "buy"
    sim.submit(MarketOrder(account, symbol, side, abs(qty), reason="test"))
    fill, position = itertools.islice(stream, 2)  # the very next events
    assert fill["type"] == "fill" and (fill["account"], fill["symbol"]) == (account, symbol)
    assert (fill["side"], fill["qty"]) == (side, abs(qty))
    assert position["type"] == "position" and position["qty"] == 0
    assert (position["account"], position["symbol"]) == (account, symbol)
    assert symbol not in sim.accounts[account].positions


def test_submit_refuses_impossible_commands() -> None:
    sim = Simulator(seed=12, start=START_A)
    _take(sim, 100)
    account = next(iter(sim.accounts))
    with pytest.raises(BrokerError, match="not working"):
        sim.submit(CancelOrder(account, "SIM-999999"))
    with pytest.raises(BrokerError, match="unknown account"):
        sim.submit(CancelOrder("NOPE-1", "SIM-000001"))
    with pytest.raises(BrokerError, match="quantity"):
        sim.submit(MarketOrder(account, "MNQ", "buy", 0))
    with pytest.raises(BrokerError, match="no market"):
        sim.submit(MarketOrder(account, "ZZZ", "buy", 1))
    bid = sim.symbols["MNQ"].bid
    with pytest.raises(BrokerError, match="trigger at once"):
        sim.submit(StopOrder(account, "MNQ", "sell", 1, stop_price=bid + 1))


def test_stop_order_triggers_when_price_crosses() -> None:
    sim = Simulator(seed=13, start=START_A)
    stream = sim.steps()
    for _ in itertools.islice(stream, 100):  # past the opening batch
        pass
    for event in stream:
        if event["type"] == "quote" and event["symbol"] == "ES":
            break
    account = next(a for a in sim.accounts.values() if "ES" not in a.positions).name
    stop = event["bid"] - 0.25
    sim.submit(StopOrder(account, "ES", "sell", 1, stop_price=stop))
    placed = next(stream)
    assert placed["type"] == "order_placed" and placed["stop_price"] == stop
    order_id = placed["order_id"]
    last_bid = event["bid"]
    for event in itertools.islice(stream, 200_000):
        if event["type"] == "quote" and event["symbol"] == "ES":
            if last_bid <= stop:
                raise AssertionError("price crossed the stop but it did not trigger")
            last_bid = event["bid"]
        elif event["type"] == "fill" and event["order_id"] == order_id:
            assert last_bid <= stop
            assert event["price"] == last_bid and event["side"] == "sell" and event["qty"] == 1
            break
    else:
        raise AssertionError("the stop never triggered")


def test_limit_order_from_the_engine_works_and_fills() -> None:
    sim = Simulator(seed=14, start=START_A)
    stream = sim.steps()
    for _ in itertools.islice(stream, 100):  # past the opening batch
        pass
    for event in stream:
        if event["type"] == "quote" and event["symbol"] == "MES":
            break
    account = next(iter(sim.accounts))
    price = event["bid"] - 0.5
    sim.submit(LimitOrder(account, "MES", "buy", 3, price=price))
    placed = next(stream)
    assert placed["order_type"] == "limit" and placed["price"] == price
    filled = 0
    for event in itertools.islice(stream, 500_000):
        if event["type"] == "fill" and event["order_id"] == placed["order_id"]:
            assert event["price"] == price
            filled += event["qty"]
            if filled == 3:
                break
    assert filled == 3


def test_commands_are_deterministic() -> None:
    def run(start: float) -> list[tuple[float, str]]:
        sim = Simulator(seed=15, start=start)
        out = []
        for i, event in enumerate(itertools.islice(sim.steps(), 20_000)):
            out.append(event)
            if event["type"] == "position" and event["qty"] and i % 3 == 0:
                side = "sell" if event["qty"] > 0 else "buy"
                sim.submit(MarketOrder(event["account"], event["symbol"], side, 1))
            elif event["type"] == "order_placed" and event["order_type"] == "limit":
                sim.submit(CancelOrder(event["account"], event["order_id"]))
        assert _check_positions(out) > 50
        return _relative(out, start)

    assert run(START_A) == run(START_B)


def test_forgetful_trader_holds_without_a_stop() -> None:
    sim = Simulator(seed=16, start=START_A)
    forgetful = {a.name for a in sim.accounts.values() if a.trader.personality == "forgetful"}
    assert forgetful
    orders: dict[str, list[Any]] = {}  # id -> [account, symbol, side, type, remaining]
    held: dict[tuple[str, str], int] = {}
    naked_since: dict[tuple[str, str], float] = {}
    longest = 0.0
    for event in _take(sim, 30_000):
        kind = event["type"]
        oid = event.get("order_id", "")
        if kind == "order_placed":
            orders[oid] = [
                event["account"],
                event["symbol"],
                event["side"],
                event["order_type"],
                event["qty"],
            ]
        elif kind in ("order_cancelled", "order_rejected"):
            orders.pop(oid, None)
        elif kind == "order_updated" and "qty" in event:
            orders[oid][4] = event["qty"]
        elif kind == "fill" and oid in orders:
            orders[oid][4] -= event["qty"]
            if orders[oid][4] == 0:
                del orders[oid]
        elif kind == "position":
            held[(event["account"], event["symbol"])] = event["qty"]
        ts = event["ts"]
        for key, qty in held.items():
            closing = "sell" if qty > 0 else "buy"
            protected = qty == 0 or any(
                (a, s, side, t) == (*key, closing, "stop") for a, s, side, t, _ in orders.values()
            )
            if protected:
                if key in naked_since and key[0] in forgetful:
                    longest = max(longest, ts - naked_since[key])
                naked_since.pop(key, None)
            else:
                naked_since.setdefault(key, ts)
    assert longest > 30


async def test_events_at_speed_zero_match_steps() -> None:
    sim = Simulator(seed=17, speed=0, start=START_A)
    began = time.monotonic()
    got = []
    async for event in sim.events():
        got.append(event)
        if len(got) == 3000:
            break
    assert time.monotonic() - began < 20
    assert _relative(got, START_A) == _relative(
        _take(Simulator(seed=17, start=START_B), 3000), START_B
    )


async def test_events_are_paced_at_speed() -> None:
    speed = 200.0
    sim = Simulator(seed=18, speed=speed, start=START_A)
    began = time.monotonic()
    last = START_A
    ticker_ran = 0

    async def ticker() -> None:
        nonlocal ticker_ran
        while True:
            ticker_ran += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    try:
        async for event in sim.events():
            assert event["ts"] >= last
            last = event["ts"]
            if last - START_A >= 2.0:
                break
    finally:
        task.cancel()
    elapsed = time.monotonic() - began
    assert elapsed >= 0.5 * 2.0 / speed  # it waited for sim time to pass
    assert ticker_ran > 0  # the event loop stayed responsive


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        Simulator(rate=0)
    with pytest.raises(ValueError):
        Simulator(speed=-1)


def test_memory_stays_bounded() -> None:
    sim = Simulator(seed=19, start=0.0, rate=600)
    _take(sim, 200_000)
    assert len(sim._orders) < 200  # finished orders are dropped
    assert len(sim._heap) < 500
    assert sum(len(a.trader.plans) for a in sim.accounts.values()) <= 2 * len(sim.accounts)


def test_snapshot_states_what_the_stream_says_exists() -> None:
    """Simulator.snapshot (CONTRACT section 9) agrees with everything its events said so far:
    the last balance per account, the positions and the working orders."""
    sim = Simulator(seed=23, start=START_A, rate=50)
    balances: dict[str, float] = {}
    positions: dict[tuple[str, str], int] = {}
    orders: dict[tuple[str, str], int] = {}
    for n, ev in enumerate(sim.steps()):
        kind = ev["type"]
        key = (ev.get("account"), ev.get("order_id"))
        if kind == "account":
            balances[ev["account"]] = ev["balance"]
        elif kind == "position":
            positions[(ev["account"], ev["symbol"])] = ev["qty"]
        elif kind == "order_placed" or (kind == "order_updated" and "qty" in ev):
            orders[key] = ev["qty"]
        elif kind in ("order_cancelled", "order_rejected"):
            orders.pop(key, None)
        elif kind == "fill" and key in orders:
            orders[key] -= ev["qty"]
            if orders[key] <= 0:
                del orders[key]
        if n >= 30_000 and not sim._out:  # what the last step queued is taken in too
            break
    snap = sim.snapshot()
    assert snap.ts == sim.clock
    assert {a["account"]: a["balance"] for a in snap.accounts} == balances
    assert {(p["account"], p["symbol"]): p["qty"] for p in snap.positions} == \
        {k: q for k, q in positions.items() if q}
    assert {(o["account"], o["order_id"]): o["qty"] for o in snap.orders} == orders
    assert positions and orders  # the case is not empty
    for o in snap.orders:
        assert o["order_type"] in ("market", "limit", "stop") and o["side"] in ("buy", "sell")
        assert ("stop_price" in o) == (o["order_type"] == "stop")
