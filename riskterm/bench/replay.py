"""Replay throughput: parse -> book -> full default rule set -> records committed to SQLite,
against plain json.loads over the same lines in the same run."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from riskterm.bench.workload import write_file
from riskterm.config import RulesConfig
from riskterm.host import EngineHost, RunOptions


def json_loads_rate(path: Path) -> float:
    lines = path.read_bytes().splitlines()
    t0 = time.perf_counter()
    loads = json.loads
    for line in lines:
        loads(line)
    return len(lines) / (time.perf_counter() - t0)


async def replay_once(path: Path, config: RulesConfig, db: Path) -> tuple[int, float, int]:
    committed = 0

    def count(batch: list[Any]) -> None:
        nonlocal committed
        committed += len(batch)

    host = EngineHost(RunOptions(source=f"replay:{path}", db_path=db), config, sinks=[count],
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    t0 = time.perf_counter()
    await host.run_source()
    await host.recorder.flush()
    elapsed = time.perf_counter() - t0
    n = host.engine.n_events + host.engine.n_rejected
    await host.close()
    return n, elapsed, committed


def bench_replay(config: RulesConfig, n: int = 200_000) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="riskterm-bench-") as tmp:
        path = write_file(Path(tmp) / "events.jsonl", n)
        baseline = json_loads_rate(path)
        events, elapsed, records = asyncio.run(replay_once(path, config, Path(tmp) / "b.db"))
    rate = events / elapsed
    return {"events": events, "events_per_s": round(rate), "json_loads_per_s": round(baseline),
            "ratio": round(rate / baseline, 3), "records": records}
