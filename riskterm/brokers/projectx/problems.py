"""Payloads that could not be used: reported once per kind, counted always."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Problem:
    kind: str  # a stable tag, e.g. "hub_not_json", "order_unknown_status"
    sentence: str  # what a person reads


class ProblemLog:
    """Counts problems per kind and hands the first of each kind to `report`."""

    def __init__(self, report: Callable[[Problem], None] | None = None) -> None:
        self.counts: Counter[str] = Counter()
        self._report = report

    def add(self, problem: Problem) -> bool:
        """Counts `problem`; True (and reported) when it is the first of its kind."""
        self.counts[problem.kind] += 1
        first = self.counts[problem.kind] == 1
        if first and self._report is not None:
            self._report(problem)
        return first

    def total(self) -> int:
        return sum(self.counts.values())
