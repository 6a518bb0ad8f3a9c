"""The built-in simulated broker (riskterm.sources.sim) behind the broker interface: it states
its accounts, positions and working orders when it starts (a Snapshot, CONTRACT §9), then runs
its event stream; commands execute at once, in process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from riskterm.brokers.base import BrokerContext, Command, Link, Snapshot
from riskterm.sources.sim import Simulator


class SimBroker:
    name = "sim"
    title = "the simulator"
    executes = True
    live = True

    def __init__(self, ctx: BrokerContext) -> None:
        self.sim = Simulator(seed=ctx.seed, speed=ctx.speed,
                             instruments=ctx.instrument_specs or None)
        self.link = Link("connecting")
        watch = ctx.accounts
        if watch is not None and not any(map(watch, self.sim.accounts)):
            ctx.say(f"--accounts {','.join(ctx.account_patterns)} matches none of the "
                    f"simulator's accounts ({', '.join(self.sim.accounts)})")

    async def start(self) -> None:
        return None

    async def events(self) -> AsyncIterator[dict[str, Any] | Snapshot]:
        yield self.sim.snapshot()
        self.link.set("connected")
        async for event in self.sim.events():
            yield event

    def submit(self, command: Command) -> None:
        self.sim.submit(command)  # executed now; its events come out at the next steps

    async def close(self) -> None:
        self.link.set("disconnected", "stopped")


def make(ctx: BrokerContext) -> SimBroker:
    return SimBroker(ctx)
