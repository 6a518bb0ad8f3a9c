"""`riskterm report [--day YYYY-MM-DD] [--out PATH] [--db PATH] [--rules PATH]`."""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import sys
import tempfile
from datetime import date, time
from pathlib import Path
from typing import Any

from riskterm.config import RulesConfig, load_rules_for_command, resolve_rules_path

EXIT_USAGE = 2
_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
_NOON = time(12, 0)


def _err(text: str) -> None:
    print(f"riskterm: {text}", file=sys.stderr, flush=True)


def parse_day(text: str) -> date:
    if not _DAY.fullmatch(text):
        raise ValueError(f"--day must be a date as YYYY-MM-DD, got {text!r}")
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--day {text} is not a real date") from None


def day_bounds(config: RulesConfig, label: date) -> tuple[float, float]:
    """[start, end) of the trading day named `label` (riskterm.calendar's naming: with a reset at
    or after noon a day is named by the date it ends on)."""
    cal = config.calendar
    first = label.toordinal() - 1 if config.daily_reset >= _NOON else label.toordinal()
    return cal.trading_day_bounds(cal.reset_at(date.fromordinal(first)))


def default_out(label: date) -> Path:
    return Path(f"riskterm-report-{label.isoformat()}.html")


def write_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename it over: a reader (or a crash) sees
    the old file or the whole new one, never a part."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it 0600; a report is an ordinary file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def report_main(args: Any, db: Path) -> int:
    from riskterm.report.day import build_day
    from riskterm.report.page import render
    from riskterm.report.store import (
        ReportDataError,
        connect,
        latest_account_day,
        latest_record_ts,
        load_day,
    )

    label: date | None = None
    if args.day is not None:
        try:
            label = parse_day(args.day)
        except ValueError as exc:
            _err(str(exc))
            return EXIT_USAGE
    out: Path | None = None
    if args.out is not None and args.out != "-":
        out = Path(args.out)
        if out.is_dir():
            _err(f"--out {out} is a directory: give a file name")
            return EXIT_USAGE
        if not out.parent.is_dir():
            _err(f"--out {out}: the directory {out.parent} does not exist")
            return EXIT_USAGE
    if not db.is_file():
        what = f" ({db} is not a file)" if db.exists() else ""
        _err(f"no database at {db}{what}: give the --db the engine runs on")
        return EXIT_USAGE
    rules_path = resolve_rules_path(args.rules)
    config = load_rules_for_command(rules_path)
    if isinstance(config, str):
        print(config, file=sys.stderr)
        return EXIT_USAGE
    try:
        conn = connect(db)
    except ReportDataError as exc:
        _err(str(exc))
        return EXIT_USAGE
    try:
        if label is None:
            latest = latest_record_ts(conn)
            days = [d for d in (latest_account_day(conn), None if latest is None
                                else config.calendar.trading_day(latest)) if d is not None]
            if not days:
                print(f"riskterm: {db} holds no records yet: no report written",
                      file=sys.stderr)
                return 0
            label = max(days)
        try:
            start, end = day_bounds(config, label)
        except (ValueError, OverflowError):  # the first or last days a date can name
            _err(f"--day {label.isoformat()} is outside the dates a trading day can have")
            return EXIT_USAGE
        rows = load_day(conn, start, end)
    except sqlite3.Error as exc:
        _err(f"cannot read database {db}: {exc}")
        return 1
    finally:
        conn.close()
    day = build_day(rows, label, config)
    if not rows.records and not rows.jobs and not day.accounts:
        print(f"riskterm: no data for trading day {label.isoformat()} in {db}: no report "
              "written", file=sys.stderr)
        return 0
    html = render(day, config, db=str(db), rules=str(rules_path))
    if args.out == "-":
        sys.stdout.write(html)
        return 0
    out = out or default_out(label)
    try:
        write_atomically(out, html)
    except OSError as exc:
        _err(f"cannot write {out}: {exc.strerror or exc}")
        return 1
    n = len(day.accounts)
    print(str(out))
    print(f"riskterm: trading day {label.isoformat()}: {n} account{'' if n == 1 else 's'}, "
          f"{sum(a.counts['violation'] for a in day.accounts)} violation(s); wrote {out}",
          file=sys.stderr)
    return 0
