"""The broker interface the engine enforces through.

The engine sends a few kinds of commands: cancel one working order, send a market order (to
close, reduce or flatten positions), and place a protective stop or a take-profit limit. A broker
that executes returns normally ("ok") or raises BrokerError, recorded as "failed"; a source that
cannot execute (a file, stdin) is paired with DryRunBroker and every enforcement is "dry_run".
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

Side = Literal["buy", "sell"]


@dataclass(frozen=True, slots=True)
class CancelOrder:
    account: str
    order_id: str


@dataclass(frozen=True, slots=True)
class MarketOrder:
    account: str
    symbol: str
    side: Side
    qty: int
    reason: str = ""


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


Command = CancelOrder | MarketOrder | StopOrder | LimitOrder


class BrokerError(Exception):
    """A command the broker refused or could not carry out; the message says why."""


class OrderNotWorking(BrokerError):
    """A cancel found the order already gone (filled or cancelled on the way): nothing to do."""


class Broker(Protocol):
    #: True when commands really reach a broker; False for dry runs.
    executes: bool

    def submit(self, command: Command) -> None:
        """Send one command. Raises BrokerError when it fails."""


class DryRunBroker:
    """For replays: nothing is sent, every enforcement is recorded as dry_run."""

    executes = False

    def __init__(self) -> None:
        self.commands: deque[Command] = deque(maxlen=1000)  # the latest, for inspection

    def submit(self, command: Command) -> None:
        self.commands.append(command)
