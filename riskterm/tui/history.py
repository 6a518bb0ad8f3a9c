"""The violation history read back from the database, each violation with the enforcements and
the lockout that followed it. Reads go through their own read-only connection (WAL lets them
run beside the recorder's commits without seeing a half-written batch)."""

from __future__ import annotations

import json
import sqlite3
from bisect import bisect_left
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite

from riskterm.tui.formatting import parse_ts

KINDS = ("violation", "warning")
#: what a read can raise: a locked or damaged database, or the reader closed at shutdown
READ_ERRORS = (sqlite3.Error, ValueError)
FOLLOW_GAP = 32  # a violation's enforcements and lockout are written right after it


class HistoryRow(NamedTuple):
    id: int
    ts: float | None
    kind: str
    account: str
    rule: str
    symbol: str | None
    message: str
    value: Any
    limit: Any
    enforcement: str  # "flatten ok: closed 1 MNQ long; …"
    lockout: str  # "halted until 2026-03-02T23:00:00Z"


async def open_reader(db_path: Path) -> aiosqlite.Connection:
    uri = Path(db_path).resolve().as_uri() + "?mode=ro"
    conn = await aiosqlite.connect(uri, uri=True)
    await conn.execute("PRAGMA busy_timeout = 2000")
    return conn


def _enforcement_text(rec: dict[str, Any]) -> str:
    text = f"{rec.get('action')} {rec.get('status')}"
    if rec.get("detail"):
        text += f": {rec['detail']}"
    return text


def _lockout_text(rec: dict[str, Any]) -> str:
    return f"{rec.get('state')} until {rec.get('until') or 'permanent'}"


async def load_history(
    conn: aiosqlite.Connection,
    *,
    account: str | None = None,
    rule: str | None = None,
    kind: str | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> list[HistoryRow]:
    """The newest `limit` violations/warnings matching the filters (newest first)."""
    kinds = (kind,) if kind else KINDS
    where = [f"kind IN ({','.join('?' * len(kinds))})", "id > ?"]
    params: list[Any] = [*kinds, after_id]
    if account:
        where.append("account = ?")
        params.append(account)
    if rule:
        where.append("rule = ?")
        params.append(rule)
    sql = (f"SELECT id, body FROM records WHERE {' AND '.join(where)} "
           "ORDER BY id DESC LIMIT ?")
    async with conn.execute(sql, (*params, limit)) as cur:
        found = [(row[0], json.loads(row[1])) async for row in cur]
    if not found:
        return []
    lo, hi = found[-1][0], found[0][0]
    follow_where = ["kind IN ('enforcement', 'lockout')", "id > ?", "id <= ?"]
    follow_params: list[Any] = [lo, hi + FOLLOW_GAP]
    if account:
        follow_where.append("account = ?")
        follow_params.append(account)
    if rule:
        follow_where.append("rule = ?")
        follow_params.append(rule)
    async with conn.execute(
        f"SELECT id, body FROM records WHERE {' AND '.join(follow_where)} ORDER BY id",
        follow_params,
    ) as cur:
        followers = [(row[0], json.loads(row[1])) async for row in cur]
    # attach each follower to the closest violation before it with the same account and rule
    by_key: dict[tuple[str, str], list[int]] = {}
    for rid, rec in sorted(found, key=lambda x: x[0]):
        if rec.get("kind") == "violation":
            by_key.setdefault((rec.get("account", ""), rec.get("rule", "")), []).append(rid)
    enforcements: dict[int, list[str]] = {}
    lockouts: dict[int, str] = {}
    for fid, rec in followers:
        ids = by_key.get((rec.get("account", ""), rec.get("rule", "")))
        if not ids:
            continue
        pos = bisect_left(ids, fid)
        if pos == 0 or fid - ids[pos - 1] > FOLLOW_GAP:
            continue
        owner = ids[pos - 1]
        if rec.get("kind") == "lockout":
            lockouts[owner] = _lockout_text(rec)
        else:
            enforcements.setdefault(owner, []).append(_enforcement_text(rec))
    return [
        HistoryRow(
            rid, parse_ts(rec.get("ts")), rec.get("kind", ""), rec.get("account", ""),
            rec.get("rule", ""), rec.get("symbol"), rec.get("message", ""), rec.get("value"),
            rec.get("limit"), "; ".join(enforcements.get(rid, ())), lockouts.get(rid, ""),
        )
        for rid, rec in found
    ]
