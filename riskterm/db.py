"""Opening the SQLite database: WAL, busy timeout and forward-only schema migrations.

Schema versions live in PRAGMA user_version. Each migration is a list of statements applied in
one transaction; a database from a newer riskterm is refused rather than guessed at.

Also here: the engine lock (one engine per database) and waiting out another process's write
lock for longer than SQLite's busy timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import socket
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite

T = TypeVar("T")
BUSY_TIMEOUT_MS = 5000
# Another process holding a write transaction (the sqlite3 shell, a backup, `riskterm unlock`)
# makes BEGIN IMMEDIATE wait busy_timeout and then fail with "database is locked". Writers here
# try again until LOCKED_PATIENCE has passed: a long lock delays a write but loses none.
LOCKED_PATIENCE = 60.0
LOCKED_RETRY = 0.05

_CORE = [
    """CREATE TABLE records (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        ts TEXT NOT NULL,
        account TEXT,
        rule TEXT,
        body TEXT NOT NULL
    )""",
    "CREATE INDEX records_kind ON records(kind, id)",
    "CREATE INDEX records_account ON records(account, id)",
    """CREATE TABLE lockouts (
        id INTEGER PRIMARY KEY,
        account TEXT NOT NULL,
        rule TEXT NOT NULL,
        state TEXT NOT NULL,
        until_kind TEXT NOT NULL,
        until_ts REAL,
        created_ts REAL NOT NULL,
        active INTEGER NOT NULL DEFAULT 1,
        lifted_ts REAL,
        lift_reason TEXT
    )""",
    "CREATE INDEX lockouts_active ON lockouts(active, account)",
    "CREATE TABLE accounts (account TEXT PRIMARY KEY, data TEXT NOT NULL)",
    """CREATE TABLE positions (
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        qty INTEGER NOT NULL,
        avg_price REAL NOT NULL,
        opened_ts REAL,
        PRIMARY KEY (account, symbol)
    )""",
    "CREATE TABLE engine_state (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


# the day's history, for exports (a trade ledger at tax time) and the daily report's equity curve
_HISTORY = [
    """CREATE TABLE fills (
        id INTEGER PRIMARY KEY,
        ts REAL NOT NULL,
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        side TEXT NOT NULL,
        qty INTEGER NOT NULL,
        price REAL NOT NULL,
        fee REAL NOT NULL,
        realized_pnl REAL NOT NULL,
        order_id TEXT NOT NULL,
        trade_id TEXT
    )""",
    "CREATE INDEX fills_account ON fills(account, ts)",
    "CREATE INDEX fills_ts ON fills(ts)",
    """CREATE TABLE equity (
        account TEXT NOT NULL,
        ts REAL NOT NULL,
        balance REAL,
        equity REAL,
        realized_pnl REAL NOT NULL,
        unrealized_pnl REAL NOT NULL
    )""",
    "CREATE INDEX equity_account ON equity(account, ts)",
]


def _migrations() -> list[list[str]]:
    from riskterm.jobs.schema import JOBS_MIGRATION

    return [_CORE, JOBS_MIGRATION, _HISTORY]


def schema_version() -> int:
    """The schema version this riskterm writes (and readers understand)."""
    return len(_migrations())


class DatabaseError(Exception):
    """The database cannot be opened or is not one riskterm can use; the message says why."""


class MissingDatabase(DatabaseError):
    """A command that works on an existing database was given a path where there is none."""


def is_locked(exc: BaseException) -> bool:
    """SQLite's "database is locked" / "busy": another connection holds the write lock."""
    text = str(exc).lower()
    return isinstance(exc, sqlite3.Error) and ("locked" in text or "busy" in text)


async def patiently(attempt: Callable[[], Awaitable[T]],
                    patience: float | None = None) -> T:
    """Run attempt (one whole transaction), again while it fails because another process holds
    the write lock, for up to `patience` seconds (LOCKED_PATIENCE); then the error stands."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + (LOCKED_PATIENCE if patience is None else patience)
    while True:
        try:
            return await attempt()
        except sqlite3.Error as exc:
            if not is_locked(exc) or loop.time() >= deadline:
                raise
        await asyncio.sleep(LOCKED_RETRY)


async def open_db(path: str | Path, *, create: bool = True) -> aiosqlite.Connection:
    """Open the database at `path`, migrated to the current schema. With create=False a path
    where there is no database is MissingDatabase (commands on an existing database never
    create one: a mistyped --db must not look like an empty database)."""
    path = Path(path)
    if not create and not path.is_file():
        raise MissingDatabase(f"no database at {path}" + (
            f" ({path} is not a file)" if path.exists() else ""))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Probe synchronously first: when aiosqlite's connect fails, its worker thread reports
        # back to the event loop later and, if the loop has closed by then (we exit at once),
        # prints a stray traceback. A file that cannot be opened fails here instead.
        sqlite3.connect(str(path)).close()
        conn = await aiosqlite.connect(str(path), isolation_level=None)
    except (OSError, sqlite3.Error) as exc:
        raise DatabaseError(f"cannot open database {path}: {exc}") from exc
    try:
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a committed transaction survives a killed process (kill -9);
        # only an OS crash or power loss can lose the last commits.
        await conn.execute("PRAGMA synchronous = NORMAL")
        await migrate(conn)
    except sqlite3.DatabaseError as exc:
        await conn.close()
        raise DatabaseError(f"cannot use database {path}: {exc}") from exc
    except DatabaseError:
        await conn.close()
        raise
    return conn


async def open_reader(path: str | Path) -> aiosqlite.Connection:
    """A read-only connection (with a thread of its own) to an existing database: its reads see
    the last commit without waiting behind the writes queued on a writer's connection."""
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    conn = await aiosqlite.connect(uri, uri=True)
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return conn


async def migrate(conn: aiosqlite.Connection) -> int:
    migrations = _migrations()
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    version = row[0] if row else 0
    if version > len(migrations):
        raise DatabaseError(
            f"the database has schema version {version}, newer than this riskterm "
            f"understands ({len(migrations)}); upgrade riskterm"
        )
    for number in range(version + 1, len(migrations) + 1):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            if row and row[0] >= number:  # another process migrated meanwhile
                await conn.execute("ROLLBACK")
                continue
            for statement in migrations[number - 1]:
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {number}")
            await conn.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (an I/O error, a full disk): keep the real error
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            raise
    return len(migrations)


# -- one engine per database ---------------------------------------------------------------------


class DatabaseInUse(Exception):
    """Another engine holds the database; the message names it (pid, host, start, command)."""


def lock_path(db_path: str | Path) -> Path:
    # next to the real file: a symlink to the database must find the same lock
    db_path = Path(db_path).resolve()
    return db_path.with_name(db_path.name + ".lock")


def _holder_text(raw: bytes) -> str:
    try:
        info = json.loads(raw.decode())
        return (f"pid {info['pid']} on {info['host']}, running since {info['started']}: "
                f"{info['command']}")
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        return "a process that has not said who it is yet"


_HELD: set[int] = set()  # descriptors of the engine locks this process holds


def _drop_in_child() -> None:
    # a forked child (the parse-ahead parser) shares the lock's open file description: if it
    # kept a descriptor it would hold the lock for a moment after a kill -9 of the engine. Only
    # close it (LOCK_UN would release the parent's lock too).
    for fd in list(_HELD):
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_drop_in_child)


class EngineLock:
    """An exclusive flock on `<db>.lock`, held for as long as an engine runs on the database.

    The kernel releases it when the process ends however it ends (kill -9 included), so a crash
    never leaves a stale lock. The file names the holder for the refusal message. It is never
    deleted: unlinking a lock file races with a process that has just opened it."""

    def __init__(self, fd: int, path: Path) -> None:
        self.fd: int | None = fd
        self.path = path

    @classmethod
    def acquire(cls, db_path: str | Path, command: str | None = None) -> EngineLock:
        path = lock_path(db_path)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            writable = True
        except PermissionError:  # a read-only lock file still locks
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise DatabaseError(f"cannot open the lock file {path}: "
                                    f"{exc.strerror or exc}") from exc
            writable = False
        except OSError as exc:
            raise DatabaseError(f"cannot create the lock file {path}: "
                                f"{exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder_text(os.pread(fd, 4096, 0))
            os.close(fd)
            raise DatabaseInUse(
                f"database {db_path} is in use by another riskterm engine ({holder}); one "
                "engine per database: stop that one, or give this one another --db "
                "(riskterm unlock and riskterm jobs work while it runs)") from None
        if writable:
            info = {"pid": os.getpid(), "host": socket.gethostname(),
                    "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "command": command or " ".join(["riskterm", *sys.argv[1:]])}
            with contextlib.suppress(OSError):  # the lock holds even if this fails
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(info).encode(), 0)
        _HELD.add(fd)
        return cls(fd, path)

    def release(self) -> None:
        if self.fd is not None:
            _HELD.discard(self.fd)
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None
