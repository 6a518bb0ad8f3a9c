"""What a job handler gets: its job, progress and timeline, and cooperative cancellation."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from riskterm.jobs.errors import JobCancelled
from riskterm.jobs.model import Job

if TYPE_CHECKING:
    from riskterm.jobs.pool import JobPool


class JobContext:
    def __init__(self, pool: JobPool, job: Job) -> None:
        self.pool = pool
        self.job = job
        self.cancel_event = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    @property
    def config(self) -> Any:
        return self.pool.config

    @property
    def engine(self) -> Any:
        return self.pool.engine

    def now(self) -> float:
        return self.pool.clock()

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_event.is_set()

    def check_cancel(self) -> None:
        if self.cancel_event.is_set():
            raise JobCancelled(f"job {self.job.id} was cancelled")

    async def sleep(self, seconds: float) -> None:
        """Wait, but wake at once (raising JobCancelled) when the job is cancelled."""
        if seconds > 0 and not self.cancel_event.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.cancel_event.wait(), seconds)
        self.check_cancel()

    def progress(self, value: float, step: str | None, detail: str = "") -> None:
        self.job.progress = max(0.0, min(1.0, value))
        self.job.step = step
        self.pool.store.save(self.job)
        if detail or step:
            self.event("step", f"{step}: {detail}" if detail else str(step))

    def event(self, type_: str, detail: str) -> None:
        self.pool.store.event(self.job.id, type_, detail)

    def save(self) -> None:
        """Persist the job row (graph_state and the other fields) in the next group commit."""
        self.pool.store.save(self.job)
