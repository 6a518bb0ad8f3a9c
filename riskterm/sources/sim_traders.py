"""The simulator's market model (symbols, orders, accounts) and its traders.

One trader per account, each with a personality that trips different rules:

- disciplined: enters with a protective stop (and often a target) on the closing side at once,
  moves the stop to break-even in profit.
- forgetful: rarely sets a stop, and late; holds for minutes (no_stop_loss_grace).
- overtrader: many small trades, short holds, ladders of limit orders (order_rate_limit,
  trade_frequency_limit).
- revenge: doubles size after each loss and averages down losers (loss limits, max_contracts,
  consecutive_losses, cooldown_after_loss).
- dabbler: now and then trades a crypto future such as BTC or MBT (symbol_blocks).

A trader reads the sim's state afresh at every decision, so enforcement by the engine (cancelled
orders, flattened positions) simply becomes part of the market it trades in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from riskterm.sources.sim import Simulator

__all__ = [
    "PERSONALITIES",
    "STYLES",
    "TABLE",
    "Account",
    "Market",
    "Order",
    "Position",
    "Style",
    "Symbol",
    "Trader",
]

# --- the market model -------------------------------------------------------------------------

_FEES = {
    "MNQ": 0.62,
    "MES": 0.62,
    "NQ": 2.14,
    "ES": 2.14,
    "CL": 2.32,
    "GC": 2.32,
    "BTC": 7.5,
    "MBT": 2.5,
}  # per contract and side, all-in
_QUOTE_EVERY = 0.25  # mean seconds between quotes of a symbol at rate 1 (exotics: 4x slower)
TABLE = 64  # size of the step-distribution tables


class Market:
    """A price path on a tick grid (shared by a micro and its full-size contract)."""

    __slots__ = ("anchor", "calm", "pull", "table", "tempo", "ticks", "wild")

    def __init__(self, ticks: int, sigma: float) -> None:
        self.ticks = ticks
        self.anchor = ticks
        self.pull = 0.1 / (sigma * 300)  # weak mean reversion keeps long runs on realistic prices
        self.calm = steps_table(sigma)
        self.wild = steps_table(sigma * 3)
        self.table = self.calm
        self.tempo = 1.0  # multiplies the quote interval; < 1 during a volatility burst


def steps_table(sigma: float) -> list[int]:
    """Quantiles of a Laplace distribution of scale sigma, rounded to whole ticks (symmetric)."""
    b = sigma / math.sqrt(2)
    out = []
    for i in range(TABLE):
        u = (i + 0.5) / TABLE
        q = b * math.log(2 * u) if u < 0.5 else -b * math.log(2 - 2 * u)
        out.append(round(q))
    return out


class Symbol:
    __slots__ = (
        "ask",
        "bid",
        "exotic",
        "fee",
        "interval",
        "last",
        "market",
        "name",
        "nd",
        "orders",
        "point_value",
        "tick",
        "tick_value",
    )

    def __init__(
        self, name: str, tick: float, tick_value: float, market: Market, exotic: bool, rate: float
    ) -> None:
        self.name = name
        self.tick = tick
        self.tick_value = tick_value
        self.point_value = tick_value / tick
        self.nd = max(0, -int(Decimal(str(tick)).normalize().as_tuple().exponent))
        self.fee = _FEES.get(name, 0.62 if tick_value < 2 else 2.14)
        self.market = market
        self.exotic = exotic
        self.interval = _QUOTE_EVERY * (4 if exotic else 1) / rate
        self.orders: list[Order] = []  # working limit and stop orders, checked on each quote
        self.bid = self.ask = self.last = 0.0

    def price(self, ticks: int) -> float:
        return round(ticks * self.tick, self.nd)


@dataclass(slots=True, eq=False)
class Order:
    id: str
    acct: Account
    sym: Symbol
    side: int  # +1 buy, -1 sell
    qty: int  # what remains to be filled
    kind: str  # market / limit / stop
    price: float | None
    stop: float | None
    tag: str  # entry / ladder / exit / stop / target / risk
    reduce_only: bool  # never opens a position: shrunk or cancelled along with it
    placed: float  # sim time
    ttl: float  # sim seconds after which its trader calls it stale


@dataclass(slots=True, eq=False)
class Position:
    qty: int = 0  # signed
    avg: float = 0.0


@dataclass(slots=True, eq=False)
class Account:
    name: str
    balance: float
    reports_pnl: bool  # this broker sends realized_pnl on closing fills
    connected: bool = True
    positions: dict[str, Position] = field(default_factory=dict)
    orders: dict[str, Order] = field(default_factory=dict)  # working orders
    trader: Trader = field(init=False)


# --- the traders ------------------------------------------------------------------------------

_REJECT_REASONS = (
    "Insufficient margin",
    "Price outside daily limits",
    "Order size exceeds broker maximum",
    "Instrument not tradable for account",
)


@dataclass(frozen=True, slots=True)
class Style:
    name: str
    think: float  # mean sim seconds between decisions (at rate 1)
    enter: float  # chance to open a trade at a decision when there is room
    max_positions: int
    stop_prob: float  # chance to protect a new position with a stop order
    stop_delay: tuple[float, float]  # seconds until that stop is placed
    target_prob: float  # chance to add a take-profit limit order as well
    hold: tuple[float, float]  # seconds a trade is meant to last
    sl: tuple[float, float]  # loss that ends a trade, in multiples of the symbol's volatility
    tp: tuple[float, float]  # profit that ends a trade, same unit
    symbols: tuple[str, ...]  # preferred symbols (those that exist)
    exotic: float = 0.0  # chance that an entry is on an exotic symbol
    ladder: float = 0.0  # chance that an entry is a ladder of 4-7 limit orders
    average_down: float = 0.0  # chance to add to a losing position instead of closing it
    escalate: bool = False  # size doubles after every losing trade (up to 8x)
    trail: bool = False  # moves the stop to break-even once half-way to the target
    size: int = 1  # extra contracts a trader of this style may add to the base size


STYLES: dict[str, Style] = {
    "disciplined": Style(
        "disciplined",
        think=6.0,
        enter=0.3,
        max_positions=1,
        stop_prob=1.0,
        stop_delay=(0.2, 1.5),
        target_prob=0.6,
        hold=(60.0, 400.0),
        sl=(10.0, 20.0),
        tp=(15.0, 30.0),
        symbols=("ES", "MES", "NQ"),
        trail=True,
    ),
    "forgetful": Style(
        "forgetful",
        think=9.0,
        enter=0.3,
        max_positions=1,
        stop_prob=0.25,
        stop_delay=(10.0, 50.0),
        target_prob=0.0,
        hold=(45.0, 300.0),
        sl=(25.0, 45.0),
        tp=(20.0, 40.0),
        symbols=("NQ", "MNQ", "GC"),
    ),
    "overtrader": Style(
        "overtrader",
        think=2.0,
        enter=0.6,
        max_positions=2,
        stop_prob=0.4,
        stop_delay=(1.0, 5.0),
        target_prob=0.2,
        hold=(5.0, 40.0),
        sl=(5.0, 10.0),
        tp=(4.0, 10.0),
        symbols=("MNQ", "MES"),
        ladder=0.12,
        size=3,
    ),
    "revenge": Style(
        "revenge",
        think=5.0,
        enter=0.35,
        max_positions=1,
        stop_prob=0.3,
        stop_delay=(2.0, 20.0),
        target_prob=0.0,
        hold=(30.0, 200.0),
        sl=(20.0, 40.0),
        tp=(6.0, 12.0),
        symbols=("NQ", "CL", "ES"),
        average_down=0.6,
        escalate=True,
    ),
    "dabbler": Style(
        "dabbler",
        think=7.0,
        enter=0.3,
        max_positions=2,
        stop_prob=0.6,
        stop_delay=(1.0, 10.0),
        target_prob=0.3,
        hold=(20.0, 200.0),
        sl=(12.0, 25.0),
        tp=(12.0, 25.0),
        symbols=("GC", "CL", "MNQ"),
        exotic=0.25,
    ),
}
PERSONALITIES: tuple[str, ...] = tuple(STYLES)


@dataclass(slots=True)
class _Plan:
    """What a trader intends for an open position."""

    until: float  # sim time to get out by
    sl: int  # ticks of loss that end it
    tp: int  # ticks of profit that end it
    adds: int = 0


class Trader:
    def __init__(self, personality: str, acct: Account, sim: Simulator) -> None:
        self.style = STYLES[personality]
        self.acct = acct
        self.sim = sim
        main = [s for s in sim.symbols.values() if not s.exotic]
        preferred = [s for s in main if s.name in self.style.symbols]
        self.symbols = preferred or main
        self.plans: dict[str, _Plan] = {}
        self.losses = 0  # losing trades in a row

    @property
    def personality(self) -> str:
        return self.style.name

    def _uniform(self, bounds: tuple[float, float]) -> float:
        low, high = bounds
        return low + (high - low) * self.sim.rng.random()

    # --- decisions -----------------------------------------------------------------------

    def think(self) -> None:
        """One decision: manage a position, else a stale order, else maybe open a trade."""
        acct, sim = self.acct, self.sim
        if not acct.connected:
            return
        for name, pos in tuple(acct.positions.items()):
            if self._manage(sim.symbols[name], pos.qty, pos.avg):
                return
        for order in tuple(acct.orders.values()):
            if (
                order.tag in ("entry", "ladder", "exit")
                and order.kind != "market"
                and sim.t - order.placed > order.ttl
            ):
                self._stale(order)
                return
        if len(acct.positions) < self.style.max_positions and sim.rng.random() < self.style.enter:
            self._enter()

    def _manage(self, sym: Symbol, qty: int, avg: float) -> bool:
        sim, style = self.sim, self.style
        plan = self.plans.get(sym.name) or self._plan(sym)
        if any(o.sym is sym and o.tag == "exit" for o in self.acct.orders.values()):
            return False  # already on the way out
        direction = 1 if qty > 0 else -1
        gain = (sym.last - avg) * direction / sym.tick  # in ticks
        stop = self._stop_of(sym)
        if gain >= plan.tp:
            self._exit(sym, qty, limit=sim.rng.random() < 0.4)
            return True
        if gain <= -plan.sl:
            if plan.adds < 2 and sim.rng.random() < style.average_down:
                plan.adds += 1
                sim.place(self.acct, sym, direction, abs(qty), "market")
                return True
            if stop is None or style.name != "disciplined":
                self._exit(sym, qty)
                return True
        if sim.t >= plan.until:
            self._exit(sym, qty)
            return True
        if style.trail and stop is not None and gain >= plan.tp / 2:
            ticks = round(avg / sym.tick) + direction
            if (ticks - round((stop.stop or 0.0) / sym.tick)) * direction > 0:
                sim.update(stop, stop=sym.price(ticks))
                return True
        return False

    def _stale(self, order: Order) -> None:
        """An order that did not fill: cancel it, or chase the market (an order_updated)."""
        sim, sym = self.sim, order.sym
        if order.tag == "ladder" or sim.rng.random() < 0.6:
            sim.cancel(order)
        elif order.kind == "limit":
            sim.update(order, price=sym.bid if order.side > 0 else sym.ask)
            order.placed = sim.t
        else:
            sim.update(order, stop=sym.price(self._beyond(sym, order.side, 2)))
            order.placed = sim.t

    def _enter(self) -> None:
        sim, style, acct = self.sim, self.style, self.acct
        rnd = sim.rng.random
        if sim.exotics and rnd() < style.exotic:
            choices = sim.exotics
        else:
            choices = [s for s in self.symbols if s.name not in acct.positions]
        if not choices:
            return
        sym = choices[int(rnd() * len(choices))]
        if any(o.sym is sym and o.tag in ("entry", "ladder") for o in acct.orders.values()):
            return
        side = 1 if rnd() < 0.5 else -1
        qty = self._size(sym)
        if rnd() < 0.03:
            sim.reject(acct, sym, _REJECT_REASONS[int(rnd() * len(_REJECT_REASONS))])
            return
        ttl = (15.0 + 45.0 * rnd()) / sim.rate
        if rnd() < style.ladder:
            for k in range(4 + int(rnd() * 4)):
                ticks = self._beyond(sym, -side, 6 + 2 * k)
                sim.place(
                    acct,
                    sym,
                    side,
                    1 + int(rnd() * 2),
                    "limit",
                    price=sym.price(ticks),
                    tag="ladder",
                    ttl=(3.0 + 7.0 * rnd()) / sim.rate,
                )
            return
        r = rnd()
        if r < 0.55:
            sim.place(acct, sym, side, qty, "market")
        elif r < 0.9:
            ticks = self._beyond(sym, -side, int(rnd() * 4) - 1)
            sim.place(acct, sym, side, qty, "limit", price=sym.price(ticks), ttl=ttl)
        else:
            ticks = self._beyond(sym, side, 2 + int(rnd() * 5))
            sim.place(acct, sym, side, qty, "stop", stop=sym.price(ticks), ttl=ttl)

    def _size(self, sym: Symbol) -> int:
        base = 1 + int(self.sim.rng.random() * (self.style.size + (3 if sym.tick_value < 2 else 0)))
        if self.style.escalate:
            base *= 2 ** min(self.losses, 3)
        return base

    def _exit(self, sym: Symbol, qty: int, limit: bool = False) -> None:
        side = -1 if qty > 0 else 1
        if limit:  # take the profit passively at the touch
            price = sym.bid if side < 0 else sym.ask
            self.sim.place(
                self.acct,
                sym,
                side,
                abs(qty),
                "limit",
                price=price,
                tag="exit",
                reduce_only=True,
                ttl=10.0 / self.sim.rate,
            )
        else:
            self.sim.place(self.acct, sym, side, abs(qty), "market", tag="exit", reduce_only=True)

    # --- reactions --------------------------------------------------------------------------

    def on_fill(self, sym: Symbol, old: int, new: int, realized: float) -> None:
        """Called by the sim after every execution on this account (engine-driven ones too)."""
        style, rnd = self.style, self.sim.rng.random
        if new == 0 or (old != 0 and (new > 0) != (old > 0)):  # closed (or reversed)
            self.plans.pop(sym.name, None)
            if realized < 0:
                self.losses += 1
            elif realized > 0:
                self.losses = 0
        if new == 0:
            return
        if old == 0 or (new > 0) != (old > 0):  # opened
            self._plan(sym)
            if rnd() < style.stop_prob:
                self.sim.schedule_protect(self, sym, self._uniform(style.stop_delay))
        elif abs(new) > abs(old) and self._stop_of(sym) is not None:  # added: resize the stop
            self.sim.schedule_protect(self, sym, self._uniform((0.2, 2.0)))

    def protect(self, sym: Symbol) -> None:
        """Place (or resize) the protective stop, and maybe a target, of an open position."""
        sim, acct = self.sim, self.acct
        pos = acct.positions.get(sym.name)
        if pos is None:
            return
        direction = 1 if pos.qty > 0 else -1
        size = abs(pos.qty)
        plan = self.plans.get(sym.name) or self._plan(sym)
        avg_ticks = round(pos.avg / sym.tick)
        stop = self._stop_of(sym)
        if stop is not None:
            if stop.qty != size:
                sim.update(stop, qty=size)
        else:
            ticks = avg_ticks - direction * plan.sl
            ticks = (
                min(ticks, self._beyond(sym, -1, 2))
                if direction > 0
                else max(ticks, self._beyond(sym, 1, 2))
            )
            sim.place(
                acct,
                sym,
                -direction,
                size,
                "stop",
                stop=sym.price(ticks),
                tag="stop",
                reduce_only=True,
            )
        if sim.rng.random() < self.style.target_prob and not any(
            o.sym is sym and o.tag == "target" for o in acct.orders.values()
        ):
            ticks = avg_ticks + direction * plan.tp
            market = round((sym.ask if direction > 0 else sym.bid) / sym.tick)
            if (ticks - market) * direction > 0:
                sim.place(
                    acct,
                    sym,
                    -direction,
                    size,
                    "limit",
                    price=sym.price(ticks),
                    tag="target",
                    reduce_only=True,
                )

    # --- helpers ----------------------------------------------------------------------------

    def _plan(self, sym: Symbol) -> _Plan:
        sim, style = self.sim, self.style
        sigma = _sigma(sym)
        plan = _Plan(
            until=sim.t + self._uniform(style.hold) / sim.rate,
            sl=max(2, round(self._uniform(style.sl) * sigma)),
            tp=max(2, round(self._uniform(style.tp) * sigma)),
        )
        self.plans[sym.name] = plan
        return plan

    def _stop_of(self, sym: Symbol) -> Order | None:
        for order in self.acct.orders.values():
            if order.sym is sym and order.kind == "stop" and order.reduce_only:
                return order
        return None

    @staticmethod
    def _beyond(sym: Symbol, side: int, n: int) -> int:
        """The tick n ticks beyond the market on the side a buy (+1) or sell (-1) takes."""
        if side > 0:
            return round(sym.ask / sym.tick) + n
        return round(sym.bid / sym.tick) - n


def _sigma(sym: Symbol) -> float:
    """The symbol's typical move per quote in ticks (the spread of its calm step table)."""
    table = sym.market.calm
    return max(1.0, math.sqrt(sum(s * s for s in table) / len(table)))
