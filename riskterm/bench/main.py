"""Runs the selected benchmarks and prints a table or one JSON object."""

from __future__ import annotations

import json
import sys
from typing import Any

from riskterm.config import load_rules, resolve_rules_path

ALL = ("replay", "latency", "jobs", "rules", "memory", "ui", "export", "broker")
DEFAULT = ALL[:6]  # CONTRACT s3: what a bare `riskterm bench` runs; the others by --only


def bench_main(args: Any) -> int:
    from riskterm.bench import runners

    names = args.only or list(DEFAULT)
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"riskterm: unknown benchmark {', '.join(unknown)} (choose from {', '.join(ALL)})",
              file=sys.stderr)
        return 2
    config = load_rules(resolve_rules_path(args.rules))
    size = getattr(args, "max_events", None)
    results: dict[str, Any] = {}
    for name in names:
        if not args.json:
            print(f"running {name}...", file=sys.stderr, flush=True)
        try:
            results[name] = getattr(runners, name)(config, size)
        except Exception as exc:  # a benchmark that cannot run says why; no traceback
            print(f"riskterm: the {name} benchmark failed: {exc}", file=sys.stderr)
            return 1
    if args.json:
        print(json.dumps(results))
    else:
        for name, figures in results.items():
            print(f"{name:8} " + "  ".join(f"{k}={v}" for k, v in _flat(figures)))
    return 0


def _flat(figures: dict[str, Any]) -> list[tuple[str, Any]]:
    out = []
    for key, value in figures.items():
        if isinstance(value, dict):
            out.extend((f"{key}.{k}", v) for k, v in value.items())
        else:
            out.append((key, value))
    return out
