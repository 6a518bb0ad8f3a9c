"""`riskterm tail`: follow the records an engine commits to a database, from another process.

Polls the records table by id over a read-only connection. Ids are the table's integer key,
handed out by the single writer inside its transaction, so once a record is visible every
record before it is too: reading `id > last seen` in id order never misses or repeats one. A
poll that finds nothing costs one index probe; POLL_S bounds the latency.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sqlite3
import stat
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson

from riskterm.recordquery import QueryError, ReadError, RecordFilter, build_filter, open_records
from riskterm.safetext import escape_json_controls, visible

EXIT_USAGE = 2
POLL_S = 0.1
BATCH = 2048


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def gist(rec: dict[str, Any]) -> str:
    """The point of a record in a few words (the message where it has one)."""
    kind = rec.get("kind")
    g = rec.get
    if kind == "violation":
        return f"{_text(g('message'))} -> {_text(g('action'))}"
    if kind == "warning":
        return _text(g("message"))
    if kind == "enforcement":
        target = " ".join(str(x) for x in (g("symbol"), g("order_id")) if x)
        head = f"{_text(g('action'))} {target}".rstrip()
        return f"{head} [{_text(g('status'))}] {_text(g('detail'))}"
    if kind == "lockout":
        until = g("until")
        return f"{_text(g('state'))} " + (f"until {until}" if until else "permanently")
    if kind == "unlock":
        return f"lifted ({_text(g('reason'))})"
    if kind == "job":
        text = f"{_text(g('job_id'))} {_text(g('job_kind'))} {_text(g('status'))}"
        text += f" attempt {_text(g('attempt'))}"
        if g("duration_s") is not None:
            text += f", {g('duration_s')} s, {_text(g('actions_taken'))} action(s)"
        if g("error"):
            text += f": {g('error')}"
        return text
    if kind == "rejected":
        return f"line {_text(g('line'))}: {_text(g('error'))}"
    if kind == "summary":
        return " ".join(f"{k}={g(k)}" for k in ("events", "rejected", "violations", "warnings",
                                                 "enforcements", "jobs", "elapsed_s"))
    return orjson.dumps({k: v for k, v in rec.items() if k not in ("kind", "ts")}).decode()


def pretty(body: str) -> str:
    """One readable line: time, kind, account, rule, the gist; control characters shown as
    their escapes, never sent to the terminal."""
    try:
        rec = orjson.loads(body)
    except orjson.JSONDecodeError:
        return visible(body)
    if not isinstance(rec, dict):
        return visible(body)
    fields = (_text(rec.get("ts")), f"{_text(rec.get('kind')):<11}", _text(rec.get("account")),
              _text(rec.get("rule")), gist(rec))
    return visible("  ".join(fields))


class _Stop:
    """SIGINT / SIGTERM: end the loop at once (the wait wakes) and exit 130 / 143."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.code = 0

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.code = 130 if signum == signal.SIGINT else 143
        self.event.set()


def _pipe_closed(out: IO[str]) -> bool:
    """True once nobody reads stdout (a pipe whose reader went away): `tail | head -1` then ends
    even while no record comes to be written."""
    try:
        fd = out.fileno()
        if not stat.S_ISFIFO(os.fstat(fd).st_mode):
            return False
        poller = select.poll()
        poller.register(fd, 0)  # POLLERR / POLLHUP are always reported
        return any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def follow(conn: sqlite3.Connection, flt: RecordFilter, out: IO[str], *, from_start: bool,
           as_pretty: bool, stop: threading.Event, ready: IO[str] | None = None) -> None:
    """Write the matching records committed after now (or all of them, from_start, which the
    caller uses with flt.since) until stop is set."""
    if from_start:
        last = 0
    else:
        row = conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()
        last = int(row[0])
    clauses, params = flt.where()
    sql = "SELECT id, body FROM records WHERE " + " AND ".join(
        ["id > ?", "id <= ?", *clauses]) + f" ORDER BY id LIMIT {BATCH}"
    if ready is not None:  # on stderr: the moment from which nothing is missed
        start = "every matching record" if from_start else f"new records (after id {last})"
        print(f"riskterm: following {start}; Ctrl-C to stop", file=ready, flush=True)
    while not stop.is_set():
        # up to the newest id first: `last` then moves past records the filter skips, so a
        # poll never rescans them (a --kind that matches rarely stays cheap for hours)
        top = int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0])
        rows = conn.execute(sql, [last, top, *params]).fetchall() if top > last else []
        last = rows[-1][0] if len(rows) == BATCH else max(last, top)
        if rows:
            if as_pretty:
                text = "".join(pretty(body) + "\n" for _, body in rows)
            else:
                text = "".join(escape_json_controls(body) + "\n" for _, body in rows)
            out.write(text)
            out.flush()
            if len(rows) == BATCH:
                continue  # more are waiting: no pause
        elif _pipe_closed(out):
            return
        stop.wait(POLL_S)


def tail_main(args: Any, db: Path) -> int:
    try:
        flt = build_filter(args.kind, args.account, args.since)
    except QueryError as exc:
        print(f"riskterm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    stop = _Stop()
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        conn = open_records(db)
        try:
            follow(conn, flt, sys.stdout, from_start=flt.since is not None,
                   as_pretty=args.pretty, stop=stop.event, ready=sys.stderr)
        finally:
            conn.close()
    except QueryError as exc:
        print(f"riskterm: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReadError as exc:
        print(f"riskterm: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:
        print(f"riskterm: cannot read database {db}: {exc}", file=sys.stderr)
        return 1
    finally:
        for sig, handler in old.items():
            with contextlib.suppress(ValueError, OSError):
                signal.signal(sig, handler)
    return stop.code
