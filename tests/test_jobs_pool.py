"""The durable job pool: status paths, priorities, dedup, cancel, timeout, retry, recovery."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from riskterm.jobs.bench import bench_noop_jobs
from riskterm.jobs.errors import JobError
from riskterm.jobs.kinds import get_kind
from riskterm.jobs.pool import JobPool
from tests.test_jobs_support import (
    ORDER,
    FakeEngine,
    config,
    db_rows,
    gate,
    job_records,
    job_status,
    pos,
    snap,
    started_pool,
    wait_until,
)

ROOT = Path(__file__).resolve().parent.parent


def statuses(path: Path, job_id: str) -> list[tuple[str, int]]:
    return [(r["status"], r["attempt"]) for r in job_records(path, job_id)]


async def test_noop_job_lifecycle_is_recorded_after_commit(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    seen: list[tuple[str, bool]] = []

    def on_record(rec: dict) -> None:  # reported only once it is in the database
        bodies = [json.loads(b) for (b,) in db_rows(db, "SELECT body FROM records")]
        seen.append((rec["status"], rec in bodies))

    pool = await started_pool(db, on_record=on_record, clock=lambda: 1_770_130_800.5)
    job_id, dup = pool.enqueue_nowait("A1", kind="noop", origin="cli")
    assert not dup and job_id.startswith("j")
    await pool.drain()
    assert seen == [("queued", True), ("running", True), ("completed", True)]
    recs = job_records(db, job_id)
    assert recs[0] == {"kind": "job", "ts": "2026-02-03T15:00:00.500Z", "job_id": job_id,
                       "job_kind": "noop", "account": "A1", "status": "queued", "attempt": 1}
    assert set(recs[-1]) >= {"duration_s", "actions_taken", "error"}
    assert recs[-1]["error"] is None and recs[-1]["actions_taken"] == 0
    events = db_rows(db, "SELECT type, detail FROM job_events WHERE job_id = ? ORDER BY id",
                     (job_id,))
    assert [d.split(":")[0] for t, d in events if t == "status"] == [
        "queued", "running", "completed"]
    rows = db_rows(db, "SELECT status, progress, attempts, priority FROM jobs")
    assert rows == [("completed", 1.0, 1, 0)]
    assert pool.jobs_this_run() == 1
    await pool.stop()


async def test_kind_registry_priorities() -> None:
    assert get_kind("smart_risk").priority == -10  # type: ignore[union-attr]
    assert get_kind("noop").priority == 0  # type: ignore[union-attr]
    assert get_kind("nope") is None


async def test_priorities_then_fifo(tmp_path: Path) -> None:
    pool = await started_pool(tmp_path / "p.db", config(workers=1))
    g = gate("PRIO")
    blocker, _ = await pool.enqueue("PRIO", kind="test_gate")
    await wait_until(lambda: pool.metrics()["running"] == 1)
    ORDER.clear()
    low1, _ = pool.enqueue_nowait("X", kind="test_order")
    low2, _ = pool.enqueue_nowait("X", kind="test_order")
    high1, _ = pool.enqueue_nowait("X", kind="test_order_hi")
    high2, _ = pool.enqueue_nowait("Y", kind="test_order_hi")
    await pool.store.flush()
    assert pool.metrics()["queue_depth"] == 4
    g.set()
    await pool.drain()
    assert list(ORDER) == [high1, high2, low1, low2]
    assert job_status(tmp_path / "p.db", blocker) == "completed"
    await pool.stop()


async def test_dedup_one_active_smart_risk_job_per_account(tmp_path: Path) -> None:
    engine = FakeEngine({"A1": snap("A1"), "A2": snap("A2")})
    pool = await started_pool(tmp_path / "d.db", config(step_delay_seconds=0.05), engine)
    first, dup1 = pool.enqueue_nowait("A1")
    again, dup2 = await pool.enqueue("A1", origin="dashboard")
    other, dup3 = pool.enqueue_nowait("A2")
    assert (dup1, dup2, dup3) == (False, True, False)
    assert again == first and other != first
    await pool.drain()
    later, dup4 = pool.enqueue_nowait("A1")
    assert not dup4 and later != first
    await pool.drain()
    await pool.stop()


async def test_duplicate_from_another_process_found_at_commit(tmp_path: Path) -> None:
    from riskterm.jobs.cli import run_jobs_command

    db = tmp_path / "x.db"
    engine = FakeEngine({"A1": snap("A1")})
    pool = await started_pool(db, config(), engine, commit_window=0.3)
    task = asyncio.create_task(pool.enqueue("A1"))  # not committed for 0.3 s
    await asyncio.sleep(0)
    import io

    out = io.StringIO()
    assert await run_jobs_command("enqueue", db, account="A1", out=out) == 0
    cli_id = out.getvalue().strip()
    job_id, dup = await task
    assert (job_id, dup) == (cli_id, True)
    await pool.drain()  # the CLI's job is claimed and run
    assert job_status(db, cli_id) == "completed"
    mine = [r for r in job_records(db) if r["job_id"] != cli_id]
    assert mine[-1]["status"] == "cancelled" and "duplicate of job" in mine[-1]["error"]
    await pool.stop()


async def test_cancel_queued_job_is_immediate(tmp_path: Path) -> None:
    db = tmp_path / "c.db"
    pool = await started_pool(db, config(workers=1))
    g = gate("CQ")
    await pool.enqueue("CQ", kind="test_gate")
    await wait_until(lambda: pool.metrics()["running"] == 1)
    ORDER.clear()
    queued, _ = await pool.enqueue("X", kind="test_order")
    assert await pool.cancel(queued) == "cancelled"
    assert job_status(db, queued) == "cancelled"
    g.set()
    await pool.drain()
    assert queued not in ORDER
    assert statuses(db, queued) == [("queued", 1), ("cancelled", 1)]
    with pytest.raises(JobError, match="already cancelled"):
        await pool.cancel(queued)
    with pytest.raises(JobError, match="unknown job id"):
        await pool.cancel("j999-1")
    await pool.stop()


async def test_cancel_running_job_at_next_step(tmp_path: Path) -> None:
    db = tmp_path / "cr.db"
    engine = FakeEngine({"A1": snap("A1", positions=[pos("MNQ", 1, 20000.0)])})
    pool = await started_pool(db, config(step_delay_seconds=5.0), engine, cancel_grace=3.0)
    job_id, _ = await pool.enqueue("A1")
    await wait_until(lambda: job_status(db, job_id) == "running")
    t0 = time.monotonic()
    assert await pool.cancel(job_id) == "cancelling"
    await pool.drain()
    assert time.monotonic() - t0 < 1.0  # cooperative: well before the hard deadline
    assert [s for s, _ in statuses(db, job_id)] == ["queued", "running", "cancelling",
                                                     "cancelled"]
    await pool.stop()


async def test_cancel_running_job_hard_after_grace(tmp_path: Path) -> None:
    db = tmp_path / "ch.db"
    pool = await started_pool(db, cancel_grace=0.1)
    job_id, _ = await pool.enqueue("S", kind="test_stubborn")
    await wait_until(lambda: job_status(db, job_id) == "running")
    t0 = time.monotonic()
    assert await pool.cancel(job_id) == "cancelling"
    await pool.drain()
    assert 0.1 <= time.monotonic() - t0 < 1.0
    assert job_status(db, job_id) == "cancelled"
    events = [d for (d,) in db_rows(db, "SELECT detail FROM job_events WHERE type = 'cancel'")]
    assert events and "cancelling it" in events[0]
    await pool.stop()


async def test_timeout(tmp_path: Path) -> None:
    db = tmp_path / "t.db"
    pool = await started_pool(db, config(timeout_seconds=0.15))
    job_id, _ = await pool.enqueue("S", kind="test_stubborn")
    await pool.drain()
    rec = job_records(db, job_id)[-1]
    assert rec["status"] == "timeout" and "timed out after 0.15 s" in rec["error"]
    assert 0.15 <= rec["duration_s"] < 1.0
    assert pool.metrics()["failed"] == 0
    await pool.stop()


async def test_transient_failures_retry_with_backoff(tmp_path: Path) -> None:
    db = tmp_path / "b.db"
    pool = await started_pool(db, backoff_base=0.05)
    job_id, _ = await pool.enqueue("F", kind="test_flaky", instructions="3")
    await pool.drain()
    assert statuses(db, job_id) == [("queued", 1), ("running", 1), ("queued", 2), ("running", 2),
                                     ("queued", 3), ("running", 3), ("completed", 3)]
    times = [float(d.split(" at ")[1]) for (d,) in db_rows(
        db, "SELECT detail FROM job_events WHERE type = 'attempt' ORDER BY id")]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert 0.05 <= gaps[0] < 1.0 and 0.1 <= gaps[1] < 1.5  # exponential, with jitter
    retries = [d for (d,) in db_rows(db, "SELECT detail FROM job_events WHERE type = 'retry'")]
    assert "HTTP 503 on attempt 1" in retries[0]
    await pool.stop()


async def test_transient_failures_give_up_after_three_attempts(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    pool = await started_pool(db, backoff_base=0.01)
    job_id, _ = await pool.enqueue("F", kind="test_flaky")
    broken, _ = await pool.enqueue("F", kind="test_broken")
    await pool.drain()
    rec = job_records(db, job_id)[-1]
    assert rec["status"] == "failed" and rec["attempt"] == 3
    assert rec["error"] == "gave up after 3 attempts: HTTP 503 on attempt 3"
    assert statuses(db, broken) == [("queued", 1), ("running", 1), ("failed", 1)]
    assert job_records(db, broken)[-1]["error"] == "HTTP 401: bad credentials"
    assert pool.metrics()["failed"] == 2
    # a manual retry keeps the id and counts the attempt
    await pool.retry(job_id)
    await pool.drain()
    assert statuses(db, job_id)[-3:] == [("queued", 4), ("running", 4), ("failed", 4)]
    with pytest.raises(JobError, match="only failed"):
        ok, _ = await pool.enqueue("F", kind="noop")
        await pool.drain()
        await pool.retry(ok)
    await pool.stop()


def _spawn_hanging_engine(db: Path) -> subprocess.Popen[str]:
    code = (
        "import asyncio, sys\n"
        "from tests.test_jobs_support import config\n"
        "from riskterm.jobs.pool import JobPool\n"
        "async def main():\n"
        f"    pool = JobPool({str(db)!r}, config(), None)\n"
        "    await pool.start()\n"
        "    job_id, _ = await pool.enqueue('K', kind='test_hang')\n"
        "    while pool.metrics()['running'] == 0:\n"
        "        await asyncio.sleep(0.005)\n"
        "    await pool.store.flush()\n"
        "    print(job_id, flush=True)\n"
        "    await asyncio.sleep(3600)\n"
        "asyncio.run(main())\n"
    )
    env = {**os.environ, "RISKTERM_TEST_HANG": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, text=True)


async def test_crash_recovery_after_kill(tmp_path: Path) -> None:
    db = tmp_path / "k.db"
    proc = _spawn_hanging_engine(db)
    try:
        assert proc.stdout is not None
        job_id = (await asyncio.to_thread(proc.stdout.readline)).strip()
        assert job_status(db, job_id) == "running"
    finally:
        proc.kill()
        proc.wait()
    pool = await started_pool(db)  # same file, the first process died without cleanup
    await pool.drain()
    assert statuses(db, job_id) == [("queued", 1), ("running", 1), ("interrupted", 1),
                                     ("queued", 2), ("running", 2), ("completed", 2)]
    assert "stopped before it finished" in job_records(db, job_id)[2]["error"]
    await pool.stop()


async def _abandon(pool: JobPool) -> None:
    """Simulate a process that vanished: no cleanup, no status changes, heartbeat stale."""
    for task in [*pool._tasks, *pool._workers]:
        task.cancel()
    for ctx in pool._ctx.values():
        if ctx.task is not None:
            ctx.task.cancel()
    await asyncio.sleep(0.01)
    await pool.store.close()
    assert pool.conn is not None
    await pool.conn.execute("UPDATE job_owners SET heartbeat_at = heartbeat_at - 3600")
    await pool.conn.close()


async def test_abandoned_pool_jobs_are_interrupted_and_requeued_once(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    first = await started_pool(db, config(workers=1))
    gate("AB")
    running, _ = await first.enqueue("AB", kind="test_gate")
    queued, _ = await first.enqueue("Q", kind="test_order")
    await wait_until(lambda: job_status(db, running) == "running")
    await _abandon(first)

    second = await started_pool(db, config(workers=1))  # first is never stopped
    await wait_until(lambda: job_status(db, running) == "running", what="re-queued job runs")
    assert statuses(db, running)[2:] == [("interrupted", 1), ("queued", 2), ("running", 2)]
    await wait_until(lambda: job_status(db, queued) == "queued" and second.metrics()[
        "queue_depth"] == 1, what="released queued job claimed")
    await _abandon(second)  # a second crash: it was already queued again once

    third = await started_pool(db, config(workers=1))
    await third.drain()
    assert statuses(db, running)[-1] == ("interrupted", 2)
    assert job_status(db, queued) == "completed"
    notes = [d for (d,) in db_rows(db, "SELECT detail FROM job_events WHERE type = 'recover'")]
    assert notes == ["not queued again: it was already queued again once"]
    await third.stop()


async def test_retry_interrupted_off(tmp_path: Path) -> None:
    db = tmp_path / "o.db"
    first = await started_pool(db)
    gate("OFF")
    job_id, _ = await first.enqueue("OFF", kind="test_gate")
    await wait_until(lambda: job_status(db, job_id) == "running")
    await _abandon(first)
    second = await started_pool(db, config(retry_interrupted=False))
    await second.drain()
    assert statuses(db, job_id)[-1] == ("interrupted", 1)
    gate("OFF").set()
    await second.retry(job_id)  # by hand it may still be retried
    await second.drain()
    assert statuses(db, job_id)[-1] == ("completed", 2)
    await second.stop()


async def test_graceful_stop_interrupts_and_restart_requeues(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    first = await started_pool(db, config(workers=1))
    gate("ST")
    running, _ = await first.enqueue("ST", kind="test_gate")
    queued, _ = await first.enqueue("Q", kind="noop")
    await wait_until(lambda: job_status(db, running) == "running")
    await first.stop()
    assert job_status(db, running) == "interrupted"
    assert db_rows(db, "SELECT owner FROM jobs WHERE id = ?", (queued,)) == [(None,)]
    assert db_rows(db, "SELECT COUNT(*) FROM job_owners") == [(0,)]
    gate("ST").set()
    second = await started_pool(db)
    await second.drain()
    assert statuses(db, running)[-3:] == [("queued", 2), ("running", 2), ("completed", 2)]
    assert job_status(db, queued) == "completed"
    await second.stop()


async def test_heartbeat_metrics_and_retention(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    clock = [1_000_000.0]
    pool = await started_pool(db, clock=lambda: clock[0])
    for _ in range(5):
        pool.enqueue_nowait("M", kind="noop")
    await pool.drain()
    m = pool.metrics()
    assert (m["queue_depth"], m["running"], m["completed"], m["failed"]) == (0, 0, 5, 0)
    assert m["p50_duration_s"] is not None and m["p95_duration_s"] is not None
    owner = db_rows(db, "SELECT owner, pid, heartbeat_at FROM job_owners")
    assert owner[0][0] == pool.owner and owner[0][1] == os.getpid()
    clock[0] += 31 * 86400  # retention_days defaults to 30
    fresh, _ = await pool.enqueue("M", kind="noop")
    await pool.drain()
    assert await pool.cleanup() == 5
    assert db_rows(db, "SELECT id FROM jobs") == [(fresh,)]
    assert db_rows(db, "SELECT DISTINCT job_id FROM job_events") == [(fresh,)]
    assert len(job_records(db)) == 18  # records are the audit log: kept
    await pool.stop()


async def test_schedule_reviews_every_account(tmp_path: Path) -> None:
    db = tmp_path / "e.db"
    engine = FakeEngine({"A1": snap("A1"), "A2": snap("A2")})
    pool = await started_pool(db, config(every="15m"), engine)
    await asyncio.sleep(0.05)
    assert pool.jobs_this_run() == 0
    engine.t += 900
    await wait_until(lambda: pool.jobs_this_run() == 2, what="scheduled jobs")
    await pool.drain()
    origins = db_rows(db, "SELECT account, origin FROM jobs ORDER BY account")
    assert origins == [("A1", "schedule"), ("A2", "schedule")]
    await pool.stop()


async def test_replay_job_sees_account_as_enqueued(tmp_path: Path) -> None:
    db = tmp_path / "rp.db"
    engine = FakeEngine({"A1": snap("A1", positions=[pos("MNQ", 1, 20000.0)])}, is_replay=True)
    pool = await started_pool(db, config(step_delay_seconds=0.01), engine)
    pool.enqueue_nowait("A1")
    engine.snapshots["A1"] = snap("A1")  # the replay moves on before the job runs
    await pool.drain()
    state = json.loads(db_rows(db, "SELECT graph_state FROM jobs")[0][0])
    assert [p["symbol"] for p in state["snapshot"]["positions"]] == ["MNQ"]
    assert state["snapshot_source"] == "as of enqueue (replay)"
    await pool.stop()


async def test_enqueue_unknown_kind_and_before_start(tmp_path: Path) -> None:
    pool = JobPool(tmp_path / "u.db", config(), None)
    with pytest.raises(JobError, match="not running"):
        pool.enqueue_nowait("A1")
    await pool.start()
    with pytest.raises(JobError, match="unknown job kind"):
        pool.enqueue_nowait("A1", kind="bogus")
    await pool.stop()


async def test_bench_noop_jobs(tmp_path: Path) -> None:
    result = await bench_noop_jobs(300, tmp_path / "bench.db")
    assert set(result) == {"jobs", "jobs_per_s", "start_p50_ms", "start_p99_ms"}
    assert result["jobs"] == 300 and result["jobs_per_s"] > 100
    assert 0 < result["start_p50_ms"] <= result["start_p99_ms"]
    assert db_rows(tmp_path / "bench.db", "SELECT COUNT(*) FROM jobs WHERE status = "
                   "'completed'") == [(300 + 300,)]
