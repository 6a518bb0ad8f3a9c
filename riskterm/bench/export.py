"""Export throughput: `riskterm export` of a database of N records to a file (--out: temp file,
fsync, rename), CSV and JSON Lines, the best of two runs each, against a plain
`SELECT body FROM records ORDER BY id` loop over the same database in the same run; and the
same for N fills (`--kind fill`, the trade ledger) against a plain SELECT of the fills table."""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from riskterm.db import open_db
from riskterm.exports import write_atomically
from riskterm.ledger import FILL_COLUMNS, HistoryFilter
from riskterm.recorder import INSERT_RECORD, dumps
from riskterm.recordquery import RecordFilter
from riskterm.timefmt import iso

RUNS = 2
T0 = 1_772_460_000.0  # 2026-03-02T14:00:00Z


def _record(i: int) -> dict[str, Any]:
    """A mix like a busy day's: violations with their enforcements, some warnings, lockouts
    and job updates."""
    account = f"ACC-{i % 37:03d}"
    ts = iso(T0 + i * 0.01)
    kind = i % 10
    if kind < 4:
        return {"kind": "violation", "ts": ts, "rule": "max_position_loss", "account": account,
                "symbol": "MNQ", "action": ["flatten"],
                "message": f"{account} MNQ position of 2 is at -{i % 500}.00 unrealized, "
                           "limit -300.00", "value": -float(i % 500), "limit": -300.0}
    if kind < 8:
        return {"kind": "enforcement", "ts": ts, "action": "flatten", "account": account,
                "symbol": "MNQ", "rule": "max_position_loss", "order_id": None,
                "status": "dry_run", "detail": "close 2 MNQ; cancel 1 working order"}
    if kind == 8:
        return {"kind": "warning", "ts": ts, "rule": "daily_realized_loss", "account": account,
                "symbol": None, "message": f"{account} realized -400.00 today, limit -500.00 "
                "(warning at 80% of the limit)", "value": -400.0, "limit": -500.0}
    if i % 20 == 9:
        return {"kind": "lockout", "ts": ts, "account": account, "rule": "daily_realized_loss",
                "state": "halted", "until": None}
    return {"kind": "job", "ts": ts, "job_id": f"1-{i}", "job_kind": "smart_risk",
            "account": account, "status": "completed", "attempt": 1, "duration_s": 1.25,
            "actions_taken": 1, "error": None}


def build_db(path: Path, n: int) -> None:
    asyncio.run(_create(path))
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = OFF")
        with conn:
            chunk: list[tuple[Any, ...]] = []
            for i in range(n):
                rec = _record(i)
                chunk.append((rec["kind"], rec["ts"], rec.get("account"), rec.get("rule"),
                               dumps(rec)))
                if len(chunk) == 10_000:
                    conn.executemany(INSERT_RECORD, chunk)
                    chunk.clear()
            conn.executemany(INSERT_RECORD, chunk)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _fill(i: int) -> tuple[Any, ...]:
    """A fill row as the engine stores it: round trips of 1-3 lots over 37 accounts."""
    qty = 1 + i % 3
    closing = i % 2 == 1
    price = 20000.0 + (i % 400) * 0.25
    return (T0 + i * 0.01, f"ACC-{i % 37:03d}", "MNQ" if i % 5 else "ESH6",
            "sell" if closing else "buy", qty, price, 0.74 * qty,
            (i % 41 - 20) * 2.5 * qty if closing else 0.0, f"o-{i}", f"t-{i}")


def build_fills(path: Path, n: int) -> None:
    """n fills in the fills table of the (already migrated) database at path."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA synchronous = OFF")
        sql = (f"INSERT INTO fills ({', '.join(FILL_COLUMNS[1:])}) "
               f"VALUES ({', '.join('?' * (len(FILL_COLUMNS) - 1))})")
        with conn:
            for start in range(0, n, 10_000):
                conn.executemany(sql, [_fill(i) for i in range(start, min(n, start + 10_000))])
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


async def _create(path: Path) -> None:
    conn = await open_db(path)  # the real schema, migrated
    await conn.close()


def select_body_rate(db: Path, sql: str = "SELECT body FROM records ORDER BY id") -> float:
    conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    try:
        t0 = time.perf_counter()
        n = 0
        cur = conn.execute(sql)
        while batch := cur.fetchmany(2048):
            for _row in batch:
                n += 1
        return n / (time.perf_counter() - t0)
    finally:
        conn.close()


def export_rate(db: Path, out: Path, fmt: str,
                flt: RecordFilter | HistoryFilter | None = None) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = write_atomically(out, db, flt or RecordFilter(), fmt)
    return n, n / (time.perf_counter() - t0)


def bench_export(n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="riskterm-bench-") as tmp:
        db = Path(tmp) / "records.db"
        build_db(db, n)
        baseline = csv_rate = jsonl_rate = 0.0
        for _ in range(RUNS):  # best of: a shared machine's noise only ever slows a run down
            baseline = max(baseline, select_body_rate(db))
            count, rate = export_rate(db, Path(tmp) / "out.jsonl", "jsonl")
            jsonl_rate = max(jsonl_rate, rate)
            count, rate = export_rate(db, Path(tmp) / "out.csv", "csv")
            csv_rate = max(csv_rate, rate)
        if count != n:
            raise RuntimeError(f"exported {count} of {n} records")
        build_fills(db, n)
        fills = HistoryFilter("fill")
        select = f"SELECT {', '.join(FILL_COLUMNS)} FROM fills ORDER BY id"
        fill_base = fill_csv = fill_jsonl = 0.0
        for _ in range(RUNS):
            fill_base = max(fill_base, select_body_rate(db, select))
            count, rate = export_rate(db, Path(tmp) / "fills.jsonl", "jsonl", fills)
            fill_jsonl = max(fill_jsonl, rate)
            count, rate = export_rate(db, Path(tmp) / "fills.csv", "csv", fills)
            fill_csv = max(fill_csv, rate)
        if count != n:
            raise RuntimeError(f"exported {count} of {n} fills")
    slower = min(csv_rate, jsonl_rate)
    fill_slower = min(fill_csv, fill_jsonl)
    return {"records": n, "records_per_s": round(slower), "csv_per_s": round(csv_rate),
            "jsonl_per_s": round(jsonl_rate), "select_body_per_s": round(baseline),
            "ratio": round(slower / baseline, 3),
            "fills": n, "fills_per_s": round(fill_slower), "fills_csv_per_s": round(fill_csv),
            "fills_jsonl_per_s": round(fill_jsonl), "select_fills_per_s": round(fill_base),
            "fills_ratio": round(fill_slower / fill_base, 3)}
