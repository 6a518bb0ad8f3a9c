"""Waiting for a live broker to confirm the enforcements sent to it (CONTRACT §9).

A live broker's `submit` returns an awaitable; the enforcement record waits in the engine's
outbox with an internal PENDING status, and nothing after it is committed, until every command
of the record has an answer (`Enforcer.confirmed` then makes it `ok` or `failed`). Each answer
is bounded by CONFIRM_SECONDS: a broker that never answers is a failure whose outcome is unknown
(the close stays in flight, so it is never sent twice). The engine itself never awaits; this
runs the waiting as tasks on the engine's event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

from riskterm.brokers.base import OutcomeUnknown

CONFIRM_SECONDS = 20.0

Outcome = BaseException | str | None
Done = Callable[[list[tuple[Any, Outcome]]], None]


class Confirmations:
    def __init__(self, on_settled: Callable[[], None] | None = None,
                 timeout: float = CONFIRM_SECONDS) -> None:
        self.tasks: set[asyncio.Task[None]] = set()
        self.timeout = timeout
        self._on_settled = on_settled or (lambda: None)
        self._idle = asyncio.Event()
        self._idle.set()

    def __len__(self) -> int:
        return len(self.tasks)

    def when_settled(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each confirmation (the host commits what it held)."""
        self._on_settled = callback

    def start(self, waiting: list[tuple[Any, Awaitable[str | None]]], done: Done) -> None:
        task = asyncio.get_running_loop().create_task(self._wait(waiting, done),
                                                      name="enforcement-confirm")
        self.tasks.add(task)
        self._idle.clear()

    async def _wait(self, waiting: list[tuple[Any, Awaitable[str | None]]], done: Done) -> None:
        futures = [asyncio.ensure_future(answer) for _, answer in waiting]
        try:
            _, late = await asyncio.wait(futures, timeout=self.timeout)
            outcomes: list[tuple[Any, Outcome]] = []
            for (command, _), fut in zip(waiting, futures, strict=True):
                if fut in late:
                    fut.cancel()
                    outcomes.append((command, OutcomeUnknown(
                        f"the broker did not confirm within {self.timeout:g} s")))
                elif fut.cancelled():
                    outcomes.append((command, OutcomeUnknown("the request was cancelled")))
                elif fut.exception() is not None:
                    outcomes.append((command, fut.exception()))
                else:
                    outcomes.append((command, fut.result()))
            done(outcomes)
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
            task = asyncio.current_task()
            if task is not None:
                self.tasks.discard(task)  # type: ignore[arg-type]
            if not self.tasks:
                self._idle.set()
            self._on_settled()

    async def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until no confirmation is outstanding; False if `timeout` ran out first."""
        if not self.tasks:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        return False

    async def settled(self, records: list[dict[str, Any]]) -> None:
        """Wait until none of `records` is PENDING any more (a job's or the dashboard's action)."""
        while any(rec.get("status") == "pending" for rec in records) and self.tasks:
            await asyncio.wait(list(self.tasks), return_when=asyncio.FIRST_COMPLETED)
