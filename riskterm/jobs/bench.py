"""The job pool benchmark: no-op jobs through a real pool on a real SQLite file.

Throughput: n no-op jobs are enqueued at once (enqueue_nowait, as the engine does) and the clock
stops when the last one's `completed` transition is committed; every transition (queued,
running, completed) is a job row change, a job_events row and a `job` record in `records`,
written by group commit with the production durability settings (WAL, synchronous=NORMAL).
Start latency: enqueue to start (the running transition) of jobs enqueued one at a time at
about 500/s, so it measures the pool (group commit window plus dispatch), not queueing behind a
burst.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from riskterm.bench.stats import percentile
from riskterm.jobs.pool import JobPool

LATENCY_JOBS = 500




async def bench_noop_jobs(n: int, db_path: str | Path) -> dict[str, Any]:
    from riskterm.config import SmartRiskConfig

    pool = JobPool(db_path, SmartRiskConfig(workers=2, timeout_seconds=60.0), None)
    await pool.start()
    try:
        t0 = time.perf_counter()
        for i in range(n):
            pool.enqueue_nowait(f"BENCH{i % 16}", kind="noop", origin="bench")
        await pool.drain()
        elapsed = time.perf_counter() - t0
        pool.start_latencies = latencies = []
        for i in range(min(n, LATENCY_JOBS)):
            pool.enqueue_nowait(f"BENCH{i % 16}", kind="noop", origin="bench")
            await asyncio.sleep(0.002)
        await pool.drain()
    finally:
        await pool.stop()
    return {
        "jobs": n,
        "jobs_per_s": round(n / elapsed, 1) if elapsed > 0 else 0.0,
        "start_p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "start_p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
    }
