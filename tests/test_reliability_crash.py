"""kill -9 while a Smart Risk Manager job runs: nothing reported is lost, the job is interrupted
and re-run once, lockouts stay in force, the database stays sound.

(kill -9 in the middle of a replay, then resume, is tests/test_crash.py.)
"""

from __future__ import annotations

import json
import queue
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent


def rules(tmp: Path, name: str, step_delay: float) -> Path:
    path = tmp / name
    path.write_text(HEADER + f"""\
rules:
  daily_realized_loss: {{limit: -100, action: [flatten, smart_review], lockout: until_reset}}
smart_risk:
  planner: heuristic
  step_delay_seconds: {step_delay}
  retry_interrupted: true
  timeout_seconds: 60
""")
    return path


def ev(**fields: Any) -> str:
    return json.dumps(fields) + "\n"


LOSS = (
    ev(type="fill", ts="2026-02-03T15:00:00Z", account="A1", symbol="MNQ", order_id="1",
       side="buy", qty=2, price=20000.0)
    + ev(type="fill", ts="2026-02-03T15:00:01Z", account="A1", symbol="MNQ", order_id="2",
         side="sell", qty=1, price=19900.0)  # realized -200 <= -100: flatten, review, lockout
)
# after the job started: the account goes flat, and a locked order shows it was all committed
FLAT_THEN_ORDER = (
    ev(type="fill", ts="2026-02-03T15:00:05Z", account="A1", symbol="MNQ", order_id="f",
       side="sell", qty=1, price=19950.0)
    + ev(type="order_placed", ts="2026-02-03T15:00:06Z", account="A1", symbol="MNQ",
         order_id="x", side="buy", qty=1, order_type="market")
)
LATER_ORDER = ev(type="order_placed", ts="2026-02-03T16:00:00Z", account="A1", symbol="MNQ",
                 order_id="3", side="buy", qty=1, order_type="market")


class Engine:
    """A headless riskterm on stdin whose stdout is read on a thread (with deadlines)."""

    def __init__(self, rules_path: Path, db: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--rules",
             str(rules_path), "--db", str(db)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            cwd=ROOT)
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def send(self, text: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.flush()

    def wait_for(self, pred: Any, timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no such record; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"stdout closed; saw {self.seen}")
            rec = json.loads(line)
            self.seen.append(rec)
            if pred(rec):
                return rec

    def kill_9(self) -> list[dict[str, Any]]:
        """SIGKILL; returns every record it reported on stdout before dying."""
        self.proc.kill()
        self.proc.wait(timeout=30)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(json.loads(line))
        return self.seen

    def finish(self, text: str = "") -> tuple[int, list[dict[str, Any]], str]:
        """Send the rest of stdin, close it, and wait for the run to end by itself."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(text)
        self.proc.stdin.close()
        assert self.proc.stderr is not None
        stderr = self.proc.stderr.read()
        code = self.proc.wait(timeout=60)
        while (line := self.lines.get(timeout=30)) is not None:
            self.seen.append(json.loads(line))
        return code, self.seen, stderr


def running(attempt: int) -> Any:
    return lambda r: r["kind"] == "job" and r["status"] == "running" and r["attempt"] == attempt


def stored(db: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return [json.loads(b) for (b,) in conn.execute("SELECT body FROM records ORDER BY id")]


def query(db: Path, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(sql, params).fetchall()


def assert_all_reported_are_stored(reported: list[dict[str, Any]], db: Path) -> None:
    missing = Counter(json.dumps(r, sort_keys=True) for r in reported) - Counter(
        json.dumps(r, sort_keys=True) for r in stored(db))
    assert not missing, f"reported on stdout but not in the database: {missing}"


def job_history(db: Path, job_id: str) -> list[tuple[str, int]]:
    return [(r["status"], r["attempt"]) for r in stored(db)
            if r["kind"] == "job" and r["job_id"] == job_id]


def start_and_kill_during_the_job(tmp_path: Path, db: Path) -> tuple[str, list[dict]]:
    first = Engine(rules(tmp_path, "slow.yaml", step_delay=30), db)
    first.send(LOSS)
    job = first.wait_for(running(1))
    # the job pool commits on its own connection, so the job's records may come before the
    # violation that queued it: wait for that one's lockout too (what is reported is committed)
    if not any(r["kind"] == "lockout" for r in first.seen):
        first.wait_for(lambda r: r["kind"] == "lockout")
    first.send(FLAT_THEN_ORDER)
    first.wait_for(lambda r: r["kind"] == "enforcement" and r["order_id"] == "x")
    reported = first.kill_9()
    kinds = Counter(r["kind"] for r in reported)
    assert kinds == {"violation": 2, "enforcement": 3, "lockout": 1, "job": 2}, kinds
    assert "summary" not in kinds  # it really died mid-run
    assert_all_reported_are_stored(reported, db)
    (status,) = query(db, "SELECT status FROM jobs WHERE id = ?", job["job_id"])[0]
    assert status == "running"  # as the killed process left it
    return job["job_id"], reported


def test_kill_9_during_a_job_then_restart(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    job_id, _ = start_and_kill_during_the_job(tmp_path, db)

    second = Engine(rules(tmp_path, "fast.yaml", step_delay=0.02), db)
    code, reported, stderr = second.finish(LATER_ORDER)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    # the lockout written before the kill is still in force after the restart
    engine_recs = [r for r in reported if r["kind"] not in ("job", "summary")]
    assert [(r["kind"], r.get("rule"), r.get("order_id")) for r in engine_recs] == [
        ("violation", "trading_while_locked", None), ("enforcement", "trading_while_locked", "3")]
    assert query(db, "SELECT rule, active FROM lockouts") == [("daily_realized_loss", 1)]
    # the job was marked interrupted, queued again once (same id) and completed
    assert job_history(db, job_id) == [("queued", 1), ("running", 1), ("interrupted", 1),
                                       ("queued", 2), ("running", 2), ("completed", 2)]
    assert query(db, "SELECT status, attempts, requeues FROM jobs") == [("completed", 2, 1)]
    assert reported[-1]["kind"] == "summary" and reported[-1]["jobs"] == 1
    assert_all_reported_are_stored(reported, db)


def test_the_rerun_sees_the_account_as_it_was_when_the_job_was_enqueued(tmp_path: Path) -> None:
    db = tmp_path / "k3.db"
    start_and_kill_during_the_job(tmp_path, db)  # enqueued with 1 MNQ long; flat before the kill
    code, _, stderr = Engine(rules(tmp_path, "fast.yaml", step_delay=0.02), db).finish()
    assert code == 0, stderr
    (state,) = query(db, "SELECT graph_state FROM jobs")[0]
    positions = json.loads(state)["snapshot"]["positions"]
    assert [(p["symbol"], p["qty"]) for p in positions] == [("MNQ", 1)]


def test_a_job_interrupted_twice_is_not_rerun_again(tmp_path: Path) -> None:
    db = tmp_path / "k2.db"
    job_id, _ = start_and_kill_during_the_job(tmp_path, db)

    second = Engine(rules(tmp_path, "slow.yaml", step_delay=30), db)
    second.wait_for(running(2))  # the automatic re-run ...
    reported = second.kill_9()  # ... is killed as well
    assert_all_reported_are_stored(reported, db)

    third = Engine(rules(tmp_path, "fast.yaml", step_delay=0.02), db)
    code, reported, stderr = third.finish()
    assert code == 0, stderr
    assert job_history(db, job_id) == [("queued", 1), ("running", 1), ("interrupted", 1),
                                       ("queued", 2), ("running", 2), ("interrupted", 2)]
    assert query(db, "SELECT status, attempts, requeues FROM jobs") == [("interrupted", 2, 1)]
    (detail,) = query(db, "SELECT detail FROM job_events WHERE type = 'recover'")[0]
    assert detail == "not queued again: it was already queued again once"
    assert reported[-1]["kind"] == "summary" and reported[-1]["jobs"] == 0
    assert query(db, "SELECT rule, active FROM lockouts") == [("daily_realized_loss", 1)]
