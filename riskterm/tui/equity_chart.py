"""EquityChart: an account's P&L of the day (its equity less the day's start) as a line chart with
axes, the zero line, the daily loss limit and the trailing drawdown floor drawn in.

Built on textual-plotext (plotext inside a Textual widget): real axes with ticks and labels,
horizontal reference lines and a legend, drawn with braille dots, and it follows the app's theme.
The plot is rebuilt at most once a second (`MIN_REDRAW_S`) and only when a new P&L sample came,
so a busy feed does not redraw it on every flush.
"""

from __future__ import annotations

import time
from zoneinfo import ZoneInfo

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from riskterm.tui import formatting as fmt
from riskterm.tui.account_view import Levels

MIN_REDRAW_S = 1.0


class EquityChart(PlotextPlot):
    def __init__(self, tz: ZoneInfo, *, id: str | None = None,
                 deterministic: bool = False) -> None:
        super().__init__(id=id)
        self.tz = tz
        self.deterministic = deterministic
        self._shown: tuple[object, ...] | None = None
        self._drawn_at = 0.0
        self.draws = 0  # for tests
        self._built: tuple[tuple[object, ...], RenderResult] | None = None

    def render(self) -> RenderResult:
        # plotext rebuilds the whole figure on every call: rebuilt only after a new draw or a
        # new size, a repaint of the screen (a key press, a resume) reuses the last one
        key = (self.draws, self.size, self.app.theme)
        if self._built is None or self._built[0] != key:
            self._built = (key, super().render())
        return self._built[1]

    def show(self, account: str, points: list[float], step: float, now: float,
             levels: Levels | None, version: int, *, force: bool = False) -> bool:
        """Redraw if something changed (and the last redraw is old enough); returns whether it
        redrew."""
        key = (account, version, levels.daily_limit if levels else None,
               None if levels is None or levels.floor_pnl is None else round(levels.floor_pnl, 2),
               self.size)
        if key == self._shown:
            return False
        wall = time.monotonic()
        if not force and not self.deterministic and wall - self._drawn_at < MIN_REDRAW_S \
                and self._shown is not None and self._shown[0] == account:
            return False
        self._shown = key
        self._drawn_at = wall
        self._draw(account, points, step, now, levels)
        self.draws += 1
        return True

    def _draw(self, account: str, points: list[float], step: float, now: float,
              levels: Levels | None) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(f"{fmt.safe(account)} · P&L of the day (equity less the start of day)")
        plt.xlabel(f"time ({self.tz.key})")
        times = [now - (len(points) - 1 - i) * step for i in range(len(points))]
        times, points = thin(times, points, max(8, self.size.width))
        n = len(points)
        if n:
            midnight = fmt.local(now, self.tz).replace(hour=0, minute=0, second=0,
                                                       microsecond=0).timestamp()
            xs = [(t - midnight) / 3600 for t in times]
            plt.plot(xs, points, label="P&L", color="cyan", marker="braille")
            lo, hi = min(points), max(points)
            ticks = _hour_ticks(xs[0], xs[-1])
            plt.xticks(ticks, [f"{int(t) % 24:02d}:{round(t % 1 * 60):02d}" for t in ticks])
        else:
            lo = hi = 0.0
            plt.text("no P&L sampled yet", 0, 0, color="gray")
        plt.hline(0.0, "gray")
        bounds = [lo, hi, 0.0]
        if levels is not None and levels.daily_limit is not None:
            plt.hline(levels.daily_limit, "red")
            bounds.append(levels.daily_limit)
        if levels is not None and levels.floor_pnl is not None:
            plt.hline(levels.floor_pnl, "orange")
            bounds.append(levels.floor_pnl)
        lo, hi = min(bounds), max(bounds)
        pad = max(1.0, (hi - lo) * 0.08)
        plt.ylim(lo - pad, hi + pad)
        plt.ylabel("$")
        self.refresh()


def thin(xs: list[float], ys: list[float], buckets: int) -> tuple[list[float], list[float]]:
    """At most two points per bucket (its lowest and highest, in order): a chart `buckets`
    cells wide shows the same line, and plotext builds it in a fraction of the time (a
    1,200-point day took 30 ms, a stall of the event loop at every redraw)."""
    n = len(ys)
    if n <= 2 * buckets:
        return xs, ys
    out_x: list[float] = []
    out_y: list[float] = []
    for b in range(buckets):
        lo, hi = b * n // buckets, (b + 1) * n // buckets
        if lo >= hi:
            continue
        chunk = ys[lo:hi]
        i_min = lo + chunk.index(min(chunk))
        i_max = lo + chunk.index(max(chunk))
        for i in sorted({i_min, i_max}):
            out_x.append(xs[i])
            out_y.append(ys[i])
    if out_x[-1] != xs[-1]:  # the latest point always shows
        out_x.append(xs[-1])
        out_y.append(ys[-1])
    return out_x, out_y


def legend(levels: Levels | None) -> list[tuple[str, str]]:
    """The reference lines drawn, (words, colour), for the line under the chart."""
    out = [("zero", "grey50")]
    if levels is not None and levels.daily_limit is not None:
        out.append((f"daily loss limit {fmt.money(levels.daily_limit)}", "red"))
    if levels is not None and levels.floor_pnl is not None:
        out.append((f"trailing floor {fmt.money(levels.floor)} "
                    f"(P&L {fmt.money(levels.floor_pnl, signed=True)})", "dark_orange"))
    return out


def _hour_ticks(start: float, end: float, most: int = 6) -> list[float]:
    """Round clock times between start and end (hours since midnight), at most `most`."""
    span = max(end - start, 1 / 60)
    for every in (1 / 60, 5 / 60, 15 / 60, 0.5, 1, 2, 4, 6, 12):
        if span / every <= most:
            break
    first = -(-start // every) * every
    ticks = []
    t = first
    while t <= end + 1e-9:
        ticks.append(round(t, 6))
        t += every
    return ticks or [start]
