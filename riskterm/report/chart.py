"""The equity chart of one account as inline SVG: the equity curve, the limit lines, lockout
bands and a strip of the day's records. Every text is escaped here (account names and messages
come from the database, which holds user input)."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from riskterm.report.day import AccountDay

W, H = 960, 330
LEFT, RIGHT, TOP = 86, 16, 14
PLOT_BOTTOM = 250  # the curve's area ends here; the record strip and the time axis below
STRIP = (262, 282)
MAX_MARKERS = 600  # a dot (with its hover text) per point up to this many; past it the line only

MARK_CLASS = {"violation": "m-violation", "warning": "m-warning", "enforcement": "m-enforcement",
              "lockout": "m-lockout", "unlock": "m-unlock", "job": "m-job"}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (steps of 1, 2 or 5 times a power of ten)."""
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    first = math.ceil(lo / step) * step
    out = []
    v = first
    while v <= hi + step * 1e-9:
        out.append(round(v, 10))
        v += step
    return out


def _time_ticks(x0: float, x1: float) -> list[float]:
    span = x1 - x0
    step = next((s for s in (60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600)
                 if span / s <= 8), 21600)
    first = math.ceil(x0 / step) * step
    return [float(t) for t in range(int(first), int(x1) + 1, step)]


def _y_range(acct: AccountDay) -> tuple[float, float] | None:
    values = [p.equity for p in acct.points] + [line.value for line in acct.lines]
    if not values:
        return None
    lo, hi = min(values), max(values)
    pad = max((hi - lo) * 0.08, abs(hi) * 0.001, 1.0)
    return lo - pad, hi + pad


def equity_svg(acct: AccountDay, x_range: tuple[float, float], tz: ZoneInfo) -> str:
    x0, x1 = x_range
    if x1 <= x0:
        x1 = x0 + 60.0

    def fx(t: float) -> float:
        return LEFT + (min(max(t, x0), x1) - x0) / (x1 - x0) * (W - LEFT - RIGHT)

    out = [f'<svg class="equity" viewBox="0 0 {W} {H}" role="img" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="equity of {escape(acct.name)}">',
           f'<rect class="plot" x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
           f'height="{PLOT_BOTTOM - TOP}"/>']
    yr = _y_range(acct)
    if yr is None:
        out.append(f'<text class="empty" x="{W / 2}" y="{(TOP + PLOT_BOTTOM) / 2}" '
                   'text-anchor="middle">no equity data stored for this account on this day'
                   '</text>')
    else:
        _curve(out, acct, yr, fx)
    _strip(out, acct, fx)
    for t in _time_ticks(x0, x1):
        x = fx(t)
        label = datetime.fromtimestamp(t, tz).strftime("%H:%M")
        out.append(f'<line class="tick" x1="{x:.1f}" y1="{PLOT_BOTTOM}" x2="{x:.1f}" '
                   f'y2="{PLOT_BOTTOM + 4}"/><text class="axis" x="{x:.1f}" y="{H - 24}" '
                   f'text-anchor="middle">{label}</text>')
    zone = escape(datetime.fromtimestamp(x0, tz).strftime("%Z"))
    out.append(f'<text class="axis" x="{W - RIGHT}" y="{H - 6}" text-anchor="end">time '
               f'({zone})</text>')
    out.append("</svg>")
    return "".join(out)


def _curve(out: list[str], acct: AccountDay, yr: tuple[float, float],
           fx: Callable[[float], float]) -> None:
    lo, hi = yr

    def fy(v: float) -> float:
        return PLOT_BOTTOM - (v - lo) / (hi - lo) * (PLOT_BOTTOM - TOP)

    for v in nice_ticks(lo, hi):
        y = fy(v)
        out.append(f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" '
                   f'y2="{y:.1f}"/><text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" '
                   f'text-anchor="end">{v:,.0f}</text>')
    for band in acct.bands:
        a, b = fx(band.start), fx(band.end)
        out.append(f'<rect class="band" x="{a:.1f}" y="{TOP}" width="{max(b - a, 1.5):.1f}" '
                   f'height="{PLOT_BOTTOM - TOP}"><title>{escape(band.text)}</title></rect>')
    for line in acct.lines:
        y = fy(line.value)
        out.append(f'<line class="lim {line.css}" x1="{LEFT}" y1="{y:.1f}" x2="{W - RIGHT}" '
                   f'y2="{y:.1f}"><title>{escape(line.label)}</title></line>')
        # the realized-loss label on the left: it often lies close to the daily loss limit's
        left = line.css == "realized"
        out.append(f'<text class="lim-label {line.css}" x="{LEFT + 4 if left else W - RIGHT - 4}" '
                   f'y="{y - 4:.1f}" text-anchor="{"start" if left else "end"}">'
                   f'{escape(line.label)}</text>')
    if acct.points:
        path = " ".join(f"{fx(p.ts):.1f},{fy(p.equity):.1f}" for p in acct.points)
        out.append(f'<polyline class="curve" points="{path}"/>')
        for p in acct.points if len(acct.points) <= MAX_MARKERS else ():
            out.append(f'<circle class="pt" cx="{fx(p.ts):.1f}" cy="{fy(p.equity):.1f}" r="3.5">'
                       f'<title>{p.equity:,.2f}: {escape(p.source)}</title></circle>')


def _strip(out: list[str], acct: AccountDay, fx: Callable[[float], float]) -> None:
    y0, y1 = STRIP
    out.append(f'<text class="axis" x="{LEFT - 6}" y="{y1 - 4}" text-anchor="end">records'
               '</text>')
    # violations drawn last, so that a job or enforcement at the same instant does not hide one
    order = {"job": 0, "unlock": 1, "enforcement": 2, "warning": 3, "lockout": 4, "violation": 5}
    for ts, rec in sorted(acct.records, key=lambda item: order.get(str(item[1].get("kind")), 0)):
        kind = str(rec.get("kind"))
        css = MARK_CLASS.get(kind, "m-other")
        if kind == "enforcement" and rec.get("status") == "failed":
            css += " m-failed"
        text = rec.get("message") or rec.get("detail") or rec.get("status") or ""
        title = f"{kind} {rec.get('rule') or rec.get('job_id') or ''}: {text}"
        x = fx(ts)
        out.append(f'<rect class="mark {css}" x="{x - 1.5:.1f}" y="{y0}" width="3" '
                   f'height="{y1 - y0}"><title>{escape(title)}</title></rect>')
