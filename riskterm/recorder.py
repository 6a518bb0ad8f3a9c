"""Group commit: the engine's changes are written to SQLite in one transaction per batch, and
records are handed to the sinks (stdout, the dashboard) only after their commit."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import Awaitable, Callable
from itertools import chain
from typing import Any, TypeVar

import aiosqlite
import orjson

from riskterm.db import patiently
from riskterm.engine import Engine, RestoredState
from riskterm.jobs.store import Dup, JobStore, Ops, in_db_thread_usable, run_ops_async, run_ops_sync
from riskterm.lockouts import Lockout
from riskterm.safetext import escape_json_controls
from riskterm.strictjson import finite, strict_dumps

Sink = Callable[[list[tuple[dict[str, Any], str]]], None]
T = TypeVar("T")


class StorageError(Exception):
    """The database could not be written (disk full, read-only, locked for too long)."""

    def __init__(self, message: str, unwritten: int = 0) -> None:
        super().__init__(message)
        self.unwritten = unwritten  # records of the failed commit (never reported)


# Another process holding a write transaction (the sqlite3 shell, a backup, `riskterm unlock`)
# makes BEGIN IMMEDIATE wait busy_timeout (5 s) and then fail with "database is locked". The
# recorder keeps the batch and tries again (db.patiently, up to db.LOCKED_PATIENCE): a long lock
# delays the records (ingest waits through backpressure) but loses none.


def dumps(rec: dict[str, Any]) -> str:
    """A record as strict JSON (orjson: a tenth of json.dumps's time, and records are the
    engine's main output). Finite but enormous prices can overflow the engine's P&L to inf/nan;
    JSON has no such numbers, so they become null (the message still says -inf). DEL, C1 and
    bidi controls, which orjson writes raw, are escaped (`\\u009b`): the body goes to stdout,
    where a terminal would act on them."""
    for value in rec.values():
        if value.__class__ is float and not -math.inf < value < math.inf:
            for key, item in rec.items():  # in place: the sinks get the record as stored
                rec[key] = finite(item)
            break
    try:
        body = orjson.dumps(rec).decode()
    except (orjson.JSONEncodeError, TypeError):  # an int beyond 64 bits, say
        return strict_dumps(rec)
    if body.isascii() and "\x7f" not in body:  # the common case, two C scans, no call
        return body
    return escape_json_controls(body)


def _record_row(rec: dict[str, Any], body: str) -> tuple[Any, ...]:
    return (rec["kind"], rec["ts"], rec.get("account"), rec.get("rule"), body)


CLOCK_KEY = "clock"
INSERT_RECORD = "INSERT INTO records (kind, ts, account, rule, body) VALUES (?, ?, ?, ?, ?)"
MAX_ROWS = 1024  # per statement; with 8 columns at most 8,192 parameters (SQLite allows 32,766)


def _multi_row(head: str, rows: list[tuple[Any, ...]]) -> list[tuple[str, list[Any]]]:
    """`head VALUES (?, ...), (?, ...) ...` statements of many rows each.

    Each statement is one sqlite3_step, and so one release of the GIL: executemany releases it
    per row, and while ingest runs, each time the database thread needs it back it waits out
    at least a switch interval (5 ms). Statements hold a power of two of rows, up to MAX_ROWS:
    the connection caches every distinct statement it prepared, and a few shapes per table
    keep that cache small (one shape per batch size took a hundred megabytes)."""
    width = len(rows[0])
    group = "(" + ", ".join("?" * width) + ")"
    out: list[tuple[str, list[Any]]] = []
    i = 0
    while i < len(rows):
        size = min(MAX_ROWS, 1 << ((len(rows) - i).bit_length() - 1))
        part = rows[i:i + size]
        i += size
        sql = f"{head} VALUES {', '.join([group] * size)}"
        out.append((sql, [tuple(chain.from_iterable(part))]))
    return out


class Recorder:
    def __init__(self, conn: aiosqlite.Connection, engine: Engine,
                 sinks: list[Sink] | None = None, cursor_key: str | None = None) -> None:
        self.conn = conn
        self.cursor_key = cursor_key
        self.engine = engine
        self.sinks: list[Sink] = sinks or []
        self._lock = asyncio.Lock()
        self.commits = 0
        # the first failed commit, for good: its records are gone from memory, so a later
        # commit (with a later replay cursor) would skip them for ever on resume
        self.failure: StorageError | None = None
        self.jobs: JobStore | None = None  # the job pool's changes ride in our transactions
        self._job_batch: Any = None  # its batch in the transaction being written (under _lock)
        self._clock_saved: float | None = None

    def attach_jobs(self, store: JobStore) -> None:
        """Write the job pool's changes in the same transactions as the engine's (see
        jobs.store.JobStore: a record that names a job is committed with the job)."""
        self.jobs = store
        store.attach(self._lock, self.flush)

    async def flush(self) -> int:
        """Commit what the engine and the job pool changed; returns the number of engine
        records committed."""
        async with self._lock:
            self._refuse_after_failure()
            # both taken at the same instant: the jobs that the engine's records name are in
            # this batch (enqueued while those records were made)
            changes = self.engine.take_changes()
            jobs = self.jobs.take() if self.jobs is not None else None
            if not changes and (jobs is None or jobs.empty()):
                if jobs is not None:
                    self.jobs.committed(jobs)  # wakes its waiters
                return 0
            bodies = [dumps(rec) for rec in changes.records]
            self._job_batch = jobs
            try:
                dups = await self._commit(lambda: self._write(changes, bodies), len(bodies))
            except StorageError as exc:
                if jobs is not None:
                    self.jobs.failed(jobs, exc)
                raise
            finally:
                self._job_batch = None
            self.commits += 1
        if changes.records:
            batch = list(zip(changes.records, bodies, strict=True))
            for sink in self.sinks:
                sink(batch)
        if jobs is not None:  # job records after the engine's (a violation before its job)
            self.jobs.committed(jobs, dups)
        return len(bodies)

    async def _commit(self, write: Callable[[], Awaitable[T]], records: int) -> T:
        """Run one transaction, waiting out another process's lock (db.patiently); any other
        failure is for good (see `failure`)."""
        try:
            return await patiently(write)
        except sqlite3.Error as exc:
            self.failure = StorageError(f"cannot write to the database: {exc}", records)
            raise self.failure from exc

    def _refuse_after_failure(self) -> None:
        if self.failure is not None:  # its `unwritten` counts the lost batch; pending is extra
            raise StorageError(str(self.failure), self.failure.unwritten)

    async def _write(self, changes: Any, bodies: list[str]) -> list[Dup]:
        statements = self._statements(changes, bodies)
        jobs = self._job_batch
        # aiosqlite has no public "run this on your thread"; _execute and _conn are private
        # (present 0.20-0.22), so anything else takes the public path below
        if in_db_thread_usable(self.conn):
            # the whole transaction in one hop to aiosqlite's thread: it commits on the other
            # core while ingest goes on, instead of advancing one statement per loop turn
            return await self.conn._execute(  # type: ignore[no-any-return]
                self._write_sync, statements, jobs)
        return await conn_write(self.conn, statements,
                                self.jobs.ops(jobs) if self.jobs and jobs else None)

    def _write_sync(self, statements: list[tuple[str, list[Any]]], jobs: Any) -> list[Dup]:
        db: sqlite3.Connection = self.conn._conn  # runs on the connection's own thread
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                db.executemany(sql, rows)
            # a fresh generator per attempt: a transaction tried again starts from the batch
            dups = run_ops_sync(db, self.jobs.ops(jobs)) if self.jobs and jobs else []
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return dups

    def _statements(self, changes: Any, bodies: list[str]) -> list[tuple[str, list[Any]]]:
        out: list[tuple[str, list[Any]]] = []
        if changes.records:
            out += _multi_row(
                "INSERT INTO records (kind, ts, account, rule, body)",
                [_record_row(r, b) for r, b in zip(changes.records, bodies, strict=True)])
        if changes.fills:
            out += _multi_row("INSERT INTO fills (ts, account, symbol, side, qty, price, fee, "
                              "realized_pnl, order_id, trade_id)", changes.fills)
        if changes.equity:
            out += _multi_row("INSERT INTO equity (account, ts, balance, equity, realized_pnl, "
                              "unrealized_pnl)", changes.equity)
        if changes.lockouts_added:
            # a plain INSERT: a lockout row is never replaced (an id in use fails the commit
            # loudly instead of overwriting another lockout; under the engine lock none is)
            out += _multi_row(
                "INSERT INTO lockouts (id, account, rule, state, until_kind, until_ts, "
                "created_ts, active)",
                [(lk.id, lk.account, lk.rule, lk.state, lk.kind, lk.until, lk.created, 1)
                 for lk in changes.lockouts_added])
        if changes.lockouts_lifted:  # few: a statement each
            out.append(("UPDATE lockouts SET active = 0, lifted_ts = ?, lift_reason = ? "
                        "WHERE id = ?",
                        [(ts, reason, lid) for lid, ts, reason in changes.lockouts_lifted]))
        if changes.accounts:
            out += _multi_row("INSERT OR REPLACE INTO accounts (account, data)", changes.accounts)
        if changes.positions:
            out += _multi_row("INSERT OR REPLACE INTO positions (account, symbol, qty, avg_price, "
                              "opened_ts)", changes.positions)
        state = []
        if changes.engine_state is not None:
            state.append(("engine", changes.engine_state))
        if changes.cursor is not None and self.cursor_key is not None:
            state.append((self.cursor_key, str(changes.cursor)))
        engine = self.engine
        if engine.started and engine.clock != self._clock_saved:
            # the database's clock, for writers that run no engine (riskterm unlock) and for
            # the next run before its first event: event time when a replay wrote it
            self._clock_saved = engine.clock
            state.append((CLOCK_KEY, json.dumps(
                {"kind": "event" if engine.is_replay else "wall", "ts": engine.clock})))
        if state:
            out += _multi_row("INSERT OR REPLACE INTO engine_state (key, value)", state)
        return out

    async def write_record(self, rec: dict[str, Any]) -> None:
        """Commit one record that is not the engine's (the summary), then report it."""
        body = dumps(rec)
        async with self._lock:
            self._refuse_after_failure()
            await self._commit(lambda: self.conn.execute(INSERT_RECORD, _record_row(rec, body)),
                               1)
        for sink in self.sinks:
            sink([(rec, body)])


async def conn_write(conn: aiosqlite.Connection, statements: list[tuple[str, list[Any]]],
                     job_ops: Ops[list[Dup]] | None = None) -> list[Dup]:
    """One transaction through aiosqlite's public API (a hop per statement)."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            await conn.executemany(sql, rows)
        dups = await run_ops_async(conn, job_ops) if job_ops is not None else []
        await conn.execute("COMMIT")
    except BaseException:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise
    return dups


async def load_state(conn: aiosqlite.Connection) -> RestoredState:
    """Read back what a previous run committed: accounts, positions, active lockouts."""
    state = RestoredState()
    async with conn.execute("SELECT account, data FROM accounts") as cur:
        async for account, data in cur:
            state.accounts[account] = json.loads(data)
    async with conn.execute(
        "SELECT account, symbol, qty, avg_price, opened_ts FROM positions"
    ) as cur:
        state.positions = [tuple(row) async for row in cur]  # type: ignore[misc]
    async with conn.execute(
        "SELECT id, account, rule, state, until_kind, until_ts, created_ts FROM lockouts "
        "WHERE active = 1 ORDER BY id"
    ) as cur:
        state.lockouts = [Lockout(*row) async for row in cur]
    async with conn.execute("SELECT value FROM engine_state WHERE key = 'engine'") as cur:
        row = await cur.fetchone()
    if row:
        state.engine_state = json.loads(row[0])
    async with conn.execute("SELECT COALESCE(MAX(id), 0) FROM lockouts") as cur:
        row = await cur.fetchone()
    state.engine_state["next_lockout_id"] = (row[0] if row else 0) + 1
    return state


async def load_cursor(conn: aiosqlite.Connection, key: str) -> int:
    async with conn.execute("SELECT value FROM engine_state WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def load_clock(conn: aiosqlite.Connection) -> tuple[str, float] | None:
    """The database's engine clock as last committed: ("event", ts) when a replay wrote it,
    ("wall", ts) for a live source; None before any engine ran on it."""
    async with conn.execute("SELECT value FROM engine_state WHERE key = ?",
                            (CLOCK_KEY,)) as cur:
        row = await cur.fetchone()
    if not row:
        return None
    try:
        data = json.loads(row[0])
        return str(data["kind"]), float(data["ts"])
    except (ValueError, KeyError, TypeError):
        return None
