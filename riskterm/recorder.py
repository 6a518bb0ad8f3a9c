"""Group commit: the engine's changes are written to SQLite in one transaction per batch, and
records are handed to the sinks (stdout, the dashboard) only after their commit."""

from __future__ import annotations

import asyncio
import json
import math
import sqlite3
from collections.abc import Awaitable, Callable
from itertools import chain
from typing import Any

import aiosqlite
import orjson

from riskterm.engine import Engine, RestoredState
from riskterm.lockouts import Lockout
from riskterm.strictjson import finite, strict_dumps

Sink = Callable[[list[tuple[dict[str, Any], str]]], None]


class StorageError(Exception):
    """The database could not be written (disk full, read-only, locked for too long)."""

    def __init__(self, message: str, unwritten: int = 0) -> None:
        super().__init__(message)
        self.unwritten = unwritten  # records of the failed commit (never reported)


# Another process holding a write transaction (the sqlite3 shell, a backup, `riskterm unlock`)
# makes BEGIN IMMEDIATE wait busy_timeout (5 s) and then fail with "database is locked". The
# recorder keeps the batch and tries again until LOCKED_PATIENCE has passed: a long lock delays
# the records (ingest waits through backpressure) but loses none.
LOCKED_PATIENCE = 60.0
LOCKED_RETRY = 0.05


def _locked(exc: sqlite3.Error) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


def dumps(rec: dict[str, Any]) -> str:
    """A record as strict JSON (orjson: a tenth of json.dumps's time, and records are the
    engine's main output). Finite but enormous prices can overflow the engine's P&L to inf/nan;
    JSON has no such numbers, so they become null (the message still says -inf)."""
    for value in rec.values():
        if value.__class__ is float and not -math.inf < value < math.inf:
            for key, item in rec.items():  # in place: the sinks get the record as stored
                rec[key] = finite(item)
            break
    try:
        return orjson.dumps(rec).decode()
    except (orjson.JSONEncodeError, TypeError):  # an int beyond 64 bits, say
        return strict_dumps(rec)


def _record_row(rec: dict[str, Any], body: str) -> tuple[Any, ...]:
    return (rec["kind"], rec["ts"], rec.get("account"), rec.get("rule"), body)


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

    async def flush(self) -> int:
        """Commit what the engine changed; returns the number of records committed."""
        async with self._lock:
            self._refuse_after_failure()
            changes = self.engine.take_changes()
            if not changes:
                return 0
            bodies = [dumps(rec) for rec in changes.records]
            await self._commit(lambda: self._write(changes, bodies), len(bodies))
            self.commits += 1
        if changes.records:
            batch = list(zip(changes.records, bodies, strict=True))
            for sink in self.sinks:
                sink(batch)
        return len(bodies)

    async def _commit(self, write: Callable[[], Awaitable[Any]], records: int) -> None:
        """Run one transaction, waiting out another process's lock for up to LOCKED_PATIENCE;
        any other failure is for good (see `failure`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + LOCKED_PATIENCE
        while True:
            try:
                await write()
                return
            except sqlite3.Error as exc:
                if _locked(exc) and loop.time() < deadline:
                    await asyncio.sleep(LOCKED_RETRY)
                    continue
                self.failure = StorageError(f"cannot write to the database: {exc}", records)
                raise self.failure from exc

    def _refuse_after_failure(self) -> None:
        if self.failure is not None:  # its `unwritten` counts the lost batch; pending is extra
            raise StorageError(str(self.failure), self.failure.unwritten)

    async def _write(self, changes: Any, bodies: list[str]) -> None:
        # aiosqlite has no public "run this on your thread"; _execute and _conn are private
        # (present 0.20-0.22), so anything else takes the public path below
        run_in_db_thread = getattr(self.conn, "_execute", None)
        if run_in_db_thread is not None and hasattr(type(self.conn), "_conn"):
            # the whole transaction in one hop to aiosqlite's thread: it commits on the other
            # core while ingest goes on, instead of advancing one statement per loop turn
            await run_in_db_thread(self._write_sync, self._statements(changes, bodies))
            return
        await conn_write(self.conn, self._statements(changes, bodies))

    def _write_sync(self, statements: list[tuple[str, list[Any]]]) -> None:
        db: sqlite3.Connection = self.conn._conn  # runs on the connection's own thread
        db.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in statements:
                db.executemany(sql, rows)
            db.execute("COMMIT")
        except BaseException:
            try:
                db.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise

    def _statements(self, changes: Any, bodies: list[str]) -> list[tuple[str, list[Any]]]:
        out: list[tuple[str, list[Any]]] = []
        if changes.records:
            out += _multi_row(
                "INSERT INTO records (kind, ts, account, rule, body)",
                [_record_row(r, b) for r, b in zip(changes.records, bodies, strict=True)])
        if changes.lockouts_added:
            out += _multi_row(
                "INSERT OR REPLACE INTO lockouts (id, account, rule, state, until_kind, until_ts, "
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


async def conn_write(conn: aiosqlite.Connection,
                     statements: list[tuple[str, list[Any]]]) -> None:
    """One transaction through aiosqlite's public API (a hop per statement)."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        for sql, rows in statements:
            await conn.executemany(sql, rows)
        await conn.execute("COMMIT")
    except BaseException:
        try:
            await conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass
        raise


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
