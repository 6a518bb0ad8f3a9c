"""The broker interface (CONTRACT §9): what every broker — the simulator, a replay, ProjectX, a
plugin — offers the engine host.

A broker is a source of events and the target of enforcement at once:

- `await start()` connects (logs in, reads what to watch); a `BrokerStartError` (a missing
  setting, a refused login) ends the run with exit 2 and its message.
- `events()` yields section 1's event dicts in the order they happened, and a `Snapshot` on
  every connect and reconnect: the broker's complete view (accounts, open positions, working
  orders), which the engine takes as authoritative before live events are trusted again. Fills
  the broker reports for a gap (trades since the last one applied) come as `fill` events with
  their `trade_id` before the snapshot. A lost link is a `connection` event (disconnected, with
  the reason); the reconnect is a `connection` connected after its snapshot.
- `submit(command)` executes one action. It raises `BrokerError` at once for a command it
  refuses, returns None when the action is already done (an in-process broker), or returns an
  awaitable that resolves to the broker's confirmation text (or None) once the broker confirms,
  and raises `BrokerError` with the broker's reason when it does not. The enforcement record is
  written `ok` or `failed` only then.
- `link` tells the dashboard how the connection is doing; `await close()` ends it.

`executes` is False for a source that cannot execute (a file, stdin): every enforcement is then
recorded `dry_run`.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Side = Literal["buy", "sell"]


# -- commands --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CancelOrder:
    account: str
    order_id: str


@dataclass(frozen=True, slots=True)
class MarketOrder:
    """Close or reduce a position by `qty` contracts on `side`. `intent` says which, so a broker
    with its own close (ProjectX's Position/closeContract) can use it: "close" brings the
    position to flat, "reduce" takes `qty` off it."""

    account: str
    symbol: str
    side: Side
    qty: int
    reason: str = ""
    intent: Literal["close", "reduce"] = "close"


@dataclass(frozen=True, slots=True)
class StopOrder:
    """A protective stop (set_stop_loss of a Smart Risk Manager job)."""

    account: str
    symbol: str
    side: Side
    qty: int
    stop_price: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class LimitOrder:
    """A resting limit order (set_take_profit of a Smart Risk Manager job)."""

    account: str
    symbol: str
    side: Side
    qty: int
    price: float
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Flatten:
    """Every working order of the account cancelled and every position closed. `cancels` and
    `closes` are what the engine's book holds; a broker with its own flatten may read its own
    view instead (and must then verify and finish: CONTRACT §9)."""

    account: str
    cancels: tuple[CancelOrder, ...]
    closes: tuple[MarketOrder, ...]
    reason: str = ""


Command = CancelOrder | MarketOrder | StopOrder | LimitOrder | Flatten


def parts(command: Command) -> list[Command]:
    """A command as the simple commands it is made of (a Flatten: its cancels, then its
    closes), for brokers that execute one order at a time."""
    if isinstance(command, Flatten):
        return [*command.cancels, *command.closes]
    return [command]


# -- errors ----------------------------------------------------------------------------------


class BrokerError(Exception):
    """A command the broker refused or could not carry out; the message says why."""


class OrderNotWorking(BrokerError):
    """A cancel found the order already gone (filled or cancelled on the way): nothing to do."""


class OutcomeUnknown(BrokerError):
    """The request went out and no answer came back: it may have been executed. The engine
    keeps such a close in flight (never sends it again) until a fill or position settles it."""


class BrokerStartError(Exception):
    """The broker cannot start (a missing setting, a refused login, no account to watch): the
    run ends with exit 2 and this message."""


# -- what a broker reports -------------------------------------------------------------------


@dataclass
class Snapshot:
    """A broker's complete statement of what exists, read on every connect (CONTRACT §9):
    accounts {account, balance?, equity?}, positions {account, symbol, qty, avg_price?} and
    working orders (order_placed's fields, without type and ts). What it does not list does
    not exist at the broker."""

    ts: float
    accounts: list[dict[str, Any]] = field(default_factory=list)
    positions: list[dict[str, Any]] = field(default_factory=list)
    orders: list[dict[str, Any]] = field(default_factory=list)


LinkState = Literal["connecting", "connected", "reconnecting", "disconnected", "offline"]


@dataclass
class Link:
    """The broker connection as the dashboard shows it. `attempt` counts the reconnect attempts
    since the link was lost; `since` is when `state` began (epoch seconds)."""

    state: LinkState = "connecting"
    since: float = field(default_factory=time.time)
    attempt: int = 0
    reason: str = ""

    def set(self, state: LinkState, reason: str = "", attempt: int = 0) -> None:
        if state != self.state:
            self.since = time.time()
        self.state, self.reason, self.attempt = state, reason, attempt


# -- the interface ---------------------------------------------------------------------------


@dataclass
class BrokerContext:
    """What the host tells a broker when it makes one."""

    arg: str | None = None  # the ARG of --source NAME:ARG
    accounts: Callable[[str], bool] | None = None  # --accounts: is this account watched?
    account_patterns: tuple[str, ...] = ()  # ... and its patterns, for messages
    instruments: tuple[str, ...] = ()  # symbols rules.yaml lists under `instruments`
    instrument_specs: dict[str, tuple[float, float]] = field(default_factory=dict)  # tick s/v
    day_start: Callable[[], float] = lambda: time.time() - 86400.0  # last daily reset
    say: Callable[[str], None] = print  # diagnostics (stderr)
    seed: int = 0
    speed: float = 1.0


class Broker(Protocol):
    """Optional too: `flattens = True` when submit takes a Flatten whole (a broker with its own
    flatten, which verifies and finishes it); otherwise the engine sends its parts one by one.
    `instrument(symbol) -> (tick_size, tick_value) | None`: the broker's own spec of a symbol
    rules.yaml does not list (CONTRACT §9)."""

    name: str
    executes: bool  # False: nothing is sent, enforcements are dry_run
    live: bool  # the engine clock is wall time (a replay's is event time)
    link: Link

    async def start(self) -> None: ...

    def events(self) -> AsyncIterator[dict[str, Any] | Snapshot]: ...

    def submit(self, command: Command) -> Awaitable[str | None] | None: ...

    async def close(self) -> None: ...


BrokerFactory = Callable[[BrokerContext], Broker]
