"""The one percentile the benchmarks report: the value at rank p of the sorted samples."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

N = TypeVar("N", int, float)


def percentile(values: Sequence[N], p: float) -> N | float:
    """The p-quantile (0..1) of `values` by rank (no interpolation); 0.0 for no samples."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))] if ordered else 0.0
