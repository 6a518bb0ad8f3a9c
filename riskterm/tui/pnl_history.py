"""The intraday P&L path of each account, sampled on the engine clock.

Samples are taken when the engine clock crosses a step boundary (event time in a replay, wall
time live), so a replay at full speed draws the same curve as one watched in real time, and a
snapshot of a replay is deterministic. The series of an account restarts with its trading day.
The memory is bounded: when a series reaches `max_points`, every series keeps every other point
and the step doubles, so the chart always spans the whole day at a resolution that fits.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from riskterm.engine import Engine

MAX_POINTS = 1200


class PnlHistory:
    def __init__(self, step: float = 1.0, max_points: int = MAX_POINTS) -> None:
        self.step = step
        self.max_points = max_points
        self.series: dict[str, list[float]] = {}
        self._day: dict[str, str | None] = {}
        self._next = 0.0
        self.version = 0  # bumped on every sample, so a chart knows when to redraw
        self._engine: Engine | None = None

    def attach(self, engine: Engine) -> None:
        """Sample from the engine's clock watch, which sees every event and tick."""
        self._engine = engine

        def maybe_sample(now: float) -> None:
            if now >= self._next:
                self.sample(now)

        engine.watch_clock = maybe_sample

    def sample(self, now: float) -> None:
        """Record every account's P&L of the day as it stands before time `now`."""
        engine = self._engine
        if engine is None:
            return
        self._next = now - now % self.step + self.step
        if not engine.started:
            return
        longest = 0
        for name, acct in engine.accounts.items():
            series = self.series.get(name)
            if series is None or self._day.get(name) != acct.trading_day:
                series = self.series[name] = []
                self._day[name] = acct.trading_day
            series.append(round(acct.realized + acct.unrealized, 2))
            longest = max(longest, len(series))
        if longest >= self.max_points:
            for name, series in self.series.items():
                self.series[name] = series[::-2][::-1]  # keep the latest point
            self.step *= 2
        self.version += 1

    def points(self, account: str | None) -> list[float]:
        if account is None:
            return []
        return list(self.series.get(account, ()))
