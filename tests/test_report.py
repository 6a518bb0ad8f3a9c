"""`riskterm report` (issue 17, item 3) on a database the real engine wrote: what the page holds,
the equity curve from the engine's samples and the trades from its fills, the curve derived
from the records for a database from before those were stored, the trading day, and every bad
input."""

from __future__ import annotations

import sqlite3
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

import pytest

from riskterm.cli import main
from riskterm.config import load_rules
from riskterm.report.command import day_bounds
from riskterm.report.day import build_day
from riskterm.report.store import connect, load_day
from riskterm.timefmt import parse_iso
from tests.report_scenario import DAY, EVIL, make_scenario


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_scenario(tmp_path_factory.mktemp("report"))


def _report(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["report", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_report_of_the_latest_day(scenario: tuple[Path, Path], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    db, rules = scenario
    out = tmp_path / "r.html"
    code, stdout, err = _report(capsys, "--db", str(db), "--rules", str(rules),
                                "--out", str(out))
    assert code == 0, err
    assert stdout.strip() == str(out)
    assert f"trading day {DAY}: 2 accounts, 3 violation(s)" in err
    html = out.read_text()
    assert f"trading day <span id=\"day\">{DAY}</span>" in html
    for text in ("ACC-1 holds 2 MNQ, limit 1",
                 "ACC-1 P&amp;L today is -760.00 (realized 0.00, unrealized -760.00), "
                 "limit -750.00",
                 "ACC-1 realized P&amp;L today is -760.00, limit -500.00",
                 "flatten: closed 2 MNQ long", "halted until 2026-02-03T23:00:00Z",
                 "job j1-1 (smart_risk) completed", "reduce_position", "set_stop_loss"):
        assert text in html, text
    # the account named with HTML is text, never markup
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert EVIL not in html
    tags = _Tags()
    tags.feed(html)
    assert not [t for t, _ in tags.tags if t in ("img", "link", "iframe", "object")]
    # self-contained: nothing is loaded from anywhere (links are anchors within the page)
    for tag, attrs in tags.tags:
        assert "src" not in attrs, tag
        href = attrs.get("href")
        assert href is None or href.startswith("#"), href
    assert any(t == "meta" and a.get("http-equiv") == "Content-Security-Policy"
               and "default-src 'none'" in (a.get("content") or "") for t, a in tags.tags)
    assert sum(1 for t, _ in tags.tags if t == "svg") == 2
    assert sum(1 for t, a in tags.tags if t == "table" and a.get("class") == "trades") == 2
    assert 'id="derivation"' not in html and 'id="no-history"' not in html
    assert not list(tmp_path.glob(".*tmp")), "the temporary file was left behind"


def _day(db: Path, rules: Path, label: str = DAY):  # type: ignore[no-untyped-def]
    config = load_rules(rules)
    start, end = day_bounds(config, date.fromisoformat(label))
    conn = connect(db)
    try:
        return build_day(load_day(conn, start, end), date.fromisoformat(label), config)
    finally:
        conn.close()


def _stored(db: Path, rules: Path, columns: str, account: str,
            day: str = DAY) -> list[tuple[float, ...]]:
    """The equity table's rows of one account on one trading day, read directly."""
    start, end = day_bounds(load_rules(rules), date.fromisoformat(day))
    with sqlite3.connect(db) as conn:
        rows = conn.execute(f"SELECT {columns} FROM equity WHERE account = ? AND ts >= ? "
                            "AND ts < ? ORDER BY rowid", (account, start, end)).fetchall()
    conn.close()
    return rows


def test_the_equity_curve_is_the_engines_samples(scenario: tuple[Path, Path]) -> None:
    db, rules = scenario
    day = _day(db, rules)
    accts = {a.name: a for a in day.accounts}
    acc, evil = accts["ACC-1"], accts[EVIL]
    assert day_bounds(load_rules(rules), date.fromisoformat(DAY)) == (
        parse_iso("2026-02-02T23:00:00Z"), parse_iso("2026-02-03T23:00:00Z"))
    samples = _stored(db, rules, "ts, equity, balance, realized_pnl, unrealized_pnl", "ACC-1")
    # the open 2-lot marked down by the quotes, then the close: the samples follow it
    equities = [e for _, e, *_ in samples]
    assert equities[0] == 50100.0 and {49700.0, 49460.0} <= set(equities)
    assert equities[-1] == 49340.0 and equities == sorted(equities, reverse=True)
    assert day.history and not day.derived and not acc.derived
    # the start-of-day balance where the account's data begins, then every sample of the day
    assert [(p.ts, p.equity) for p in acc.points] == [(samples[0][0], 50100.0)] + [
        (ts, e) for ts, e, *_ in samples]
    assert acc.points[0].source == "start-of-day balance"
    assert all(p.source.startswith("sample: balance ") for p in acc.points[1:])
    # realized and unrealized from the last sample of the day
    last = samples[-1]
    assert (acc.end_equity, acc.end_balance, acc.realized, acc.unrealized) == (
        last[1], last[2], last[3], last[4]) == (49340.0, 49340.0, -760.0, 0.0)
    assert acc.start_balance == 50100.0 and acc.day_pnl == -760.0
    assert {line.css: line.value for line in acc.lines} == {
        "limit": 50100.0 - 750, "realized": 50100.0 - 500,
        # the trailing mark is the highest equity seen (50,100), the floor 2,000 below it
        "floor": 48100.0}
    assert acc.state == "halted"
    assert sorted(b.text for b in acc.bands) == ["halted by daily_realized_loss",
                                                 "halted by daily_total_loss"]
    assert acc.counts == {"violation": 3, "enforcement": 3, "lockout": 2, "warning": 1,
                          "job": 3}
    # the trades: the fills of the day, the second delivery of trade t1 once
    assert [(f.symbol, f.side, f.qty, f.price, f.fee, f.realized_pnl, f.trade_id)
            for f in acc.trades] == [("MNQ", "buy", 2, 20000.0, 0.0, 0.0, "t1"),
                                     ("MNQ", "sell", 2, 19810.0, 0.0, -760.0, "t2")]
    assert acc.fills == 2 and not acc.notes
    # the ES buy (fee 2.25) marked +4 points by the last quote (x $50); the last sample has it
    assert [(f.symbol, f.qty, f.price, f.fee) for f in evil.trades] == [("ES", 1, 6000.0, 2.25)]
    assert (evil.start_balance, evil.end_equity, evil.realized, evil.unrealized, evil.fills) == (
        25000.0, 25200.0, -2.25, 200.0, 1)
    assert evil.positions == [{"symbol": "ES", "qty": 1, "avg_price": 6000.0, "mark": 6004.0,
                               "unrealized": 200.0}]
    assert evil.points[-1].equity == 25200.0
    assert evil.state == "active" and not evil.records


def test_an_earlier_day_has_its_trades_and_curve(scenario: tuple[Path, Path], tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """2026-02-02 left no record and its account row was overwritten since: its fills and
    samples are what the report shows (before fills were stored it had no report at all)."""
    db, rules = scenario
    out = tmp_path / "r.html"
    code, _, err = _report(capsys, "--db", str(db), "--rules", str(rules), "--day",
                           "2026-02-02", "--out", str(out))
    assert code == 0, err
    assert "trading day 2026-02-02: 1 account, 0 violation(s)" in err
    acc = _day(db, rules, "2026-02-02").accounts[0]
    assert [(f.side, f.qty, f.price, f.realized_pnl) for f in acc.trades] == [
        ("buy", 1, 20000.0, 0.0), ("sell", 1, 20050.0, 100.0)]
    assert [p.equity for p in acc.points] == [e for (e,) in _stored(
        db, rules, "equity", "ACC-1", "2026-02-02")] == [50000.0, 50100.0]
    assert (acc.realized, acc.unrealized, acc.end_equity) == (100.0, 0.0, 50100.0)
    assert acc.start_balance is None  # not stored once the row moved on: no limit lines
    assert "the loss limit is not drawn: no start-of-day balance is stored" in acc.notes[0]
    html = out.read_text()
    assert html.count("<tr><td class=\"time\"") >= 2 and "20,050.00" in html


def _old_schema(db: Path, folder: Path) -> Path:
    """A copy of db as a riskterm before fills and equity were stored left it (version 2)."""
    old = folder / "old.db"
    with sqlite3.connect(db) as src, sqlite3.connect(old) as dst:
        src.backup(dst)
        dst.executescript("DROP TABLE fills; DROP TABLE equity; PRAGMA user_version = 2;")
    src.close()
    dst.close()
    return old


def test_an_old_database_falls_back_to_the_derived_curve(
        scenario: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db, rules = scenario
    old = _old_schema(db, tmp_path)
    day = _day(old, rules)
    assert not day.history and day.derived
    acc, evil = {a.name: a for a in day.accounts}["ACC-1"], {a.name: a for a in day.accounts}[EVIL]
    # start of day, the job's snapshot (as of enqueue), the warning and the violation of
    # daily_total_loss (start + day P&L), the row at the last commit
    assert [(p.equity, p.source.split(" (")[0].split(":")[0]) for p in acc.points] == [
        (50100.0, "start-of-day balance"),
        (50100.0, "account snapshot of a Smart Risk Manager job"),
        (49460.0, "start-of-day balance + day P&L -640.00"),
        (49340.0, "start-of-day balance + day P&L -760.00"),
        (49340.0, "the account at the last commit")]
    assert [p.ts for p in acc.points] == sorted(p.ts for p in acc.points)
    assert {line.css: line.value for line in acc.lines} == {
        "limit": 50100.0 - 750, "realized": 50100.0 - 500, "floor": 48100.0}
    # fills counted by the day's trade ids (t1 once), none listed
    assert (acc.start_balance, acc.end_equity, acc.realized, acc.unrealized, acc.fills) == (
        50100.0, 49340.0, -760.0, 0.0, 2)
    assert acc.trades == [] and acc.derived
    assert (evil.end_equity, evil.unrealized, evil.fills) == (25200.0, 200.0, 1)
    out = tmp_path / "r.html"
    code, _, err = _report(capsys, "--db", str(old), "--rules", str(rules), "--out", str(out))
    assert code == 0, err
    html = out.read_text()
    assert 'id="no-history"' in html and "written by an older riskterm" in html
    assert 'id="derivation"' in html and "equity (derived, see above)" in html
    assert 'class="trades"' not in html
    assert html.count("Not stored in this database (written by an older riskterm).") == 2
    with sqlite3.connect(old) as conn:  # the report never migrates
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 2
    conn.close()


def test_explicit_day_and_stdout(scenario: tuple[Path, Path],
                                 capsys: pytest.CaptureFixture[str]) -> None:
    db, rules = scenario
    code, stdout, err = _report(capsys, "--db", str(db), "--rules", str(rules), "--day", DAY,
                                "--out", "-")
    assert code == 0, err
    assert stdout.startswith("<!DOCTYPE html>") and "ACC-1 holds 2 MNQ" in stdout


@pytest.mark.parametrize("day", ["2026-02-01", "2026-02-05", "0001-01-02", "9999-12-31"])
def test_a_day_without_data_writes_nothing(scenario: tuple[Path, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], day: str) -> None:
    db, rules = scenario
    out = tmp_path / "r.html"
    code, _, err = _report(capsys, "--db", str(db), "--rules", str(rules), "--day", day,
                           "--out", str(out))
    assert code == 0
    assert f"no data for trading day {day}" in err and "no report written" in err
    assert not out.exists() and not list(tmp_path.iterdir())


def test_an_empty_database_writes_nothing(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    import asyncio

    from riskterm.db import open_db

    db = tmp_path / "empty.db"

    async def create() -> None:
        await (await open_db(db)).close()

    asyncio.run(create())
    code, _, err = _report(capsys, "--db", str(db), "--out", str(tmp_path / "r.html"))
    assert code == 0
    assert "holds no records yet" in err
    assert not (tmp_path / "r.html").exists()


def test_a_missing_database_is_exit_2_and_not_created(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "nope.db"
    code, _, err = _report(capsys, "--db", str(db))
    assert code == 2
    assert f"no database at {db}" in err
    assert not db.exists()
    code, _, err = _report(capsys, "--db", str(tmp_path))
    assert code == 2 and "is not a file" in err


def test_a_file_that_is_not_a_riskterm_database(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    code, _, err = _report(capsys, "--db", str(other))
    assert code == 2 and "is not a riskterm database" in err
    text = tmp_path / "notes.db"
    text.write_text("just some text, not SQLite at all\n" * 10)
    code, _, err = _report(capsys, "--db", str(text))
    assert code == 2 and f"cannot read database {text}" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("day", "reason"), [("2026-2-3", "must be a date as YYYY-MM-DD"),
                                             ("20260203", "must be a date as YYYY-MM-DD"),
                                             ("2026-02-30", "is not a real date"),
                                             ("0001-01-01", "outside the dates")])
def test_a_bad_day_is_exit_2(scenario: tuple[Path, Path], capsys: pytest.CaptureFixture[str],
                             day: str, reason: str) -> None:
    code, _, err = _report(capsys, "--db", str(scenario[0]), "--day", day)
    assert code == 2 and reason in err


def test_bad_out_and_bad_rules_are_exit_2(scenario: tuple[Path, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    db = scenario[0]
    code, _, err = _report(capsys, "--db", str(db), "--out", str(tmp_path / "no" / "r.html"))
    assert code == 2 and "does not exist" in err
    code, _, err = _report(capsys, "--db", str(db), "--out", str(tmp_path))
    assert code == 2 and "is a directory" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: Mars/Olympus\n")
    code, _, err = _report(capsys, "--db", str(db), "--rules", str(bad))
    assert code == 2 and f"{bad}:1:" in err


def test_the_report_replaces_an_old_file_whole(scenario: tuple[Path, Path], tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    db, rules = scenario
    out = tmp_path / "r.html"
    out.write_text("old")
    code, _, err = _report(capsys, "--db", str(db), "--rules", str(rules), "--out", str(out))
    assert code == 0, err
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert out.stat().st_mode & 0o644 == 0o644


def test_the_default_day_is_the_latest_with_data_even_without_records(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A later day with fills but no record (the account row is of that day) is the default."""
    import json
    import subprocess
    import sys

    from tests.helpers import HEADER

    rules = tmp_path / "rules.yaml"
    rules.write_text(HEADER + "rules: {max_contracts_per_instrument: {limits: {MNQ: 1}}}\n")
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in [
        {"type": "account", "ts": "2026-02-03T14:30:00Z", "account": "B", "balance": 1000.0},
        {"type": "fill", "ts": "2026-02-03T14:31:00Z", "account": "B", "symbol": "MNQ",
         "order_id": "1", "side": "buy", "qty": 2, "price": 100.0},  # over the limit: records
        {"type": "fill", "ts": "2026-02-03T14:32:00Z", "account": "B", "symbol": "MNQ",
         "order_id": "2", "side": "sell", "qty": 2, "price": 100.0},
        {"type": "account", "ts": "2026-02-04T14:30:00Z", "account": "B", "balance": 1000.0},
        {"type": "fill", "ts": "2026-02-04T14:31:00Z", "account": "B", "symbol": "MNQ",
         "order_id": "3", "side": "buy", "qty": 1, "price": 100.0, "trade_id": "x3"},
    ]))
    db = tmp_path / "d.db"
    done = subprocess.run([sys.executable, "-m", "riskterm", "--no-ui", "--source",
                           f"replay:{events}", "--rules", str(rules), "--db", str(db)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "r.html"
    code, _, err = _report(capsys, "--db", str(db), "--rules", str(rules), "--out", str(out))
    assert code == 0, err
    assert "trading day 2026-02-04: 1 account, 0 violation(s)" in err
    assert "No records for this account on this day." in out.read_text()
    # the earlier day: its records, and though the account row has moved on, its fills and
    # equity samples
    code, _, err = _report(capsys, "--db", str(db), "--rules", str(rules), "--day",
                           "2026-02-03", "--out", str(out))
    assert code == 0, err
    html = out.read_text()
    assert "B holds 2 MNQ, limit 1" in html
    b = _day(db, rules, "2026-02-03").accounts[0]
    assert [(f.side, f.qty, f.trade_id) for f in b.trades] == [("buy", 2, None),
                                                                ("sell", 2, None)]
    assert (b.realized, b.unrealized, b.end_equity) == (0.0, 0.0, 1000.0)
    assert html.count('<td class="num">100.00</td>') == 2  # the two fills' price


def test_the_chart_escapes_every_text() -> None:
    from zoneinfo import ZoneInfo

    from riskterm.report.chart import equity_svg
    from riskterm.report.day import AccountDay, Band, Line, Point

    bad = '</title></svg><script>alert("x")</script>'
    t0 = parse_iso("2026-02-03T14:30:00Z")
    acct = AccountDay(name=bad, points=[Point(t0, 100.0, bad), Point(t0 + 60, 90.0, "end")],
                      lines=[Line(bad, 80.0, "limit")], bands=[Band(t0, t0 + 30, bad)],
                      records=[(t0, {"kind": "violation", "rule": bad, "message": bad})])
    svg = equity_svg(acct, (t0, t0 + 120), ZoneInfo("America/Chicago"))
    assert "<script>" not in svg and "</svg><" not in svg[:-6]
    # the name; the limit line's title and label; a point; a band; a record's rule and message
    assert svg.count("&lt;script&gt;") == 7
    assert svg.endswith("</svg>")
