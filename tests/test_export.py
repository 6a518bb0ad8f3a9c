"""`riskterm export`: records of a database the real engine wrote, as CSV (parsed back) and JSON
Lines; filters, bad input, --out, a closed pipe, an engine running meanwhile, the benchmark; and
the trade ledger and equity samples (--kind fill / equity) of a replay with fills, fees and a
duplicate delivery, and of a database from before they were stored."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from riskterm.bench.export import build_db
from riskterm.exports import COLUMNS, KIND_FIELDS
from tests.helpers import HEADER
from tests.test_tail import read_lines, riskterm

RULES = HEADER + """\
rules:
  daily_realized_loss: {limit: -500, action: [flatten, smart_review], lockout: until_reset,
                        warn_at: 0.8}
  max_contracts_per_instrument: {default_limit: 3, limits: {MNQ: 2}}
smart_risk: {planner: heuristic, step_delay_seconds: 0, workers: 1}
"""
EVIL = "E\x1b[31mVIL"


def fill(ts: str, account: str, oid: str, side: str, qty: int, price: float) -> str:
    return json.dumps({"type": "fill", "ts": ts, "account": account, "symbol": "MNQ",
                       "order_id": oid, "side": side, "qty": qty, "price": price})


EVENTS = "\n".join([
    fill("2026-02-03T15:00:00Z", "A1", "1", "buy", 2, 20000.0),
    fill("2026-02-03T15:00:05Z", "A1", "2", "sell", 2, 19895.0),  # -420: a warning
    fill("2026-02-03T15:01:00Z", "B2", "3", "buy", 3, 20000.0),  # 3 > 2: a violation
    '{"type": "fill", "ts": "2026-02-03T15:01:30Z", "account": "A1"',  # rejected
    fill("2026-02-03T15:02:00Z", "A1", "4", "buy", 1, 20000.0),
    fill("2026-02-03T15:02:30Z", "A1", "5", "sell", 1, 19950.0),  # -520: flatten, job, lockout
    fill("2026-02-03T15:03:00.500Z", EVIL, "6", "buy", 3, 20000.0),
    fill("2026-02-04T15:00:00Z", "A1", "7", "buy", 3, 20000.0),  # next day: after the unlock
]) + "\n"


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("export")
    rules, events, db = tmp / "rules.yaml", tmp / "events.jsonl", tmp / "x.db"
    rules.write_text(RULES)
    events.write_text(EVENTS)
    res = riskterm("--no-ui", "--source", f"replay:{events}", "--rules", str(rules), "--db",
                   str(db))
    assert res.returncode == 0, res.stderr
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, body FROM records ORDER BY id").fetchall()
    return {"db": db, "tmp": tmp, "stdout": res.stdout, "rows": rows,
            "recs": [(rid, json.loads(body)) for rid, body in rows]}


def export(made: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return riskterm("export", "--db", str(made["db"]), *args)


def parse_csv(text: str) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    return list(reader.fieldnames or []), list(reader)


def as_cell(value: Any) -> str:
    """What the README says a CSV cell holds for a record's value."""
    if value is None:
        return ""
    if isinstance(value, list):
        return ";".join(value)
    if isinstance(value, str):
        return value.replace("\x1b", "\\x1b")
    return repr(value)


def test_every_kind_is_in_the_database(made):
    kinds = {rec["kind"] for _, rec in made["recs"]}
    assert kinds == set(KIND_FIELDS)  # all eight kinds were written


def test_jsonl_is_the_stored_bodies_exactly_as_headless_printed(made):
    res = export(made, "--format", "jsonl")
    assert res.returncode == 0 and res.stderr == ""
    assert res.stdout.splitlines() == [body for _, body in made["rows"]]
    assert sorted(res.stdout.splitlines()) == sorted(made["stdout"].splitlines())


def test_csv_of_every_kind_parses_back_to_the_records(made):
    res = export(made, "--format", "csv")
    assert res.returncode == 0, res.stderr
    header, rows = parse_csv(res.stdout)
    assert header == list(COLUMNS) and len(header) == 30
    assert len(rows) == len(made["recs"])
    for row, (rid, rec) in zip(rows, made["recs"], strict=True):
        assert row["id"] == str(rid) and row["kind"] == rec["kind"] and row["ts"] == rec["ts"]
        own = KIND_FIELDS[rec["kind"]]
        for column in header[3:]:
            expected = as_cell(rec.get(column)) if column in own else ""
            assert row[column] == expected, (rid, column)
    assert "\x1b" not in res.stdout
    by_kind = {r["kind"]: r for r in rows}
    b2 = [r["message"] for r in rows if r["kind"] == "violation" and r["account"] == "B2"]
    assert b2 == ["B2 holds 3 MNQ, limit 2"]  # a quoted comma
    flatten = [r for r in rows if r["kind"] == "violation" and r["rule"] == "daily_realized_loss"]
    assert [r["action"] for r in flatten] == ["flatten;smart_review"]
    assert by_kind["lockout"]["until"] == "2026-02-03T23:00:00Z"
    assert by_kind["rejected"]["line"] == "4" and "not valid JSON" in by_kind["rejected"]["error"]
    assert by_kind["summary"]["events"] == "7" and by_kind["summary"]["rejected"] == "1"
    evil = [r for r in rows if r["account"].startswith("E")]
    assert evil and all(r["account"] == "E\\x1b[31mVIL" for r in evil)


def test_one_kind_has_its_own_columns(made):
    res = export(made, "--format", "csv", "--kind", "violation")
    _, rows = parse_csv(res.stdout)
    assert res.stdout.splitlines()[0] == "id,ts,kind,account,symbol,rule,action,value,limit,message"
    assert [int(r["id"]) for r in rows] == [i for i, rec in made["recs"]
                                            if rec["kind"] == "violation"]
    assert len(rows) == 4 and {r["kind"] for r in rows} == {"violation"}
    res = export(made, "--format", "csv", "--kind", "job,lockout")
    assert res.stdout.splitlines()[0] == ("id,ts,kind,account,rule,status,state,until,job_id,"
                                          "job_kind,attempt,duration_s,actions_taken,error")
    _, rows = parse_csv(res.stdout)
    assert [r["status"] for r in rows if r["kind"] == "job"] == ["queued", "running", "completed"]


def ids(made: dict[str, Any], *args: str) -> list[int]:
    res = export(made, "--format", "jsonl", *args)
    assert res.returncode == 0, res.stderr
    bodies = {body: rid for rid, body in made["rows"]}
    return [bodies[line] for line in res.stdout.splitlines()]


def where(made: dict[str, Any], test: Any) -> list[int]:
    return [rid for rid, rec in made["recs"] if test(rec)]


def test_filters(made):
    assert ids(made, "--account", "A1") == where(made, lambda r: r.get("account") == "A1")
    assert ids(made, "--kind", "enforcement,unlock", "--account", "A1") == where(
        made, lambda r: r["kind"] in ("enforcement", "unlock") and r.get("account") == "A1")
    day2 = where(made, lambda r: r["ts"] >= "2026-02-04")
    assert day2 and ids(made, "--since", "2026-02-04") == day2
    # an --until date is the whole of that day; the 23:00Z unlock is in it
    day1 = where(made, lambda r: r["ts"] < "2026-02-04")
    assert ids(made, "--until", "2026-02-03") == day1
    assert any(rec["kind"] == "unlock" for rid, rec in made["recs"] if rid in day1)
    assert ids(made, "--since", "2026-02-03", "--until", "2026-02-03") == day1
    # instants: --since inclusive, --until exclusive, offsets honoured
    at = where(made, lambda r: r["ts"] == "2026-02-03T15:02:30Z")
    assert len(at) >= 3
    assert ids(made, "--since", "2026-02-03T09:02:30-06:00", "--until",
               "2026-02-03T15:02:30.001Z") == at
    assert ids(made, "--until", "2026-02-03T15:02:30Z") == where(
        made, lambda r: r["ts"] < "2026-02-03T15:02:30Z")
    # milliseconds compare as time, not as text ("15:03:00.500Z" sorts before "15:03:00Z")
    half = where(made, lambda r: r["ts"] == "2026-02-03T15:03:00.500Z")
    assert half
    assert ids(made, "--since", "2026-02-03T15:03:00.250Z",
               "--until", "2026-02-03T15:03:00.750Z") == half
    assert set(half) <= set(ids(made, "--since", "2026-02-03T15:03:00Z"))
    assert not set(half) & set(ids(made, "--since", "2026-02-03T15:03:00.600Z"))
    assert not set(half) & set(ids(made, "--until", "2026-02-03T15:03:00.500Z"))
    assert ids(made, "--account", "nobody") == []
    res = export(made, "--format", "csv", "--account", "nobody", "--kind", "unlock")
    assert res.stdout == "id,ts,kind,account,rule,reason\n"  # no match: the header alone


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "csv", "--kind", "violation,trades"], "unknown record kind 'trades'"),
    (["--format", "csv", "--kind", ","], "--kind is empty"),
    (["--format", "csv", "--since", "2026-02-30"], "--since '2026-02-30' is not a time"),
    (["--format", "csv", "--until", "noon"], "--until 'noon' is not a time"),
    (["--format", "csv", "--since", "2026-02-03T15:00:00"], "has no UTC offset"),
    (["--format", "csv", "--since", "2026-02-04", "--until", "2026-02-03"], "is not after"),
    (["--format", "xml"], "unknown --format 'xml'"),
    ([], "--format"),
])
def test_bad_input_exit_2(made, args, message):
    res = export(made, *args)
    assert res.returncode == 2, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr and res.stdout == ""


def test_databases_that_are_not_there_or_not_riskterm(tmp_path):
    db = tmp_path / "missing.db"
    res = riskterm("export", "--db", str(db), "--format", "csv")
    assert res.returncode == 2 and f"no database at {db}" in res.stderr and not db.exists()
    home = tmp_path / "home"
    res = riskterm("export", "--format", "jsonl", env={"RISKTERM_HOME": str(home)})
    assert res.returncode == 2 and str(home / "riskterm.db") in res.stderr
    assert not home.exists()
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    text = tmp_path / "notes.txt"
    text.write_text("not a database at all " * 100)
    for path in (other, text):
        res = riskterm("export", "--db", str(path), "--format", "csv")
        assert res.returncode == 2 and "is not a riskterm database" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and res.stdout == ""


def test_out_is_written_whole_and_a_failed_export_leaves_it(made, tmp_path):
    out = tmp_path / "records.csv"
    out.write_text("an older export\n")
    res = export(made, "--format", "csv", "--out", str(out))
    assert res.returncode == 0 and res.stdout == ""
    assert f"exported {len(made['rows'])} records to {out}" in res.stderr
    assert out.read_text() == export(made, "--format", "csv").stdout
    assert oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    before = out.read_text()
    res = riskterm("export", "--db", str(other), "--format", "csv", "--out", str(out))
    assert res.returncode == 2
    assert out.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.db", "records.csv"]
    for bad, message in ((tmp_path / "no" / "x.csv", "does not exist"),
                         (tmp_path, "is a directory")):
        res = export(made, "--format", "csv", "--out", str(bad))
        assert res.returncode == 2 and message in res.stderr


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_closed_pipe_ends_quietly(tmp_path):
    db = tmp_path / "big.db"
    build_db(db, 20_000)  # far more than a pipe holds
    for fmt in ("csv", "jsonl"):
        proc = subprocess.Popen([sys.executable, "-m", "riskterm", "export", "--db", str(db),
                                 "--format", fmt], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                bufsize=0)
        assert read_lines(proc, 1)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr.read() == b""


def test_export_while_an_engine_writes_the_database(tmp_path):
    db = tmp_path / "live.db"
    engine = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "sim", "--speed", "20",
         "--db", str(db)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0,
        env={**os.environ, "RISKTERM_HOME": str(tmp_path)})
    try:
        first = read_lines(engine, 1, timeout=60)  # committed, so in the database
        assert first, "the simulator wrote no record"
        res = riskterm("export", "--db", str(db), "--format", "jsonl")
        csv_res = riskterm("export", "--db", str(db), "--format", "csv", "--kind", "violation")
    finally:
        engine.send_signal(signal.SIGINT)
        rest, err = engine.communicate(timeout=60)
    assert engine.returncode == 130, err
    assert res.returncode == 0 and csv_res.returncode == 0, res.stderr + csv_res.stderr
    printed = first + rest.decode().splitlines()
    exported = res.stdout.splitlines()
    assert exported and exported == printed[:len(exported)]  # a consistent prefix
    assert csv_res.stdout.startswith("id,ts,kind,account,symbol,rule,action,value,limit,message\n")


def test_bench_export_reports_records_per_second():
    res = riskterm("bench", "--only", "export", "--json", "--max-events", "3000", timeout=240)
    assert res.returncode == 0, res.stderr
    figures = json.loads(res.stdout)["export"]
    assert figures["records"] == 3000
    assert figures["fills"] == 3000
    for key in ("records_per_s", "csv_per_s", "jsonl_per_s", "select_body_per_s", "ratio",
                "fills_per_s", "fills_csv_per_s", "fills_jsonl_per_s", "select_fills_per_s",
                "fills_ratio"):
        assert isinstance(figures[key], int | float) and figures[key] > 0, (key, figures)
    assert figures["records_per_s"] == min(figures["csv_per_s"], figures["jsonl_per_s"])
    assert figures["fills_per_s"] == min(figures["fills_csv_per_s"],
                                         figures["fills_jsonl_per_s"])


# -- the trade ledger and the equity samples (--kind fill / equity) --------------------------

LEDGER_RULES = HEADER + "rules:\n  max_contracts_per_instrument: {default_limit: 10}\n"
ODD = 'B,"2\x1b'  # a comma, a quote and an ESC in an account name


def _fill_event(ts: str, account: str, symbol: str, side: str, qty: int, price: float,
                order_id: str, trade_id: str | None = None, **extra: Any) -> dict[str, Any]:
    ev = {"type": "fill", "ts": ts, "account": account, "symbol": symbol, "side": side,
          "qty": qty, "price": price, "order_id": order_id, **extra}
    if trade_id is not None:
        ev["trade_id"] = trade_id
    return ev


LEDGER_FILLS = [
    _fill_event("2026-02-03T15:00:00.250Z", "A1", "MNQ", "buy", 2, 20000.25, "O-1", "T-1",
                fee=1.48),
    _fill_event("2026-02-03T15:01:00Z", "A1", "MNQ", "sell", 1, 20010.5, "O-2", "T-2",
                fee=0.74),
    _fill_event("2026-02-03T15:02:00Z", ODD, "ES", "buy", 1, 6000.0, "O-3", "T-3", fee=2.25),
    _fill_event("2026-02-03T15:03:00Z", ODD, "ES", "sell", 1, 6001.25, "O-4", "T-4", fee=2.25,
                realized_pnl=62.5),  # the broker's figure
    _fill_event("2026-02-03T15:04:00Z", "A1", "MNQ", "sell", 1, 19990.0, "O-5"),  # no trade id
    _fill_event("2026-02-04T15:00:00Z", "A1", "MNQ", "buy", 1, 20100.0, "O-6", "T-6", fee=0.74),
]
DUPLICATE = {**LEDGER_FILLS[1], "ts": "2026-02-03T15:01:30Z"}  # T-2 delivered again


@pytest.fixture(scope="module")
def ledger(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("ledger")
    rules, events, db = tmp / "rules.yaml", tmp / "events.jsonl", tmp / "ledger.db"
    rules.write_text(LEDGER_RULES)
    lines = [{"type": "account", "ts": "2026-02-03T14:59:00Z", "account": "A1",
              "balance": 10000.0},
             {"type": "account", "ts": "2026-02-03T14:59:00Z", "account": ODD,
              "balance": 20000.0}]
    lines += [*LEDGER_FILLS[:2], DUPLICATE, *LEDGER_FILLS[2:]]
    lines.insert(6, {"type": "quote", "ts": "2026-02-03T15:02:30Z", "symbol": "ES",
                     "last": 6002.0})
    events.write_text("".join(json.dumps(e) + "\n" for e in lines))
    res = riskterm("--no-ui", "--source", f"replay:{events}", "--rules", str(rules), "--db",
                   str(db))
    assert res.returncode == 0, res.stderr
    return {"db": db, "tmp": tmp}


def export_ledger(ledger: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return riskterm("export", "--db", str(ledger["db"]), *args)


def test_the_exported_fills_are_the_input_fills_one_to_one(ledger):
    from riskterm.ledger import FILL_COLUMNS

    res = export_ledger(ledger, "--kind", "fill", "--format", "csv")
    assert res.returncode == 0 and res.stderr == "", res.stderr
    assert res.stdout.splitlines()[0] == ("id,ts,account,symbol,side,qty,price,fee,"
                                          "realized_pnl,order_id,trade_id")
    header, rows = parse_csv(res.stdout)
    assert header == list(FILL_COLUMNS)
    # every fill once, in the order applied: the second delivery of T-2 is not there
    assert len(rows) == len(LEDGER_FILLS)
    assert [r["trade_id"] for r in rows].count("T-2") == 1
    for row, ev in zip(rows, LEDGER_FILLS, strict=True):
        assert row["ts"] == ev["ts"]
        assert row["account"] == ev["account"].replace("\x1b", "\\x1b")
        assert (row["symbol"], row["side"], row["order_id"]) == (ev["symbol"], ev["side"],
                                                                 ev["order_id"])
        assert int(row["qty"]) == ev["qty"]
        assert float(row["price"]) == ev["price"]
        assert float(row["fee"]) == ev.get("fee", 0.0)
        assert row["trade_id"] == ev.get("trade_id", "")
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    # realized P&L before the fee: the engine's average-cost figure (MNQ: 2 $ a point), or
    # the broker's when the fill carried one; an opening fill realizes nothing
    assert [float(r["realized_pnl"]) for r in rows] == [0.0, 20.5, 0.0, 62.5, -20.5, 0.0]
    assert "\x1b" not in res.stdout

    jsonl = export_ledger(ledger, "--kind", "fills", "--format", "jsonl")
    assert jsonl.returncode == 0, jsonl.stderr
    objs = [json.loads(line) for line in jsonl.stdout.splitlines()]
    assert [list(o) for o in objs] == [list(FILL_COLUMNS)] * len(LEDGER_FILLS)
    for obj, row, ev in zip(objs, rows, LEDGER_FILLS, strict=True):
        assert obj["id"] == int(row["id"]) and obj["ts"] == ev["ts"]
        assert obj["account"] == ev["account"]  # JSON keeps the text, its ESC escaped
        assert (obj["qty"], obj["price"], obj["fee"]) == (ev["qty"], ev["price"],
                                                          ev.get("fee", 0.0))
        assert obj["trade_id"] == ev.get("trade_id")  # null when the broker gave none
    assert "\x1b" not in jsonl.stdout


def test_fill_filters(ledger):
    def trade_ids(*args: str) -> list[str | None]:
        res = export_ledger(ledger, "--kind", "fill", "--format", "jsonl", *args)
        assert res.returncode == 0, res.stderr
        return [json.loads(line)["trade_id"] for line in res.stdout.splitlines()]

    assert trade_ids("--account", "A1") == ["T-1", "T-2", None, "T-6"]
    assert trade_ids("--account", ODD) == ["T-3", "T-4"]
    assert trade_ids("--since", "2026-02-04") == ["T-6"]
    assert trade_ids("--until", "2026-02-03") == ["T-1", "T-2", "T-3", "T-4", None]
    # the millisecond the ts shows: --since inclusive, --until exclusive, offsets honoured
    assert trade_ids("--since", "2026-02-03T15:00:00.250Z", "--until",
                     "2026-02-03T09:02:00-06:00") == ["T-1", "T-2"]
    assert trade_ids("--since", "2026-02-03T15:00:00.251Z", "--account", "A1",
                     "--until", "2026-02-03") == ["T-2", None]  # a date: to its end
    assert trade_ids("--account", "nobody") == []
    res = export_ledger(ledger, "--kind", "fill", "--format", "csv", "--account", "nobody")
    assert res.stdout == "id,ts,account,symbol,side,qty,price,fee,realized_pnl,order_id,trade_id\n"


def test_equity_samples_export(ledger):
    from riskterm.ledger import EQUITY_COLUMNS
    from riskterm.timefmt import iso

    with sqlite3.connect(ledger["db"]) as conn:
        stored = conn.execute("SELECT ts, account, balance, equity, realized_pnl, "
                              "unrealized_pnl FROM equity ORDER BY rowid").fetchall()
    conn.close()
    assert {row[1] for row in stored} == {"A1", ODD}
    res = export_ledger(ledger, "--kind", "equity", "--format", "csv")
    assert res.returncode == 0, res.stderr
    header, rows = parse_csv(res.stdout)
    assert header == list(EQUITY_COLUMNS) == ["ts", "account", "balance", "equity",
                                              "realized_pnl", "unrealized_pnl"]
    assert [(r["ts"], r["account"], float(r["balance"]), float(r["equity"]),
             float(r["realized_pnl"]), float(r["unrealized_pnl"])) for r in rows] == [
        (iso(ts), acct.replace("\x1b", "\\x1b"), b, e, rp, up)
        for ts, acct, b, e, rp, up in stored]
    odd = [r for r in rows if r["account"].startswith("B")]
    # the ES position opened at 6000 and marked at 6002 (ES: 50 $ a point) is in a sample
    assert any(float(r["unrealized_pnl"]) == 100.0 for r in odd)
    res = export_ledger(ledger, "--kind", "equity", "--format", "jsonl", "--account", "A1")
    objs = [json.loads(line) for line in res.stdout.splitlines()]
    assert objs and [list(o) for o in objs] == [list(EQUITY_COLUMNS)] * len(objs)
    assert [o["ts"] for o in objs] == [iso(row[0]) for row in stored if row[1] == "A1"]


def test_ledger_out_names_what_it_wrote(ledger, tmp_path):
    out = tmp_path / "fills.csv"
    res = export_ledger(ledger, "--kind", "fill", "--format", "csv", "--out", str(out))
    assert res.returncode == 0 and res.stdout == ""
    assert f"exported {len(LEDGER_FILLS)} fills to {out}" in res.stderr
    assert out.read_text() == export_ledger(ledger, "--kind", "fill", "--format", "csv").stdout
    res = export_ledger(ledger, "--kind", "equity", "--format", "csv", "--out", str(out),
                        "--account", "nobody")
    assert "exported 0 equity samples" in res.stderr


@pytest.mark.parametrize(("kind", "message"), [
    ("fill,violation", "fill and equity are exported each on its own"),
    ("equity,fills", "fill and equity are exported each on its own"),
    ("fill,nonsense", "fill and equity are exported each on its own"),
    ("trades", "or fill or equity, each on its own"),
])
def test_ledger_kinds_are_exported_alone(ledger, kind, message):
    res = export_ledger(ledger, "--kind", kind, "--format", "csv")
    assert res.returncode == 2 and message in res.stderr and res.stdout == ""


def test_an_old_database_has_no_fill_history_yet(ledger, tmp_path):
    """A database of schema version 2 (before fills and equity were stored): the ledger says
    so, exit 1, no output and no file; its records still export."""
    old = tmp_path / "old.db"
    with sqlite3.connect(ledger["db"]) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
        dst.executescript("DROP TABLE fills; DROP TABLE equity; PRAGMA user_version = 2;")
    src.close()
    dst.close()
    for kind in ("fill", "equity"):
        for fmt in ("csv", "jsonl"):
            res = riskterm("export", "--db", str(old), "--kind", kind, "--format", fmt)
            assert res.returncode == 1, res.stderr
            assert res.stdout == "" and "Traceback" not in res.stderr
            assert f"{old} has no fill history yet" in res.stderr
            assert "older riskterm" in res.stderr
    out = tmp_path / "fills.csv"
    res = riskterm("export", "--db", str(old), "--kind", "fill", "--format", "csv", "--out",
                   str(out))
    assert res.returncode == 1 and "no fill history yet" in res.stderr
    assert not [p.name for p in tmp_path.iterdir() if "fills" in p.name]  # nor a .part
    res = riskterm("export", "--db", str(old), "--format", "jsonl")
    assert res.returncode == 0 and res.stdout == export_ledger(ledger, "--format",
                                                               "jsonl").stdout
    with sqlite3.connect(old) as conn:  # a reader never migrates
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()
