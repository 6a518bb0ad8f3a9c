"""What the job screens need from the job pool, behind one small interface.

The screens speak the contract's shapes (CONTRACT §3): `list_jobs()` gives the objects of
`riskterm jobs list --json`, `show_job()` the object of `riskterm jobs show ID --json`. Errors come
back as `JobError` with a sentence a person understands.
"""

from __future__ import annotations

from typing import Any, Protocol

ACTIVE = frozenset({"queued", "running", "cancelling"})
CANCELLABLE = frozenset({"queued", "running"})
RETRYABLE = frozenset({"failed", "cancelled", "timeout", "interrupted"})
FINAL = frozenset({"completed", "failed", "cancelled", "timeout", "interrupted"})


class JobError(Exception):
    """A job command that cannot be carried out; the message says why."""


class JobSource(Protocol):
    available: bool

    async def list_jobs(self, limit: int = 200) -> list[dict[str, Any]]: ...

    async def show_job(self, job_id: str) -> dict[str, Any] | None: ...

    async def enqueue(self, account: str, instructions: str | None = None) -> tuple[str, bool]: ...

    async def cancel(self, job_id: str) -> None: ...

    async def retry(self, job_id: str) -> None: ...

    async def approve(self, job_id: str) -> str: ...

    def metrics(self) -> tuple[int, int] | None:
        """(queued, running), or None when there is no pool."""
        ...


class NoJobSource:
    """When the host runs without a job pool: the screens say so instead of failing."""

    available = False
    REASON = "the job pool is not running"

    async def list_jobs(self, limit: int = 200) -> list[dict[str, Any]]:
        return []

    async def show_job(self, job_id: str) -> dict[str, Any] | None:
        return None

    async def enqueue(self, account: str, instructions: str | None = None) -> tuple[str, bool]:
        raise JobError(self.REASON)

    async def cancel(self, job_id: str) -> None:
        raise JobError(self.REASON)

    async def retry(self, job_id: str) -> None:
        raise JobError(self.REASON)

    async def approve(self, job_id: str) -> str:
        raise JobError(self.REASON)

    def metrics(self) -> tuple[int, int] | None:
        return None


def job_source_for(pool: Any) -> JobSource:
    """The source for the host's pool (None: no pool)."""
    if pool is None:
        return NoJobSource()
    return PoolJobSource(pool)


class PoolJobSource:
    """Adapter over riskterm.jobs.pool.JobPool."""

    available = True

    def __init__(self, pool: Any) -> None:
        self.pool = pool

    async def list_jobs(self, limit: int = 200) -> list[dict[str, Any]]:
        raise NotImplementedError

    async def show_job(self, job_id: str) -> dict[str, Any] | None:
        raise NotImplementedError

    async def enqueue(self, account: str, instructions: str | None = None) -> tuple[str, bool]:
        try:
            job_id, duplicate = self.pool.enqueue_nowait(
                account, kind="smart_risk", instructions=instructions, origin="dashboard")
        except (ValueError, LookupError) as exc:
            raise JobError(str(exc)) from exc
        return str(job_id), bool(duplicate)

    async def cancel(self, job_id: str) -> None:
        try:
            await self.pool.cancel(job_id)
        except (ValueError, LookupError) as exc:
            raise JobError(str(exc)) from exc

    async def retry(self, job_id: str) -> None:
        raise NotImplementedError

    async def approve(self, job_id: str) -> str:
        raise NotImplementedError

    def metrics(self) -> tuple[int, int] | None:
        m = self.pool.metrics()
        return int(m.get("queued", 0)), int(m.get("running", 0))
