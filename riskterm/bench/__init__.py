"""`riskterm bench`: the built-in benchmarks (CONTRACT §3)."""

from riskterm.bench.main import bench_main

__all__ = ["bench_main"]
