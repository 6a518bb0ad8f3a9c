"""riskterm --no-ui end to end: a subprocess, a real SQLite file, JSON Lines out."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import HEADER

EXAMPLE_EVENTS = """\
{"type": "fill", "ts": "2026-02-03T15:00:00Z", "account": "X1", "symbol": "MNQ", "order_id": "1", "side": "buy", "qty": 3, "price": 20000.0}
{"type": "position", "ts": "2026-02-03T15:00:00Z", "account": "X1", "symbol": "MNQ", "qty": 3, "avg_price": 20000.0}
{"type": "fill", "ts": "2026-02-03T15:00:05Z", "account": "X1", "symbol": "MNQ", "order_id": "2", "side": "sell", "qty": 1, "price": 20001.0}
{"type": "fill", "ts": "2026-02-03T15:00:09Z", "account": "X1", "symbol": "MNQ", "order_id": "3", "side": "buy", "qty", 1}
"""  # noqa: E501


def run(args: list[str], *, stdin: str | None = None, env: dict | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def example(tmp_path: Path) -> tuple[Path, Path]:
    rules = tmp_path / "ex.yaml"
    rules.write_text(HEADER + "rules: {max_contracts_per_instrument: "
                     "{default_limit: 3, limits: {MNQ: 2}}}\n")
    events = tmp_path / "ex.jsonl"
    events.write_text(EXAMPLE_EVENTS)
    return rules, events


def test_contract_worked_example_exact_records(example, tmp_path):
    rules, events = example
    db = tmp_path / "x.db"
    res = run(["--no-ui", "--source", f"replay:{events}", "--rules", str(rules), "--db", str(db)])
    assert res.returncode == 0, res.stderr
    recs = lines(res.stdout)
    summary = recs.pop()
    assert recs == [
        {"kind": "violation", "ts": "2026-02-03T15:00:00Z", "rule": "max_contracts_per_instrument",
         "account": "X1", "symbol": "MNQ", "action": ["reduce_position"],
         "message": "X1 holds 3 MNQ, limit 2", "value": 3, "limit": 2},
        {"kind": "enforcement", "ts": "2026-02-03T15:00:00Z", "action": "reduce_position",
         "account": "X1", "symbol": "MNQ", "rule": "max_contracts_per_instrument",
         "order_id": None, "status": "dry_run", "detail": "sell 1 MNQ to reach 2"},
        {"kind": "rejected", "ts": "2026-02-03T15:00:05Z", "line": 4,
         "error": "line 4 is not valid JSON: expected ':' after \"qty\" at column 119"},
    ]
    assert summary["kind"] == "summary"
    assert {k: summary[k] for k in ("events", "rejected", "violations", "warnings",
                                    "enforcements", "jobs")} == {
        "events": 3, "rejected": 1, "violations": 1, "warnings": 0, "enforcements": 1, "jobs": 0}
    # every record written to stdout is in the database too
    with sqlite3.connect(db) as conn:
        stored = [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY id")]
    assert stored == [*recs, summary]


def test_stdin_source_and_options_after_subcommand_order(example, tmp_path):
    rules, events = example
    res = run(["--source", "-", "--no-ui", "--db", str(tmp_path / "s.db"), "--rules", str(rules)],
              stdin=events.read_text())
    assert res.returncode == 0, res.stderr
    assert [r["kind"] for r in lines(res.stdout)] == [
        "violation", "enforcement", "rejected", "summary"]


def test_lockout_survives_a_restart_on_the_same_database(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text(HEADER + "rules: {daily_realized_loss: {limit: -100}}\n")
    first = tmp_path / "day1.jsonl"
    first.write_text(
        '{"type":"fill","ts":"2026-02-03T15:00:00Z","account":"A","symbol":"MNQ",'
        '"order_id":"1","side":"buy","qty":1,"price":1000}\n'
        '{"type":"fill","ts":"2026-02-03T15:00:01Z","account":"A","symbol":"MNQ",'
        '"order_id":"2","side":"sell","qty":1,"price":900}\n')
    db = tmp_path / "p.db"
    res = run(["--no-ui", "--source", f"replay:{first}", "--rules", str(rules), "--db", str(db)])
    assert [r["kind"] for r in lines(res.stdout)][:3] == ["violation", "enforcement", "lockout"]
    second = tmp_path / "later.jsonl"
    second.write_text(
        '{"type":"order_placed","ts":"2026-02-03T16:00:00Z","account":"A","symbol":"MNQ",'
        '"order_id":"3","side":"buy","qty":1,"order_type":"market"}\n'
        '{"type":"clock","ts":"2026-02-03T23:30:00Z"}\n')
    res = run(["--no-ui", "--source", f"replay:{second}", "--rules", str(rules), "--db", str(db)])
    recs = lines(res.stdout)
    assert recs[0]["rule"] == "trading_while_locked"
    assert recs[1]["action"] == "cancel_order" and recs[1]["order_id"] == "3"
    assert recs[2] == {"kind": "unlock", "ts": "2026-02-03T23:00:00Z", "account": "A",
                       "rule": "daily_realized_loss", "reason": "daily_reset"}


def test_manual_unlock_command_lifts_a_permanent_lockout(tmp_path):
    rules = tmp_path / "r.yaml"
    rules.write_text(HEADER + "rules: {daily_realized_loss: {limit: -100, lockout: permanent}}\n")
    ev = tmp_path / "e.jsonl"
    ev.write_text(
        '{"type":"fill","ts":"2026-02-03T15:00:00Z","account":"A","symbol":"MNQ",'
        '"order_id":"1","side":"buy","qty":1,"price":1000}\n'
        '{"type":"fill","ts":"2026-02-03T15:00:01Z","account":"A","symbol":"MNQ",'
        '"order_id":"2","side":"sell","qty":1,"price":900}\n')
    db = tmp_path / "u.db"
    run(["--no-ui", "--source", f"replay:{ev}", "--rules", str(rules), "--db", str(db)])
    res = run(["unlock", "A", "--db", str(db)])
    assert res.returncode == 0
    assert lines(res.stdout)[0]["reason"] == "manual"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM lockouts WHERE active = 1").fetchone()[0] == 0
        kinds = [k for (k,) in conn.execute("SELECT kind FROM records WHERE kind = 'unlock'")]
    assert kinds == ["unlock"]


def test_usage_errors_exit_2_with_a_sentence(tmp_path):
    res = run(["--no-ui", "--source", f"replay:{tmp_path / 'missing.jsonl'}",
               "--db", str(tmp_path / "m.db")])
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("rules:\n  daily_realized_loss: {limit: 500}\n")
    res = run(["--no-ui", "--source", "-", "--rules", str(bad), "--db", str(tmp_path / "b.db")],
              stdin="")
    assert res.returncode == 2
    assert res.stderr.startswith(f"{bad}:2:")
    res = run(["--bogus"])
    assert res.returncode == 2


def test_check_rules_exit_codes(tmp_path):
    good = tmp_path / "g.yaml"
    good.write_text(HEADER + "rules: {daily_realized_loss: {limit: -500}}\n")
    assert run(["check-rules", str(good)]).returncode == 0
    bad = tmp_path / "b.yaml"
    bad.write_text("rules:\n  no_such_rule: {}\n")
    res = run(["check-rules", str(bad)])
    assert res.returncode == 2 and res.stderr.startswith(f"{bad}:2:3:")


def _wait_for_line(proc: subprocess.Popen, kind: str, deadline: float) -> dict:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        rec = json.loads(line)
        if rec["kind"] == kind:
            return rec
    raise AssertionError(f"no {kind} record")


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signals_shut_down_cleanly_with_summary(tmp_path, sig, code):
    db = tmp_path / "sig.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--db", str(db)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    proc.stdin.write('{"type":"fill","ts":"2026-02-03T15:00:00Z","account":"A","symbol":"ZZ",'
                     '"order_id":"1","side":"buy","qty":1,"price":1}\n')
    proc.stdin.flush()
    _wait_for_line(proc, "warning", time.monotonic() + 30)  # unknown_instrument: it is running
    proc.send_signal(sig)
    summary = _wait_for_line(proc, "summary", time.monotonic() + 30)
    assert summary["events"] == 1
    assert proc.wait(timeout=30) == code
    proc.stdin.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_stdout_that_cannot_take_more_is_said_once_and_the_database_keeps_everything(
        example, tmp_path):
    rules, events = example
    db = tmp_path / "full.db"
    with open("/dev/full", "w") as full:
        res = subprocess.run([sys.executable, "-m", "riskterm", "--no-ui", "--source",
                              f"replay:{events}", "--rules", str(rules), "--db", str(db)],
                             stdout=full, stderr=subprocess.PIPE, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr.count("cannot write records to stdout") == 1, res.stderr
    assert "Traceback" not in res.stderr
    with sqlite3.connect(db) as conn:
        kinds = [k for (k,) in conn.execute("SELECT kind FROM records ORDER BY id")]
    assert kinds == ["violation", "enforcement", "rejected", "summary"]
