"""`riskterm unlock` and `riskterm jobs` against the database (issue 12, items 16, 17, 19):
a mistyped --db is exit 2 naming it and creates nothing; unlock waits out another process's
write lock; its record is stamped with the database's engine clock (event time after a replay)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
PERMANENT = HEADER + "rules: {daily_realized_loss: {limit: -100, lockout: permanent}}\n"
LOSS = (  # realized -200 at 2026-02-03T15:00:01Z: a permanent lockout of A
    '{"type":"fill","ts":"2026-02-03T15:00:00Z","account":"A","symbol":"MNQ",'
    '"order_id":"1","side":"buy","qty":1,"price":1000}\n'
    '{"type":"fill","ts":"2026-02-03T15:00:01Z","account":"A","symbol":"MNQ",'
    '"order_id":"2","side":"sell","qty":1,"price":900}\n')


def _riskterm(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "riskterm", *args], input=stdin,
                          capture_output=True, text=True, timeout=90, cwd=ROOT)


@pytest.fixture
def locked_db(tmp_path: Path) -> Path:
    """A database a replay wrote, with A locked for good."""
    rules = tmp_path / "r.yaml"
    rules.write_text(PERMANENT)
    events = tmp_path / "loss.jsonl"
    events.write_text(LOSS)
    db = tmp_path / "replayed.db"
    res = _riskterm("--no-ui", "--source", f"replay:{events}", "--rules", str(rules),
                    "--db", str(db))
    assert res.returncode == 0, res.stderr
    return db


@pytest.mark.parametrize("args", [
    ["unlock", "A"], ["jobs", "list"], ["jobs", "list", "--json"], ["jobs", "show", "j1-1"],
    ["jobs", "enqueue", "--account", "A"], ["jobs", "cancel", "j1-1"]])
def test_a_mistyped_db_is_exit_2_naming_it_and_creates_nothing(tmp_path: Path,
                                                                args: list[str]) -> None:
    db = tmp_path / "typo.db"
    res = _riskterm(*args, "--db", str(db))
    assert res.returncode == 2, (res.returncode, res.stdout, res.stderr)
    assert str(db) in res.stderr and "Traceback" not in res.stderr
    assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []  # no database, no -wal, no lock file


def test_unlock_waits_out_a_write_lock_longer_than_the_busy_timeout(locked_db: Path) -> None:
    other = sqlite3.connect(locked_db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer: a backup, the sqlite3 shell, a script
    try:
        proc = subprocess.Popen([sys.executable, "-m", "riskterm", "unlock", "A", "--db",
                                 str(locked_db)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        time.sleep(6.0)  # held past SQLite's 5 s busy timeout: the case under test
        assert proc.poll() is None, proc.communicate()  # still waiting, not failed
    finally:
        other.execute("ROLLBACK")
        other.close()
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert json.loads(out)["reason"] == "manual"
    with sqlite3.connect(locked_db) as conn:
        assert conn.execute("SELECT active, lift_reason FROM lockouts").fetchall() == [
            (0, "manual")]


def test_unlock_in_an_event_time_database_is_stamped_with_its_clock(locked_db: Path) -> None:
    res = _riskterm("unlock", "A", "--db", str(locked_db))
    assert res.returncode == 0, res.stderr
    (printed,) = [json.loads(x) for x in res.stdout.splitlines()]
    with sqlite3.connect(locked_db) as conn:
        (body,) = conn.execute("SELECT body FROM records WHERE kind = 'unlock'").fetchone()
        (lifted,) = conn.execute("SELECT lifted_ts FROM lockouts").fetchone()
    assert json.loads(body) == printed
    # the replay's last event, not today's wall clock
    assert printed["ts"] == "2026-02-03T15:00:01Z"
    assert lifted == 1770130801.0
