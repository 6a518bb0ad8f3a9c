"""A reproducible mixed event file for the benchmarks, written from the simulator's stream."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from riskterm.sources.sim import Simulator
from riskterm.timefmt import iso

START = 1_772_546_400.0  # 2026-03-03T14:00:00Z, a Tuesday inside the default session


def events(n: int, *, seed: int = 7, accounts: int = 24, rate: float = 40.0) -> Iterator[dict]:
    sim = Simulator(seed=seed, speed=0, start=START, accounts=accounts, rate=rate)
    for i, ev in enumerate(sim.steps()):
        if i >= n:
            return
        yield ev


def to_line(ev: dict[str, Any]) -> str:
    out = {k: v for k, v in ev.items() if not k.startswith("_") and k != "origin"}
    out["ts"] = iso(ev["ts"])
    return json.dumps(out)


def write_file(path: Path, n: int, **kw: Any) -> Path:
    with path.open("w") as fh:
        for ev in events(n, **kw):
            fh.write(to_line(ev) + "\n")
    return path
