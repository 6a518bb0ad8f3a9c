"""Reading the stored records (CONTRACT §2) for `riskterm export` and `riskterm tail`: the
record kinds, time bounds given on the command line, and a read-only connection.

Records are read in id order (the order they were committed, which is the order headless
stdout printed them) over a read-only connection: in WAL mode it sees the last commit and
never blocks the engine writing the same database.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from riskterm.db import BUSY_TIMEOUT_MS

KINDS = ("violation", "warning", "enforcement", "lockout", "unlock", "job", "rejected", "summary")

# The records' `ts` is iso(): "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.fffZ". As text the
# two forms do not sort together ('.' < 'Z'), so time bounds compare this key, the stamp to the
# millisecond: "YYYY-MM-DDTHH:MM:SS.fff".
TS_KEY = ("(CASE WHEN substr(ts, 20, 1) = '.' THEN substr(ts, 1, 23) "
          "ELSE substr(ts, 1, 19) || '.000' END)")


class QueryError(Exception):
    """A bad filter on the command line or a file that is not a riskterm database (exit 2);
    the message says why."""


class ReadError(Exception):
    """The database could not be read (an I/O error): a runtime failure (exit 1)."""


def parse_kinds(text: str | None, *, more: str = "") -> tuple[str, ...]:
    """`violation,lockout` -> the kinds in their canonical order; None or "all" -> every kind.
    `more` ends the message of an unknown kind (what else the command accepts)."""
    if text is None or text.strip().lower() == "all":
        return KINDS
    wanted = [part.strip().lower() for part in text.split(",") if part.strip()]
    if not wanted:
        raise QueryError("--kind is empty: give one or more of " + ", ".join(KINDS) + more)
    unknown = [k for k in wanted if k not in KINDS]
    if unknown:
        raise QueryError(f"unknown record kind {', '.join(repr(k) for k in unknown)}: "
                         f"choose from {', '.join(KINDS)} (or all){more}")
    return tuple(k for k in KINDS if k in wanted)


def parse_instant(text: str, option: str, *, end: bool = False) -> datetime:
    """A command-line time -> an aware UTC instant.

    An ISO-8601 instant must carry an offset (`2026-03-02T14:30:00Z`, `...-06:00`). A date
    `YYYY-MM-DD` is that UTC day: from its midnight, or for an end bound (`--until`) up to the
    next midnight, so `--since 2026-03-01 --until 2026-03-31` is the whole of March."""
    text = text.strip()
    try:
        if len(text) == 10 and text[4] == "-" and text[7] == "-":
            day = date.fromisoformat(text)
            start = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return start + timedelta(days=1) if end else start
        instant = datetime.fromisoformat(text)
        if instant.tzinfo is None or instant.utcoffset() is None:
            raise QueryError(f"{option} {text!r} has no UTC offset: write it as "
                             f"{text}Z for UTC, or with an offset such as {text}-06:00")
        return instant.astimezone(UTC)
    except QueryError:
        raise
    except (ValueError, OverflowError, IndexError):
        raise QueryError(f"{option} {text!r} is not a time: give an ISO-8601 time with an "
                         "offset (2026-03-02T14:30:00Z) or a date (2026-03-02)") from None


def parse_time(text: str, option: str, *, end: bool = False) -> str:
    """A command-line time (parse_instant) -> the TS_KEY form (UTC, milliseconds)."""
    instant = parse_instant(text, option, end=end)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}"


@dataclass(frozen=True)
class RecordFilter:
    kinds: tuple[str, ...] = KINDS
    account: str | None = None
    since: str | None = None  # TS_KEY form, inclusive
    until: str | None = None  # TS_KEY form, exclusive

    def where(self) -> tuple[list[str], list[Any]]:
        """SQL conditions (joined with AND) and their parameters."""
        clauses: list[str] = []
        params: list[Any] = []
        if self.kinds != KINDS:
            clauses.append(f"kind IN ({', '.join('?' * len(self.kinds))})")
            params += self.kinds
        if self.account is not None:
            clauses.append("account = ?")
            params.append(self.account)
        if self.since is not None:
            clauses.append(f"{TS_KEY} >= ?")
            params.append(self.since)
        if self.until is not None:
            clauses.append(f"{TS_KEY} < ?")
            params.append(self.until)
        return clauses, params


def build_filter(kinds: str | None, account: str | None, since: str | None,
                 until: str | None = None, *, more: str = "") -> RecordFilter:
    f = RecordFilter(
        kinds=parse_kinds(kinds, more=more), account=account,
        since=parse_time(since, "--since") if since is not None else None,
        until=parse_time(until, "--until", end=True) if until is not None else None)
    if f.since is not None and f.until is not None and f.until <= f.since:
        raise QueryError(f"--until {until} is not after --since {since}: nothing can match")
    return f


def open_records(path: Path) -> sqlite3.Connection:
    """A read-only connection to an existing riskterm database (never creates one: CONTRACT
    §3). MissingDatabase-style errors are the caller's: check path.is_file() first."""
    uri = path.resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True)
    except sqlite3.Error as exc:
        raise ReadError(f"cannot open database {path}: {exc}") from None
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("SELECT id, kind, ts, account, rule, body FROM records LIMIT 0")
    except sqlite3.Error as exc:
        conn.close()
        text = str(exc)
        if "no such table" in text or "no such column" in text or "not a database" in text:
            raise QueryError(f"{path} is not a riskterm database (it has no records table)"
                             ) from None
        raise ReadError(f"cannot read database {path}: {text}") from None
    return conn
