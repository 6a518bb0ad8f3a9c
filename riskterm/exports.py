"""`riskterm export`: the stored records as CSV or JSON Lines, for a spreadsheet at tax time
or a post-mortem; `--kind fill` / `--kind equity` export the trade ledger and the equity
samples instead (riskterm.ledger).

JSON Lines are the stored bodies exactly as headless stdout printed them. CSV has a fixed,
documented column list (README, "Exporting records"): `id, ts, kind` and then, in the order of
COLUMNS, every column that one of the exported kinds has. A list (a violation's actions) is
joined with ';', null is empty, any other nested value is JSON, and control characters in text
are written as their escapes (riskterm.safetext), so a CSV printed to a terminal is safe.

Rows are streamed in id order from one read-only snapshot (a single SELECT), a batch at a time:
memory stays flat for any size, and an engine writing the database meanwhile is not held up.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from riskterm.ledger import (
    NOUNS,
    HistoryFilter,
    NoHistory,
    build_history_filter,
    history_kind,
    no_history_message,
    write_history,
)
from riskterm.recordquery import (
    QueryError,
    ReadError,
    RecordFilter,
    build_filter,
    open_records,
)
from riskterm.safetext import escape_json_controls, visible

EXIT_USAGE = 2
BATCH = 2048

# The fields of each kind (CONTRACT §2) besides kind and ts.
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "violation": ("rule", "account", "symbol", "action", "message", "value", "limit"),
    "warning": ("rule", "account", "symbol", "message", "value", "limit"),
    "enforcement": ("action", "account", "symbol", "rule", "order_id", "status", "detail"),
    "lockout": ("account", "rule", "state", "until"),
    "unlock": ("account", "rule", "reason"),
    "job": ("job_id", "job_kind", "account", "status", "attempt", "duration_s",
            "actions_taken", "error"),
    "rejected": ("line", "error"),
    "summary": ("events", "rejected", "violations", "warnings", "enforcements", "jobs",
                "elapsed_s"),
}
# Every CSV column in its fixed order; an export has the ones its kinds use.
COLUMNS = ("id", "ts", "kind", "account", "symbol", "rule", "action", "status", "state",
           "until", "reason", "order_id", "value", "limit", "message", "detail", "job_id",
           "job_kind", "attempt", "duration_s", "actions_taken", "error", "line", "events",
           "rejected", "violations", "warnings", "enforcements", "jobs", "elapsed_s")


def csv_columns(kinds: tuple[str, ...]) -> list[str]:
    used = {"id", "ts", "kind"}
    for kind in kinds:
        used.update(KIND_FIELDS[kind])
    return [c for c in COLUMNS if c in used]


def _cell(value: Any) -> str:
    """One CSV cell as text, quoted when it holds a comma or a quote (RFC 4180; text never
    holds a raw newline here, visible() has escaped it)."""
    cls = value.__class__
    if cls is str:
        text = value if value.isascii() and value.isprintable() else visible(value)
    elif cls is int or cls is float:
        return repr(value)
    elif value is None:
        return ""
    elif cls is bool:
        return "true" if value else "false"
    elif cls is list and all(item.__class__ is str for item in value):
        text = visible(";".join(value))
    else:
        text = visible(orjson.dumps(value).decode())
    if "," in text or '"' in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def _rows(conn: sqlite3.Connection, flt: RecordFilter,
          columns: str = "body") -> Iterator[list[tuple[Any, ...]]]:
    clauses, params = flt.where()
    sql = f"SELECT {columns} FROM records"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    cur = conn.execute(sql + " ORDER BY id", params)
    try:
        while batch := cur.fetchmany(BATCH):
            yield batch
    finally:
        cur.close()


def write_jsonl(conn: sqlite3.Connection, flt: RecordFilter, out: IO[str]) -> int:
    n = 0
    for batch in _rows(conn, flt):
        # bodies are stored escaped already (recorder.dumps); this keeps a body that some
        # other writer stored raw from reaching a terminal as an escape sequence
        out.write("".join([escape_json_controls(body) + "\n" for (body,) in batch]))
        n += len(batch)
    return n


# A cell from a record's value, inline: the common cases (text of a clean body, which holds no
# quote, so a comma is all that needs quoting; a number) without a call; the rest via _cell.
_CELL = ("((v if ',' not in v else '\"' + v + '\"') "
         "if (c := (v := get({field!r})).__class__) is str and clean "
         "else repr(v) if c is float or c is int else cell(v))")


def _row_function(kind: str, columns: list[str]) -> Callable[[int, Callable[[str], Any], bool],
                                                              str]:
    """A function (rid, rec.get, clean) -> the CSV line of one record of `kind`, generated so
    that each of the kind's cells is one inline expression and the empty columns are part of
    one format string: a union row of 30 mostly empty cells costs a third of csv.writer's
    time, which is what holds export above 200,000 records/s."""
    own = {"ts", *KIND_FIELDS[kind]}
    parts, cells = [], ["rid"]
    for column in columns:
        if column == "id":
            parts.append("%d")
        elif column == "kind":
            parts.append(kind)  # a plain word (KINDS): nothing to quote or escape
        elif column in own:
            parts.append("%s")
            cells.append(_CELL.format(field=column))
        else:
            parts.append("")
    source = (f"def row(rid, get, clean):\n"
              f"    return {','.join(parts)!r} % ({', '.join(cells)},)\n")
    namespace: dict[str, Any] = {"cell": _cell}
    exec(compile(source, f"<csv row of {kind}>", "exec"), namespace)
    return namespace["row"]  # type: ignore[no-any-return]


def write_csv(conn: sqlite3.Connection, flt: RecordFilter, out: IO[str]) -> int:
    columns = csv_columns(flt.kinds)
    rows = {kind: _row_function(kind, columns) for kind in flt.kinds}
    ts_at = columns.index("ts")
    loads = orjson.loads
    out.write(",".join(columns) + "\n")
    n = 0
    for batch in _rows(conn, flt, "id, body"):
        lines = []
        for rid, body in batch:
            rec = loads(body)
            if rec.__class__ is not dict:
                raise ReadError(f"record {rid} in the database is not a JSON object")
            get = rec.get
            kind = get("kind")
            # an ASCII body without a backslash holds no control character and no quote in
            # any string (JSON would have escaped them): its text needs no visible()
            clean = body.isascii() and "\\" not in body
            row = rows.get(kind) if kind.__class__ is str else None
            if row is not None:
                lines.append(row(rid, get, clean))
            else:  # a kind of a later riskterm: its id, ts and kind
                cells = [""] * len(columns)
                cells[0], cells[ts_at], cells[ts_at + 1] = str(rid), _cell(get("ts")), _cell(kind)
                lines.append(",".join(cells))
        lines.append("")
        out.write("\n".join(lines))
        n += len(batch)
    return n


Filter = RecordFilter | HistoryFilter


def export(db: Path, flt: Filter, fmt: str, out: IO[str]) -> int:
    """Write the matching records (or fills, or equity samples) of db to out; returns how
    many. NoHistory when fills or equity are asked of a database that has none yet."""
    conn = open_records(db)
    try:
        if isinstance(flt, HistoryFilter):
            try:
                return write_history(conn, flt, fmt, out, _cell)
            except (TypeError, ValueError, OverflowError) as exc:  # a hand-edited row
                raise ReadError(f"database {db} holds a damaged {flt.kind} row (a time or "
                                f"a number that is not one): {exc}") from None
        return (write_csv if fmt == "csv" else write_jsonl)(conn, flt, out)
    except sqlite3.Error as exc:
        raise ReadError(f"cannot read database {db}: {exc}") from None
    except orjson.JSONDecodeError as exc:
        raise ReadError(f"database {db} holds a record that is not JSON: {exc}") from None
    finally:
        conn.close()


def write_atomically(path: Path, db: Path, flt: Filter, fmt: str) -> int:
    """Into a temporary file beside path, renamed over it once complete: a reader never sees a
    half-written export, and a failed or interrupted one leaves path as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # as a plain open() would create it, not mkstemp's 0600
        with open(fd, "w", encoding="utf-8", newline="") as out:
            n = export(db, flt, fmt, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return n


def _err(text: str) -> None:
    print(f"riskterm: {text}", file=sys.stderr, flush=True)


def export_main(args: Any, db: Path) -> int:
    fmt = (args.format or "").lower()
    if fmt not in ("csv", "jsonl"):
        _err(f"unknown --format {args.format!r}: use csv or jsonl")
        return EXIT_USAGE
    flt: Filter
    try:
        kind = history_kind(args.kind)
        if kind is not None:
            flt = build_history_filter(kind, args.account, args.since, args.until)
        else:
            flt = build_filter(args.kind, args.account, args.since, args.until,
                               more="; or fill or equity, each on its own")
    except QueryError as exc:
        _err(str(exc))
        return EXIT_USAGE
    out_path = Path(args.out) if args.out else None
    if out_path is not None:
        if out_path.is_dir():
            _err(f"--out {out_path} is a directory: give a file name")
            return EXIT_USAGE
        if not out_path.parent.is_dir():
            _err(f"--out {out_path}: the directory {out_path.parent} does not exist")
            return EXIT_USAGE
    try:
        if out_path is None:
            export(db, flt, fmt, sys.stdout)
        else:
            n = write_atomically(out_path, db, flt, fmt)
            one, many = NOUNS[flt.kind] if isinstance(flt, HistoryFilter) else ("record",
                                                                                  "records")
            _err(f"exported {n} {one if n == 1 else many} to {out_path}")
    except QueryError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except NoHistory:
        _err(no_history_message(db))
        return 1
    except ReadError as exc:
        _err(str(exc))
        return 1
    except BrokenPipeError:
        raise  # cli.main ends quietly
    except OSError as exc:
        where = out_path if out_path is not None else "stdout"
        _err(f"cannot write {where}: {exc.strerror or exc}")
        return 1
    return 0
