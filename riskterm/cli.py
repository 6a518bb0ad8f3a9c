"""The command line (CONTRACT §3). Options may stand before or after a subcommand."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

EXIT_USAGE = 2

_COMMON: list[tuple[tuple[str, ...], dict[str, Any]]] = [
    (("--no-ui",), {"action": "store_true", "help": "run headless: JSON Lines on stdout"}),
    (("--source",), {"help": "sim (default), replay:PATH, - for stdin, projectx, or a plugin's "
                               "NAME[:ARG] (entry point group riskterm.brokers)"}),
    (("--rules",), {"help": "rules file (default ./rules.yaml, else the packaged default)"}),
    (("--db",), {"help": "SQLite database file"}),
    (("--seed",), {"type": int, "help": "simulator seed"}),
    (("--speed",), {"type": float, "help": "pacing: 0 = as fast as possible, 1 = real time"}),
    (("--max-events",), {"type": int, "help": "stop the source after N events"}),
    (("--accounts",), {"metavar": "PATTERN[,PATTERN...]",
                       "help": "watch only the accounts whose name matches one of these fnmatch "
                               "patterns (case-sensitive; default every account); events of the "
                               "others are not taken, recorded or enforced (any source)"}),
    (("--record",), {"metavar": "PATH",
                     "help": "append every event the engine takes to PATH as JSON Lines, so that "
                             "--source replay:PATH replays the session (any source)"}),
    (("--json",), {"action": "store_true", "help": "JSON output (jobs list/show, bench)"}),
]
_DEFAULTS = {"no_ui": False, "source": "sim", "rules": None, "db": None, "seed": 0,
             "speed": None, "max_events": None, "json": False, "accounts": None,
             "record": None}


def _common_parser() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    for flags, kwargs in _COMMON:
        parent.add_argument(*flags, default=argparse.SUPPRESS, **kwargs)
    return parent


def build_parser() -> argparse.ArgumentParser:
    common = _common_parser()
    parser = argparse.ArgumentParser(
        prog="riskterm", parents=[common],
        description="A terminal risk manager: watches a broker's events and enforces risk rules.",
    )
    parser.add_argument("--version", action="version", version=f"riskterm {_version()}")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("check-rules", parents=[common], help="validate a rules file")
    p.add_argument("path")
    p = sub.add_parser("unlock", parents=[common], help="lift an account's lockouts by hand")
    p.add_argument("account")
    p.add_argument("--rule", help="only the lockout of this rule")
    jobs = sub.add_parser("jobs", parents=[common], help="the Smart Risk Manager job queue")
    jsub = jobs.add_subparsers(dest="jobs_command", required=True)
    jsub.add_parser("list", parents=[common], help="list jobs, newest first")
    for name, text in (("show", "show one job"), ("cancel", "cancel a queued or running job"),
                       ("retry", "queue a failed, cancelled, timed-out or interrupted job again"),
                       ("approve", "carry out a finished job's recommended actions")):
        jp = jsub.add_parser(name, parents=[common], help=text)
        jp.add_argument("job_id")
    jp = jsub.add_parser("enqueue", parents=[common], help="queue a review of an account")
    jp.add_argument("--account", required=True)
    jp.add_argument("--kind", default="smart_risk")
    jp.add_argument("--instructions")
    bench = sub.add_parser("bench", parents=[common], help="run the built-in benchmarks")
    bench.add_argument("--only", nargs="+", metavar="NAME")
    alerts = sub.add_parser("alerts", parents=[common], help="the alert targets (alerts: block)")
    asub = alerts.add_subparsers(dest="alerts_command", required=True)
    asub.add_parser("test", parents=[common], help="send a test message to every alert target")
    p = sub.add_parser("export", parents=[common], help="write stored records as CSV or JSONL")
    p.add_argument("--kind", metavar="KIND[,KIND...]",
                   help="record kinds (default all); or fill, or equity, on its own")
    p.add_argument("--account", help="only this account's records")
    p.add_argument("--since", metavar="T", help="from this time (ISO-8601 with offset, or a date)")
    p.add_argument("--until", metavar="T", help="before this time (a date: to its end)")
    p.add_argument("--format", required=True, metavar="csv|jsonl")
    p.add_argument("--out", metavar="PATH", help="write to PATH (atomically), not stdout")
    p = sub.add_parser("tail", parents=[common], help="follow the records of a running engine")
    p.add_argument("--kind", metavar="KIND[,KIND...]", help="record kinds (default all)")
    p.add_argument("--account", help="only this account's records")
    p.add_argument("--since", metavar="T", help="start at this time, not now")
    p.add_argument("--pretty", action="store_true", help="one readable line per record")
    p = sub.add_parser("report", parents=[common], help="write a trading day's report as HTML")
    p.add_argument("--day", metavar="YYYY-MM-DD", help="trading day (default the latest with data)")
    p.add_argument("--out", metavar="PATH", help="default riskterm-report-DAY.html; - for stdout")
    p = sub.add_parser("serve", parents=[common], help="serve the dashboard to a web browser")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("riskterm")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "(version unknown: the package is not installed)"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    for key, value in _DEFAULTS.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    return args


def _data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(os.environ.get("RISKTERM_HOME") or user_data_dir("riskterm"))


def default_db(source: str) -> Path:
    """A live broker has a database of its own (the simulator's is riskterm.db, ProjectX's
    riskterm-projectx.db); a replay gets a fresh one so it inherits nothing."""
    from riskterm.brokers import registry

    name = registry.split(source)[0]
    if name == "sim":
        return _data_dir() / "riskterm.db"
    if name not in registry.REPLAYS:
        return _data_dir() / f"riskterm-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.db"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return _data_dir() / "replays" / f"replay-{stamp}-{os.getpid()}.db"


def _err(text: str) -> None:
    print(f"riskterm: {text}", file=sys.stderr, flush=True)


def _too_deep(path: Any) -> str:
    # the YAML parser recurses per nesting level; a file nested thousands deep is invalid
    return f"{path}:1:1: invalid YAML: nested too deeply"


def main(argv: list[str] | None = None) -> int:
    """Run a command. Output into a closed pipe (`riskterm jobs list | head -1`) ends quietly
    (CONTRACT §3): stdout is flushed here, where its BrokenPipeError can be caught, not at
    interpreter exit, and then pointed at /dev/null so that exit's own flush finds nothing."""
    code = 0
    try:
        code = _main(argv)
        sys.stdout.flush()
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return code


def _main(argv: list[str] | None) -> int:
    args = parse_args(argv)
    try:
        if args.command == "check-rules":
            from riskterm.config import check_rules_main

            try:  # the streams of now (not of import time), so redirections are honoured
                return check_rules_main(args.path, sys.stdout, sys.stderr)
            except RecursionError:
                print(_too_deep(args.path), file=sys.stderr)
                return EXIT_USAGE
        if args.command == "unlock":
            return asyncio.run(_unlock(args))
        if args.command == "jobs":
            return _jobs(args)
        if args.command == "bench":
            from riskterm.bench import bench_main

            return bench_main(args)
        if args.command == "alerts":
            from riskterm.alerts.cli import alerts_main

            return alerts_main(args)
        if args.command in ("export", "tail"):  # read an existing database, never create one
            if not (db := _db_for_admin(args)).is_file():
                return _no_database(db)
            from riskterm.exports import export_main
            from riskterm.tail import tail_main

            return (export_main if args.command == "export" else tail_main)(args, db)
        if args.command == "report":
            from riskterm.report.command import report_main

            return report_main(args, _db_for_admin(args))
        if args.command == "serve":
            from riskterm.serve import serve_main

            return serve_main(args)
        return _run(args)
    except KeyboardInterrupt:
        return 130


def _db_for_admin(args: argparse.Namespace) -> Path:
    """--db, else the live database of --source (the simulator's by default)."""
    if args.db:
        return Path(args.db)
    source = args.source if args.source not in (None, "-") and not str(
        args.source).startswith("replay:") else "sim"
    return default_db(source)


def _no_database(db: Path) -> int:
    """`unlock` and `jobs` work on an existing database and never create one (CONTRACT §3)."""
    what = "" if not db.exists() else f" ({db} is not a file)"
    _err(f"no database at {db}{what}: give the --db the engine runs on")
    return EXIT_USAGE


def _jobs(args: argparse.Namespace) -> int:
    from riskterm.jobs.cli import run_jobs_command

    db = _db_for_admin(args)
    if not db.is_file():
        return _no_database(db)
    config = None
    try:
        from riskterm.config import RulesError, load_rules, resolve_rules_path

        config = load_rules(resolve_rules_path(args.rules)).smart_risk
    except (RulesError, OSError) as exc:
        if args.rules:
            _err(str(exc))
            return EXIT_USAGE
    return asyncio.run(run_jobs_command(
        args.jobs_command, db, job_id=getattr(args, "job_id", None),
        account=getattr(args, "account", None), kind=getattr(args, "kind", "smart_risk"),
        instructions=getattr(args, "instructions", None), as_json=args.json, config=config,
    ))


async def _unlock(args: argparse.Namespace) -> int:
    import sqlite3

    from riskterm.db import DatabaseError, MissingDatabase, open_db, patiently
    from riskterm.recorder import INSERT_RECORD, dumps, load_clock
    from riskterm.timefmt import iso

    db = _db_for_admin(args)
    try:
        conn = await open_db(db, create=False)
    except MissingDatabase:
        return _no_database(db)
    except DatabaseError as exc:
        _err(str(exc))
        return 1
    sql = "SELECT id, rule FROM lockouts WHERE active = 1 AND account = ?"
    params: tuple[Any, ...] = (args.account,)
    if args.rule:
        sql += " AND rule = ?"
        params += (args.rule,)

    async def lift() -> list[tuple[dict[str, Any], str]]:
        """One transaction: lift the lockouts and write their records (run again from the start
        while another process holds the write lock)."""
        await conn.execute("BEGIN IMMEDIATE")
        try:
            async with conn.execute(sql, params) as cur:
                rows = await cur.fetchall()
            # the database's own clock: event time when a replay wrote it (a wall-clock stamp
            # would sort this unlock years after the replay's records)
            clock = await load_clock(conn)
            now = clock[1] if clock is not None and clock[0] == "event" else time.time()
            out = []
            for lid, rule in rows:
                await conn.execute(
                    "UPDATE lockouts SET active = 0, lifted_ts = ?, lift_reason = 'manual' "
                    "WHERE id = ?", (now, lid))
                rec = {"kind": "unlock", "ts": iso(now), "account": args.account, "rule": rule,
                       "reason": "manual"}
                body = dumps(rec)
                await conn.execute(INSERT_RECORD, ("unlock", rec["ts"], args.account, rule, body))
                out.append((rec, body))
            await conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                await conn.execute("ROLLBACK")
            raise
        return out

    try:
        async with conn.execute(sql, params) as cur:
            any_active = await cur.fetchone() is not None
        lifted = await patiently(lift) if any_active else []
    except sqlite3.Error as exc:
        _err(f"cannot use database {db}: {exc}")
        return 1
    finally:
        await conn.close()
    if not lifted:
        what = f" by {args.rule}" if args.rule else ""
        print(f"{args.account} has no active lockout{what}", file=sys.stderr)
        return 0
    for _, body in lifted:  # reported once committed, as every record is
        print(body)
    return 0


def _run(args: argparse.Namespace) -> int:
    from riskterm.brokers import registry
    from riskterm.config import load_rules_for_command, resolve_rules_path
    from riskterm.host import RunOptions

    source = args.source
    try:
        registry.check(source)
    except registry.UnknownSource as exc:
        _err(str(exc))
        return EXIT_USAGE
    if source.startswith("replay:"):
        path = Path(source.split(":", 1)[1])
        if not path.is_file():
            _err(f"replay file not found: {path}")
            return EXIT_USAGE
    rules_path = resolve_rules_path(args.rules)
    config = load_rules_for_command(rules_path)
    if isinstance(config, str):
        print(config, file=sys.stderr)
        return EXIT_USAGE
    if args.max_events is not None and args.max_events < 0:
        _err("--max-events must be 0 or more")
        return EXIT_USAGE
    if args.speed is not None and args.speed < 0:
        _err("--speed must be 0 or more")
        return EXIT_USAGE
    accounts: tuple[str, ...] = ()
    if args.accounts is not None:
        from riskterm.recording import parse_patterns

        try:
            accounts = parse_patterns(args.accounts)
        except ValueError as exc:
            _err(str(exc))
            return EXIT_USAGE
    record = Path(args.record) if args.record is not None else None
    if record is not None:
        from riskterm.recording import RecordingError, check_record_path

        try:
            check_record_path(record, source[7:] if source.startswith("replay:") else None)
        except RecordingError as exc:
            _err(str(exc))
            return EXIT_USAGE
    db = Path(args.db) if args.db else default_db(source)
    opts = RunOptions(source=source, rules_path=rules_path, db_path=db, seed=args.seed,
                      speed=args.speed, max_events=args.max_events, accounts=accounts,
                      record_path=record)
    if args.no_ui:
        return asyncio.run(run_headless(opts, config, announce_db=not args.db))
    if (busy := _engine_running_on(db)) is not None:  # say so here, not inside the dashboard
        _err(busy)
        return EXIT_USAGE
    from riskterm.tui.app import run_dashboard

    return run_dashboard(opts, config)


def _engine_running_on(db: Path) -> str | None:
    """Why no engine can start on db now (another one holds it), else None."""
    from riskterm.db import DatabaseError, DatabaseInUse, EngineLock

    if not db.is_file():
        return None
    try:
        EngineLock.acquire(db).release()
    except DatabaseInUse as exc:
        return str(exc)
    except DatabaseError:  # the engine's own start says what is wrong with the file
        return None
    return None


def _stdout_sink(batch: list[tuple[dict[str, Any], str]]) -> None:
    try:
        sys.stdout.write("".join(body + "\n" for _, body in batch))
        sys.stdout.flush()
    except OSError as exc:
        # the reader went away or stdout cannot take more (a full disk): the records are in the
        # database already; keep committing there
        if not isinstance(exc, BrokenPipeError):
            _err(f"cannot write records to stdout ({exc.strerror or exc}); they are still "
                 "stored in the database")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


async def run_headless(opts: Any, config: Any, *, announce_db: bool = False) -> int:
    from riskterm.brokers.base import BrokerStartError
    from riskterm.db import DatabaseError, DatabaseInUse
    from riskterm.host import EngineHost, SourceError
    from riskterm.jobs.store import StorageError as JobStorageError
    from riskterm.recorder import StorageError

    storage_errors = (StorageError, JobStorageError, DatabaseError)
    default_speed = 1.0 if opts.is_live else 0.0
    host = EngineHost(opts, config, sinks=[_stdout_sink], default_speed=default_speed)
    try:
        await host.open()
    except DatabaseInUse as exc:  # another engine runs on this database: a usage conflict
        _err(str(exc))
        return EXIT_USAGE
    except BrokerStartError as exc:  # a missing setting, a refused login: say why, exit 2
        _err(str(exc))
        await _abandon(host)
        return EXIT_USAGE
    except storage_errors as exc:  # unwritable, read-only or full: say why, exit 1
        text = str(exc)
        _err(text if str(opts.db_path) in text else f"database {opts.db_path}: {text}")
        await _abandon(host)
        return 1
    if announce_db:
        _err(f"database: {opts.db_path}")
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, host.request_stop, 130)
    loop.add_signal_handler(signal.SIGTERM, host.request_stop, 143)

    def reload() -> None:
        error = host.reload_rules()
        _err(f"rules reloaded from {host.config.path}" if error is None
             else f"rules not reloaded, keeping the old rules:\n{error}")

    loop.add_signal_handler(signal.SIGHUP, reload)
    try:
        feeder = asyncio.create_task(host.run_source())
        stopper = asyncio.create_task(host._stop.wait())
        await asyncio.wait({feeder, stopper}, return_when=asyncio.FIRST_COMPLETED)
        stopper.cancel()
        if not feeder.done():
            # the source loop notices the stop at its next event; a source blocked waiting
            # for input (stdin) is cancelled instead
            done, _ = await asyncio.wait({feeder}, timeout=0.5)
            if not done:
                feeder.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await feeder
        if not feeder.cancelled():
            try:
                feeder.result()
            except SourceError as exc:  # the input broke off (a read error): keep what was done
                _err(f"stopping: {exc}")
                await host.finish(wait_for_jobs=False)
                await host.close()
                return 1
        if host.failure is not None:
            raise host.failure
        await host.finish(wait_for_jobs=host.stop_code is None and not opts.is_live)
    except storage_errors as exc:
        _err(f"stopping: {exc}")
        unwritten = getattr(exc, "unwritten", 0) + len(getattr(host.engine, "_records", ()))
        note = "every record reported on stdout before this is in the database"
        if unwritten:
            note += f"; {unwritten} later record(s) could not be written and were not reported"
        if opts.replay_path is not None:
            note += "; run the same replay on this database again to resume where it stopped"
        _err(note)
        await _abandon(host)
        return 1
    await host.close()
    return host.stop_code or 0


async def _abandon(host: Any) -> None:
    """After a storage failure: stop every task and close both database connections without
    trying to write again (a graceful stop would wait forever on a full or read-only disk).
    Unclosed aiosqlite connections keep non-daemon threads that would hang the exit."""
    me = asyncio.current_task()
    others = [t for t in asyncio.all_tasks() if t is not me]
    for task in others:
        task.cancel()
    if others:
        await asyncio.wait(others, timeout=5)
    pool = getattr(host, "pool", None)
    for conn in (getattr(pool, "read_conn", None), getattr(pool, "conn", None),
                 getattr(host, "conn", None)):
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), timeout=5)
    host.close_recording()
    host.release_lock()
