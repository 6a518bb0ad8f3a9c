"""A small live broker as a riskterm plugin (`--source script:PATH`), packaged and installed by
tests/test_broker_plugin.py; the README's example plugin is this one, shortened.

PATH is a script in JSON Lines. Its first line is what the broker holds when it connects:
{"accounts": [...], "positions": [...], "orders": [...]} as a Snapshot lists them, and
optionally "refuse" {symbol: reason} (orders the broker turns down) and "instruments"
{symbol: [tick_size, tick_value]} (its contract specs). Every further line is a section-1 event,
sent stamped with wall time. A command is executed by appending it to PATH.orders (one JSON
object a line) and confirmed a moment later, with the fill and the position a broker pushes.
The session ends once the script is played and every command has been answered.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

from riskterm.brokers.base import (
    BrokerContext,
    BrokerError,
    BrokerStartError,
    CancelOrder,
    Command,
    Link,
    MarketOrder,
    OrderNotWorking,
    Snapshot,
)

CONFIRM_SECONDS = 0.02  # how long the "exchange" takes to confirm an order


class ScriptBroker:
    name = "script"
    title = "the script broker"
    executes = True  # enforcement is sent here (False: every enforcement is dry_run)
    live = True  # the engine clock is wall time

    def __init__(self, ctx: BrokerContext) -> None:
        if not ctx.arg:
            raise BrokerStartError("--source script needs a script file: --source script:PATH")
        self.path = Path(ctx.arg)
        self.out = self.path.with_name(self.path.name + ".orders")
        self.link = Link("connecting")
        self.head: dict[str, Any] = {}
        self.script: list[dict[str, Any]] = []
        self.positions: dict[tuple[str, str], int] = {}
        self.orders: set[tuple[str, str]] = set()
        self.last: dict[str, float] = {}  # the latest price of each symbol the script quoted
        self.pushed: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.working: set[asyncio.Task[str]] = set()
        self.seq = 0

    async def start(self) -> None:
        try:
            lines = [json.loads(s) for s in self.path.read_text().splitlines() if s.strip()]
        except OSError as exc:
            raise BrokerStartError(f"script broker: cannot read {self.path}: "
                                   f"{exc.strerror or exc}") from None
        except ValueError as exc:
            raise BrokerStartError(f"script broker: {self.path} is not JSON Lines: {exc}") from None
        if not lines or not isinstance(lines[0], dict) or "accounts" not in lines[0]:
            raise BrokerStartError(f"script broker: the first line of {self.path} must state "
                                   "the accounts")
        self.head, self.script = lines[0], lines[1:]
        self.positions = {(p["account"], p["symbol"]): p["qty"]
                          for p in self.head.get("positions", [])}
        self.orders = {(o["account"], o["order_id"]) for o in self.head.get("orders", [])}

    async def events(self) -> AsyncIterator[dict[str, Any] | Snapshot]:
        head = self.head
        yield Snapshot(time.time(), accounts=head["accounts"],
                       positions=head.get("positions", []), orders=head.get("orders", []))
        self.link.set("connected")
        yield {"type": "connection", "ts": time.time(), "status": "connected"}
        for event in self.script:
            while not self.pushed.empty():
                yield self.pushed.get_nowait()
            if event.get("type") == "quote" and isinstance(event.get("last"), int | float):
                self.last[event["symbol"]] = event["last"]
            yield {**event, "ts": time.time()}
        while True:  # the script is played: answer what is still working, then end
            while not self.pushed.empty():
                yield self.pushed.get_nowait()
            busy = [task for task in self.working if not task.done()]
            if not busy:
                return
            await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)

    def submit(self, command: Command) -> asyncio.Task[str]:
        if isinstance(command, CancelOrder):
            if (command.account, command.order_id) not in self.orders:
                raise OrderNotWorking(f"order {command.order_id} is not working")
        elif isinstance(command, MarketOrder):
            reason = self.head.get("refuse", {}).get(command.symbol)
            if reason:
                raise BrokerError(reason)
        else:
            raise BrokerError(f"the script broker takes no {type(command).__name__}")
        with self.out.open("a") as fh:  # the order reached the broker
            fh.write(json.dumps({"command": type(command).__name__, **asdict(command)}) + "\n")
        task = asyncio.get_running_loop().create_task(self._execute(command))
        self.working.add(task)
        return task  # resolves to the confirmation text, or raises BrokerError

    async def _execute(self, command: CancelOrder | MarketOrder) -> str:
        await asyncio.sleep(CONFIRM_SECONDS)
        now = time.time()
        if isinstance(command, CancelOrder):
            self.orders.discard((command.account, command.order_id))
            self.pushed.put_nowait({"type": "order_cancelled", "ts": now,
                                    "account": command.account, "order_id": command.order_id})
            return f"cancelled {command.order_id}"
        price = self.last.get(command.symbol)
        if price is None:
            raise BrokerError(f"no market in {command.symbol}: order rejected")
        self.seq += 1
        key = (command.account, command.symbol)
        qty = self.positions.get(key, 0) + (command.qty if command.side == "buy" else -command.qty)
        self.positions[key] = qty
        self.pushed.put_nowait({"type": "fill", "ts": now, "account": command.account,
                                "symbol": command.symbol, "order_id": f"S{self.seq}",
                                "side": command.side, "qty": command.qty, "price": price,
                                "trade_id": f"T{self.seq}"})
        self.pushed.put_nowait({"type": "position", "ts": now, "account": command.account,
                                "symbol": command.symbol, "qty": qty})
        return f"filled {command.side} {command.qty} {command.symbol} @ {price:g}"

    def instrument(self, symbol: str) -> tuple[float, float] | None:
        spec = self.head.get("instruments", {}).get(symbol)
        return (float(spec[0]), float(spec[1])) if spec else None

    async def close(self) -> None:
        for task in self.working:
            task.cancel()
        self.link.set("disconnected", "stopped")


def make(ctx: BrokerContext) -> ScriptBroker:
    return ScriptBroker(ctx)
