"""Peak memory of a long replay through the full path (parse, book, rules, recorder, SQLite).

The benchmark runs in a fresh interpreter (``python -m riskterm.bench.memory``) so that only the
replay counts, not the benchmarks run before it in the parent. The child streams the workload's
events from the simulator into a temporary file in chunks (never the whole stream in memory),
replays it into a temporary database and reports its own peak resident set size from
``getrusage(RUSAGE_SELF).ru_maxrss``; the parent reads that one JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

EVENTS = 1_000_000
CHUNK = 10_000  # lines per write
TIMEOUT_S = 1800


def peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # kilobytes on Linux, bytes on macOS
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def write_events(path: Path, n: int) -> Path:
    from riskterm.bench.workload import events, to_line

    with path.open("w") as fh:
        chunk: list[str] = []
        for ev in events(n):
            chunk.append(to_line(ev))
            if len(chunk) >= CHUNK:
                fh.write("\n".join(chunk) + "\n")
                chunk.clear()
        if chunk:
            fh.write("\n".join(chunk) + "\n")
    return path


def child(n: int, rules: str | None) -> dict[str, Any]:
    """In the fresh interpreter: write, replay, measure."""
    from riskterm.bench.replay import replay_once
    from riskterm.config import default_rules_path, load_rules

    config = load_rules(rules or default_rules_path())
    with tempfile.TemporaryDirectory(prefix="riskterm-bench-") as tmp:
        path = write_events(Path(tmp) / "events.jsonl", n)
        events, _, _ = asyncio.run(replay_once(path, config, Path(tmp) / "memory.db"))
    return {"events": events, "peak_rss_mb": round(peak_rss_mb(), 1)}


def bench_memory(rules_path: str | Path | None, n: int = EVENTS) -> dict[str, Any]:
    """Run the child and return its {events, peak_rss_mb}."""
    import riskterm

    root = str(Path(riskterm.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    cmd = [sys.executable, "-m", "riskterm.bench.memory", "--events", str(n)]
    if rules_path is not None and Path(rules_path).is_file():
        cmd += ["--rules", str(rules_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=TIMEOUT_S,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"memory benchmark child failed (exit {proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m riskterm.bench.memory")
    parser.add_argument("--events", type=int, default=EVENTS)
    parser.add_argument("--rules", default=None)
    args = parser.parse_args(argv)
    print(json.dumps(child(args.events, args.rules)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
