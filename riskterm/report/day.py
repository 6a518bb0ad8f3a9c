"""One trading day per account, as the report shows it: P&L, an equity curve, limit lines, the
trades, the timeline and the jobs.

The curve is the start-of-day balance (the account row, or a job's account snapshot of that day)
followed by the engine's equity samples of the day (the equity table), and the account as of the
last commit when that is later than the last sample and differs from it. Realized and unrealized
P&L are the last sample's (or that later commit's); the trades are the fills table's.

A database an older riskterm wrote has no samples or fills (DayRows.history is False), nor has a
day from before a newer engine first opened it: then the curve is derived from what is stored,
and every point says where it came from: the start-of-day balance; each Smart Risk Manager job's
account snapshot; each `daily_total_loss` warning or violation (its value is the day's realized
+ unrealized P&L, so equity was the start-of-day balance plus it); the row at the last commit.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from riskterm.config import RulesConfig
from riskterm.report.store import DayRows, FillRow, Job, LockoutRow, Sample

KINDS = ("violation", "warning", "enforcement", "lockout", "unlock", "job")


@dataclass
class Point:
    ts: float
    equity: float
    source: str


@dataclass
class Line:
    label: str
    value: float
    css: str  # the class that colours it: limit, realized, floor


@dataclass
class Band:
    """A lockout drawn over the curve: [start, end) and what it was."""

    start: float
    end: float
    text: str


@dataclass
class AccountDay:
    name: str
    records: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    lockouts: list[LockoutRow] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    lines: list[Line] = field(default_factory=list)
    bands: list[Band] = field(default_factory=list)
    trades: list[FillRow] = field(default_factory=list)  # the day's fills (history only)
    derived: bool = False  # no samples: the curve is derived from records and snapshots
    start_balance: float | None = None
    end_equity: float | None = None
    end_balance: float | None = None
    realized: float | None = None
    unrealized: float | None = None
    fills: int | None = None
    positions: list[dict[str, Any]] = field(default_factory=list)  # open at the last commit
    counts: Counter[str] = field(default_factory=Counter)
    failed: int = 0  # enforcements that failed
    state: str = "active"
    notes: list[str] = field(default_factory=list)

    @property
    def day_pnl(self) -> float | None:
        if self.end_equity is None or self.start_balance is None:
            return None
        return self.end_equity - self.start_balance


@dataclass
class Day:
    label: date
    start: float
    end: float
    accounts: list[AccountDay]
    general: list[tuple[float, dict[str, Any]]]  # records of no account (summary, rejected)
    clock: float | None
    history: bool = True  # the database stores fills and equity samples

    @property
    def derived(self) -> bool:
        """Some account's curve is derived (no equity samples for it on this day)."""
        return any(a.derived for a in self.accounts)

    @property
    def x_range(self) -> tuple[float, float]:
        """The span the charts share: the day's data, not the whole 23-25 hours."""
        times = [t for a in self.accounts for t, _ in a.records]
        times += [p.ts for a in self.accounts for p in a.points]
        times += [f.ts for a in self.accounts for f in a.trades]
        times += [t for a in self.accounts for j in a.jobs
                  for t in (j.created_at, j.finished_at) if t is not None]
        times = [t for t in times if self.start <= t < self.end]
        if not times:
            return self.start, self.end
        lo, hi = min(times), max(times)
        pad = max((hi - lo) * 0.04, 60.0)
        return max(self.start, lo - pad), min(self.end, hi + pad)


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) \
        else None


def build_day(rows: DayRows, label: date, config: RulesConfig) -> Day:
    by_name: dict[str, AccountDay] = {}

    def account(name: str) -> AccountDay:
        found = by_name.get(name)
        if found is None:
            found = by_name[name] = AccountDay(name)
        return found

    general: list[tuple[float, dict[str, Any]]] = []
    for ts, rec in rows.records:
        name = rec.get("account")
        if isinstance(name, str) and rec.get("kind") in KINDS:
            acct = account(name)
            acct.records.append((ts, rec))
            acct.counts[str(rec["kind"])] += 1
            if rec.get("kind") == "enforcement" and rec.get("status") == "failed":
                acct.failed += 1
        else:
            general.append((ts, rec))
    for job in rows.jobs:
        account(job.account).jobs.append(job)
    for name in (*rows.fills, *rows.samples):
        account(name)
    today = label.isoformat()
    for name, data in rows.accounts.items():
        if data.get("trading_day") == today:
            account(name)
    for lk in rows.lockouts:  # a lockout carried over from an earlier day is not data of its own
        if lk.account in by_name:
            by_name[lk.account].lockouts.append(lk)
    # the start-of-day balance is drawn where the account's data begins (else the day's)
    day_first = min([t for t, _ in rows.records] + [j.created_at for j in rows.jobs]
                    + [f[0].ts for f in rows.fills.values()]
                    + [s[0].ts for s in rows.samples.values()], default=rows.start)
    for acct in by_name.values():
        _complete(acct, rows, today, config, day_first)
    accounts = sorted(by_name.values(), key=lambda a: a.name)
    return Day(label, rows.start, rows.end, accounts, general, rows.clock, rows.history)


def _complete(acct: AccountDay, rows: DayRows, today: str, config: RulesConfig,
              day_first: float) -> None:
    row = rows.accounts.get(acct.name) or {}
    current = row.get("trading_day") == today  # the row is this day's (else a later day's)
    snaps = [j.snapshot for j in acct.jobs if j.snapshot is not None
             and (t := _num(j.snapshot.get("ts"))) is not None and rows.start <= t < rows.end]
    snaps.sort(key=lambda s: s["ts"])
    if current:
        acct.start_balance = _num(row.get("sod_balance"))
    if acct.start_balance is None:
        acct.start_balance = next((b for s in snaps if (b := _num(s.get("start_balance")))
                                   is not None), None)
    acct.trades = rows.fills.get(acct.name, [])
    samples = rows.samples.get(acct.name, [])
    first = min([t for t, _ in acct.records] + [j.created_at for j in acct.jobs]
                + [f.ts for f in acct.trades[:1]] + [s.ts for s in samples[:1]],
                default=day_first)
    sod = acct.start_balance
    if sod is not None:
        acct.points.append(Point(max(first, rows.start), sod, "start-of-day balance"))
    if samples:
        _sampled(acct, samples, row, current, rows, config)
    else:
        _derived(acct, snaps, row, current, rows, config)
    acct.points.sort(key=lambda p: p.ts)
    if rows.history:
        acct.fills = len(acct.trades)
    _limits(acct, row, current, config)
    _lockouts(acct, rows)


def _sampled(acct: AccountDay, samples: list[Sample], row: dict[str, Any], current: bool,
             rows: DayRows, config: RulesConfig) -> None:
    for s in samples:
        if s.equity is not None:
            acct.points.append(Point(s.ts, s.equity, f"sample: balance {_money(s.balance)}, "
                                     f"realized {_money(s.realized)}, unrealized "
                                     f"{_money(s.unrealized)}"))
    last = samples[-1]
    acct.realized, acct.unrealized = last.realized, last.unrealized
    acct.end_equity, acct.end_balance = last.equity, last.balance
    if not current:
        return
    # the row at the last commit: its open positions, and its figures when they are later
    # than the last sample and moved since (a sample is taken at most once a minute)
    state = _row_state(acct, row, rows, config)
    at = rows.clock
    if at is None or not last.ts < at < rows.end:
        return
    realized, _, unrealized, equity = state
    if _cents(realized, unrealized, equity) == _cents(last.realized, last.unrealized,
                                                      last.equity):
        return
    acct.realized, acct.end_balance, acct.unrealized, acct.end_equity = state
    if equity is not None:
        acct.points.append(Point(at, equity, "the account at the last commit: realized "
                                 f"{_money(realized)}, unrealized {_money(unrealized)}"))


def _derived(acct: AccountDay, snaps: list[dict[str, Any]], row: dict[str, Any], current: bool,
             rows: DayRows, config: RulesConfig) -> None:
    acct.derived = True
    sod = acct.start_balance
    for snap in snaps:
        equity = _num(snap.get("equity"))
        if equity is not None:
            acct.points.append(Point(
                float(snap["ts"]), equity,
                "account snapshot of a Smart Risk Manager job: balance "
                f"{_money(snap.get('balance'))}, realized {_money(snap.get('realized_pnl'))}, "
                f"unrealized {_money(snap.get('unrealized_pnl'))}"))
    if sod is not None:
        for ts, rec in acct.records:
            if rec.get("rule") == "daily_total_loss" and rec.get("kind") in ("warning",
                                                                              "violation"):
                value = _num(rec.get("value"))
                if value is not None:
                    acct.points.append(Point(ts, sod + value,
                                             f"start-of-day balance + day P&L {value:,.2f} "
                                             f"({rec['kind']} of daily_total_loss)"))
    why = "the account row has moved on to a later trading day" if row \
        else "no account row is stored for it"
    if current:
        _from_row(acct, row, rows, config)
    elif snaps:
        last = snaps[-1]
        acct.realized = _num(last.get("realized_pnl"))
        acct.unrealized = _num(last.get("unrealized_pnl"))
        acct.end_equity = _num(last.get("equity"))
        acct.end_balance = _num(last.get("balance"))
        acct.notes.append(f"P&L as of the last Smart Risk Manager snapshot of the day: {why}")
    else:
        acct.notes.append(f"no P&L stored for this day: {why}, and no job took a snapshot")
    if len(acct.points) < 2:
        acct.notes.append("too few stored points for a curve (see how the curve is derived)")


def _from_row(acct: AccountDay, row: dict[str, Any], rows: DayRows,
              config: RulesConfig) -> None:
    """The derived curve's end: the row's figures, and a point at the last commit."""
    trade_ids = row.get("trade_ids")
    # without a fills table, fills are counted by the trade ids the engine keeps against
    # duplicate deliveries; a feed whose fills carry none leaves the count unknown, not zero
    if not rows.history:
        acct.fills = len(trade_ids) if isinstance(trade_ids, list) and trade_ids else None
    realized, balance, unrealized, equity = _row_state(acct, row, rows, config)
    acct.realized, acct.end_balance, acct.unrealized, acct.end_equity = (realized, balance,
                                                                         unrealized, equity)
    at = rows.clock if rows.clock is not None and rows.clock < rows.end else None
    if at is None:
        at = max([t for t, _ in acct.records] + [p.ts for p in acct.points], default=None)
    if equity is not None and at is not None:
        acct.points.append(Point(at, equity, "the account at the last commit"))


def _row_state(acct: AccountDay, row: dict[str, Any], rows: DayRows, config: RulesConfig,
               ) -> tuple[float | None, float | None, float | None, float | None]:
    """(realized, balance, unrealized, equity) of the account row at the last commit; fills
    acct.positions with its open positions at the engine's last marks."""
    realized = _num(row.get("realized"))
    balance = _num(row.get("balance"))
    unrealized = 0.0
    known = True
    for symbol, qty, avg in rows.positions.get(acct.name, []):
        mark = rows.marks.get(symbol)
        point = config.point_value(symbol) or 1.0
        pnl = (mark - avg) * qty * point if mark is not None else None
        if pnl is None:
            known = False
        else:
            unrealized += pnl
        acct.positions.append({"symbol": symbol, "qty": qty, "avg_price": avg, "mark": mark,
                               "unrealized": pnl})
    equity = _num(row.get("equity"))
    if equity is None and balance is not None and known:
        equity = balance + unrealized
    return realized, balance, unrealized if known else None, equity


def _limits(acct: AccountDay, row: dict[str, Any], current: bool, config: RulesConfig) -> None:
    rules = config.rules_for(acct.name)
    sod = acct.start_balance
    total = rules.get("daily_total_loss")
    if total is not None:
        limit = total.effective_limit(sod)  # type: ignore[attr-defined]
        if limit is not None and sod is not None:
            acct.lines.append(Line(f"daily loss limit {limit:,.2f} (daily_total_loss)",
                                   sod + limit, "limit"))
    realized = rules.get("daily_realized_loss")
    if realized is not None and sod is not None:
        limit = realized.limit  # type: ignore[attr-defined]
        acct.lines.append(Line(f"realized loss limit {limit:,.2f} (daily_realized_loss, on "
                               "realized P&L)", sod + limit, "realized"))
    if (total is not None or realized is not None) and sod is None:
        acct.notes.append("the loss limit is not drawn: no start-of-day balance is stored "
                          "for this day")
    drawdown = rules.get("trailing_drawdown")
    if drawdown is not None:
        state = (row.get("rule_state") or {}).get("trailing_drawdown") or {}
        mark, start = _num(state.get("mark")), _num(state.get("start"))
        amount: float = drawdown.amount  # type: ignore[attr-defined]
        if mark is None:
            acct.notes.append("the account floor is not drawn: trailing_drawdown has no "
                              "high-water mark stored for this account")
            return
        top = mark
        if start is not None and drawdown.stop_at_start_balance \
                and top > start + amount:  # type: ignore[attr-defined]
            top = start + amount
        floor = top - amount
        when = "" if current else f", as of trading day {row.get('trading_day')}"
        acct.lines.append(Line(f"account floor {floor:,.2f} (trailing_drawdown, high-water "
                               f"mark {mark:,.2f}{when})", floor, "floor"))


def _lockouts(acct: AccountDay, rows: DayRows) -> None:
    """Lockout bands over the curve, and the account's state at the end of the day's data."""
    horizon = min(rows.clock if rows.clock is not None else rows.end, rows.end)
    for lk in acct.lockouts:
        ends = [t for t in (lk.lifted_ts, lk.until_ts) if t is not None]
        end = min([horizon, *ends])
        start = max(lk.created_ts, rows.start)
        if end > start:
            lifted = f", lifted ({lk.lift_reason})" if lk.lifted_ts is not None else ""
            acct.bands.append(Band(start, end, f"{lk.state} by {lk.rule}{lifted}"))
        if lk.created_ts <= horizon and all(t > horizon for t in ends):
            acct.state = "halted" if "halted" in (lk.state, acct.state) else "reducing"


def _cents(*values: float | None) -> tuple[float | None, ...]:
    return tuple(None if v is None else round(v, 2) for v in values)


def _money(value: Any) -> str:
    n = _num(value)
    return "n/a" if n is None else f"{n:,.2f}"
