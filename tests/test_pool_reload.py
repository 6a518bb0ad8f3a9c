"""The job pool inside an engine host (issue 12, items 5, 13, 18): a rules reload reaches it,
the retention purge compares event time with event time, and a transaction of the pool never
makes the engine's commit fail."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskterm import db as db_module
from riskterm import recorder as recorder_module
from riskterm.config import load_rules, load_rules_text
from riskterm.host import EngineHost, RunOptions
from riskterm.jobs.actions import RECOMMENDED
from tests.helpers import HEADER

ROOT = Path(__file__).resolve().parent.parent
OPEN = json.dumps({"type": "fill", "ts": "2026-02-03T15:00:00Z", "account": "A1",
                   "symbol": "MNQ", "order_id": "1", "side": "buy", "qty": 1,
                   "price": 20000.0}) + "\n"


def _smart(execute: bool, workers: int = 1) -> str:
    return HEADER + (f"smart_risk: {{planner: heuristic, step_delay_seconds: 0, workers: "
                     f"{workers}, execute: {str(execute).lower()}}}\n")


def _actions_log(db: Path, job_id: str) -> list[dict[str, Any]]:
    with sqlite3.connect(db) as conn:
        (log,) = conn.execute("SELECT actions_log FROM jobs WHERE id = ?", (job_id,)).fetchone()
    return json.loads(log)


async def test_a_reload_to_execute_false_stops_the_running_pool_from_executing(
        tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(_smart(execute=True))
    events = tmp_path / "open.jsonl"
    events.write_text(OPEN)  # A1 holds 1 MNQ without a stop: the heuristic sets one
    db = tmp_path / "reload.db"
    host = EngineHost(RunOptions(source=f"replay:{events}", rules_path=rules, db_path=db),
                      load_rules(rules), diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
        before, _ = await host.pool.enqueue("A1")
        await host.pool.drain()
        assert [e["result"] for e in _actions_log(db, before)] == [
            "dry_run: sell 1 MNQ stop at 19900"]  # executed (a replay: dry run)

        rules.write_text(_smart(execute=False, workers=3))
        assert host.reload_rules() is None
        after, _ = await host.pool.enqueue("A1")
        await host.pool.drain()
        assert [e["result"] for e in _actions_log(db, after)] == [RECOMMENDED]
        assert sum(not w.done() for w in host.pool._workers) == 3  # `workers` followed too
        await host.finish(wait_for_jobs=False)
    finally:
        await host.close()


def test_a_restart_keeps_a_replays_jobs_within_retention(tmp_path: Path) -> None:
    """The jobs of a replay of February finished in February event time; a later start on the
    same database must not measure their age on today's wall clock (30 days: all purged)."""
    rules = tmp_path / "review.yaml"
    rules.write_text(HEADER + """\
rules:
  daily_realized_loss: {limit: -100, action: smart_review, lockout: none}
smart_risk: {planner: heuristic, step_delay_seconds: 0, retention_days: 30}
""")
    loss = tmp_path / "loss.jsonl"
    loss.write_text(OPEN + json.dumps({
        "type": "fill", "ts": "2026-02-03T15:00:01Z", "account": "A1", "symbol": "MNQ",
        "order_id": "2", "side": "sell", "qty": 1, "price": 19900.0}) + "\n")
    db = tmp_path / "kept.db"

    def replay(path: Path) -> None:
        res = subprocess.run([sys.executable, "-m", "riskterm", "--no-ui", "--source",
                              f"replay:{path}", "--rules", str(rules), "--db", str(db)],
                             capture_output=True, text=True, timeout=60, cwd=ROOT)
        assert res.returncode == 0, res.stderr

    replay(loss)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM jobs").fetchall() == [("completed",)]
    later = tmp_path / "later.jsonl"  # the next day's file on the same database
    later.write_text(json.dumps({"type": "clock", "ts": "2026-02-04T15:00:00Z"}) + "\n")
    replay(later)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT status FROM jobs").fetchall() == [("completed",)]
        assert conn.execute("SELECT COUNT(*) FROM job_events").fetchone()[0] > 0


async def test_a_pool_transaction_never_makes_the_engines_commit_fail(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The pool holding a write transaction across awaits (while the loop is slow, as with 100k
    accounts) used to make the engine's commit give up with "database is locked": now both
    share one connection and one lock, and the engine's commit waits its turn."""
    for module in (db_module, recorder_module):  # the patience, wherever it lives
        monkeypatch.setattr(module, "LOCKED_PATIENCE", 0.2, raising=False)
    monkeypatch.setattr(db_module, "BUSY_TIMEOUT_MS", 20)
    host = EngineHost(RunOptions(source="-", db_path=tmp_path / "t.db"),
                      load_rules_text(_smart(execute=False)), diagnostics=lambda _: None)
    await host.open()
    inside = asyncio.Event()
    try:
        async def slow(conn: Any, txn: Any) -> None:
            await conn.execute("UPDATE job_owners SET heartbeat_at = heartbeat_at")
            inside.set()
            await asyncio.sleep(0.6)  # held past the engine's patience

        held = asyncio.create_task(host.pool.store.transact(slow))
        await inside.wait()
        host.engine.process(json.loads(OPEN) | {"ts": 1770130800.0, "symbol": "ZZ"})
        assert await host.recorder.flush() == 1  # its warning: waited, did not fail
        await held
        await host.finish(wait_for_jobs=False)
    finally:
        await host.close()


async def test_a_reload_to_execute_false_holds_for_a_job_already_planning(tmp_path: Path) -> None:
    """A job that started before the reload must not execute after it either: the act step
    reads the pool's config as it is then."""
    rules = tmp_path / "rules.yaml"
    rules.write_text(_smart(execute=True).replace("step_delay_seconds: 0",
                                                  "step_delay_seconds: 0.5"))
    events = tmp_path / "open.jsonl"
    events.write_text(OPEN)
    db = tmp_path / "midway.db"
    host = EngineHost(RunOptions(source=f"replay:{events}", rules_path=rules, db_path=db),
                      load_rules(rules), diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
        job_id, _ = await host.pool.enqueue("A1")
        # reload while the job is at an early step: act is at least three steps (1.5 s) away
        for _ in range(200):
            with sqlite3.connect(db) as conn:
                row = conn.execute("SELECT status, step FROM jobs WHERE id = ?",
                                   (job_id,)).fetchone()
            if row == ("running", "assess"):
                break
            await asyncio.sleep(0.02)
        else:
            pytest.fail(f"the job never reached its assess step: {row}")
        rules.write_text(_smart(execute=False).replace("step_delay_seconds: 0",
                                                       "step_delay_seconds: 0.5"))
        assert host.reload_rules() is None
        await host.pool.drain()
        assert [e["result"] for e in _actions_log(db, job_id)] == [RECOMMENDED]
        await host.finish(wait_for_jobs=False)
    finally:
        await host.close()
