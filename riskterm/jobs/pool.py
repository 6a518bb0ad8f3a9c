"""The durable background job pool: asyncio workers over jobs persisted in SQLite.

- Priorities (lower first), FIFO within a priority; `workers` concurrent jobs.
- Every status change is a `job` record plus a job_events row, written by group commit
  (store.JobStore) and reported only after its commit. A job starts only after its enqueue is
  committed, so a job that ran always exists in the database.
- Ownership: each pool registers in job_owners (owner id, pid, heartbeat). Jobs it enqueues are
  its own; jobs queued by other processes (the CLI) have no owner and are claimed by the poller.
- Recovery: at start, jobs left running by a dead owner become interrupted and, with
  retry_interrupted, are queued again once; queued jobs of a dead owner are released.
- stop() marks running jobs interrupted (a restart re-queues them) and releases queued ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import secrets
import sqlite3
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiosqlite

from riskterm.db import open_db, open_reader
from riskterm.jobs import ops
from riskterm.jobs.context import JobContext
from riskterm.jobs.engine_view import EngineView
from riskterm.jobs.errors import JobCancelled, JobError, PermanentError, TransientError
from riskterm.jobs.kinds import get_kind
from riskterm.jobs.model import (
    CANCELLED,
    CANCELLING,
    COMPLETED,
    FAILED,
    INTERRUPTED,
    MAX_ATTEMPTS,
    QUEUED,
    RUNNING,
    SELECT_SQL,
    TIMEOUT,
    Job,
    job_from_row,
)
from riskterm.jobs.store import (
    HOST,
    INSERT_EVENT,
    JobStore,
    Ops,
    Txn,
    live_owners,
    new_block,
    purge_finished,
)
from riskterm.timefmt import iso

if TYPE_CHECKING:
    from riskterm.config import SmartRiskConfig

POLL_INTERVAL = 0.25  # seconds: work and cancels from other processes are seen this fast
HEARTBEAT_INTERVAL = 1.0
STALE_AFTER = 10.0  # a pool whose heartbeat is older than this is dead
CANCEL_GRACE = 2.0  # a running job that has not stopped at its next step is cancelled hard
BACKOFF_BASE = 0.5  # first retry after 0.5-0.75 s, then 1-1.5 s
BACKOFF_MAX = 30.0
CLEANUP_INTERVAL = 3600.0
UNCLAIMED_SQL = "SELECT 1 FROM jobs WHERE status = 'queued' AND owner IS NULL LIMIT 1"


class JobPool:
    def __init__(self, db_path: str | Path, config: SmartRiskConfig, engine: EngineView | None,
                 *, on_record: Callable[[dict], None] = lambda r: None,
                 owner: str | None = None, clock: Callable[[], float] | None = None,
                 poll_interval: float = POLL_INTERVAL, stale_after: float = STALE_AFTER,
                 backoff_base: float = BACKOFF_BASE, cancel_grace: float = CANCEL_GRACE,
                 commit_window: float = 0.002, http_transport: Any = None,
                 conn: aiosqlite.Connection | None = None,
                 attach: Callable[[JobStore], None] | None = None) -> None:
        """With `conn` and `attach` (an engine host), the pool shares the engine's connection
        and `attach` hands its store to the engine's recorder, which commits the pool's changes
        in its own transactions (see jobs.store.JobStore); without them it opens its own."""
        self.db_path = Path(db_path)
        self._shared_conn = conn
        self._attach = attach
        self.config = config
        self.engine = engine
        self.on_record = on_record
        self.owner = owner or f"{HOST}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock: Callable[[], float] = clock or time.time
        self.poll_interval = poll_interval
        self.stale_after = stale_after
        self.backoff_base = backoff_base
        self.cancel_grace = cancel_grace
        self.commit_window = commit_window
        self.http_transport = http_transport  # for the openai planner (tests inject one)
        self.conn: aiosqlite.Connection | None = None
        self.read_conn: aiosqlite.Connection = None  # type: ignore[assignment]  # start()
        self.store: JobStore = None  # type: ignore[assignment]  # set by start()
        self.block = 0
        self._counter = 0
        self._seq = 0
        self._jobs: dict[str, Job] = {}  # active jobs (queued, running, cancelling)
        self._dedup: dict[tuple[str, str], str] = {}  # (kind, account) -> job id
        self._queued: set[str] = set()
        self._ctx: dict[str, JobContext] = {}  # running jobs
        self._delayed: dict[str, asyncio.TimerHandle] = {}
        self._dup_of: dict[str, str] = {}
        self._queue: asyncio.PriorityQueue[tuple[int, int, str]] = asyncio.PriorityQueue()
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop_event = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._workers: list[asyncio.Task[Any]] = []
        self._want_workers = 0
        self._busy: set[int] = set()  # indexes of the workers running a job
        self._approve_lock = asyncio.Lock()
        self._started = False
        self._stopping = False
        self._ran: set[str] = set()
        self._counts = {COMPLETED: 0, FAILED: 0, CANCELLED: 0, TIMEOUT: 0, INTERRUPTED: 0}
        self._durations: deque[float] = deque(maxlen=2000)
        self._next_due: float | None = None
        self._next_cleanup = 0.0
        self._rng = random.Random()
        self.start_latencies: list[float] | None = None  # set to a list to measure (bench)
        self._t_enqueue: dict[str, float] = {}

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        self.conn = self._shared_conn or await open_db(self.db_path)
        # the poller looks for work on a connection of its own: on the writer's connection
        # each look would wait behind the group commit in progress (a tenth of a second
        # during a fast replay), and the contract allows a second from enqueue to pickup
        try:
            self.read_conn = await open_reader(self.db_path)
        except (OSError, sqlite3.Error):
            self.read_conn = self.conn
        self.store = JobStore(self.conn, self.clock, self.on_record, window=self.commit_window,
                              on_duplicate=self._on_duplicate)
        if self._attach is not None:
            self._attach(self.store)
        wall = time.time()

        async def register(conn: aiosqlite.Connection, txn: Txn) -> int:
            block = await new_block(conn, self.owner, wall, keep=True)
            alive = await live_owners(conn, wall, self.stale_after) | {self.owner}
            await ops.recover(conn, txn, alive, self.clock(),
                              bool(self.config.retry_interrupted))
            return block

        self.block = await self.store.transact(register)
        self.store.start()
        self._started = True
        await self.cleanup()
        self._next_cleanup = time.time() + CLEANUP_INTERVAL
        await self._claim()
        self._resize_workers(max(1, int(self.config.workers)))
        self._tasks.append(asyncio.create_task(self._poller(), name="jobs-poller"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="jobs-heartbeat"))

    async def stop(self) -> None:
        """Stop gracefully: running jobs become interrupted (re-queued by the next start), queued
        ones are released for any pool, everything is committed and the connection closed."""
        if not self._started:
            return
        self._stopping = True
        self._stop_event.set()  # the poller and heartbeat finish what they are doing
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for ctx in list(self._ctx.values()):
            if ctx.task is not None:
                ctx.task.cancel()
        deadline = time.monotonic() + self.cancel_grace + 1.0
        while self._ctx and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        for ctx in list(self._ctx.values()):  # handlers that ignore cancellation
            self._finish(ctx.job, INTERRUPTED, "the job pool stopped while the job ran")
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._workers.clear()
        for handle in self._delayed.values():
            handle.cancel()
        for job in list(self._jobs.values()):  # queued: release for the next pool
            job.owner = None
            self.store.save(job)
            self.store.event(job.id, "owner", f"released by {self.owner} at shutdown")
        self.store.statement("DELETE FROM job_owners WHERE block = ?", (self.block,))
        await self.store.close()
        assert self.conn is not None
        if self.read_conn is not self.conn:
            await self.read_conn.close()
        if self._shared_conn is None:  # a shared connection is its owner's to close
            await self.conn.close()
        self._started = False

    def set_config(self, config: SmartRiskConfig) -> None:
        """Apply a reloaded smart_risk block (SIGHUP, ctrl+r). Jobs that start from now on run
        with it (`execute: false` makes their actions recommendations), as do the timeout of
        the next job, the retention of the next cleanup and `workers`; a changed `every`
        starts its schedule again from now."""
        old, self.config = self.config, config
        if config.every != old.every:
            self._next_due = None
        if self._started and not self._stopping:
            self._resize_workers(max(1, int(config.workers)))

    def _resize_workers(self, count: int) -> None:
        """Run `count` workers: start missing ones; of those beyond it, idle ones stop now and
        busy ones after their job."""
        self._want_workers = count
        for i in range(count):
            if i >= len(self._workers):
                self._workers.append(self._new_worker(i))
            elif self._workers[i].done():
                self._workers[i] = self._new_worker(i)
        for i in range(count, len(self._workers)):
            if i not in self._busy:
                self._workers[i].cancel()

    def _new_worker(self, index: int) -> asyncio.Task[Any]:
        return asyncio.create_task(self._worker(index), name=f"jobs-worker-{index}")

    # -- enqueue -------------------------------------------------------------------------------

    def enqueue_nowait(self, account: str, *, kind: str = "smart_risk",
                       instructions: str | None = None, origin: str = "rule") -> tuple[str, bool]:
        """Queue a job now (committed in the next group commit); returns (job_id, duplicate)."""
        if not self._started or self._stopping:
            raise JobError("the job pool is not running")
        spec = get_kind(kind)
        if spec is None:
            raise JobError(f"unknown job kind {kind!r}")
        if spec.dedup and (existing := self._dedup.get((kind, account))) is not None:
            return existing, True
        self._counter += 1
        job = Job(id=f"j{self.block}-{self._counter}", kind=kind, account=account,
                  priority=spec.priority, origin=origin, owner=self.owner,
                  created_at=self.clock(), user_instructions=instructions)
        if spec.snapshot and self.engine is not None and self.engine.is_replay:
            job.snapshot = self.engine.account_snapshot(account)
        if self.start_latencies is not None:
            self._t_enqueue[job.id] = time.perf_counter()
        self._add(job)
        self.store.save(job, new_dedup=spec.dedup)
        self.store.transition(job, f"enqueued by {origin}")
        self.store.after_commit(lambda: self._push(job))
        return job.id, False

    async def enqueue(self, account: str, *, kind: str = "smart_risk",
                      instructions: str | None = None, origin: str = "rule") -> tuple[str, bool]:
        """Like enqueue_nowait, but returns once the job is committed."""
        job_id, dup = self.enqueue_nowait(account, kind=kind, instructions=instructions,
                                          origin=origin)
        await self.store.flush()
        if job_id in self._dup_of:  # another process queued one for this account first
            return self._dup_of.pop(job_id), True
        return job_id, dup

    def _add(self, job: Job) -> None:
        self._jobs[job.id] = job
        self._queued.add(job.id)
        spec = get_kind(job.kind)
        if spec is not None and spec.dedup:
            self._dedup[(job.kind, job.account)] = job.id
        self._idle.clear()

    def _forget(self, job: Job) -> None:
        self._jobs.pop(job.id, None)
        self._queued.discard(job.id)
        self._ctx.pop(job.id, None)
        key = (job.kind, job.account)
        if self._dedup.get(key) == job.id:
            del self._dedup[key]
        if (handle := self._delayed.pop(job.id, None)) is not None:
            handle.cancel()
        if not self._jobs:
            self._idle.set()

    def _on_duplicate(self, job: Job, other: str) -> None:
        self._dup_of[job.id] = other
        self._counts[CANCELLED] += 1
        self._forget(job)

    def _push(self, job: Job) -> None:
        self._delayed.pop(job.id, None)
        if job.status != QUEUED or self._jobs.get(job.id) is not job or self._stopping:
            return
        wait = (job.not_before or 0.0) - time.time()
        if wait > 0:
            handle = asyncio.get_running_loop().call_later(wait, self._push, job)
            self._delayed[job.id] = handle
            return
        self._seq += 1
        self._queue.put_nowait((job.priority, self._seq, job.id))

    # -- running -------------------------------------------------------------------------------

    async def _worker(self, index: int) -> None:
        while not self._stopping and index < self._want_workers:
            _, _, job_id = await self._queue.get()
            if self._stopping:
                return
            job = self._jobs.get(job_id)
            if job is None or job.status != QUEUED or job_id in self._delayed:
                continue
            self._busy.add(index)
            try:
                await self._run(job)
            finally:
                self._busy.discard(index)

    async def _run(self, job: Job) -> None:
        spec = get_kind(job.kind)
        self._queued.discard(job.id)
        if spec is None:
            self._finish(job, FAILED, f"unknown job kind {job.kind!r}")
            return
        if self.start_latencies is not None and (t := self._t_enqueue.pop(job.id, None)):
            self.start_latencies.append(time.perf_counter() - t)
        job.status, job.started_at = RUNNING, self.clock()
        job.owner, job.heartbeat_at = self.owner, time.time()
        self.store.transition(job, f"attempt {job.attempts} started by {self.owner}")
        self._ran.add(job.id)
        ctx = JobContext(self, job)
        self._ctx[job.id] = ctx
        t0 = time.monotonic()
        task = asyncio.create_task(spec.handler(ctx), name=f"job-{job.id}")
        ctx.task = task
        done, _ = await asyncio.wait((task,), timeout=float(self.config.timeout_seconds))
        timed_out = not done
        if timed_out:
            task.cancel()
            await asyncio.wait((task,), timeout=1.0)
        job.duration_s = round(time.monotonic() - t0, 3)
        if self._jobs.get(job.id) is not job:  # already finished (stop gave up waiting)
            return
        exc: BaseException | None
        if not task.done():
            exc = TimeoutError()
        elif task.cancelled():
            exc = asyncio.CancelledError()
        else:
            exc = task.exception()
        self._conclude(job, ctx, exc, timed_out)

    def _conclude(self, job: Job, ctx: JobContext, exc: BaseException | None,
                  timed_out: bool) -> None:
        if self._stopping:
            self._finish(job, INTERRUPTED, "the job pool stopped while the job ran")
        elif ctx.cancel_requested or isinstance(exc, JobCancelled):
            self._finish(job, CANCELLED, "cancelled on request")
        elif timed_out:
            self._finish(job, TIMEOUT, f"timed out after {self.config.timeout_seconds:g} s")
        elif exc is None:
            self._finish(job, COMPLETED, None)
        elif isinstance(exc, TransientError):
            if job.attempts < MAX_ATTEMPTS:
                self._retry_later(job, exc)
            else:
                self._finish(job, FAILED, f"gave up after {job.attempts} attempts: {exc}")
        elif isinstance(exc, PermanentError):
            self._finish(job, FAILED, str(exc))
        elif isinstance(exc, asyncio.CancelledError):
            self._finish(job, CANCELLED, "the job's task was cancelled")
        else:
            self._finish(job, FAILED, f"internal error: {type(exc).__name__}: {exc}")

    def _finish(self, job: Job, status: str, error: str | None) -> None:
        job.status, job.error, job.finished_at = status, error, self.clock()
        if status == COMPLETED:
            job.progress = 1.0
        if status == INTERRUPTED:
            job.recover, job.owner = 1, None
        if job.duration_s is not None:
            self._durations.append(job.duration_s)
        self._counts[status] += 1
        self.store.transition(job, error or "done")
        self._forget(job)

    def _retry_later(self, job: Job, exc: TransientError) -> None:
        base = min(BACKOFF_MAX, self.backoff_base * 2 ** (job.attempts - 1))
        delay = base + self._rng.uniform(0, base / 2)
        delay = max(delay, min(BACKOFF_MAX, float(getattr(exc, "retry_after", 0) or 0)))
        self._ctx.pop(job.id, None)
        self.store.event(job.id, "retry", f"attempt {job.attempts} failed: {exc}; "
                         f"retrying in {delay:.2f} s")
        job.attempts += 1
        job.reset_for_attempt()
        job.status, job.not_before = QUEUED, time.time() + delay
        self._queued.add(job.id)
        self.store.transition(job, f"retry {job.attempts} of {MAX_ATTEMPTS} after backoff")
        self._push(job)

    # -- cancel, retry, approve ----------------------------------------------------------------

    async def cancel(self, job_id: str) -> str:
        """Cancel a queued job at once or a running one at its next step (hard after a grace
        period). Returns the new status; JobError for an unknown id or a finished job."""
        job = self._jobs.get(job_id)
        if job is not None:
            status = self._cancel_local(job)
            await self.store.flush()
            return status
        return await self.store.transact(
            lambda conn, txn: ops.cancel_in_db(conn, txn, job_id, self.clock(), self.stale_after,
                                               by="the dashboard", me=self.owner))

    def _cancel_local(self, job: Job) -> str:
        if job.status == QUEUED:
            self._finish(job, CANCELLED, "cancelled while queued")
            return CANCELLED
        if job.status == RUNNING:
            job.status = CANCELLING
            self.store.transition(job, "cancel requested; stopping at the next step")
            ctx = self._ctx.get(job.id)
            if ctx is not None:
                ctx.cancel_event.set()
                asyncio.get_running_loop().call_later(self.cancel_grace, self._hard_cancel, ctx)
        return job.status

    def _hard_cancel(self, ctx: JobContext) -> None:
        if ctx.task is not None and not ctx.task.done():
            self.store.event(ctx.job.id, "cancel", "did not stop at a step in time; cancelling it")
            ctx.task.cancel()

    async def retry(self, job_id: str) -> None:
        """failed/cancelled/timeout/interrupted -> queued, same id, attempts + 1."""
        if (job := self._jobs.get(job_id)) is not None:
            raise JobError(f"job {job_id} is {job.status}; only failed, cancelled, timeout or "
                           "interrupted jobs can be retried")
        job = await self.store.transact(
            lambda conn, txn: ops.retry_in_db(conn, txn, job_id, self.clock(), self.owner,
                                              by="the dashboard"))
        if job.snapshot is None:
            self._take_snapshot(job)
        self._add(job)
        self._push(job)

    async def approve(self, job_id: str) -> list[dict]:
        """Execute a finished job's recommended actions through the engine."""
        if (job := self._jobs.get(job_id)) is not None:
            raise JobError(f"job {job_id} is {job.status}; approve it when it has finished")
        if self.engine is None:
            raise JobError("no engine runs in this process, so nothing can be executed")
        async with self._approve_lock:
            return await ops.approve(self, job_id)

    # -- background work -----------------------------------------------------------------------

    def _take_snapshot(self, job: Job) -> None:
        spec = get_kind(job.kind)
        if spec and spec.snapshot and self.engine is not None and self.engine.is_replay:
            job.snapshot = self.engine.account_snapshot(job.account)

    async def _claim(self, *, checked: bool = False) -> None:
        """Take queued jobs that no pool owns (enqueued or retried by another process);
        `checked`: the caller has just seen that there are some."""
        if not checked:
            async with self.read_conn.execute(UNCLAIMED_SQL) as cur:
                if await cur.fetchone() is None:
                    return

        owner, stamp = self.owner, iso(self.clock())

        def claim() -> Ops[list[Job]]:  # runs on the database's thread: SQL only
            rows = yield ("all", f"{SELECT_SQL} WHERE status = 'queued' AND owner IS NULL "
                                 "ORDER BY priority, rowid", ())
            jobs = [job_from_row(row) for row in rows]
            if jobs:
                yield ("many", "UPDATE jobs SET owner = ? WHERE id = ?",
                       [(owner, job.id) for job in jobs])
                yield ("many", INSERT_EVENT,
                       [(job.id, stamp, "owner", f"claimed by {owner}") for job in jobs])
            return jobs

        if self.store.enqueues_pending:
            # commit them first: their check must see the jobs queued elsewhere before this
            # pool claims one for the same account (one active job per account)
            await self.store.flush()
        for job in await self.store.transact_ops(claim):
            job.owner = owner
            if job.snapshot is None:  # a re-queued job keeps the view it was enqueued with
                self._take_snapshot(job)
                if job.snapshot is not None:
                    self.store.save(job)  # stored with the next commit
            self._add(job)
            self._push(job)

    async def _pause(self, seconds: float) -> bool:
        """Sleep; False once the pool is stopping."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop_event.wait(), seconds)
        return not self._stop_event.is_set()

    async def _poller(self) -> None:
        while await self._pause(self.poll_interval):
            try:
                await self._poll_once()
            except (sqlite3.Error, OSError) as exc:
                print(f"riskterm: job pool poll failed: {exc}", file=sys.stderr, flush=True)

    async def _poll_once(self) -> None:
        # one read tells whether there is anything to do (every round trip to the database
        # waits for a turn of a loop that a fast replay keeps busy)
        async with self.read_conn.execute(
            "SELECT EXISTS (SELECT 1 FROM job_requests WHERE done = 0), "
            f"EXISTS ({UNCLAIMED_SQL})"
        ) as cur:
            requests, unclaimed = await cur.fetchone() or (0, 0)
        if requests:
            await ops.handle_requests(self)
        if unclaimed:
            await self._claim(checked=True)
        self._schedule()
        wall = time.time()
        if wall >= self._next_cleanup:
            self._next_cleanup = wall + CLEANUP_INTERVAL
            await self.cleanup()

    def _schedule(self) -> None:
        every = self.config.every
        if not every or self.engine is None:
            return
        now = self.engine.now()
        if self._next_due is None:
            self._next_due = now + every
        elif now >= self._next_due:
            self._next_due = now + every
            for account in self.engine.known_accounts():
                self.enqueue_nowait(account, origin="schedule")

    async def cleanup(self) -> int:
        """Delete finished jobs older than retention_days; returns how many."""
        cutoff = self.clock() - float(self.config.retention_days) * 86400
        return await self.store.transact(
            lambda conn, txn: purge_finished(conn, cutoff, time.time() - 86400))

    async def _heartbeat(self) -> None:
        while await self._pause(HEARTBEAT_INTERVAL):
            wall = time.time()
            self.store.statement("UPDATE job_owners SET heartbeat_at = ? WHERE block = ?",
                                 (wall, self.block))
            for ctx in self._ctx.values():
                ctx.job.heartbeat_at = wall
                self.store.save(ctx.job)

    # -- views ---------------------------------------------------------------------------------

    def metrics(self) -> dict:
        durations = sorted(self._durations)

        def pct(p: float) -> float | None:
            if not durations:
                return None
            return durations[min(len(durations) - 1, int(p * len(durations)))]

        return {
            "queue_depth": len(self._queued), "running": len(self._ctx),
            "completed": self._counts[COMPLETED], "failed": self._counts[FAILED],
            "cancelled": self._counts[CANCELLED], "timeout": self._counts[TIMEOUT],
            "interrupted": self._counts[INTERRUPTED],
            "p50_duration_s": pct(0.5), "p95_duration_s": pct(0.95),
        }

    def jobs_this_run(self) -> int:
        return len(self._ran)

    def active_jobs(self) -> list[Job]:
        return list(self._jobs.values())

    async def drain(self) -> None:
        """Wait until no queued or running jobs remain (each is bounded by its timeout)."""
        if not self._started:
            return
        while True:
            await self._claim()
            await self._idle.wait()
            await self.store.flush()
            if not self._jobs:
                return
