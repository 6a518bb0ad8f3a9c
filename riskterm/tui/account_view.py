"""What the account screen shows, as plain values read from the engine (no Textual here).

One row per enabled rule: its state (armed / warning / breached, as the rules screen), and for the
rules whose condition is one number measured against one bound, that number now, the bound and
the distance left before a breach (in the bound's unit: dollars, or contracts / losses). Rules
judged per order or per event (order size, rate, session, symbol blocks, stop grace, cooldown)
have no standing value: their row shows the bound and the state only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from riskterm.rules import trailing_drawdown
from riskterm.tui.view import rule_states

if TYPE_CHECKING:
    from riskterm.account import AccountState
    from riskterm.engine import Engine


class RuleRow(NamedTuple):
    rule: str
    state: str  # armed / warning / breached
    value: float | None
    limit: float | None
    distance: float | None  # how far the value may still move before a breach (>= 0 is room)
    money: bool  # value, limit and distance are dollars (else counts)
    note: str  # the bound in words, for rules without a standing value


class OrderRow(NamedTuple):
    order_id: str
    symbol: str
    side: str
    qty: int
    order_type: str
    price: float | None
    stop_price: float | None
    ts: float


class Levels(NamedTuple):
    """The money levels of the day, for the chart and the header (None when unknown)."""

    sod_balance: float | None
    equity: float | None
    pnl: float
    daily_limit: float | None  # the daily loss limit, as a (negative) P&L of the day
    mark: float | None  # trailing_drawdown's high-water mark
    floor: float | None  # trailing_drawdown's floor, in equity
    floor_pnl: float | None  # the floor as a P&L of the day (floor - start-of-day equity)


Measure = Callable[["AccountState", Any], tuple[float, float, str] | None]  # value, limit, cmp


def _open_pnls(acct: AccountState) -> list[float]:
    return [p.unrealized for p in acct.positions.values() if p.qty and p.mark is not None]


def _daily_total(acct: AccountState, params: Any) -> tuple[float, float, str] | None:
    limit = params.effective_limit(acct.sod_balance)
    return None if limit is None else (acct.realized + acct.unrealized, limit, "le")


def _position_loss(acct: AccountState, params: Any) -> tuple[float, float, str] | None:
    worst: tuple[float, float] | None = None  # (room, pnl), limit per position
    for p in acct.positions.values():
        if not p.qty or p.mark is None:
            continue
        pnl = p.unrealized
        limit = params.effective_limit(abs(p.qty * p.avg_price * p.point_value))
        if limit is not None and (worst is None or pnl - limit < worst[0]):
            worst = (pnl - limit, pnl)
    if worst is None:
        return None
    return worst[1], worst[1] - worst[0], "le"


def _contracts(acct: AccountState, params: Any) -> tuple[float, float, str]:
    net = sum(p.qty for p in acct.positions.values())
    gross = sum(abs(p.qty) for p in acct.positions.values())
    return float(gross if params.count == "gross" else abs(net)), float(params.limit), "gt"


def _exposure(acct: AccountState, params: Any) -> tuple[float, float, str]:
    total = sum(p.notional for p in acct.positions.values() if p.qty)
    return total, params.limit, "gt"


def _drawdown(acct: AccountState, params: Any) -> tuple[float, float, str] | None:
    found = trailing_drawdown.levels(acct, params)
    if found is None or found["drawdown"] is None:
        return None
    return found["drawdown"], params.amount, "ge"


def _streak(acct: AccountState, params: Any) -> tuple[float, float, str]:
    st = acct.rule_state.get("consecutive_losses") or {}
    n = st.get("n", 0) if st.get("day") == acct.trading_day else 0
    return float(n), float(params.max_losses), "ge"


MEASURES: dict[str, Measure] = {
    "daily_realized_loss": lambda a, p: (a.realized, p.limit, "le"),
    "daily_total_loss": _daily_total,
    "daily_unrealized_loss": lambda a, p: (a.unrealized, p.limit, "le"),
    "daily_realized_profit": lambda a, p: (a.realized, p.target, "ge"),
    "max_unrealized_profit": lambda a, p: (
        (max(pnls), p.target, "ge") if (pnls := _open_pnls(a)) else None),
    "max_position_loss": _position_loss,
    "max_contracts": _contracts,
    "max_total_exposure": _exposure,
    "trailing_drawdown": _drawdown,
    "consecutive_losses": _streak,
}
COUNTS = {"max_contracts", "consecutive_losses"}


def _note(rule: str, params: Any) -> str:
    """The bound of a rule without a standing value, in a few words."""
    get = params.__dict__.get
    if rule == "max_order_size":
        parts = []
        if get("max_qty") is not None:
            parts.append(f"≤ {get('max_qty')} contracts")
        if get("max_notional") is not None:
            parts.append(f"≤ {get('max_notional'):,.0f} notional")
        return "per order: " + (", ".join(parts) or "no bound")
    if rule == "order_rate_limit":
        return f"≤ {get('max_orders')} orders per {get('per_seconds'):g} s"
    if rule == "no_stop_loss_grace":
        return f"a stop within {get('grace_seconds'):g} s of opening"
    if rule == "trade_frequency_limit":
        bounds = [f"{get(k)}/{k.split('_')[1]}" for k in ("per_minute", "per_hour", "per_session")
                  if get(k) is not None]
        return "trades " + ", ".join(bounds)
    if rule == "cooldown_after_loss":
        return f"{len(get('tiers') or ())} loss tiers"
    if rule == "max_contracts_per_instrument":
        return f"{len(get('limits') or {})} symbols, default {get('default_limit') or '—'}"
    if rule == "max_position_value_pct":
        return f"≤ {get('max_pct')} of the balance per position"
    if rule == "symbol_blocks":
        return f"{len(get('symbols') or ())} symbols blocked"
    if rule == "session_block_outside":
        return "trading only in session"
    return ""


def rule_rows(engine: Engine, account: str) -> dict[str, RuleRow]:
    acct = engine.accounts.get(account)
    if acct is None:
        return {}
    names = sorted(acct.rules)
    states = rule_states(engine, names, [account])
    rows: dict[str, RuleRow] = {}
    for rule in names:
        params = acct.rules[rule]
        state = states[rule][0]
        measure = MEASURES.get(rule)
        found = measure(acct, params) if measure is not None else None
        value = limit = distance = None
        if found is not None:
            value, limit, cmp = found
            distance = value - limit if cmp == "le" else limit - value
            value, limit, distance = round(value, 2), round(limit, 2), round(distance, 2)
        rows[rule] = RuleRow(rule, state, value, limit, distance, rule not in COUNTS,
                             "" if found is not None else _note(rule, params))
    return rows


def order_rows(engine: Engine, account: str) -> dict[str, OrderRow]:
    acct = engine.accounts.get(account)
    if acct is None:
        return {}
    return {oid: OrderRow(oid, o.symbol, o.side, o.qty, o.order_type, o.price, o.stop_price, o.ts)
            for oid, o in sorted(acct.orders.items(), key=lambda kv: (kv[1].ts, kv[0]))}


def levels(engine: Engine, account: str) -> Levels | None:
    acct = engine.accounts.get(account)
    if acct is None:
        return None
    pnl = acct.realized + acct.unrealized
    equity = acct.live_equity
    limit = None
    params = acct.rules.get("daily_total_loss")
    if params is not None:
        limit = params.effective_limit(acct.sod_balance)
    params = acct.rules.get("daily_realized_loss")
    if params is not None and (limit is None or params.limit > limit):
        limit = params.limit  # the tighter of the two
    mark = floor = floor_pnl = None
    params = acct.rules.get("trailing_drawdown")
    found = trailing_drawdown.levels(acct, params) if params is not None else None
    if found is not None:
        mark, floor = found["mark"], found["floor"]
        if floor is not None and equity is not None:
            floor_pnl = floor - (equity - pnl)  # equity less the day's P&L: the day's start
    return Levels(acct.sod_balance, equity, round(pnl, 2), limit, mark, floor, floor_pnl)
