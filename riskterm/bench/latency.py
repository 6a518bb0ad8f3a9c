"""Event-to-enforcement latency at a steady event rate, wired as in production.

The executing Simulator is the broker, wrapped so that every command's arrival is timestamped.
Events come from the simulator's unpaced stream and are fed on an asyncio loop at a steady rate
(small batches, each released at its due time), into a live Engine (engine clock = wall time),
while a real Recorder commits the engine's changes to a temporary SQLite database every
host.FLUSH_INTERVAL in a background task (plus the host's backpressure and clock ticker), as in
``riskterm --no-ui``.

A sample is the time from just before ``engine.process(event)`` to a command of the enforcement
that event caused reaching the broker's ``submit`` (every command counts, so the later commands
of a flatten are included; commands sent by a timer that fires between events, from the clock
ticker, are not samples). Rules: the given configuration plus two tweaks that make
enforcements frequent enough for hundreds of samples: symbol_blocks on the simulator's BTC/MBT
contracts (its blocked-symbol dabbler trades them) and a tight order_rate_limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from riskterm.alerts.dispatch import AlertDispatcher
from riskterm.bench.stats import percentile
from riskterm.brokers.base import Command
from riskterm.config import RulesConfig, default_rules_path, load_rules_text
from riskterm.db import open_db
from riskterm.engine import Engine
from riskterm.host import FLUSH_INTERVAL, HARD_PENDING
from riskterm.recorder import Recorder
from riskterm.sources.sim import Simulator

RATE = 10_000  # events per second
SECONDS = 3.0
BATCH = 20  # events released together: every 2 ms at 10,000/s
TWEAKS = {
    "symbol_blocks": {"symbols": ["BTC*", "MBT*"]},
    "order_rate_limit": {"max_orders": 2, "per_seconds": 1},
}


class TimingBroker:
    """Wraps the executing broker; records how long after its event's entry a command arrives."""

    executes = True

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.entered = 0  # perf_counter_ns of the event being processed, 0 between events
        self.samples: list[int] = []
        self.recording = False

    def submit(self, command: Command) -> None:
        if self.recording and self.entered:
            self.samples.append(time.perf_counter_ns() - self.entered)
        self.inner.submit(command)


def latency_config(config: RulesConfig) -> RulesConfig:
    """The given rules plus TWEAKS, through the ordinary loader."""
    path = Path(config.path)
    if not path.is_file():
        path = default_rules_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8-sig")) or {}
    data["rules"] = {**(data.get("rules") or {}), **TWEAKS}
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    return load_rules_text(text, f"{path} (latency benchmark)")




async def _run(config: RulesConfig, n: int, rate: float, db: Path) -> dict[str, Any]:
    conn = await open_db(db)
    instruments = {s: (i.tick_size, i.tick_value) for s, i in config.instruments.items()} or None
    # about 33 events per simulated second at rate 1: sim time runs about as fast as wall time
    sim = Simulator(seed=7, speed=0, instruments=instruments, accounts=24, rate=rate / 33.0)
    broker = TimingBroker(sim)
    engine = Engine(config, broker, live=True)
    recorder = Recorder(conn, engine)
    # the rules' alerts: block, fed by the recorder as in production (no targets: a no-op)
    alerts = AlertDispatcher(config.alerts, lambda account, message, lost: engine.emit_warning(
        "alert_failed", account, None, message, lost, None))
    recorder.sinks.append(alerts.sink)
    alerts.start()
    loop = asyncio.get_running_loop()

    async def flusher() -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            await recorder.flush()

    async def ticker() -> None:
        while True:
            await asyncio.sleep(0.25)
            engine.advance(engine.wall())

    tasks = [asyncio.create_task(flusher()), asyncio.create_task(ticker())]
    steps = sim.steps()
    process = engine.process
    clock = time.perf_counter_ns
    warmup = min(2_000, n // 10) // BATCH * BATCH  # not measured: caches, first lockouts
    started = time.perf_counter()
    try:
        t0 = loop.time()
        sent = 0
        total = warmup + n
        while sent < total:
            if sent >= warmup and not broker.recording:
                broker.recording = True
                t0 = loop.time() - warmup / rate
                started = time.perf_counter()
            due = t0 + sent / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            for _ in range(min(BATCH, total - sent)):
                ev = next(steps)
                broker.entered = clock()
                process(ev)
                broker.entered = 0  # a command outside process() (a timer's) is not a sample
            sent += BATCH
            if len(engine._records) >= HARD_PENDING:  # the host's backpressure
                await recorder.flush()
        elapsed = time.perf_counter() - started
        await recorder.flush()
    finally:
        alerts.close()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await conn.close()
    samples = broker.samples
    return {
        "rate": round(n / elapsed) if elapsed > 0 else 0,
        "p50_us": round(percentile(samples, 0.50) / 1000, 1),
        "p99_us": round(percentile(samples, 0.99) / 1000, 1),
        "max_us": round(max(samples, default=0) / 1000, 1),
        "samples": len(samples),
    }


def bench_latency(config: RulesConfig, n: int | None = None, rate: float = RATE) -> dict[str, Any]:
    """{rate, p50_us, p99_us, max_us, samples}; n events (default: SECONDS at `rate`)."""
    n = n if n else int(SECONDS * rate)
    cfg = latency_config(config)
    with tempfile.TemporaryDirectory(prefix="riskterm-bench-") as tmp:
        return asyncio.run(_run(cfg, n, rate, Path(tmp) / "latency.db"))
