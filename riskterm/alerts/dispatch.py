"""The alert dispatcher: committed records in, messages out, never in the engine's way.

The recorder's sink only appends a batch, in slices of about SLICE records, to a bounded queue
(records beyond MAX_QUEUED are counted, not kept, and said in the next summary). A router task
selects what each target wants, a slice per turn of the event loop;
each target has its own task that applies the rate limit, sends (apprise, in a thread) and
retries with backoff. A message that still fails becomes a `warning` record with rule
`alert_failed` through the engine, and the engine goes on.

Rate limit: a sliding window of `messages` per `per`. While more than one message is left in the
window, alerts go one by one; when one is left (or none, once the window moves on) everything
waiting goes as one summary. At shutdown what waits goes out at once, ignoring the window.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from riskterm.alerts.config import AlertTarget
from riskterm.alerts.deliver import Sender
from riskterm.alerts.messages import Alert, Batch, Item, Selector, Tally, build, summary

MAX_QUEUED = 100_000  # records waiting for the router
MAX_PENDING = 1000  # alerts a target keeps one by one while it waits; beyond, only counted
MAX_BACKOFF = 60.0  # seconds
DRAIN_SECONDS = 5.0  # what finish() gives the targets to send what is left

# account, message, value (the alerts lost): host.engine.emit_warning("alert_failed", ...)
Warn = Callable[[str, str, int], None]


class TargetWorker:
    def __init__(self, target: AlertTarget, warn: Warn) -> None:
        self.target = target
        self.spec = target.spec
        self.selector = Selector(target.spec)
        self.warn = warn
        self.pending: list[Item] = []
        self.tally = Tally()  # alerts beyond MAX_PENDING, and records the queue dropped
        self.sent: deque[float] = deque()  # monotonic times of the messages in the window
        self.delivered = 0
        self.failed = 0
        self._wake = asyncio.Event()
        self._final = False  # draining: send what waits now, ignore the window
        self._sender: Sender | None = None
        self.task: asyncio.Task[None] | None = None
        self.in_flight: tuple[Alert, int] | None = None  # message being sent, alerts it holds

    def start(self) -> None:
        try:
            self._sender = Sender(self.target)
        except RuntimeError:  # no thread to be had: each delivery says so
            self._sender = None
        self.task = asyncio.create_task(self._run(), name=f"alerts {self.target.label}")

    def offer(self, batch: Batch) -> None:
        items = self.selector.select(batch)
        room = MAX_PENDING - len(self.pending)
        self.pending += items[:room]
        self.tally.add_many(items[room:])
        if self.pending:
            self._wake.set()

    def skipped(self, n: int) -> None:
        self.tally.skipped += n
        self._wake.set()

    def _waiting(self) -> int:
        return len(self.pending) + self.tally.n + (1 if self.tally.skipped else 0)

    def finish(self) -> None:
        self._final = True
        self._wake.set()

    async def _run(self) -> None:
        window = self.spec.rate_limit
        while True:
            if not self._waiting():
                if self._final:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            now = time.monotonic()
            while self.sent and self.sent[0] <= now - window.per:
                self.sent.popleft()
            free = window.messages - len(self.sent)
            if free <= 0 and not self._final:
                self._wake.clear()  # a drain cuts the wait short
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.sent[0] + window.per - now)
                continue
            alert, count = self._next(free)
            self.sent.append(now)
            self.in_flight = (alert, count)
            await self._deliver(alert, count)
            self.in_flight = None

    def _next(self, free: int) -> tuple[Alert, int]:
        """The next message and how many alerts it holds."""
        if self._waiting() == 1 and self.pending:
            return build(self.pending.pop(0)), 1
        if free > 1 and self.pending and not self.tally.n and not self.tally.skipped:
            return build(self.pending.pop(0)), 1
        tally = Tally()
        tally.add_many(self.pending)  # the first ones, then what was only counted
        tally.merge(self.tally)
        self.tally = Tally()
        self.pending = []
        return summary(tally, self.spec), tally.n

    async def _deliver(self, alert: Alert, count: int) -> None:
        attempts, reason = 0, ""
        wait = self.spec.backoff
        while True:
            attempts += 1
            try:
                if self._sender is None:
                    self._sender = Sender(self.target)
                ok, reason = await self._sender.send(alert)
            except RuntimeError as exc:  # no thread could be started
                ok, reason = False, f"cannot start a delivery thread: {exc}"
            if ok:
                self.delivered += 1
                return
            if attempts > self.spec.retries:
                break
            await asyncio.sleep(wait)
            wait = min(wait * 2, MAX_BACKOFF)
        self.lost(alert, count, f"failed after {attempts} attempt"
                  f"{'s' if attempts != 1 else ''} ({reason})")

    def lost(self, alert: Alert, count: int, why: str) -> None:
        self.failed += 1
        what = alert.title.removeprefix("riskterm: ")
        self.warn(alert.account or "*", f"alert to {self.target.label} {why}; not delivered: "
                  f"{what}", count)

    def stop(self) -> None:
        if self._sender is not None:
            self._sender.close()

    def abandon(self) -> None:
        """After the drain's time ran out: what is left is lost, each said once."""
        if self.in_flight is not None:
            alert, count = self.in_flight
            self.lost(alert, count, "was cut off by the shutdown")
            self.in_flight = None
        if self._waiting():
            alert, count = self._next(1)
            self.lost(alert, count, "was not sent before the shutdown")


class AlertDispatcher:
    """Feeds the targets from committed batches (the recorder's sinks)."""

    def __init__(self, targets: Sequence[AlertTarget], warn: Warn) -> None:
        self.warn = warn
        self.workers: list[TargetWorker] = []
        self._retired: list[TargetWorker] = []  # replaced by a reload, sending what they hold
        self._queue: deque[Batch] = deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._router: asyncio.Task[None] | None = None
        self._closed = False
        self.set_targets(targets)

    def set_targets(self, targets: Sequence[AlertTarget]) -> None:
        """A rules reload: the new targets take over; the old ones send what they hold
        (records committed before the reload included)."""
        self._hand_out()
        for worker in self.workers:
            worker.finish()
        self._retired = [w for w in (*self._retired, *self.workers)
                         if w.task is not None and not w.task.done()]
        self.workers = [TargetWorker(t, self.warn) for t in targets]
        if self._router is not None:
            for worker in self.workers:
                worker.start()

    def start(self) -> None:
        self._router = asyncio.create_task(self._route(), name="alerts")
        for worker in self.workers:
            worker.start()

    def sink(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        """The recorder's sink: cheap, never blocks; a full queue counts what it leaves out."""
        if not self.workers or self._closed:
            return
        if self._queued + len(batch) > MAX_QUEUED:
            for worker in self.workers:
                worker.skipped(len(batch))
            return
        self._queue.extend(slices(batch))
        self._queued += len(batch)
        self._wake.set()

    async def _route(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:  # a slice at a time: the engine's turn comes between them
                self._hand_out(1)
                await asyncio.sleep(0)

    def _hand_out(self, batches: int | None = None) -> None:
        while self._queue and batches != 0:
            batch = self._queue.popleft()
            self._queued -= len(batch)
            for worker in self.workers:
                worker.offer(batch)
            if batches is not None:
                batches -= 1

    async def drain(self, timeout: float = DRAIN_SECONDS) -> None:
        """Send what is queued (bounded in time); what is left then is lost and said so."""
        self._closed = True
        self._hand_out()
        everyone = [*self._retired, *self.workers]
        tasks = [w.task for w in everyone if w.task is not None and not w.task.done()]
        for worker in everyone:
            worker.finish()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        self.close()

    def close(self) -> None:
        self._closed = True
        if self._router is not None:
            self._router.cancel()
        for worker in (*self._retired, *self.workers):
            if worker.task is not None and not worker.task.done():
                worker.task.cancel()
                worker.abandon()
            worker.stop()


SLICE = 2048  # records examined in one go on the event loop


def slices(batch: Batch) -> list[Batch]:
    """A large commit in slices of about SLICE records, cut where no violation's enforcements
    or lockout would be parted from it (riskterm.alerts.messages pairs them in one slice)."""
    if len(batch) <= SLICE:
        return [batch]
    out, start = [], 0
    while start < len(batch):
        end = min(start + SLICE, len(batch))
        while end < len(batch) and batch[end][0].get("kind") in ("enforcement", "lockout"):
            end += 1
        out.append(batch[start:end])
        start = end
    return out


def start_alerts(host: Any) -> AlertDispatcher:
    """The dispatcher of an EngineHost: fed by its sinks, failures written through its engine."""

    def warn(account: str, message: str, value: int) -> None:
        host.engine.emit_warning("alert_failed", account, None, message, value, None)

    dispatcher = AlertDispatcher(host.config.alerts, warn)
    host.recorder.sinks.append(dispatcher.sink)
    if host.sinks is not host.recorder.sinks:  # the job pool reports to the host's sinks
        host.sinks.append(dispatcher.sink)
    dispatcher.start()
    return dispatcher
