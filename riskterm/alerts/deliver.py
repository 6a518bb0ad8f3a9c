"""Delivery attempts through apprise, in daemon threads of the target's own.

apprise's notify blocks on the network, so it never runs on the event loop. The threads are
started with the target (before the engine takes events: starting a thread waits for it to
run, a pause the loop should not take per message) and are daemons, so a receiver that never
answers cannot hold the process at exit, as a thread of asyncio's default executor would. A
thread still waiting on such a receiver is not waited for: the next message gets another
thread (each makes its own apprise object; they are not shared between threads).
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any

from riskterm.alerts.config import AlertTarget
from riskterm.alerts.messages import Alert

Job = tuple[Alert, asyncio.AbstractEventLoop, "asyncio.Future[tuple[bool, str]]"] | None


def _settle(future: asyncio.Future[tuple[bool, str]], outcome: tuple[bool, str]) -> None:
    if not future.done():
        future.set_result(outcome)


class Sender:
    """Sends one target's messages, one attempt per call, given up after its timeout."""

    def __init__(self, target: AlertTarget) -> None:
        self.target = target
        self._jobs: queue.SimpleQueue[Job] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for a job
        self._lock = threading.Lock()
        self._threads = 0
        self._spawn()

    def _spawn(self) -> None:
        with self._lock:
            self._threads += 1
            self._idle += 1
        threading.Thread(target=self._serve, name=f"riskterm-alert-{self._threads}",
                         daemon=True).start()

    def _make(self) -> Any:
        import apprise

        obj = apprise.Apprise()
        if not obj.add(self.target.url):  # checked at load: only a changed apprise says no
            raise ValueError(f"apprise cannot use the URL of {self.target.label}")
        return obj

    def _serve(self) -> None:
        obj: Any = None
        while True:
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            if job is None:
                return
            alert, loop, future = job
            try:
                obj = obj or self._make()
                outcome = self._notify(obj, alert)
            except Exception as exc:  # apprise or a plugin raised: a failed attempt
                outcome = (False, self.target.redact(f"{type(exc).__name__}: {exc}"))
            with self._lock:
                self._idle += 1
            try:
                loop.call_soon_threadsafe(_settle, future, outcome)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _notify(self, obj: Any, alert: Alert) -> tuple[bool, str]:
        result: Any = obj.notify(body=alert.body, title=alert.title, notify_type=alert.level)
        if result:
            return True, ""
        logs = getattr(result, "logs", None)
        said = [e.message for e in logs() if e.level in ("WARNING", "ERROR")] if logs else []
        return False, self.target.redact("; ".join(said) or "the service did not take it")

    async def send(self, alert: Alert) -> tuple[bool, str]:
        """(delivered, why not) of one attempt."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[bool, str]] = loop.create_future()
        with self._lock:
            stuck = self._idle == 0  # every thread still waits on an earlier attempt
        if stuck:
            self._spawn()
        self._jobs.put((alert, loop, future))
        timeout = self.target.spec.timeout
        try:
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return False, f"no answer within {timeout:g} s"

    def close(self) -> None:
        """Let the threads end (one still waiting on a receiver ends when apprise gives up)."""
        for _ in range(self._threads):
            self._jobs.put(None)
