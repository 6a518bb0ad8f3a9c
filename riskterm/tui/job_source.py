"""What the job screens need from the job pool, behind one small interface.

The screens speak the contract's shapes (CONTRACT §3): `list_jobs()` gives the objects of
`riskterm jobs list --json`, `show_job()` the object of `riskterm jobs show ID --json`. Errors come
back as `JobError` with a sentence a person understands.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Protocol

import aiosqlite

from riskterm.timefmt import iso

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


def job_source_for(pool: Any, reader: Any) -> JobSource:
    """The source for the host's pool (None: no pool); reads go through `reader`."""
    if pool is None or reader is None:
        return NoJobSource()
    return PoolJobSource(pool, reader)


# the columns of `jobs list --json` (CONTRACT §3), plus attempts, read without the big JSON ones
_LIST_SQL = ("SELECT id, kind, account, status, priority, progress, step, created_at, duration_s,"
             " attempts FROM jobs ORDER BY rowid DESC LIMIT ?")


class PoolJobSource:
    """Adapter over riskterm.jobs.pool.JobPool: commands go to the pool, reads to the database
    through the dashboard's read-only connection (so a read never sees a half-written batch)."""

    available = True

    def __init__(self, pool: Any, reader: aiosqlite.Connection) -> None:
        self.pool = pool
        self.reader = reader

    async def list_jobs(self, limit: int = 200) -> list[dict[str, Any]]:
        async with self.reader.execute(_LIST_SQL, (limit,)) as cur:
            rows = await cur.fetchall()
        return [
            {"id": jid, "kind": kind, "account": account, "status": status,
             "priority": priority, "progress": round(progress or 0.0, 4), "step": step,
             "created_at": iso(created) if created is not None else None,
             "duration_s": duration, "attempts": attempts}
            for jid, kind, account, status, priority, progress, step, created, duration, attempts
            in rows
        ]

    async def show_job(self, job_id: str) -> dict[str, Any] | None:
        from riskterm.jobs.model import job_detail
        from riskterm.jobs.store import load_events, load_job

        job = await load_job(self.reader, job_id)
        if job is None:
            return None
        return job_detail(job, await load_events(self.reader, job_id))

    async def enqueue(self, account: str, instructions: str | None = None) -> tuple[str, bool]:
        with _job_errors():
            job_id, duplicate = await self.pool.enqueue(
                account, kind="smart_risk", instructions=instructions, origin="dashboard")
        return str(job_id), bool(duplicate)

    async def cancel(self, job_id: str) -> None:
        with _job_errors():
            await self.pool.cancel(job_id)

    async def retry(self, job_id: str) -> None:
        with _job_errors():
            await self.pool.retry(job_id)

    async def approve(self, job_id: str) -> str:
        """Approve, and say what was sent and what the guardrails refused, with why; nothing
        sent at all is a JobError naming each refusal."""
        pending = [i for i, e in enumerate(await self._actions_log(job_id))
                   if e.get("result") == "recommended"]
        with _job_errors():
            records = await self.pool.approve(job_id)
        log = await self._actions_log(job_id)
        refused = [f"{_described(log[i])}: {str(log[i]['result']).removeprefix(REFUSED)}"
                   for i in pending
                   if i < len(log) and str(log[i].get("result") or "").startswith(REFUSED)]
        why = f"; refused: {'; '.join(refused)}" if refused else ""
        if not records:
            raise JobError(f"no recommended action could be executed{why or '.'}")
        done = "; ".join(f"{r.get('action')} {r.get('status')}" for r in records)
        return (f"Job {job_id}: {len(records)} action{'s' if len(records) != 1 else ''} sent: "
                f"{done}{why}")

    async def _actions_log(self, job_id: str) -> list[dict[str, Any]]:
        """The job's actions log as stored ([] when it cannot be read: the approval itself
        still goes ahead, its message then names no refusal)."""
        try:
            job = await self.show_job(job_id)
        except (sqlite3.Error, ValueError):
            return []
        return list((job or {}).get("actions_log") or [])

    def metrics(self) -> tuple[int, int] | None:
        m = self.pool.metrics()
        return int(m.get("queue_depth", 0)), int(m.get("running", 0))


REFUSED = "rejected at approval: "  # riskterm.jobs.ops.approve marks a refused entry so


def _described(entry: dict[str, Any]) -> str:
    """An actions-log entry in a few words: "reduce_position CL"."""
    args = entry.get("arguments")
    symbol = args.get("symbol") if isinstance(args, dict) else None
    return f"{entry.get('action')}" + (f" {symbol}" if symbol else "")


@contextmanager
def _job_errors() -> Iterator[None]:
    """The pool's refusals (its JobError, its storage errors) as this module's JobError."""
    from riskterm.jobs.errors import JobError as PoolJobError
    from riskterm.jobs.store import StorageError

    try:
        yield
    except (PoolJobError, StorageError) as exc:
        raise JobError(str(exc)) from exc
