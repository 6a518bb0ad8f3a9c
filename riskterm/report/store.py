"""Reading one trading day out of the database, read-only (a report never writes or migrates).

What the database holds (riskterm/db.py, riskterm/recorder.py, riskterm/jobs/schema.py):
- records: every record of CONTRACT section 2 with its ISO `ts`, kind, account and rule; the body
  is the record as JSON.
- fills / equity (schema version 3): every fill as applied, and the engine's samples of each
  account's balance, equity and P&L (at most one a minute of engine time, when it moved). A database
  an older riskterm wrote has neither until a newer engine opens it (readers never migrate):
  DayRows.history is then False and the report derives what it can from the rest.
- accounts / positions / engine_state: the state as of the last commit (one row per account,
  overwritten), with the day's start-of-day balance, realized P&L, the trade ids of the day, the
  trailing-drawdown mark, and the last mark of each symbol.
- lockouts: each lockout with its start, end and lift (epoch seconds on the engine clock).
- jobs / job_events: the Smart Risk Manager jobs, their actions and the account snapshot each
  worked from (balance, equity and P&L at a known instant).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from riskterm.db import BUSY_TIMEOUT_MS, schema_version
from riskterm.timefmt import parse_iso

SCHEMA_VERSION = schema_version()  # the version this reader knows (riskterm.db's migrations)
_CORE_TABLES = {"records", "accounts", "positions", "lockouts", "engine_state"}


class ReportDataError(Exception):
    """The file is not a riskterm database this reader can use; the message says why."""


@dataclass
class Job:
    id: str
    kind: str
    account: str
    status: str
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    duration_s: float | None
    model_used: str | None
    user_instructions: str | None
    actions_taken: int
    actions_summary: str | None
    actions_log: list[dict[str, Any]]
    error: str | None
    snapshot: dict[str, Any] | None  # the account as the job saw it (graph_state.snapshot)
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (ts, type, detail)


@dataclass
class LockoutRow:
    id: int
    account: str
    rule: str
    state: str
    until_kind: str
    until_ts: float | None
    created_ts: float
    active: bool
    lifted_ts: float | None
    lift_reason: str | None


@dataclass
class FillRow:
    """A row of the fills table; realized_pnl is before the fee."""

    id: int
    ts: float
    symbol: str
    side: str
    qty: int
    price: float
    fee: float
    realized_pnl: float
    order_id: str
    trade_id: str | None


@dataclass
class Sample:
    """A row of the equity table: one account's state at one instant."""

    ts: float
    balance: float | None
    equity: float | None
    realized: float
    unrealized: float


@dataclass
class DayRows:
    """Everything stored about one trading day [start, end)."""

    start: float
    end: float
    records: list[tuple[float, dict[str, Any]]]  # (epoch ts, record), in commit order
    jobs: list[Job]
    lockouts: list[LockoutRow]
    accounts: dict[str, dict[str, Any]]  # account -> its row as of the last commit
    positions: dict[str, list[tuple[str, int, float]]]  # account -> open (symbol, qty, avg)
    marks: dict[str, float]  # symbol -> last mark the engine kept
    clock: float | None  # the engine clock of the last commit
    history: bool = False  # the database has the fills and equity tables
    fills: dict[str, list[FillRow]] = field(default_factory=dict)  # account -> the day's fills
    samples: dict[str, list[Sample]] = field(default_factory=dict)  # account -> in time order


def connect(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing riskterm database (never creates one)."""
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.Error as exc:
        raise ReportDataError(f"cannot read database {path}: {exc}") from exc
    if version > SCHEMA_VERSION:
        conn.close()
        raise ReportDataError(f"database {path} has schema version {version}, newer than this "
                              f"riskterm understands ({SCHEMA_VERSION}); upgrade riskterm")
    if not tables >= _CORE_TABLES:
        conn.close()
        raise ReportDataError(f"{path} is not a riskterm database (it has no records table)")
    return conn


def _epoch(text: object) -> float | None:
    try:
        return parse_iso(str(text))
    except (ValueError, OverflowError):  # an expanded year (+10008-...) or a damaged stamp
        return None


def _iso_bound(ts: float, days: int) -> str:
    """A UTC date a day or more beyond ts, as ISO text: it only narrows the scan; records are
    filtered precisely after parsing (ISO text sorts by instant only within one formatting)."""
    try:
        return (datetime.fromtimestamp(ts, UTC) + timedelta(days=days)).strftime("%Y-%m-%d")
    except (OverflowError, ValueError):  # beyond year 1 or 9999: no bound on that side
        return "" if days < 0 else "~"


def latest_record_ts(conn: sqlite3.Connection) -> float | None:
    """The time of the newest record or job: the default day is the one holding it."""
    best: float | None = None
    # records are appended in engine-clock order; a manual unlock may be stamped later, so
    # look at the last few rather than the single last row
    for (ts,) in conn.execute("SELECT ts FROM records ORDER BY id DESC LIMIT 64"):
        t = _epoch(ts)
        if t is not None and (best is None or t > best):
            best = t
    for table, column in (("jobs", "created_at"), ("fills", "ts")):  # both indexed
        if _has_table(conn, table):
            row = conn.execute(f"SELECT MAX({column}) FROM {table}").fetchone()
            if row and isinstance(row[0], (int, float)) and (best is None or row[0] > best):
                best = float(row[0])
    return best


def latest_account_day(conn: sqlite3.Connection) -> date | None:
    """The latest trading day an account row is of (a day with fills but no record)."""
    best: date | None = None
    for (data,) in conn.execute("SELECT data FROM accounts"):
        try:
            day = date.fromisoformat(str(_loads(data, {}).get("trading_day")))
        except ValueError:
            continue
        best = day if best is None or day > best else best
    return best


def _has_table(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?",
                        (name,)).fetchone() is not None


def _loads(text: Any, default: Any) -> Any:
    try:
        value = json.loads(text) if text is not None else default
    except (ValueError, TypeError):
        return default
    return value if isinstance(value, type(default)) else default


def load_day(conn: sqlite3.Connection, start: float, end: float) -> DayRows:
    lo, hi = _iso_bound(start, -1), _iso_bound(end, 2)
    records: list[tuple[float, dict[str, Any]]] = []
    for ts, body in conn.execute(
            "SELECT ts, body FROM records WHERE ts >= ? AND ts < ? ORDER BY id", (lo, hi)):
        t = _epoch(ts)
        if t is None or not start <= t < end:
            continue
        rec = _loads(body, {})
        if rec:
            records.append((t, rec))
    jobs = _load_jobs(conn, start, end) if _has_table(conn, "jobs") else []
    lockouts = [
        LockoutRow(lid, account, rule, state, kind, until, created, bool(active), lifted, reason)
        for lid, account, rule, state, kind, until, created, active, lifted, reason in
        conn.execute(
            "SELECT id, account, rule, state, until_kind, until_ts, created_ts, active, "
            "lifted_ts, lift_reason FROM lockouts WHERE created_ts < ? AND "
            "(lifted_ts IS NULL OR lifted_ts >= ?) AND (until_ts IS NULL OR until_ts >= ?) "
            "ORDER BY id", (end, start, start))
    ]
    accounts = {name: _loads(data, {}) for name, data in
                conn.execute("SELECT account, data FROM accounts")}
    positions: dict[str, list[tuple[str, int, float]]] = {}
    for account, symbol, qty, avg in conn.execute(
            "SELECT account, symbol, qty, avg_price FROM positions WHERE qty != 0 "
            "ORDER BY account, symbol"):
        positions.setdefault(account, []).append((symbol, int(qty), float(avg)))
    state = dict(conn.execute("SELECT key, value FROM engine_state"))
    engine = _loads(state.get("engine"), {})
    marks = {str(k): float(v) for k, v in (engine.get("marks") or {}).items()
             if isinstance(v, (int, float))}
    clock = _loads(state.get("clock"), {}).get("ts")
    rows = DayRows(start, end, records, jobs, lockouts, accounts, positions, marks,
                   float(clock) if isinstance(clock, (int, float)) else None)
    if _has_table(conn, "fills") and _has_table(conn, "equity"):
        _load_history(conn, rows)
    return rows


def _load_history(conn: sqlite3.Connection, rows: DayRows) -> None:
    rows.history = True
    span = (rows.start, rows.end)
    for fid, ts, account, symbol, side, qty, price, fee, realized, oid, tid in conn.execute(
            "SELECT id, ts, account, symbol, side, qty, price, fee, realized_pnl, order_id, "
            "trade_id FROM fills WHERE ts >= ? AND ts < ? ORDER BY id", span):
        rows.fills.setdefault(account, []).append(
            FillRow(fid, ts, symbol, side, qty, price, fee, realized, oid, tid))
    # by account, over its index: the equity table has no index on time alone, and every
    # account with samples has a row (the engine writes an account's row with its first event)
    names = set(rows.accounts) | set(rows.fills)
    names.update(rec["account"] for _, rec in rows.records
                 if isinstance(rec.get("account"), str))
    for name in sorted(names):
        samples = [Sample(*row) for row in conn.execute(
            "SELECT ts, balance, equity, realized_pnl, unrealized_pnl FROM equity "
            "WHERE account = ? AND ts >= ? AND ts < ? ORDER BY ts, rowid", (name, *span))]
        if samples:
            rows.samples[name] = samples


def _load_jobs(conn: sqlite3.Connection, start: float, end: float) -> list[Job]:
    jobs: list[Job] = []
    rows = conn.execute(
        "SELECT id, kind, account, status, attempts, created_at, started_at, finished_at, "
        "duration_s, model_used, user_instructions, actions_taken, actions_summary, actions_log, "
        "error, graph_state FROM jobs WHERE (created_at >= ? AND created_at < ?) OR "
        "(finished_at >= ? AND finished_at < ?) ORDER BY created_at, id",
        (start, end, start, end)).fetchall()
    for (jid, kind, account, status, attempts, created, started, finished, duration, model,
         instructions, taken, summary, log, error, graph) in rows:
        snapshot = _loads(graph, {}).get("snapshot")
        jobs.append(Job(
            jid, kind, account, status, attempts, created, started, finished, duration, model,
            instructions, taken, summary, [a for a in _loads(log, []) if isinstance(a, dict)],
            error, snapshot if isinstance(snapshot, dict) else None))
    by_id = {j.id: j for j in jobs}
    ids = list(by_id)
    for i in range(0, len(ids), 500):  # SQLite bounds the parameters of one statement
        part = ids[i:i + 500]
        for jid, ts, etype, detail in conn.execute(
                f"SELECT job_id, ts, type, detail FROM job_events WHERE job_id IN "
                f"({','.join('?' * len(part))}) ORDER BY id", part):
            by_id[jid].events.append((ts, etype, detail))
    return jobs
