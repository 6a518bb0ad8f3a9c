"""`riskterm jobs ...` against the database, with and without an engine process on it."""

from __future__ import annotations

import io
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from riskterm.jobs.cli import run_jobs_command
from tests.test_jobs_support import (
    FakeEngine,
    config,
    gate,
    job_records,
    job_status,
    pos,
    snap,
    started_pool,
    wait_until,
)

LIST_FIELDS = {"id", "kind", "account", "status", "priority", "progress", "step", "created_at",
               "duration_s"}
SHOW_FIELDS = LIST_FIELDS | {
    "started_at", "finished_at", "attempts", "model_used", "user_instructions",
    "iteration_count", "actions_taken", "actions_summary", "actions_log", "initial_equity",
    "final_equity", "initial_balance", "final_balance", "error", "graph_state", "events"}


async def jobs(db: Path, action: str, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = await run_jobs_command(action, db, out=out, err=err, **kw)
    return code, out.getvalue(), err.getvalue()


async def test_without_an_engine(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    assert await jobs(db, "list") == (0, f"no jobs (no database at {db})\n", "")
    assert not db.exists()
    code, out, err = await jobs(db, "enqueue", account="A1", instructions="tighten stops")
    job_id = out.strip()
    assert (code, err) == (0, "") and job_id
    code, out, err = await jobs(db, "enqueue", account="A1")
    assert (code, out.strip()) == (0, job_id)
    assert "duplicate of a job already queued/running" in err
    other = (await jobs(db, "enqueue", account="A2", kind="noop"))[1].strip()
    assert other != job_id
    assert [(r["status"], r["attempt"]) for r in job_records(db, job_id)] == [("queued", 1)]

    code, out, _ = await jobs(db, "list", as_json=True)
    listed = json.loads(out)
    assert [j["id"] for j in listed] == [other, job_id]  # newest first
    assert set(listed[0]) >= LIST_FIELDS
    assert listed[1]["priority"] == -10 and listed[1]["status"] == "queued"
    code, out, _ = await jobs(db, "list")
    assert out.splitlines()[0].split() == ["ID", "KIND", "ACCOUNT", "STATUS", "PRI", "PROGRESS",
                                           "STEP", "CREATED", "DURATION"]
    assert job_id in out and "smart_risk" in out

    code, out, _ = await jobs(db, "show", job_id=job_id, as_json=True)
    shown = json.loads(out)
    assert set(shown) >= SHOW_FIELDS
    assert shown["user_instructions"] == "tighten stops" and shown["attempts"] == 1
    assert shown["events"][0]["type"] == "status"
    assert shown["events"][0]["detail"] == "queued: enqueued by cli"

    assert await jobs(db, "cancel", job_id=job_id) == (0, f"{job_id} cancelled\n", "")
    code, _, err = await jobs(db, "cancel", job_id=job_id)
    assert code == 2 and "already cancelled" in err
    assert await jobs(db, "retry", job_id=job_id) == (0, f"{job_id} queued (attempt 2)\n", "")
    code, _, err = await jobs(db, "retry", job_id=job_id)
    assert code == 2 and "only failed, cancelled, timeout or interrupted" in err


async def test_usage_errors_exit_2(tmp_path: Path) -> None:
    db = tmp_path / "u.db"
    await jobs(db, "enqueue", account="A1", kind="noop")
    for action in ("show", "cancel", "retry", "approve"):
        code, out, err = await jobs(db, action, job_id="j404-1")
        assert (code, out) == (2, "") and "unknown job id j404-1" in err
    code, _, err = await jobs(db, "enqueue", account="A1", kind="bogus")
    assert code == 2 and "unknown job kind 'bogus'" in err
    assert (await jobs(db, "frobnicate"))[0] == 2
    assert (await jobs(tmp_path / "none.db", "show", job_id="x"))[0] == 2


async def test_engine_picks_up_enqueue_and_cancel_within_a_second(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    engine = FakeEngine({"A1": snap(positions=[pos("MNQ", 1, 20000.0)])})
    pool = await started_pool(db, config(step_delay_seconds=0.02), engine, poll_interval=0.25)
    t0 = time.monotonic()
    job_id = (await jobs(db, "enqueue", account="A1"))[1].strip()
    await wait_until(lambda: job_status(db, job_id) == "completed", timeout=2.0)
    assert time.monotonic() - t0 < 1.0

    gate("G1")
    slow = (await jobs(db, "enqueue", account="G1", kind="test_gate"))[1].strip()
    await wait_until(lambda: job_status(db, slow) == "running", timeout=2.0)
    t0 = time.monotonic()
    code, out, _ = await jobs(db, "cancel", job_id=slow)
    assert time.monotonic() - t0 < 1.0
    assert (code, out) == (0, f"{slow} cancelled\n")
    assert [r["status"] for r in job_records(db, slow)][-2:] == ["cancelling", "cancelled"]
    assert json.loads((await jobs(db, "show", job_id=slow, as_json=True))[1])["status"] == \
        "cancelled"
    # retry by the CLI: the engine runs it again under the same id
    gate("G1").set()
    assert (await jobs(db, "retry", job_id=slow))[0] == 0
    await wait_until(lambda: job_status(db, slow) == "completed", timeout=2.0)
    await pool.stop()


async def test_approve_with_and_without_an_engine(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    engine = FakeEngine({"A1": snap(positions=[pos("MNQ", 1, 20000.0)])})
    pool = await started_pool(db, config(), engine, poll_interval=0.05)
    job_id, _ = await pool.enqueue("A1")
    await pool.drain()
    await pool.stop()

    code, _, err = await jobs(db, "approve", job_id=job_id)  # nobody to execute it
    assert code == 1 and "no riskterm engine is running" in err
    assert "set_stop_loss MNQ @ 19900" in err and engine.calls == []

    pool = await started_pool(db, config(), engine, poll_interval=0.05)
    code, out, err = await jobs(db, "approve", job_id=job_id)
    assert code == 0, err
    assert out.splitlines() == ["set_stop_loss MNQ ok: set_stop_loss MNQ",
                                f"{job_id} approved: 1 enforcement(s), 0 rejected"]
    assert [c["action"] for c in engine.calls] == ["set_stop_loss"]
    code, _, err = await jobs(db, "approve", job_id=job_id)
    assert code == 2 and "no recommended actions" in err
    shown = json.loads((await jobs(db, "show", job_id=job_id, as_json=True))[1])
    assert shown["actions_taken"] == 1
    assert [e["type"] for e in shown["events"]].count("approve") == 2
    code, out, _ = await jobs(db, "show", job_id=job_id)
    assert "actions log:" in out and "timeline:" in out and "set_stop_loss MNQ @ 19900" in out
    await pool.stop()


def _no_constant(name: str) -> Any:
    raise AssertionError(f"{name} is not JSON")


async def test_json_output_is_strict_with_non_finite_numbers(tmp_path: Path) -> None:
    """An overflowed P&L (inf/nan) in a job's stored state is printed as null, not Infinity."""
    db = tmp_path / "n.db"
    job_id = (await jobs(db, "enqueue", account="A1"))[1].strip()
    state = {"snapshot": {"equity": float("inf"), "positions": [
        {"symbol": "MNQ", "unrealized_pnl": float("-inf")}]}, "risk": float("nan"), "ok": 1.5}
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE jobs SET graph_state = ?, final_equity = ? WHERE id = ?",
                     (json.dumps(state), float("inf"), job_id))  # json.dumps writes Infinity
    for action in ("show", "list"):
        code, out, _ = await jobs(db, action, job_id=job_id, as_json=True)
        assert code == 0
        json.loads(out, parse_constant=_no_constant)
    shown = json.loads((await jobs(db, "show", job_id=job_id, as_json=True))[1])
    assert shown["graph_state"] == {"snapshot": {"equity": None, "positions": [
        {"symbol": "MNQ", "unrealized_pnl": None}]}, "risk": None, "ok": 1.5}
    assert shown["final_equity"] is None and shown["id"] == job_id
