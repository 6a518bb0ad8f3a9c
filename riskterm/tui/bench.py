"""The `ui` benchmark: the real dashboard, headless, on the simulator pushed to `rate` events/s.

It measures two things a trader feels:
- key latency: a screen key (v, j, r, d) is posted as the terminal driver would post it, and the
  clock stops when the new screen is on top with fresh data (its resume handler ran the flush)
  and the compositor has rendered it for the terminal; one press every 100 ms, cycling through
  the screens (each screen is visited once before, so these are switches, not first builds);
- event-loop lag: a task asks to wake every 10 ms and records how late it wakes.

The simulator's pace is set by its speed: the events per simulated second of the seed are
counted once, and speed = rate / that. The result's `rate` is what the engine actually took in.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path
from typing import Any

KEYS = ("v", "j", "r", "d")
PRESS_EVERY = 0.1
LAG_TICK = 0.01
WARM_UP = 0.3  # seconds on each screen before measuring


def _percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


class _Paints:
    """When each screen was last rendered for the terminal (wraps the app's display call)."""

    def __init__(self, app: Any) -> None:
        self.at: dict[int, float] = {}
        display = app._display

        def timed_display(screen: Any, renderable: Any) -> None:
            display(screen, renderable)
            if renderable is not None:
                self.at[id(screen)] = time.perf_counter()

        app._display = timed_display


def sim_events_per_second(seed: int, instruments: dict[str, tuple[float, float]] | None,
                          sample: int = 20_000) -> float:
    """Events the simulator makes per simulated second at speed 1 (its natural pace)."""
    from riskterm.sources.sim import Simulator

    sim = Simulator(seed=seed, speed=1.0, instruments=instruments)
    steps = sim.steps()
    for _ in range(sample):
        next(steps)
    return sample / max(sim.t, 1e-9)


async def bench_ui(seconds: float = 5.0, rate: float = 20000) -> dict[str, float]:
    from textual import events

    from riskterm.config import default_rules_path, load_rules
    from riskterm.host import RunOptions
    from riskterm.tui.app import create_app
    from riskterm.tui.screens.base import LiveScreen
    from riskterm.tui.screens.dashboard import DashboardScreen
    from riskterm.tui.screens.jobs import JobsScreen
    from riskterm.tui.screens.rules import RulesScreen
    from riskterm.tui.screens.violations import ViolationsScreen
    from riskterm.tui.settings import AppSettings

    targets: dict[str, type[LiveScreen]] = {
        "v": ViolationsScreen, "j": JobsScreen, "r": RulesScreen, "d": DashboardScreen}
    config = load_rules(default_rules_path())
    instruments = {s: (i.tick_size, i.tick_value) for s, i in config.instruments.items()} or None
    speed = rate / sim_events_per_second(0, instruments)
    key_ms: list[float] = []
    lag_ms: list[float] = []
    measured: dict[str, float] = {}

    async def drive(app: Any) -> None:
        loop = asyncio.get_running_loop()
        paints = _Paints(app)
        while app.engine is None or app.host.events_in == 0:
            await asyncio.sleep(0.01)
        # visit every screen once and let its first read finish, so the measured presses are
        # switches between built screens, not first builds
        for key in KEYS:
            await _press(app, key, targets[key], events, paints)
            await asyncio.sleep(WARM_UP)

        async def sample_lag() -> None:
            while True:
                due = loop.time() + LAG_TICK
                await asyncio.sleep(LAG_TICK)
                lag_ms.append(max(0.0, loop.time() - due) * 1000)

        lagger = asyncio.create_task(sample_lag())
        events0, t0 = app.host.events_in, time.perf_counter()
        end = t0 + seconds
        i = 0
        while time.perf_counter() < end:
            key = KEYS[i % len(KEYS)]
            i += 1
            key_ms.append(await _press(app, key, targets[key], events, paints) * 1000)
            await asyncio.sleep(PRESS_EVERY)
        measured["elapsed"] = time.perf_counter() - t0
        measured["taken"] = app.host.events_in - events0
        lagger.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lagger

    with tempfile.TemporaryDirectory(prefix="riskterm-bench-ui-") as tmp:
        opts = RunOptions(source="sim", db_path=Path(tmp) / "bench.db", seed=0, speed=speed)
        app = create_app(opts, config, AppSettings())
        async with app.run_test(size=(160, 45)):  # the real app, headless
            await drive(app)
            await app.shutdown_engine()  # what q does before the app exits
    taken, elapsed = measured["taken"], measured["elapsed"]
    return {
        "rate": round(taken / elapsed, 1),
        "key_p95_ms": round(_percentile(key_ms, 0.95), 2),
        "lag_p99_ms": round(_percentile(lag_ms, 0.99), 2),
    }


async def _press(app: Any, key: str, target: type[Any], events: Any, paints: _Paints) -> float:
    """Post one key as the terminal driver does; seconds until `target` is on top with fresh
    data and has been rendered."""
    t0 = time.perf_counter()
    event = events.Key(key, key)
    event.set_sender(app)
    app._driver.send_message(event)
    while True:
        screen = app.screen
        if isinstance(screen, target) and screen.resumed_at >= t0:
            painted = paints.at.get(id(screen), 0.0)
            if painted >= screen.resumed_at:
                return painted - t0
        await asyncio.sleep(0.0005)


def main() -> None:
    import json
    import sys

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    rate = float(sys.argv[2]) if len(sys.argv) > 2 else 20000
    print(json.dumps(asyncio.run(bench_ui(seconds, rate))))


if __name__ == "__main__":
    main()
