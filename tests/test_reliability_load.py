"""A burst from the simulator at its highest rate through the real host (engine, recorder, SQLite,
job pool): every event produced is processed, every record is committed and reported, and memory
stays flat while the events flow.

Size: 100,000 events at rate 600 and speed 0 (as fast as the engine takes them) are about four
seconds of the simulator's rate-600 market, or some 50 minutes of its default rate (about 33
events per sim second): five times the "10 sim-minutes" of the issue at that rate. Rate 600 over
10 sim minutes would be 14 million events, minutes of CPU, too long for CI; `riskterm bench
--only memory` covers a million events.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

import riskterm.sources.sim as sim_module
from riskterm.config import load_rules
from riskterm.host import EngineHost, RunOptions

ROOT = Path(__file__).resolve().parent.parent
EVENTS = 100_000
WARMUP = 25_000
MB = 1 << 20


async def test_highest_rate_burst_drops_nothing_and_memory_stays_flat(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_module, "Simulator",
                        functools.partial(sim_module.Simulator, rate=600))
    reported: list[dict[str, Any]] = []
    db = tmp_path / "load.db"
    host = EngineHost(RunOptions(source="sim", db_path=db, seed=3, speed=0),
                      load_rules(ROOT / "rules.yaml"), diagnostics=lambda _: None,
                      sinks=[lambda batch: reported.extend(rec for rec, _ in batch)])
    await host.open()
    source = host.sim.events
    produced = 0
    traced: dict[int, int] = {}

    async def counted() -> AsyncIterator[dict[str, Any]]:
        nonlocal produced
        async for event in source():
            if produced == EVENTS:
                return  # the source ends: nothing is in flight
            produced += 1
            if produced in (WARMUP, EVENTS):
                traced[produced] = tracemalloc.get_traced_memory()[0]
            yield event

    host.sim.events = counted
    tracemalloc.start()
    try:
        await host.run_source()
        summary = await host.finish(wait_for_jobs=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await host.close()

    # no dropped events
    assert produced == EVENTS
    assert host.events_in == host.engine.n_events == summary["events"] == EVENTS
    # every record committed once and reported once, in the same order
    with sqlite3.connect(db) as conn:
        bodies = [b for (b,) in conn.execute("SELECT body FROM records ORDER BY id")]
    assert [json.loads(b) for b in bodies] == reported
    assert len(reported) > 1000 and reported[-1] == summary  # the burst really fires rules
    # memory: what the run holds does not grow with the events processed
    growth = traced[EVENTS] - traced[WARMUP]
    assert growth < 4 * MB, f"traced memory grew by {growth / MB:.1f} MB over " \
                            f"{EVENTS - WARMUP} events"
    assert peak < 32 * MB, f"peak traced memory {peak / MB:.1f} MB"
    # the engine's in-memory state stays bounded too
    assert len(host.engine._records) == 0  # all committed
    assert len(host.engine._timers) < 1000
