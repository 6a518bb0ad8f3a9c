"""Regenerate screenshots/*.svg from the running dashboard.

The pictures come from the real app (headless, at 160x45 and again at 80x24, the latter named
NAME-80x24.svg) on a replay of the built-in simulator:
a fixed seed and start time give the same events on every run, so the screenshots only change
when the code does. Usage:

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--seed 7] [--events 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from riskterm.config import load_rules, resolve_rules_path  # noqa: E402
from riskterm.host import RunOptions  # noqa: E402
from riskterm.sources.sim import Simulator  # noqa: E402
from riskterm.tui.app import RiskTermApp, create_app  # noqa: E402
from riskterm.tui.settings import AppSettings  # noqa: E402

SIZES = {"": (160, 45), "-80x24": (80, 24)}
START = "2026-03-02T15:10:00+00:00"  # a Monday, 09:10 in Chicago: the session is open


def record_sim(path: Path, rules: Path, seed: int, events: int) -> None:
    """Write `events` events of the simulator (seed, fixed start) as a replay file."""
    config = load_rules(rules)
    instruments = {s: (i.tick_size, i.tick_value) for s, i in config.instruments.items()} or None
    sim = Simulator(seed=seed, speed=0, start=datetime.fromisoformat(START).timestamp(),
                    instruments=instruments)
    steps = sim.steps()
    with path.open("w") as out:
        for _ in range(events):
            out.write(json.dumps(next(steps)) + "\n")


async def until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise SystemExit(f"screenshots: timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def shoot(app: RiskTermApp, out: Path, size: tuple[int, int], suffix: str) -> list[Path]:
    saved: list[Path] = []

    async with app.run_test(size=size) as pilot:

        async def save(name: str) -> None:
            await pilot.pause()
            app.refresh_now()
            app.clear_notifications()
            await pilot.pause()
            saved.append(Path(app.save_screenshot(f"{name}{suffix}.svg", str(out))))

        await app.wait_for_source()
        await pilot.pause()
        engine = app.host.engine
        # the account with the most open positions: the busiest picture
        account = max(sorted(engine.accounts), key=lambda a: sum(
            1 for p in engine.accounts[a].positions.values() if p.qty))
        screen: Any = app.screen
        screen.accounts.focus()
        screen.accounts.move_cursor(row=screen.accounts.get_row_index(account))
        await save("dashboard")

        await pilot.press("v")
        violations: Any = app.screen
        await until(lambda: violations.loads >= 1, "the violation history")
        await save("violations")

        await pilot.press("d", "e", "j")
        jobs: Any = app.screen
        await until(lambda: any((jobs.table.raw(k) or ("",) * 4)[3] == "completed"
                                for k in jobs.table.row_keys), "a finished job")
        await save("jobs")

        await pilot.press("enter")
        detail: Any = app.screen
        await until(lambda: detail.polls >= 1, "the job detail")
        for node in ("assessment", "snapshot"):
            found = detail.tree.find(node)
            if found is not None:
                found.expand()
        await save("job-detail")

        await pilot.press("r")
        await save("rules")

        await pilot.press("d", "A")
        await pilot.pause(0.3)
        await save("account")
        await pilot.press("escape")

        await pilot.press("d", "f")
        await save("flatten")
        await pilot.press("n", "question_mark")
        await save("help")
        await app.shutdown_engine()
    return saved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--events", type=int, default=6000)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rules = resolve_rules_path(str(ROOT / "rules.yaml"))
    with tempfile.TemporaryDirectory(prefix="riskterm-shots-") as tmp:
        events = Path(tmp) / "simulator.jsonl"
        record_sim(events, rules, args.seed, args.events)
        for suffix, size in SIZES.items():
            opts = RunOptions(source=f"replay:{events}", rules_path=rules,
                              db_path=Path(tmp) / f"shots{suffix}.db", speed=0)
            app = create_app(opts, load_rules(rules), AppSettings(deterministic=True))
            for path in asyncio.run(shoot(app, args.out, size, suffix)):
                print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
