"""Opening the SQLite database: WAL, busy timeout and forward-only schema migrations.

Schema versions live in PRAGMA user_version. Each migration is a list of statements applied in
one transaction; a database from a newer riskterm is refused rather than guessed at.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import aiosqlite

BUSY_TIMEOUT_MS = 5000

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


def _migrations() -> list[list[str]]:
    from riskterm.jobs.schema import JOBS_MIGRATION

    return [_CORE, JOBS_MIGRATION]


class DatabaseError(Exception):
    """The database cannot be opened or is not one riskterm can use; the message says why."""


async def open_db(path: str | Path) -> aiosqlite.Connection:
    """Open (creating if needed) the database at `path`, migrated to the current schema."""
    path = Path(path)
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
