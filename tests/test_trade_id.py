"""A fill's `trade_id` (CONTRACT section 1): a fill whose trade id was already applied for that
account is a duplicate delivery (a re-sync after a reconnect, a restart) and changes nothing.

Real `riskterm --no-ui` runs on real files and SQLite databases, the real parse-ahead child.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskterm.account import TRADE_IDS_PER_SET, AccountState
from riskterm.bench.workload import events, to_line
from riskterm.config import load_rules_text
from riskterm.events import parse_line
from riskterm.host import EngineHost, RunOptions
from riskterm.sources import parse_ahead
from tests.helpers import HEADER, fill, make_engine, records

ROOT = Path(__file__).resolve().parent.parent
RULES = HEADER + """\
rules:
  daily_realized_loss: {limit: -10, lockout: 90s}
"""


def _fill(t: str, side: str, qty: int, price: float, trade_id: str | None = None,
          account: str = "A1", **kw: Any) -> str:
    ev: dict[str, Any] = {"type": "fill", "ts": t, "account": account, "symbol": "MNQ",
                          "order_id": f"o{t}", "side": side, "qty": qty, "price": price, **kw}
    if trade_id is not None:
        ev["trade_id"] = trade_id
    return json.dumps(ev)


def _replay(tmp: Path, lines: list[str], name: str, db: Path | None = None
            ) -> list[dict[str, Any]]:
    path = tmp / f"{name}.jsonl"
    path.write_text("".join(x + "\n" for x in lines))
    rules = tmp / "rules.yaml"
    rules.write_text(RULES)
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{path}",
         "--rules", str(rules), "--db", str(db or tmp / f"{name}.db")],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr
    return [json.loads(x) for x in res.stdout.splitlines()]


def _without_summary(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in recs if r["kind"] != "summary"]


def _stored(db: Path) -> tuple[list[tuple[Any, ...]], dict[str, dict[str, Any]]]:
    """The positions and account rows of a database (trade ids as sets: their order is free)."""
    conn = sqlite3.connect(db)
    try:
        positions = sorted(conn.execute("SELECT account, symbol, qty, avg_price FROM positions"))
        accounts = {}
        for name, data in conn.execute("SELECT account, data FROM accounts"):
            row = json.loads(data)
            row["trade_ids"] = set(row.get("trade_ids") or ())
            row["trade_ids_before"] = set(row.get("trade_ids_before") or ())
            accounts[name] = row
    finally:
        conn.close()
    return positions, accounts


# --- the parser --------------------------------------------------------------------------------

def test_the_parser_keeps_a_trade_id_and_leaves_it_out_when_absent() -> None:
    parsed = parse_line(_fill("2026-02-03T15:00:00Z", "buy", 1, 100.0, "T-81").encode(), 1)
    assert isinstance(parsed, dict) and parsed["trade_id"] == "T-81"
    parsed = parse_line(_fill("2026-02-03T15:00:00Z", "buy", 1, 100.0).encode(), 1)
    assert isinstance(parsed, dict) and "trade_id" not in parsed


@pytest.mark.parametrize(("trade_id", "error"), [
    # a JSON integer is rejected like an integer order_id (identifiers are strings): a broker
    # with integer ids is mapped by its adapter (str(id)), and the sentence says how to write it
    (8812345, "line 4: field 'trade_id' of a fill must be a string, got 8812345 (identifiers "
              'are strings: write "8812345")'),
    ("", "line 4: field 'trade_id' of a fill must not be empty"),
    ("t" * 65, "line 4: field 'trade_id' of a fill is longer than 64 characters (65)"),
    (None, "line 4: field 'trade_id' of a fill must be a string, got null"),
    (1.5, "line 4: field 'trade_id' of a fill must be a string, got 1.5"),
])
def test_a_bad_trade_id_is_rejected_with_a_sentence(tmp_path: Path, trade_id: Any,
                                                    error: str) -> None:
    raw = json.dumps({"type": "fill", "ts": "2026-02-03T15:00:00Z", "account": "A1",
                      "symbol": "MNQ", "order_id": "o1", "side": "buy", "qty": 1,
                      "price": 100.0, "trade_id": trade_id})
    assert parse_line(raw.encode(), 4) == error
    # and in a real run: a rejected record, the book untouched
    recs = _replay(tmp_path, [_fill("2026-02-03T15:00:00Z", "buy", 1, 100.0, "T1"),
                              _fill("2026-02-03T15:00:01Z", "buy", 1, 100.0, "T2"),
                              _fill("2026-02-03T15:00:02Z", "buy", 1, 100.0, "T3"), raw],
                   "bad")
    assert [(r["line"], r["error"]) for r in recs if r["kind"] == "rejected"] == [(4, error)]
    positions, _ = _stored(tmp_path / "bad.db")
    assert positions == [("A1", "MNQ", 3, 100.0)]


# --- duplicates in one replay ------------------------------------------------------------------

ORIGINAL = [
    _fill("2026-02-03T15:00:00Z", "buy", 2, 100.0, "T1"),
    _fill("2026-02-03T15:01:00Z", "sell", 1, 90.0, "T2", fee=1.0),  # -21: violation, lockout
    _fill("2026-02-03T15:01:30Z", "buy", 1, 95.0, "T3"),  # while locked: trading_while_locked
    json.dumps({"type": "clock", "ts": "2026-02-03T15:05:00Z"}),  # the lockout has expired
]
DUPLICATES = {  # inserted after the line of that index: the same trade ids delivered again
    1: _fill("2026-02-03T15:00:00Z", "buy", 2, 100.0, "T1"),
    2: _fill("2026-02-03T15:01:00Z", "sell", 1, 90.0, "T2", fee=1.0),
    3: _fill("2026-02-03T15:02:00Z", "sell", 5, 50.0, "T1"),  # same id, other content: same
}


def test_a_duplicated_fill_changes_nothing_in_a_replay(tmp_path: Path) -> None:
    once = _replay(tmp_path, ORIGINAL, "once")
    doubled: list[str] = []
    for i, text in enumerate(ORIGINAL):
        doubled.append(text)
        if i + 1 in DUPLICATES:
            doubled.append(DUPLICATES[i + 1])
    twice = _replay(tmp_path, doubled, "twice")
    # the run without duplicates has the violations that duplicates would multiply
    assert [(r["kind"], r.get("rule")) for r in _without_summary(once)] == [
        ("violation", "daily_realized_loss"), ("enforcement", "daily_realized_loss"),
        ("lockout", "daily_realized_loss"), ("violation", "trading_while_locked"),
        ("enforcement", "trading_while_locked"), ("unlock", "daily_realized_loss")]
    assert _without_summary(twice) == _without_summary(once)
    assert (twice[-1]["events"], twice[-1]["rejected"]) == (7, 0)  # taken, and ignored
    assert _stored(tmp_path / "twice.db") == _stored(tmp_path / "once.db")
    _, accounts = _stored(tmp_path / "twice.db")
    assert accounts["A1"]["realized"] == -21.0
    assert accounts["A1"]["trade_ids"] == {"T1", "T2", "T3"}


def test_the_engine_counts_a_duplicate_and_writes_no_record() -> None:
    engine = make_engine(RULES.removeprefix(HEADER))
    engine.process(fill("2026-02-03T15:00:00+00:00", "buy", 1, 100.0, trade_id="T1"))
    records(engine)
    engine.process(fill("2026-02-03T15:00:01+00:00", "sell", 3, 10.0, trade_id="T1"))
    assert records(engine) == [] and engine.n_duplicate_fills == 1
    pos = engine.accounts["A1"].positions["MNQ"]
    assert (pos.qty, engine.accounts["A1"].realized) == (1, 0.0)
    # the same trade id on another account is that account's own trade
    engine.process(fill("2026-02-03T15:00:02+00:00", "buy", 1, 100.0, account="B2",
                        trade_id="T1"))
    assert engine.accounts["B2"].positions["MNQ"].qty == 1 and engine.n_duplicate_fills == 1


def test_fills_without_a_trade_id_are_all_applied(tmp_path: Path) -> None:
    same = _fill("2026-02-03T15:00:00Z", "buy", 1, 100.0)
    recs = _replay(tmp_path, [same, same, _fill("2026-02-03T15:01:00Z", "sell", 2, 94.0)],
                   "plain")
    # both buys count: selling 2 realizes 2 x -6 x 2 (point value) = -24
    assert [r["value"] for r in recs if r["kind"] == "violation"] == [-24.0]
    positions, accounts = _stored(tmp_path / "plain.db")
    assert positions == [("A1", "MNQ", 0, 0.0)]
    assert accounts["A1"]["realized"] == -24.0 and accounts["A1"]["trade_ids"] == set()


# --- across a restart --------------------------------------------------------------------------

def test_a_trade_id_applied_before_a_restart_is_still_a_duplicate(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    first = _replay(tmp_path, [_fill("2026-02-03T15:00:00Z", "buy", 2, 100.0, "T1"),
                               _fill("2026-02-03T15:01:00Z", "sell", 1, 97.0, "T2")],
                    "first", db=db)
    assert _without_summary(first) == []  # -6: within the limit
    # the broker re-sends T2 after a reconnect (a re-sync), then a new trade T3
    second = _replay(tmp_path, [_fill("2026-02-03T15:01:00Z", "sell", 1, 97.0, "T2"),
                                _fill("2026-02-03T15:02:00Z", "sell", 1, 99.0, "T3")],
                     "second", db=db)
    # had T2 counted twice, realized would be -6 -6 -2 = -14: a violation
    assert _without_summary(second) == []
    positions, accounts = _stored(db)
    assert [p[:3] for p in positions] == [("A1", "MNQ", 0)]
    assert accounts["A1"]["realized"] == -8.0
    assert accounts["A1"]["trade_ids"] == {"T1", "T2", "T3"}


# --- the parse-ahead path (a big file is parsed in a forked child) ------------------------------

async def _run_host(path: Path, db: Path) -> tuple[list[dict[str, Any]], int, int]:
    out: list[dict[str, Any]] = []
    host = EngineHost(RunOptions(source=f"replay:{path}", db_path=db),
                      load_rules_text(RULES),
                      sinks=[lambda batch: out.extend(rec for rec, _ in batch)],
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
        engine = host.engine
        qty = engine.accounts["DUP"].positions["MNQ"].qty
        dups = engine.n_duplicate_fills
    finally:
        await host.close()
    return out, qty, dups


@pytest.mark.skipif(sys.platform != "linux", reason="parse-ahead forks (Linux)")
async def test_the_parse_ahead_child_keeps_trade_ids(tmp_path: Path, monkeypatch) -> None:
    lines = [to_line(ev) for ev in events(6_000, seed=5, accounts=4)]
    first = json.loads(lines[0])["ts"]
    dup = _fill(first, "buy", 1, 100.0, "X-1", account="DUP")
    for at in (100, 3_000, 5_900):  # one trade, delivered three times
        lines.insert(at, dup)
    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(parse_ahead, "MIN_BYTES", 0)
    assert parse_ahead.usable(str(path))
    parsed = [event async for chunk in parse_ahead.parsed_chunks(str(path))
              for _, event in chunk if isinstance(event, dict) and event["type"] == "fill"
              and event["account"] == "DUP"]
    assert [ev["trade_id"] for ev in parsed] == ["X-1"] * 3
    ahead, qty, dups = await _run_host(path, tmp_path / "ahead.db")
    assert (qty, dups) == (1, 2)
    monkeypatch.setattr(parse_ahead, "MIN_BYTES", 1 << 40)
    assert not parse_ahead.usable(str(path))
    in_process, qty, dups = await _run_host(path, tmp_path / "in_process.db")
    assert (qty, dups) == (1, 2) and ahead == in_process


# --- bounded memory ----------------------------------------------------------------------------

def test_the_remembered_trade_ids_are_bounded_and_keep_the_latest() -> None:
    acct = AccountState("A1", {})
    n = 3 * TRADE_IDS_PER_SET + 7
    for i in range(n):
        acct.add_trade(f"t{i}")
        assert len(acct.trade_ids) + len(acct.trade_ids_before) <= 2 * TRADE_IDS_PER_SET
    # at least the latest TRADE_IDS_PER_SET are still known
    assert all(acct.seen_trade(f"t{i}") for i in range(n - TRADE_IDS_PER_SET, n))
    assert not acct.seen_trade("t0")
    # a restart keeps both sets
    again = AccountState("A1", {})
    again.load_json(json.loads(json.dumps(acct.to_json())))
    assert (again.trade_ids, again.trade_ids_before) == (acct.trade_ids, acct.trade_ids_before)


def test_a_new_day_keeps_the_ids_of_the_last_day_with_fills() -> None:
    acct = AccountState("A1", {})
    acct.add_trade("fri")
    acct.new_day("2026-02-09")  # Friday's reset: Friday's ids are the day before's
    acct.new_day("2026-02-09")  # the weekend's resets, without fills, forget nothing
    acct.new_day("2026-02-09")
    assert acct.seen_trade("fri")
    acct.add_trade("mon")
    acct.new_day("2026-02-10")
    assert acct.seen_trade("mon") and acct.seen_trade("fri") is False
