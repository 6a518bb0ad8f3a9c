"""Job persistence: group commit of job changes, and the SQL shared by the pool and the CLI.

Changes (job rows, job_events rows, `job` records) collect in memory for a few milliseconds and
are written in one transaction; records are reported (on_record) only after their commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import sqlite3
import sys
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiosqlite

from riskterm.db import patiently
from riskterm.jobs.model import (
    ACTIVE,
    CANCELLED,
    COLUMNS,
    FINAL,
    SELECT_SQL,
    UPSERT_SQL,
    Job,
    job_from_row,
    job_record,
    job_to_row,
)
from riskterm.strictjson import strict_dumps
from riskterm.timefmt import iso

T = TypeVar("T")
INSERT_RECORD = "INSERT INTO records (kind, ts, account, rule, body) VALUES (?, ?, ?, ?, ?)"
INSERT_EVENT = "INSERT INTO job_events (job_id, ts, type, detail) VALUES (?, ?, ?, ?)"
_ACTIVE_SQL = ", ".join(f"'{s}'" for s in ACTIVE)
_FINAL_SQL = ", ".join(f"'{s}'" for s in FINAL)
HOST = socket.gethostname()


class StorageError(Exception):
    """The job tables could not be written; the message says why."""


@dataclass
class Txn:
    """What a transaction body wants written with it (records are reported after commit)."""

    records: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)

    def transition(self, job: Job, ts: float, detail: str) -> None:
        rec = job_record(job, ts)
        self.records.append(rec)
        self.events.append((job.id, rec["ts"], "status", f"{job.status}: {detail}"))


@dataclass
class _Batch:
    rows: dict[str, tuple[Any, ...]] = field(default_factory=dict)
    jobs: dict[str, Job] = field(default_factory=dict)
    new_dedup: list[Job] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[str, str, str, str]] = field(default_factory=list)
    statements: list[tuple[str, tuple[Any, ...]]] = field(default_factory=list)
    after: list[Callable[[], None]] = field(default_factory=list)
    waiters: list[asyncio.Future[None]] = field(default_factory=list)

    def empty(self) -> bool:
        return not (self.jobs or self.records or self.events or self.statements or self.after)


def record_row(rec: dict[str, Any]) -> tuple[Any, ...]:
    return (rec["kind"], rec["ts"], rec.get("account"), rec.get("rule"), strict_dumps(rec))


async def write_txn_parts(conn: aiosqlite.Connection, txn: Txn) -> None:
    if txn.records:
        await conn.executemany(INSERT_RECORD, [record_row(r) for r in txn.records])
    if txn.events:
        await conn.executemany(INSERT_EVENT, txn.events)


@contextlib.asynccontextmanager
async def immediate(conn: aiosqlite.Connection) -> Any:
    try:  # BEGIN inside: if we are cancelled while it runs, it still runs in aiosqlite's thread
        await conn.execute("BEGIN IMMEDIATE")
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            await conn.execute("ROLLBACK")
        raise
    await conn.execute("COMMIT")


# A transaction's work as a sequence of operations, run by either driver below: on the
# connection's own thread in one hop (run_ops_sync: inside the recorder's transaction, or the
# store's own), or through aiosqlite's public API (run_ops_async). An op is ("many", sql, rows),
# ("one", sql, params) or ("all", sql, params); the generator is sent the fetched row(s).
# One hop matters while a fast replay runs: each round trip waits for a turn of a busy loop.
Op = tuple[str, str, Any]
# a job found to duplicate another's (job, what it becomes: cancelled, the other's id, record)
Dup = tuple[Job, Job, str, dict[str, Any]]
Ops = Generator[Op, Any, T]
ACTIVE_FOR_SQL = (f"SELECT id FROM jobs WHERE account = ? AND kind = ? AND status IN "
                  f"({_ACTIVE_SQL}) AND id != ? ORDER BY rowid LIMIT 1")


def run_ops_sync(db: sqlite3.Connection, ops: Ops[T]) -> T:
    result: Any = None
    try:
        while True:
            kind, sql, params = ops.send(result)
            if kind == "many":
                db.executemany(sql, params)
                result = None
            else:
                cur = db.execute(sql, params)
                result = cur.fetchone() if kind == "one" else cur.fetchall()
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


async def run_ops_async(conn: aiosqlite.Connection, ops: Ops[T]) -> T:
    result: Any = None
    try:
        while True:
            kind, sql, params = ops.send(result)
            if kind == "many":
                await conn.executemany(sql, params)
                result = None
            else:
                async with conn.execute(sql, params) as cur:
                    result = await (cur.fetchone() if kind == "one" else cur.fetchall())
    except StopIteration as stop:
        return stop.value  # type: ignore[no-any-return]


def _in_transaction_sync(db: sqlite3.Connection, ops: Ops[T]) -> T:
    """Run ops in one write transaction, on the connection's own thread."""
    db.execute("BEGIN IMMEDIATE")
    try:
        result = run_ops_sync(db, ops)
        db.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            db.execute("ROLLBACK")
        raise
    return result


class JobStore:
    """Group commit of job changes; also runs whole transactions for the pool.

    Standalone (a pool of its own: the CLI's tests, the bench) it commits on its connection from
    a task of its own. Attached to an engine's recorder (attach), it shares the engine's
    connection and its changes are written in the recorder's own transactions, together with the
    engine records of the same moment: the enforcement record of a `smart_review` that names a
    job is committed with that job or not at all, and the replay cursor never moves past a
    violation whose job is not stored. One connection and one lock for both also means the pool
    can never hold a write lock the engine has to wait for."""

    def __init__(self, conn: aiosqlite.Connection, clock: Callable[[], float],
                 on_record: Callable[[dict[str, Any]], None], *, window: float = 0.002,
                 on_duplicate: Callable[[Job, str], None] | None = None) -> None:
        self.conn = conn
        self.clock = clock
        self.on_record = on_record
        self.window = window
        self.on_duplicate = on_duplicate
        self.lock = asyncio.Lock()
        self.commits = 0
        self.failure: BaseException | None = None
        self._committer: Callable[[], Awaitable[Any]] | None = None
        self._batch = _Batch()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def attach(self, lock: asyncio.Lock, committer: Callable[[], Awaitable[Any]]) -> None:
        """Commit through an engine's recorder: `committer` (its flush) takes this store's batch
        (take) into its transaction, run under `lock`, and calls committed or failed after."""
        self.lock = lock
        self._committer = committer

    # -- collecting ----------------------------------------------------------------------------

    def start(self) -> None:
        if self._committer is None:  # attached: the recorder's flusher commits
            self._task = asyncio.create_task(self._run(), name="jobs-commit")

    def save(self, job: Job, *, new_dedup: bool = False) -> None:
        self._batch.jobs[job.id] = job
        if new_dedup:
            self._batch.new_dedup.append(job)
        self._wake.set()

    def transition(self, job: Job, detail: str) -> dict[str, Any]:
        """Save the job and add the `job` record and status event of its current status."""
        rec = job_record(job, self.clock())
        self._batch.jobs[job.id] = job
        self._batch.records.append(rec)
        self._batch.events.append((job.id, rec["ts"], "status", f"{job.status}: {detail}"))
        self._wake.set()
        return rec

    def event(self, job_id: str, type_: str, detail: str) -> None:
        self._batch.events.append((job_id, iso(self.clock()), type_, detail))
        self._wake.set()

    def statement(self, sql: str, params: tuple[Any, ...] = ()) -> None:
        self._batch.statements.append((sql, params))
        self._wake.set()

    def after_commit(self, callback: Callable[[], None]) -> None:
        self._batch.after.append(callback)
        self._wake.set()

    async def flush(self) -> None:
        """Wait until everything collected so far is committed."""
        if self._committer is not None:
            await self._committer()
            return
        if self._task is None or self._task.done():
            if not self._batch.empty():
                await self._commit(self.take())
            return
        fut = asyncio.get_running_loop().create_future()
        self._batch.waiters.append(fut)
        self._wake.set()
        await fut

    async def close(self) -> None:
        await self.flush()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # -- committing ----------------------------------------------------------------------------

    def take(self) -> _Batch:
        """Hand over what was collected (for one transaction)."""
        batch, self._batch = self._batch, _Batch()
        # Rows are built now, in step with the records taken: a row never runs ahead of them.
        batch.rows = {jid: job_to_row(job) for jid, job in batch.jobs.items()}
        return batch

    def ops(self, batch: _Batch) -> Ops[list[Dup]]:
        """The writes of a batch. Nothing in memory changes until `committed`: a transaction
        that fails (and is tried again) leaves the batch as it was."""
        dups: list[Dup] = []
        records = list(batch.records)
        events = list(batch.events)
        new_ids = {job.id for job in batch.new_dedup}
        plain = [row for jid, row in batch.rows.items() if jid not in new_ids]
        if plain:
            yield ("many", UPSERT_SQL, plain)
        for job in batch.new_dedup:  # one active job per account, checked under the lock
            row = batch.rows.get(job.id) or job_to_row(job)
            if job.status in ACTIVE:
                found = yield ("one", ACTIVE_FOR_SQL, (job.account, job.kind, job.id))
                if found is not None:
                    other = found[0]
                    dup = dataclasses.replace(job, status=CANCELLED,
                                              error=f"duplicate of job {other}",
                                              finished_at=self.clock())
                    rec = job_record(dup, dup.finished_at or 0.0)
                    records.append(rec)
                    events.append((job.id, rec["ts"], "status",
                                   f"cancelled: job {other} for {job.account} was queued first "
                                   "by another process"))
                    dups.append((job, dup, other, rec))
                    row = job_to_row(dup)
            yield ("many", UPSERT_SQL, [row])
        if records:
            yield ("many", INSERT_RECORD, [record_row(r) for r in records])
        if events:
            yield ("many", INSERT_EVENT, events)
        for sql, params in batch.statements:
            yield ("many", sql, [params])
        return dups

    def committed(self, batch: _Batch,
                  dups: list[Dup] | None = None) -> None:
        """The batch is stored: report its records, then run what waited for it."""
        dups = dups or []
        if not batch.empty():
            self.commits += 1
            self.failure = None
        for job, dup, _, _ in dups:
            job.status, job.error, job.finished_at = dup.status, dup.error, dup.finished_at
        for rec in batch.records:
            self._emit(rec)
        for *_, rec in dups:
            self._emit(rec)
        for job, _, other, _ in dups:
            if self.on_duplicate is not None:
                self.on_duplicate(job, other)
        for callback in batch.after:
            callback()
        for fut in batch.waiters:
            if not fut.done():
                fut.set_result(None)

    def failed(self, batch: _Batch, exc: BaseException) -> None:
        """The recorder's transaction with this batch failed for good (the engine stops)."""
        self.failure = exc
        for fut in batch.waiters:
            if not fut.done():
                fut.set_exception(StorageError(str(exc)))

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if self.window:
                await asyncio.sleep(self.window)
            self._wake.clear()
            batch = self.take()
            try:
                await self._commit(batch)
            except StorageError as exc:
                self.failure = exc
                print(f"riskterm: job pool: {exc}; retrying", file=sys.stderr, flush=True)
                self._requeue(batch)
                await asyncio.sleep(0.5)

    def _requeue(self, batch: _Batch) -> None:
        """Put a batch that failed back in front of what came since."""
        later, self._batch = self._batch, batch
        for jid, job in later.jobs.items():
            batch.jobs[jid] = job
        batch.new_dedup += later.new_dedup
        batch.records += later.records
        batch.events += later.events
        batch.statements += later.statements
        batch.after += later.after
        batch.waiters += later.waiters
        self._wake.set()

    async def _commit(self, batch: _Batch) -> None:
        """Standalone: one transaction of the batch on this store's connection."""
        if batch.empty():
            self.committed(batch)
            return
        try:
            async with self.lock:
                dups = await patiently(lambda: self._write(batch))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the job tables: {exc}") from exc
        self.committed(batch, dups)

    async def _write(self, batch: _Batch) -> list[Dup]:
        return await self._in_transaction(lambda: self.ops(batch))

    async def _in_transaction(self, make: Callable[[], Ops[T]]) -> T:
        """One write transaction of make()'s ops (a fresh generator per attempt)."""
        if in_db_thread_usable(self.conn):
            return await self.conn._execute(  # type: ignore[no-any-return]
                lambda: _in_transaction_sync(self.conn._conn, make()))
        async with immediate(self.conn):
            return await run_ops_async(self.conn, make())

    @property
    def enqueues_pending(self) -> bool:
        """Jobs enqueued here whose one-per-account check has not been committed yet."""
        return bool(self._batch.new_dedup)

    async def transact_ops(self, make: Callable[[], Ops[T]]) -> T:
        """A transaction of work written as ops, in one hop to the database's thread. Unlike
        transact it does not wait for pending changes first: for work that writes no records
        and touches no row those changes do (the caller flushes when it must)."""
        try:
            async with self.lock:
                return await patiently(lambda: self._in_transaction(make))
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the job tables: {exc}") from exc

    async def transact(self, body: Callable[[aiosqlite.Connection, Txn], Awaitable[T]]) -> T:
        """Run body in its own write transaction (after pending changes); report its records.
        Another process's write lock is waited out (body runs again from the start)."""
        await self.flush()
        txn = Txn()

        async def attempt() -> T:
            nonlocal txn
            txn = Txn()
            async with immediate(self.conn):
                result = await body(self.conn, txn)
                await write_txn_parts(self.conn, txn)
            return result

        try:
            async with self.lock:
                result = await patiently(attempt)
        except sqlite3.Error as exc:
            raise StorageError(f"cannot write the job tables: {exc}") from exc
        for rec in txn.records:
            self._emit(rec)
        return result

    def _emit(self, rec: dict[str, Any]) -> None:
        try:
            self.on_record(rec)
        except Exception as exc:  # a broken sink must not stop the job pool
            print(f"riskterm: job record sink failed: {exc}", file=sys.stderr, flush=True)


def in_db_thread_usable(conn: aiosqlite.Connection) -> bool:
    """Whether aiosqlite's private "run this on your thread" is there (present 0.20-0.22)."""
    return getattr(conn, "_execute", None) is not None and hasattr(type(conn), "_conn")


# -- queries shared with the CLI -------------------------------------------------------------


async def load_job(conn: aiosqlite.Connection, job_id: str) -> Job | None:
    async with conn.execute(f"{SELECT_SQL} WHERE id = ?", (job_id,)) as cur:
        row = await cur.fetchone()
    return job_from_row(row) if row else None


async def load_jobs(conn: aiosqlite.Connection, where: str, params: tuple[Any, ...] = ()
                    ) -> list[Job]:
    async with conn.execute(f"{SELECT_SQL} WHERE {where} ORDER BY priority, rowid",
                            params) as cur:
        rows = await cur.fetchall()
    return [job_from_row(r) for r in rows]


async def save_job(conn: aiosqlite.Connection, job: Job) -> None:
    await conn.execute(UPSERT_SQL, job_to_row(job))


async def active_job_for(conn: aiosqlite.Connection, kind: str, account: str,
                         exclude: str | None = None) -> str | None:
    async with conn.execute(
        f"SELECT id FROM jobs WHERE account = ? AND kind = ? AND status IN ({_ACTIVE_SQL}) "
        "AND id != ? ORDER BY rowid LIMIT 1", (account, kind, exclude or ""),
    ) as cur:
        row = await cur.fetchone()
    return row[0] if row else None


async def load_events(conn: aiosqlite.Connection, job_id: str) -> list[dict[str, Any]]:
    async with conn.execute(
        "SELECT ts, type, detail FROM job_events WHERE job_id = ? ORDER BY id", (job_id,)
    ) as cur:
        rows = await cur.fetchall()
    return [{"ts": ts, "type": type_, "detail": detail} for ts, type_, detail in rows]


async def new_block(conn: aiosqlite.Connection, owner: str, wall: float, *, keep: bool) -> int:
    """A number no other pool or CLI call gets: the prefix of the job ids it hands out."""
    cur = await conn.execute(
        "INSERT INTO job_owners (owner, host, pid, started_at, heartbeat_at) "
        "VALUES (?, ?, ?, ?, ?)",
        (owner, HOST, os.getpid(), wall, wall),
    )
    block = cur.lastrowid
    assert block is not None
    if not keep:
        await conn.execute("DELETE FROM job_owners WHERE block = ?", (block,))
    return block


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. EPERM: it exists
        return True
    return True


async def live_owners(conn: aiosqlite.Connection, wall: float, stale_after: float) -> set[str]:
    """Owners whose heartbeat is fresh and, on this host, whose process still exists."""
    async with conn.execute("SELECT owner, host, pid, heartbeat_at FROM job_owners") as cur:
        rows = await cur.fetchall()
    alive = set()
    for owner, host, pid, beat in rows:
        if beat is None or beat < wall - stale_after:
            continue
        if host == HOST and pid != os.getpid() and not _pid_alive(pid):
            continue
        alive.add(owner)
    return alive


async def purge_finished(conn: aiosqlite.Connection, cutoff: float, wall_cutoff: float) -> int:
    """Delete finished jobs (and their timelines) that finished before cutoff, and answered
    requests older than wall_cutoff."""
    where = f"status IN ({_FINAL_SQL}) AND finished_at < ?"
    await conn.execute(
        f"DELETE FROM job_events WHERE job_id IN (SELECT id FROM jobs WHERE {where})", (cutoff,))
    cur = await conn.execute(f"DELETE FROM jobs WHERE {where}", (cutoff,))
    await conn.execute("DELETE FROM job_requests WHERE created_at < ?",
                       (wall_cutoff,))
    return cur.rowcount


__all__ = ["COLUMNS", "INSERT_EVENT", "INSERT_RECORD", "JobStore", "StorageError", "Txn"]
