"""One function per benchmark of `riskterm bench` (CONTRACT §3), called by bench.main as
``runner(config, size)``: ``size`` is the --max-events value (None: the full default size) and
each returns the contract's keys for its benchmark.

Sizes when --max-events N is given (a quick run, e.g. the CI smoke test):
replay N events; latency N events at 10,000/s; jobs N no-op jobs; rules iteration counts
scaled by N; memory a replay of N events; ui 1.5 s of dashboard; export N records;
broker N/30 breaches (at least 20) and N quotes.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from riskterm.config import RulesConfig

REPLAY_EVENTS = 200_000
JOBS = 5_000
UI_SECONDS = 5.0
UI_SECONDS_QUICK = 1.5


def replay(config: RulesConfig, size: int | None) -> dict[str, Any]:
    from riskterm.bench.replay import bench_replay

    r = bench_replay(config, size or REPLAY_EVENTS)
    return {k: r[k] for k in ("events", "events_per_s", "json_loads_per_s", "ratio",
                              "first_record_s")}


def latency(config: RulesConfig, size: int | None) -> dict[str, Any]:
    from riskterm.bench.latency import bench_latency

    return bench_latency(config, size or None)


def jobs(config: RulesConfig, size: int | None) -> dict[str, Any]:
    from riskterm.jobs.bench import bench_noop_jobs

    n = size or JOBS
    with tempfile.TemporaryDirectory(prefix="riskterm-bench-") as tmp:
        r = asyncio.run(bench_noop_jobs(n, Path(tmp) / "jobs.db"))
    return {k: r[k] for k in ("jobs", "jobs_per_s", "start_p50_ms", "start_p99_ms")}


def rules(config: RulesConfig, size: int | None) -> dict[str, Any]:
    from riskterm.bench.rules_micro import bench_rules

    return bench_rules(size or None)


def memory(config: RulesConfig, size: int | None) -> dict[str, Any]:
    from riskterm.bench.memory import EVENTS, bench_memory

    return bench_memory(config.path, size or EVENTS)


def ui(config: RulesConfig, size: int | None) -> dict[str, Any]:
    # in a process of its own, as the dashboard runs: the heap the other benchmarks leave
    # behind would otherwise lengthen this one's garbage collections
    seconds = UI_SECONDS_QUICK if size else UI_SECONDS
    res = subprocess.run([sys.executable, "-m", "riskterm.tui.bench", str(seconds)],
                         capture_output=True, text=True, timeout=seconds + 120)
    if res.returncode != 0:
        raise RuntimeError(f"the ui benchmark failed: {res.stderr.strip()[-2000:]}")
    # the worst of the scenarios (rate, key_p95_ms, lag_p99_ms), then each scenario's figures
    figures = dict(json.loads(res.stdout.strip().splitlines()[-1]))
    missing = {"rate", "key_p95_ms", "lag_p99_ms"} - figures.keys()
    if missing:
        raise RuntimeError(f"the ui benchmark reported no {', '.join(sorted(missing))}")
    return figures


EXPORT_RECORDS = 200_000  # the 1,000,000 figure: riskterm bench --only export --max-events 1000000


def export(config: RulesConfig, size: int | None) -> dict[str, Any]:
    from riskterm.bench.export import bench_export

    return bench_export(size or EXPORT_RECORDS)


def broker(config: RulesConfig, size: int | None) -> dict[str, Any]:
    # its own rules (the whole catalog, limits set for its two breaches): riskterm.bench.broker
    from riskterm.bench.broker import BREACHES, QUOTES, bench_broker

    if size:
        return bench_broker(max(20, size // 30), size)
    return bench_broker(BREACHES, QUOTES)
