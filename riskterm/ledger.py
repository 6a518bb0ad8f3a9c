"""`riskterm export --kind fill` and `--kind equity`: the trade ledger and the equity history
(the `fills` and `equity` tables, schema version 3 of riskterm/db.py) as CSV or JSON Lines.

A fill row is a fill as the engine applied it (a fill delivered again under the same trade id
is not stored twice); an equity row is a sample of one account's balance, equity and P&L. The
columns are fixed (README, "Exporting records"); JSON Lines carry the same keys in the same
order. Times are the engine clock, written as the records write theirs (riskterm.timefmt.iso:
ISO-8601 UTC, milliseconds when present), and --since/--until compare at that millisecond.

A database last opened by an older riskterm's engine has neither table (read-only readers never
migrate): that is NoHistory, said as such, never an empty ledger that looks like no trades.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import orjson

from riskterm.recordquery import QueryError, parse_instant
from riskterm.safetext import escape_json_controls
from riskterm.timefmt import iso

BATCH = 2048
FILL_COLUMNS = ("id", "ts", "account", "symbol", "side", "qty", "price", "fee", "realized_pnl",
                "order_id", "trade_id")
EQUITY_COLUMNS = ("ts", "account", "balance", "equity", "realized_pnl", "unrealized_pnl")
# --kind word -> (table, columns, the order rows were committed in)
TABLES: dict[str, tuple[str, tuple[str, ...], str]] = {
    "fill": ("fills", FILL_COLUMNS, "id"),
    "equity": ("equity", EQUITY_COLUMNS, "rowid"),
}
ALIASES = {"fill": "fill", "fills": "fill", "equity": "equity"}
NOUNS = {"fill": ("fill", "fills"), "equity": ("equity sample", "equity samples")}
HALF_MS = 0.0005  # a ts is shown rounded to the millisecond; bounds compare what is shown


class NoHistory(Exception):
    """The database has no fills/equity tables yet (written by an older riskterm)."""


@dataclass(frozen=True)
class HistoryFilter:
    kind: str  # fill | equity
    account: str | None = None
    since: float | None = None  # epoch seconds, inclusive
    until: float | None = None  # epoch seconds, exclusive

    def where(self) -> tuple[list[str], list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.account is not None:
            clauses.append("account = ?")
            params.append(self.account)
        if self.since is not None:
            clauses.append("ts >= ?")
            params.append(self.since - HALF_MS)
        if self.until is not None:
            clauses.append("ts < ?")
            params.append(self.until - HALF_MS)
        return clauses, params


def history_kind(text: str | None) -> str | None:
    """The history kind a --kind names ('fill', 'fills' or 'equity'), or None when it names
    records only. Mixed with records or with each other is a QueryError: their columns differ."""
    if text is None:
        return None
    wanted = {part.strip().lower() for part in text.split(",") if part.strip()}
    named = {ALIASES[w] for w in wanted if w in ALIASES}
    if not named:
        return None
    if len(named) > 1 or wanted - ALIASES.keys():
        raise QueryError(f"--kind {text.strip()}: fill and equity are exported each on its own "
                         "(their columns are not the records' nor each other's): run one "
                         "export per kind")
    return named.pop()


def build_history_filter(kind: str, account: str | None, since: str | None,
                         until: str | None) -> HistoryFilter:
    lo = parse_instant(since, "--since").timestamp() if since is not None else None
    hi = parse_instant(until, "--until", end=True).timestamp() if until is not None else None
    if lo is not None and hi is not None and hi <= lo:
        raise QueryError(f"--until {until} is not after --since {since}: nothing can match")
    return HistoryFilter(kind, account, lo, hi)


def has_history(conn: sqlite3.Connection) -> bool:
    names = {name for (name,) in conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ('fills', 'equity')")}
    return names == {"fills", "equity"}


def no_history_message(db: object) -> str:
    return (f"{db} has no fill history yet: it was written by an older riskterm, which kept no "
            "fills or equity samples; they are stored from the first time this riskterm's "
            "engine opens the database (its records are there: --kind all)")


def _rows(conn: sqlite3.Connection, flt: HistoryFilter) -> Iterator[list[tuple[Any, ...]]]:
    table, columns, order = TABLES[flt.kind]
    clauses, params = flt.where()
    sql = f"SELECT {', '.join(columns)} FROM {table}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    cur = conn.execute(sql + f" ORDER BY {order}", params)
    try:
        while batch := cur.fetchmany(BATCH):
            yield batch
    finally:
        cur.close()


def _fill_csv(batch: list[tuple[Any, ...]], c: Callable[[Any], str]) -> str:
    return "".join([f"{i},{iso(ts)},{c(a)},{c(s)},{c(side)},{c(q)},{c(p)},{c(f)},{c(r)},{c(o)},"
                    f"{c(t)}\n" for i, ts, a, s, side, q, p, f, r, o, t in batch])


def _equity_csv(batch: list[tuple[Any, ...]], c: Callable[[Any], str]) -> str:
    return "".join([f"{iso(ts)},{c(a)},{c(b)},{c(e)},{c(r)},{c(u)}\n"
                    for ts, a, b, e, r, u in batch])


def write_history(conn: sqlite3.Connection, flt: HistoryFilter, fmt: str, out: IO[str],
                  cell: Callable[[Any], str]) -> int:
    """Write the rows flt selects as CSV (cells by `cell`, the records' CSV cell) or JSON
    Lines; returns how many. NoHistory when the tables are not there."""
    if not has_history(conn):
        raise NoHistory
    columns = TABLES[flt.kind][1]
    n = 0
    if fmt == "csv":
        lines = _fill_csv if flt.kind == "fill" else _equity_csv
        out.write(",".join(columns) + "\n")
        for batch in _rows(conn, flt):
            out.write(lines(batch, cell))
            n += len(batch)
        return n
    dumps, ts_at = orjson.dumps, columns.index("ts")
    for batch in _rows(conn, flt):
        text = []
        for row in batch:
            obj = dict(zip(columns, row, strict=True))
            obj["ts"] = iso(row[ts_at])
            # orjson escapes C0 controls; DEL, C1 and bidi controls are escaped here
            text.append(escape_json_controls(dumps(obj).decode()))
        text.append("")
        out.write("\n".join(text))
        n += len(batch)
    return n
