"""`riskterm tail`: a subprocess following a real database that another riskterm process writes."""

from __future__ import annotations

import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from riskterm.tail import pretty
from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
RULES = HEADER + """\
rules:
  daily_realized_loss: {limit: -500, action: [flatten], lockout: until_reset, warn_at: 0.8}
  max_contracts_per_instrument: {default_limit: 3, limits: {MNQ: 2}}
"""
EVIL = "E\x1b[31mVIL"


def fill(ts: str, account: str, oid: str, side: str, qty: int, price: float) -> str:
    return json.dumps({"type": "fill", "ts": ts, "account": account, "symbol": "MNQ",
                       "order_id": oid, "side": side, "qty": qty, "price": price})


def day_events(day: str, n_accounts: int) -> str:
    """Per account: a 3-lot (a max_contracts violation and its enforcement), then a losing
    close past the daily loss limit (violation, flatten, lockout), a second apart."""
    lines = []
    for i in range(n_accounts):
        acct = f"T{i:02d}"
        t = f"{day}T15:{i // 20:02d}:{(i * 3) % 60:02d}"
        lines += [fill(f"{t}.000Z", acct, f"{i}a", "buy", 3, 20000.0),
                  fill(f"{t}.500Z", acct, f"{i}b", "sell", 3, 19900.0)]
    return "\n".join(lines) + "\n"


def riskterm(*args: str, env: dict[str, str] | None = None, timeout: float = 60,
             stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, input=stdin,
                          env={**os.environ, **(env or {})})


def start(*args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "riskterm", *args], cwd=ROOT, bufsize=0,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def read_lines(proc: subprocess.Popen[bytes], n: int, timeout: float = 30) -> list[str]:
    """Up to n lines from proc's stdout, waiting at most `timeout` in all (a bound, not a
    synchronisation: the test asserts on what came)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    buf = b""
    lines: list[bytes] = []
    while len(lines) < n:
        left = deadline - time.monotonic()
        if left <= 0 or not sel.select(left):
            break
        chunk = os.read(proc.stdout.fileno(), 1 << 16)
        if not chunk:
            break
        buf += chunk
        *done, buf = buf.split(b"\n")
        lines += done
    sel.close()
    assert not buf or len(lines) >= n, f"a partial line: {buf!r}"
    return [line.decode() for line in lines]


def ready(proc: subprocess.Popen[bytes]) -> str:
    """tail's one stderr line, written once it has taken its starting point."""
    assert proc.stderr is not None
    return proc.stderr.readline().decode()


def stop(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


def bodies(db: Path, after: int = 0) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [b for (b,) in conn.execute(
            "SELECT body FROM records WHERE id > ? ORDER BY id", (after,))]


def max_id(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM records").fetchone()[0])


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    first = tmp_path / "day1.jsonl"
    first.write_text(day_events("2026-02-03", 3)
                     + fill("2026-02-03T16:00:00Z", EVIL, "e", "buy", 3, 20000.0) + "\n")
    db = tmp_path / "t.db"
    res = riskterm("--no-ui", "--source", f"replay:{first}", "--rules", str(rules), "--db",
                   str(db))
    assert res.returncode == 0, res.stderr
    return {"rules": rules, "db": db, "tmp": tmp_path}


def test_follows_another_process_writing_in_order_none_missed_none_twice(world):
    db, rules = world["db"], world["rules"]
    before = max_id(db)
    assert before > 0
    tail = start("tail", "--db", str(db))
    try:
        assert f"after id {before}" in ready(tail)
        second = world["tmp"] / "day2.jsonl"
        second.write_text(day_events("2026-02-04", 40))
        # paced (40 events a second of event time, the events half a second apart): the
        # writer commits in many small transactions while tail reads
        writer = riskterm("--no-ui", "--source", f"replay:{second}", "--speed", "40",
                          "--rules", str(rules), "--db", str(db), timeout=120)
        assert writer.returncode == 0, writer.stderr
        expected = bodies(db, before)
        assert len(expected) > 200
        assert writer.stdout.splitlines() == expected  # what the engine printed, as stored
        got = read_lines(tail, len(expected))
    finally:
        code, rest, err = stop(tail)
    assert got == expected  # every new record, in commit order, none of the older ones
    assert rest == b""  # and none twice
    assert code == 130
    assert b"Traceback" not in err and err.strip() == b""


def test_since_pretty_filters_and_terminal_safety(world):
    db = world["db"]
    tail = start("tail", "--db", str(db), "--since", "2026-02-03T09:00:00-06:00",
                 "--kind", "violation,lockout", "--account", EVIL, "--pretty")
    try:
        assert "every matching record" in ready(tail)
        got = read_lines(tail, 1)
    finally:
        code, rest, err = stop(tail)
    assert code == 130 and rest == b"" and b"Traceback" not in err
    assert got == ["2026-02-03T16:00:00Z  violation    E\\x1b[31mVIL  "
                   "max_contracts_per_instrument  E\\x1b[31mVIL holds 3 MNQ, limit 2 "
                   "-> reduce_position"]


def test_since_then_follows_json_lines_exactly_as_stored(world):
    db, rules = world["db"], world["rules"]
    kinds = ("lockout", "summary")
    want = [b for b in bodies(db) if json.loads(b)["kind"] in kinds]
    assert [json.loads(b)["kind"] for b in want] == ["lockout"] * 3 + ["summary"]
    tail = start("--db", str(db), "tail", "--kind", ",".join(kinds), "--since", "2026-02-03")
    try:
        ready(tail)
        got = read_lines(tail, len(want))
        mark = max_id(db)
        # two more writers while tail follows: an unlock (not of the kinds asked), then a
        # replay with two lockouts
        unlock = riskterm("unlock", "T01", "--db", str(db))
        assert unlock.returncode == 0 and '"kind":"unlock"' in unlock.stdout, unlock.stderr
        more = world["tmp"] / "more.jsonl"
        more.write_text(day_events("2026-02-04", 2))
        writer = riskterm("--no-ui", "--source", f"replay:{more}", "--rules", str(rules),
                          "--db", str(db))
        assert writer.returncode == 0, writer.stderr
        later = [b for b in bodies(db, mark) if json.loads(b)["kind"] in kinds]
        assert [json.loads(b)["kind"] for b in later] == ["lockout"] * 2 + ["summary"]
        got_later = read_lines(tail, len(later))
    finally:
        code, rest, err = stop(tail)
    assert got == want
    assert got_later == later  # the unlock between them was filtered out
    assert rest == b"" and code == 130 and b"Traceback" not in err


def test_a_closed_pipe_ends_tail_quietly(world):
    tail = start("tail", "--db", str(world["db"]), "--since", "2026-01-01")
    assert tail.stdout is not None and tail.stderr is not None
    ready(tail)
    assert read_lines(tail, 1)
    tail.stdout.close()  # the reader goes away; no more records come to be written
    assert tail.wait(timeout=30) == 0
    assert tail.stderr.read() == b""


def test_sigterm_exits_143(world):
    tail = start("tail", "--db", str(world["db"]))
    ready(tail)
    tail.send_signal(signal.SIGTERM)
    out, err = tail.communicate(timeout=30)
    assert (tail.returncode, out, err) == (143, b"", b"")


@pytest.mark.parametrize(("args", "message"), [
    (["--kind", "violation,fills"], "unknown record kind 'fills'"),
    (["--since", "yesterday"], "--since 'yesterday' is not a time"),
    (["--since", "2026-02-03T10:00:00"], "has no UTC offset"),
])
def test_bad_input_exit_2(world, args, message):
    res = riskterm("tail", "--db", str(world["db"]), *args)
    assert res.returncode == 2 and message in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""


def test_missing_database_exit_2_and_not_created(tmp_path):
    db = tmp_path / "none.db"
    res = riskterm("tail", "--db", str(db))
    assert res.returncode == 2 and f"no database at {db}" in res.stderr
    assert not db.exists()
    home = tmp_path / "home"
    res = riskterm("tail", env={"RISKTERM_HOME": str(home)})
    assert res.returncode == 2 and str(home / "riskterm.db") in res.stderr
    assert not home.exists()
    text = tmp_path / "notes.db"
    text.write_text("not a database " * 100)
    res = riskterm("tail", "--db", str(text))
    assert res.returncode == 2 and "is not a riskterm database" in res.stderr
    assert "Traceback" not in res.stderr


def test_pretty_lines_of_every_kind_are_one_safe_line(world):
    stored = bodies(world["db"])
    kinds = {json.loads(b)["kind"] for b in stored}
    assert {"violation", "enforcement", "lockout", "summary"} <= kinds
    for body in stored:
        rec = json.loads(body)
        line = pretty(body)
        assert "\n" not in line and "\x1b" not in line
        assert line.startswith(f"{rec['ts']}  {rec['kind']:<11}")
    job = json.dumps({"kind": "job", "ts": "2026-02-03T15:00:00Z", "job_id": "j1-1",
                      "job_kind": "smart_risk", "account": "A1", "status": "failed",
                      "attempt": 2, "duration_s": 1.5, "actions_taken": 0, "error": "boom\x9b"})
    assert pretty(job) == ("2026-02-03T15:00:00Z  job          A1  -  j1-1 smart_risk failed "
                           "attempt 2, 1.5 s, 0 action(s): boom\\x9b")
