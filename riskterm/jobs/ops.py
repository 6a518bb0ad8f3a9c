"""Job operations done in the database (recovery, cancel, retry, approve, cross-process
requests). Each runs inside a write transaction that its caller opened."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import aiosqlite

from riskterm.jobs import guardrails
from riskterm.jobs.actions import RECOMMENDED, describe, execute_entry
from riskterm.jobs.errors import JobError
from riskterm.jobs.kinds import get_kind
from riskterm.jobs.model import (
    ACTIVE,
    CANCELLED,
    CANCELLING,
    FINAL,
    INTERRUPTED,
    QUEUED,
    RETRYABLE,
    Job,
)
from riskterm.jobs.store import (
    Txn,
    active_job_for,
    live_owners,
    load_job,
    load_jobs,
    save_job,
)
from riskterm.strictjson import strict_dumps
from riskterm.timefmt import iso

if TYPE_CHECKING:
    from riskterm.jobs.pool import JobPool


async def recover(conn: aiosqlite.Connection, txn: Txn, alive: set[str], now: float,
                  retry_interrupted: bool) -> None:
    """Jobs of pools that died: running -> interrupted (re-queued once when allowed),
    cancelling -> cancelled, queued -> released for any pool."""
    async with conn.execute("SELECT owner FROM job_owners") as cur:
        for (owner,) in await cur.fetchall():
            if owner not in alive:
                await conn.execute("DELETE FROM job_owners WHERE owner = ?", (owner,))
    for job in await load_jobs(conn, "status IN (?, ?)", ("running", CANCELLING)):
        if job.owner in alive:
            continue
        gone = f"the process running it ({job.owner}) stopped before it finished"
        if job.status == CANCELLING:
            job.status, job.error = CANCELLED, f"cancelled; {gone}"
        else:
            job.status, job.error, job.recover = INTERRUPTED, f"interrupted: {gone}", 1
        job.finished_at, job.owner = now, None
        await save_job(conn, job)
        txn.transition(job, now, job.error)
    for job in await load_jobs(conn, "status = ? AND owner IS NOT NULL", (QUEUED,)):
        if job.owner not in alive:
            await conn.execute("UPDATE jobs SET owner = NULL WHERE id = ?", (job.id,))
            txn.events.append((job.id, iso(now), "owner", f"released: {job.owner} is gone"))
    for job in await load_jobs(conn, "status = ? AND recover = 1", (INTERRUPTED,)):
        job.recover = 0
        spec = get_kind(job.kind)
        other = (await active_job_for(conn, job.kind, job.account, exclude=job.id)
                 if spec is not None and spec.dedup else None)
        if retry_interrupted and job.requeues == 0 and spec is not None and other is None:
            job.requeues += 1
            job.attempts += 1
            job.reset_for_attempt()
            job.status, job.owner, job.finished_at = QUEUED, None, None
            await save_job(conn, job)
            txn.transition(job, now, "queued again after the interruption (once)")
        else:
            why = ("retry_interrupted is off" if not retry_interrupted else
                   "it was already queued again once" if job.requeues else
                   f"job {other} is already queued for {job.account}" if other else
                   f"unknown job kind {job.kind}")
            await save_job(conn, job)
            txn.events.append((job.id, iso(now), "recover", f"not queued again: {why}"))


async def cancel_in_db(conn: aiosqlite.Connection, txn: Txn, job_id: str, now: float,
                       stale_after: float, *, by: str, me: str | None = None) -> str:
    """Cancel a job no pool in this process holds: directly when its owner is gone, else by a
    request to the owning pool. Returns the (new or requested) status."""
    job = await load_job(conn, job_id)
    if job is None:
        raise JobError(f"unknown job id {job_id}")
    if job.status in FINAL:
        raise JobError(f"job {job_id} is already {job.status}; only queued or running jobs "
                       "can be cancelled")
    alive = await live_owners(conn, time.time(), stale_after)
    if job.owner is not None and job.owner in alive and job.owner != me:
        async with conn.execute("SELECT 1 FROM job_requests WHERE job_id = ? AND action = "
                                "'cancel' AND done = 0", (job_id,)) as cur:
            if await cur.fetchone() is None:
                await conn.execute("INSERT INTO job_requests (job_id, action, created_at) "
                                   "VALUES (?, 'cancel', ?)", (job_id, time.time()))
        txn.events.append((job_id, iso(now), "cancel", f"cancel requested by {by}"))
        return CANCELLING
    was = job.status
    job.status, job.finished_at = CANCELLED, now
    job.error = f"cancelled by {by}" + ("" if was == QUEUED else f" (its owner {job.owner} "
                                                                 "is gone)")
    await save_job(conn, job)
    txn.transition(job, now, job.error)
    return CANCELLED


async def retry_in_db(conn: aiosqlite.Connection, txn: Txn, job_id: str, now: float,
                      owner: str | None, *, by: str) -> Job:
    """failed/cancelled/timeout/interrupted -> queued under the same id, attempts + 1."""
    job = await load_job(conn, job_id)
    if job is None:
        raise JobError(f"unknown job id {job_id}")
    if job.status not in RETRYABLE:
        raise JobError(f"job {job_id} is {job.status}; only failed, cancelled, timeout or "
                       "interrupted jobs can be retried")
    spec = get_kind(job.kind)
    if spec is None:
        raise JobError(f"unknown job kind {job.kind!r}")
    if spec.dedup and (other := await active_job_for(conn, job.kind, job.account,
                                                     exclude=job.id)):
        raise JobError(f"job {other} is already queued or running for {job.account}")
    job.attempts += 1
    job.reset_for_attempt()
    job.status, job.owner, job.recover = QUEUED, owner, 0
    await save_job(conn, job)
    txn.transition(job, now, f"retry requested by {by}")
    return job


async def approve(pool: JobPool, job_id: str) -> list[dict[str, Any]]:
    """Run a finished job's recommended actions (re-checked by the guardrails on the account
    as it is now) through the engine; returns the enforcement records."""
    engine = pool.engine
    assert engine is not None and pool.conn is not None
    await pool.store.flush()
    job = await load_job(pool.conn, job_id)
    if job is None:
        raise JobError(f"unknown job id {job_id}")
    if job.status in ACTIVE:
        raise JobError(f"job {job_id} is {job.status}; approve it when it has finished")
    pending = [e for e in job.actions_log if e.get("result") == RECOMMENDED]
    if not pending:
        raise JobError(f"job {job_id} has no recommended actions awaiting approval")
    snapshot = engine.account_snapshot(job.account)
    if snapshot is None:
        raise JobError(f"account {job.account} is not known to the engine")
    records: list[dict[str, Any]] = []
    done: list[dict[str, Any]] = []
    executed = 0
    seen = (job.graph_state or {}).get("snapshot") or job.snapshot  # what the job proposed on
    for entry in pending:
        why = guardrails.check(entry["action"], entry["arguments"], snapshot,
                               pool.config.allow, engine.known_accounts(), done,
                               seen if isinstance(seen, dict) else None)
        if why is not None:
            entry["result"] = f"rejected at approval: {why}"
            continue
        recs, ok = await execute_entry(engine, job.account, job.id, entry)
        records += recs
        done.append(entry)
        executed += int(ok)
    job.actions_taken += executed
    detail = "; ".join(f"{describe(e)}: {e['result']}" for e in pending)

    async def body(conn: aiosqlite.Connection, txn: Txn) -> None:
        await conn.execute("UPDATE jobs SET actions_log = ?, actions_taken = ? WHERE id = ?",
                           (strict_dumps(job.actions_log), job.actions_taken, job.id))
        txn.events.append((job.id, iso(pool.clock()), "approve",
                           f"approved: {executed} executed; {detail}"))

    await pool.store.transact(body)
    return records


async def handle_requests(pool: JobPool) -> None:
    """Serve cancel/approve requests written by other processes (riskterm jobs ...)."""
    async with pool.read_conn.execute(
        "SELECT r.id, r.job_id, r.action, j.owner FROM job_requests r "
        "LEFT JOIN jobs j ON j.id = r.job_id WHERE r.done = 0 ORDER BY r.id"
    ) as cur:
        rows = await cur.fetchall()
    for rid, job_id, action, owner in rows:
        if action == "cancel":
            if owner != pool.owner:
                continue
            job = pool._jobs.get(job_id)
            result = pool._cancel_local(job) if job is not None else "finished"
            await pool.store.flush()
            await _answer(pool, rid, {"status": result})
        elif action == "approve" and pool.engine is not None:
            if not await _claim_request(pool, rid):
                continue
            try:
                answer: dict[str, Any] = {"records": await pool.approve(job_id)}
            except JobError as exc:
                answer = {"error": str(exc)}
            await _answer(pool, rid, answer)


async def _claim_request(pool: JobPool, rid: int) -> bool:
    async def body(conn: aiosqlite.Connection, txn: Txn) -> bool:
        cur = await conn.execute("UPDATE job_requests SET done = 2 WHERE id = ? AND done = 0",
                                 (rid,))
        return cur.rowcount == 1

    return await pool.store.transact(body)


async def _answer(pool: JobPool, rid: int, result: dict[str, Any]) -> None:
    async def body(conn: aiosqlite.Connection, txn: Txn) -> None:
        await conn.execute("UPDATE job_requests SET done = 1, result = ? WHERE id = ?",
                           (strict_dumps(result, default=str), rid))

    await pool.store.transact(body)
