"""The built-in simulated broker: a deterministic market, prop-firm accounts and their traders.

Events are plain dicts in the contract's format (CONTRACT.md section 1) with ``ts`` as float epoch
seconds. Everything is driven by one private ``random.Random(seed)`` and a heap of timers on a sim
clock that starts at 0; ``ts`` is ``start`` plus that offset, so for a seed the stream is the same,
apart from the start time, at any speed.

Commands from the engine (``submit``) are checked and applied to the sim's state at once (a bad one
raises BrokerError); the events they cause are queued behind the events already generated and come
out at the next steps, in order. Trader market orders fill after a short latency, so a CancelOrder
sent while the engine looks at their ``order_placed`` really stops them. A MarketOrder fills at once
at the bid/ask without an ``order_placed``; its fill carries the extra field ``origin: "riskterm"``.
Stop and limit orders on the closing side of a position are reduce-only (OCO-like): they shrink
with the position and are cancelled when it is flat. ``order_rejected`` carries an extra ``symbol``.

``rate`` multiplies all activity per sim second (about 33 events per sim second at rate 1; rate
600 gives some 20,000). Speed only paces ``events()``; it never changes the stream.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from riskterm.brokers.base import (
    BrokerError,
    CancelOrder,
    Command,
    LimitOrder,
    MarketOrder,
    OrderNotWorking,
    StopOrder,
)
from riskterm.engine import Snapshot
from riskterm.sources.sim_traders import (
    PERSONALITIES,
    TABLE,
    Account,
    Market,
    Order,
    Position,
    Symbol,
    Trader,
)

__all__ = ["DEFAULT_INSTRUMENTS", "EXOTIC_INSTRUMENTS", "Simulator"]

Event = dict[str, Any]

#: symbol -> (tick_size, tick_value), the CME contract specs.
DEFAULT_INSTRUMENTS: dict[str, tuple[float, float]] = {
    "MNQ": (0.25, 0.5),
    "MES": (0.25, 1.25),
    "NQ": (0.25, 5.0),
    "ES": (0.25, 12.5),
    "CL": (0.01, 10.0),
    "GC": (0.1, 10.0),
}
#: Quoted too, but only the "blocked-symbol dabbler" trades them (a symbol_blocks rule's prey).
EXOTIC_INSTRUMENTS: dict[str, tuple[float, float]] = {"BTC": (5.0, 25.0), "MBT": (5.0, 0.5)}

# A micro shares the price path of its full-size contract when their tick sizes agree.
_FAMILY = {
    "MNQ": "NQ",
    "MES": "ES",
    "MBT": "BTC",
    "MGC": "GC",
    "MCL": "CL",
    "M2K": "RTY",
    "MYM": "YM",
}
_START = {
    "NQ": 21000.0,
    "ES": 6000.0,
    "CL": 70.0,
    "GC": 2600.0,
    "BTC": 95000.0,
    "RTY": 2200.0,
    "YM": 44000.0,
}
_SIGMA = {"NQ": 2.0, "ES": 1.2, "CL": 1.0, "GC": 1.5, "BTC": 2.0}  # ticks per quote, calm market
_FIRMS = ("PA-APEX", "PA-TOPS", "EVAL", "LIVE", "PA-MFFU", "EVAL-APEX", "PA-TPT", "EVAL-TOPS")
_PLANS = (25_000.0, 50_000.0, 100_000.0, 150_000.0)
_DROP_REASONS = ("heartbeat timeout", "session expired, re-authenticating", "network error")

# timer kinds on the heap
_QUOTE, _CLOCK, _FILL, _THINK, _PROTECT, _SNAPSHOT, _LINK, _RECONNECT, _BURST = range(9)


def _side_name(side: int) -> str:
    return "buy" if side > 0 else "sell"


class Simulator:
    """A deterministic simulated futures broker with traders that break rules (see module doc)."""

    executes = True

    def __init__(
        self,
        *,
        seed: int = 0,
        speed: float = 1.0,
        start: float | None = None,
        instruments: Mapping[str, tuple[float, float]] | None = None,
        accounts: int = 8,
        rate: float = 1.0,
    ) -> None:
        if not speed >= 0 or math.isinf(speed):
            raise ValueError("speed must be a finite number >= 0")
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a finite number > 0")
        if accounts < 0:
            raise ValueError("accounts must be >= 0")
        self.seed = seed
        self.speed = speed
        self.rate = rate
        self.start = time.time() if start is None else float(start)
        self.rng = random.Random(seed)
        self.t = 0.0  # sim clock, seconds since start
        self._out: deque[Event] = deque()
        self._heap: list[tuple[float, int, int, Any]] = []
        self._seq = itertools.count()
        self._ids = itertools.count(1)
        self._orders: dict[str, Order] = {}
        self.symbols: dict[str, Symbol] = {}
        self.exotics: list[Symbol] = []
        self.accounts: dict[str, Account] = {}
        self._build_market(DEFAULT_INSTRUMENTS if instruments is None else instruments)
        self._build_accounts(accounts)
        self._open()

    # --- construction ---------------------------------------------------------------------

    def _build_market(self, instruments: Mapping[str, tuple[float, float]]) -> None:
        markets: dict[tuple[str, float], Market] = {}
        specs = [(s, spec, False) for s, spec in instruments.items()]
        specs += [(s, spec, True) for s, spec in EXOTIC_INSTRUMENTS.items() if s not in instruments]
        for name, (tick, tick_value), exotic in specs:
            tick, tick_value = float(tick), float(tick_value)
            if not (tick > 0 and tick_value > 0):
                raise ValueError(f"instrument {name}: tick_size and tick_value must be > 0")
            family = _FAMILY.get(name, name)
            market = markets.get((family, tick))
            if market is None:
                base = _START.get(family, max(100.0, 500 * tick))
                ticks = round(base * (1 + (self.rng.random() - 0.5) * 0.02) / tick)
                market = markets[(family, tick)] = Market(ticks, _SIGMA.get(family, 1.5))
            sym = Symbol(name, tick, tick_value, market, exotic, self.rate)
            self.symbols[name] = sym
            if exotic:
                self.exotics.append(sym)
        for market in markets.values():
            self._at(self._gap(240.0), _BURST, market)

    def _build_accounts(self, n: int) -> None:
        rnd = self.rng.random
        kinds = list(PERSONALITIES)
        self.rng.shuffle(kinds)
        used: set[str] = set()
        for i in range(n):
            while True:
                name = f"{_FIRMS[int(rnd() * len(_FIRMS))]}-{100 + int(rnd() * 900)}"
                if name not in used:
                    break
            used.add(name)
            plan = _PLANS[int(rnd() * len(_PLANS))]
            if name.startswith("PA"):  # a funded account has some history: a bit over or under
                plan += round((rnd() - 0.3) * 0.04 * plan, 2)
            elif name.startswith("LIVE"):
                plan = round(25_000 + rnd() * 125_000, 2)
            acct = Account(name, plan, reports_pnl=name.startswith("LIVE") or rnd() < 0.25)
            acct.trader = Trader(kinds[i % len(kinds)], acct, self)
            self.accounts[name] = acct

    def _open(self) -> None:
        """The first batch (quotes, then account snapshots) and the first timers."""
        for sym in self.symbols.values():
            self._publish(sym, sym.market.ticks)
            self._at(sym.interval * self.rng.random(), _QUOTE, sym)
        for acct in self.accounts.values():
            self._snapshot(acct)
            self._at(self._gap(7.5), _SNAPSHOT, acct)
            self._at(self._gap(acct.trader.style.think), _THINK, acct.trader)
        self._at(1.0, _CLOCK, None)
        if self.accounts:
            self._at(self._gap(600.0), _LINK, None)

    # --- public interface -------------------------------------------------------------------

    @property
    def clock(self) -> float:
        """The sim's current time in epoch seconds: ``start`` plus the time of its latest step."""
        return self.start + self.t

    def submit(self, command: Command) -> None:
        """Execute an engine command; its events come out at the next steps. Raises BrokerError."""
        acct = self.accounts.get(command.account)
        if acct is None:
            raise BrokerError(f"unknown account {command.account!r}")
        if isinstance(command, CancelOrder):
            order = acct.orders.get(command.order_id)
            if order is None:
                raise OrderNotWorking(
                    f"order {command.order_id!r} is not working at account {acct.name}"
                )
            self.cancel(order)
            return
        if not isinstance(command, MarketOrder | StopOrder | LimitOrder):
            raise BrokerError(f"unsupported command {type(command).__name__}")
        sym = self.symbols.get(command.symbol)
        if sym is None:
            raise BrokerError(f"no market for symbol {command.symbol!r}")
        qty = command.qty
        if type(qty) is not int or not 0 < qty <= 1_000_000:
            raise BrokerError(
                f"order quantity must be a whole number from 1 to 1,000,000, got {qty!r}"
            )
        if command.side not in ("buy", "sell"):
            raise BrokerError(f"order side must be 'buy' or 'sell', got {command.side!r}")
        side = 1 if command.side == "buy" else -1
        if isinstance(command, MarketOrder):
            self._execute(
                acct, sym, side, qty, sym.ask if side > 0 else sym.bid, self.new_id(), origin=True
            )
            return
        pos = acct.positions.get(sym.name)
        closing = pos is not None and pos.qty * side < 0
        if isinstance(command, StopOrder):
            stop = command.stop_price
            if not math.isfinite(stop) or stop <= 0:
                raise BrokerError(f"stop price must be a positive number, got {stop!r}")
            if (side > 0 and stop <= sym.ask) or (side < 0 and stop >= sym.bid):
                market = sym.ask if side > 0 else sym.bid
                raise BrokerError(
                    f"a {command.side} stop at {stop:g} would trigger at once: "
                    f"{sym.name} is at {market:g}"
                )
            self.place(acct, sym, side, qty, "stop", stop=stop, tag="risk", reduce_only=closing)
        else:
            price = command.price
            if not math.isfinite(price) or price <= 0:
                raise BrokerError(f"limit price must be a positive number, got {price!r}")
            self.place(acct, sym, side, qty, "limit", price=price, tag="risk", reduce_only=closing)

    def snapshot(self) -> Snapshot:
        """What exists at the broker now (CONTRACT section 9): every account with its balance and
        equity, its open positions and its working orders. The host applies it before the first
        event, so a restart on an old database never acts on positions this run does not have."""
        ts = self.start + self.t
        accounts, positions, orders = [], [], []
        for acct in self.accounts.values():
            accounts.append({"account": acct.name, "balance": acct.balance,
                             "equity": self.equity(acct)})
            for name, pos in acct.positions.items():
                if pos.qty:
                    positions.append({"account": acct.name, "symbol": name, "qty": pos.qty,
                                      "avg_price": round(pos.avg, 6)})
            for order in acct.orders.values():
                fields: Event = {"account": acct.name, "symbol": order.sym.name,
                                 "order_id": order.id, "side": _side_name(order.side),
                                 "qty": order.qty, "order_type": order.kind}
                if order.price is not None:
                    fields["price"] = order.price
                if order.stop is not None:
                    fields["stop_price"] = order.stop
                orders.append(fields)
        return Snapshot(ts, accounts, positions, orders)

    def steps(self) -> Iterator[Event]:
        """The endless event stream, unpaced. Commands submitted between steps come out next."""
        out = self._out
        heap = self._heap
        pop, push, seq = heapq.heappop, heapq.heappush, self._seq
        rnd = self.rng.random
        start = self.start
        handlers = {
            _FILL: self._on_fill_due,
            _THINK: self._on_think,
            _PROTECT: self._on_protect,
            _SNAPSHOT: self._on_snapshot,
            _LINK: self._on_link,
            _RECONNECT: self._on_reconnect,
            _BURST: self._on_burst,
        }
        last = self.t
        while True:
            while out:
                yield out.popleft()
            t, _, kind, obj = pop(heap)
            self.t = t
            if kind == _QUOTE:  # the hot path, inlined
                market = obj.market
                r = rnd()
                i = int((r + (market.anchor - market.ticks) * market.pull) * TABLE)
                step = market.table[0 if i < 0 else TABLE - 1 if i >= TABLE else i]
                ticks = market.ticks + step
                if ticks < 1:
                    ticks = 1
                market.ticks = ticks
                tick, nd = obj.tick, obj.nd
                obj.bid = bid = round(ticks * tick, nd)
                obj.ask = ask = round((ticks + 1) * tick, nd)
                obj.last = price = bid if r < 0.5 else ask
                due = t + obj.interval * market.tempo * (0.5 + rnd())
                push(heap, (due, next(seq), _QUOTE, obj))
                last = t
                yield {
                    "type": "quote",
                    "ts": start + t,
                    "symbol": obj.name,
                    "bid": bid,
                    "ask": ask,
                    "last": price,
                }
                if obj.orders:
                    self._triggers(obj)
            elif kind == _CLOCK:
                push(heap, (t + 1.0, next(seq), _CLOCK, None))
                if t - last >= 0.999:
                    last = t
                    yield {"type": "clock", "ts": start + t}
            else:
                handlers[kind](obj)
                last = t

    async def events(self) -> AsyncIterator[Event]:
        """The same stream, paced: sim time runs at ``speed`` x wall time (0: flat out).

        At speed 0, and whenever the consumer is behind, it still yields to the event loop every
        256 events so the app stays responsive.
        """
        speed = self.speed
        since_pause = 0
        wall0 = time.monotonic()
        t0 = self.t
        for event in self.steps():
            since_pause += 1
            if speed > 0:
                delay = wall0 + (self.t - t0) / speed - time.monotonic()
                if delay > 0.002:
                    since_pause = 0
                    await asyncio.sleep(delay)
            if since_pause >= 256:
                since_pause = 0
                await asyncio.sleep(0)
            yield event

    # --- primitives the traders use --------------------------------------------------------

    def new_id(self) -> str:
        return f"SIM-{next(self._ids):06d}"

    def _gap(self, mean: float) -> float:
        """A random delay of about ``mean`` sim seconds at rate 1 (uniform, mean/2 .. 3mean/2)."""
        return mean * (0.5 + self.rng.random()) / self.rate

    def _at(self, delay: float, kind: int, obj: Any) -> None:
        heapq.heappush(self._heap, (self.t + delay, next(self._seq), kind, obj))

    def schedule_protect(self, trader: Trader, sym: Symbol, delay: float) -> None:
        self._at(delay / self.rate, _PROTECT, (trader, sym))

    def place(
        self,
        acct: Account,
        sym: Symbol,
        side: int,
        qty: int,
        kind: str,
        *,
        price: float | None = None,
        stop: float | None = None,
        tag: str = "entry",
        reduce_only: bool = False,
        ttl: float = math.inf,
    ) -> Order:
        order = Order(
            self.new_id(), acct, sym, side, qty, kind, price, stop, tag, reduce_only, self.t, ttl
        )
        event: Event = {
            "type": "order_placed",
            "ts": self.start + self.t,
            "account": acct.name,
            "symbol": sym.name,
            "order_id": order.id,
            "side": _side_name(side),
            "qty": qty,
            "order_type": kind,
        }
        if price is not None:
            event["price"] = price
        if stop is not None:
            event["stop_price"] = stop
        self._out.append(event)
        self._orders[order.id] = acct.orders[order.id] = order
        if kind == "market":
            self._at((0.02 + 0.1 * self.rng.random()) / self.rate, _FILL, order)
        else:
            sym.orders.append(order)
        return order

    def reject(self, acct: Account, sym: Symbol, reason: str) -> None:
        self._out.append(
            {
                "type": "order_rejected",
                "ts": self.start + self.t,
                "account": acct.name,
                "order_id": self.new_id(),
                "symbol": sym.name,
                "reason": reason,
            }
        )

    def cancel(self, order: Order) -> None:
        self._forget(order)
        self._out.append(
            {
                "type": "order_cancelled",
                "ts": self.start + self.t,
                "account": order.acct.name,
                "order_id": order.id,
            }
        )

    def update(
        self,
        order: Order,
        *,
        qty: int | None = None,
        price: float | None = None,
        stop: float | None = None,
    ) -> None:
        event: Event = {
            "type": "order_updated",
            "ts": self.start + self.t,
            "account": order.acct.name,
            "order_id": order.id,
        }
        if qty is not None:
            order.qty = event["qty"] = qty
        if price is not None:
            order.price = event["price"] = price
        if stop is not None:
            order.stop = event["stop_price"] = stop
        self._out.append(event)

    # --- matching and the books ------------------------------------------------------------

    def _forget(self, order: Order) -> None:
        del self._orders[order.id]
        del order.acct.orders[order.id]
        if order.kind != "market":
            order.sym.orders.remove(order)

    def _publish(self, sym: Symbol, ticks: int) -> None:
        sym.bid = sym.price(ticks)
        sym.ask = sym.last = sym.price(ticks + 1)
        self._out.append(
            {
                "type": "quote",
                "ts": self.start + self.t,
                "symbol": sym.name,
                "bid": sym.bid,
                "ask": sym.ask,
                "last": sym.last,
            }
        )

    def _triggers(self, sym: Symbol) -> None:
        """Stops trigger and limits fill when the new quote reaches their price."""
        bid, ask = sym.bid, sym.ask
        for order in tuple(sym.orders):
            if order.id not in self._orders:  # cancelled by an earlier fill in this loop
                continue
            buy = order.side > 0
            market = ask if buy else bid
            if order.kind == "stop":
                assert order.stop is not None
                if (market >= order.stop) if buy else (market <= order.stop):
                    self._fill_order(order, order.qty, market)
                continue
            limit = order.price
            assert limit is not None
            if (market < limit) if buy else (market > limit):  # traded through: all of it
                self._fill_order(order, order.qty, limit)
            elif market == limit:  # touched: maybe only a part
                qty = order.qty
                if qty > 1 and self.rng.random() < 0.6:
                    qty = 1 + int(self.rng.random() * (qty - 1))
                self._fill_order(order, qty, limit)

    def _on_fill_due(self, order: Order) -> None:
        if order.id in self._orders:  # not cancelled during its latency
            sym = order.sym
            self._fill_order(order, order.qty, sym.ask if order.side > 0 else sym.bid)

    def _fill_order(self, order: Order, qty: int, price: float) -> None:
        acct = order.acct
        if order.reduce_only:
            pos = acct.positions.get(order.sym.name)
            room = abs(pos.qty) if pos is not None and pos.qty * order.side < 0 else 0
            if room == 0:
                self.cancel(order)
                return
            qty = min(qty, room)
        order.qty -= qty
        if order.qty == 0:
            self._forget(order)
        self._execute(acct, order.sym, order.side, qty, price, order.id)

    def _execute(
        self,
        acct: Account,
        sym: Symbol,
        side: int,
        qty: int,
        price: float,
        order_id: str,
        origin: bool = False,
    ) -> None:
        """One execution: fill, position, bracket upkeep, account snapshot, trader's reaction."""
        pos = acct.positions.get(sym.name)
        if pos is None:
            pos = acct.positions[sym.name] = Position()
        old = pos.qty
        new = old + side * qty
        realized = 0.0
        closing = old != 0 and old * side < 0
        if not closing:
            pos.avg = (pos.avg * abs(old) + price * qty) / abs(new)
        else:
            closed = min(qty, abs(old))
            realized = (price - pos.avg) * closed * (1 if old > 0 else -1) * sym.point_value
            if new == 0:
                pos.avg = 0.0
            elif (new > 0) != (old > 0):
                pos.avg = price
        pos.qty = new
        fee = round(sym.fee * qty, 2)
        acct.balance = round(acct.balance + realized - fee, 2)
        ts = self.start + self.t
        fill: Event = {
            "type": "fill",
            "ts": ts,
            "account": acct.name,
            "symbol": sym.name,
            "order_id": order_id,
            "side": _side_name(side),
            "qty": qty,
            "price": price,
            "fee": fee,
        }
        if closing and acct.reports_pnl:
            fill["realized_pnl"] = round(realized, 2)
        if origin:
            fill["origin"] = "riskterm"  # an extra field: this fill answers an engine command
        position: Event = {
            "type": "position",
            "ts": ts,
            "account": acct.name,
            "symbol": sym.name,
            "qty": new,
        }
        if new:
            position["avg_price"] = round(pos.avg, 6)
        else:
            del acct.positions[sym.name]
        self._out.append(fill)
        self._out.append(position)
        for order in tuple(acct.orders.values()):  # OCO / reduce-only upkeep
            if order.sym is sym and order.reduce_only:
                if new == 0 or order.side * new > 0:
                    self.cancel(order)
                elif order.qty > abs(new):
                    self.update(order, qty=abs(new))
        self._snapshot(acct)
        acct.trader.on_fill(sym, old, new, realized)

    def equity(self, acct: Account) -> float:
        symbols = self.symbols
        unrealized = 0.0
        for name, pos in acct.positions.items():
            sym = symbols[name]
            unrealized += (sym.last - pos.avg) * pos.qty * sym.point_value
        return round(acct.balance + unrealized, 2)

    def _snapshot(self, acct: Account) -> None:
        self._out.append(
            {
                "type": "account",
                "ts": self.start + self.t,
                "account": acct.name,
                "balance": acct.balance,
                "equity": self.equity(acct),
            }
        )

    # --- timers ------------------------------------------------------------------------------

    def _on_think(self, trader: Trader) -> None:
        trader.think()
        self._at(self._gap(trader.style.think), _THINK, trader)

    def _on_protect(self, job: tuple[Trader, Symbol]) -> None:
        job[0].protect(job[1])

    def _on_snapshot(self, acct: Account) -> None:
        self._snapshot(acct)
        self._at(self._gap(7.5), _SNAPSHOT, acct)

    def _on_link(self, _: None) -> None:
        """Now and then one account's link drops for a few seconds (auth_loss_guard's case)."""
        accounts = list(self.accounts.values())
        acct = accounts[int(self.rng.random() * len(accounts))]
        if acct.connected:
            acct.connected = False
            reason = _DROP_REASONS[int(self.rng.random() * len(_DROP_REASONS))]
            self._out.append(
                {
                    "type": "connection",
                    "ts": self.start + self.t,
                    "status": "disconnected",
                    "account": acct.name,
                    "reason": reason,
                }
            )
            self._at(self._gap(10.0), _RECONNECT, acct)
        self._at(self._gap(600.0), _LINK, None)

    def _on_reconnect(self, acct: Account) -> None:
        acct.connected = True
        self._out.append(
            {
                "type": "connection",
                "ts": self.start + self.t,
                "status": "connected",
                "account": acct.name,
                "reason": "reconnected",
            }
        )

    def _on_burst(self, market: Market) -> None:
        """Volatility bursts: wider steps and faster quotes for 5-30 s, every few minutes."""
        if market.table is market.calm:
            market.table, market.tempo = market.wild, 0.4
            self._at((5 + 25 * self.rng.random()) / self.rate, _BURST, market)
        else:
            market.table, market.tempo = market.calm, 1.0
            self._at(self._gap(240.0), _BURST, market)
