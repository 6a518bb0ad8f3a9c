"""max_position_loss: one position's unrealized P&L at or below the limit.

``limit`` (< 0) and/or ``limit_pct`` (a fraction of the position's entry notional,
abs(qty) x avg price x point value, rounded to cents); with both the tighter one applies.
Checked per (account, symbol); a quote only re-checks the quoted symbol, so the pass path is
O(1): no rounding, allocation or call into the engine.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.book import Position
from riskterm.rules.base import Rule

ID = "max_position_loss"
INF = float("inf")


class MaxPositionLoss(Rule):
    id = ID
    events = ("quote", "fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> float | None:
        symbol: str = ev["symbol"]
        pos = acct.positions.get(symbol)
        if pos is None or not pos.qty:
            if self.engine.fired:
                self.engine.clear(ID, acct.name, symbol)
            return None
        qty = pos.qty
        mark = pos.mark
        avg = pos.avg_price
        pv = pos.point_value
        pnl = 0.0 if mark is None else (mark - avg) * qty * pv
        limit: float | None = params.limit
        pct = params.limit_pct
        if pct is not None:
            by_pct = -pct * abs(qty * avg * pv)
            if limit is None or by_pct > limit:
                limit = by_pct
        assert limit is not None
        # pass path: a cent above the limit and the warning cannot round to either
        if pnl > limit + 0.01:
            warn_at = params.warn_at
            if warn_at is None or pnl > warn_at * limit + 0.01:
                fired = self.engine.fired
                if not fired or (ID, acct.name, symbol) not in fired:
                    return self._slack(acct, params) if ev["type"] == "quote" else None
        self._evaluate(acct, params, pos, pnl, limit)
        return self._slack(acct, params) if ev["type"] == "quote" else None

    def _slack(self, acct: AccountState, params: Any) -> float | None:
        """The smallest distance of any open position to a bound where its outcome changes
        (the quote gate): its limit, its warning while not yet written. A quote judges only
        the quoted symbol, so another position may be past a bound its state does not show yet
        (a tighter limit after a reload or a restart, a warning re-armed by a new day): then
        there is no room, and the next quote of that symbol judges it."""
        engine = self.engine
        name = acct.name
        warn_at = params.warn_at
        fired, warned = engine.fired, engine.warned
        room = INF
        for symbol, p in acct.positions.items():
            qty = p.qty
            if not qty:
                continue
            if p.mark is None:
                return None
            pv = p.point_value
            pnl = (p.mark - p.avg_price) * qty * pv
            limit: float | None = params.limit
            if params.limit_pct is not None:
                by_pct = -params.limit_pct * abs(qty * p.avg_price * pv)
                if limit is None or by_pct > limit:
                    limit = by_pct
            assert limit is not None
            key = (ID, name, symbol)
            gap = pnl - limit  # > 0: inside the limit; within a cent either way: no room
            if key in fired:
                if gap > -0.01:
                    return 0.0  # back inside (or about to be): re-arms at its next quote
                gap = -gap
            else:
                if gap < 0.01:
                    return 0.0  # past the limit (a tighter one, say): breaches at its next quote
                if warn_at is not None and key not in warned:
                    to_warn = pnl - warn_at * limit
                    if to_warn < 0.01:
                        return 0.0  # at the warning and not warned today: warns at its next quote
                    gap = min(gap, to_warn)
            if gap < room:
                room = gap
        return room - 0.01

    def _evaluate(self, acct: AccountState, params: Any, pos: Position, pnl: float,
                  limit: float) -> None:
        if params.limit_pct is not None:
            limit = round(limit, 2)
        value = round(pnl, 2)
        name = acct.name
        symbol = pos.symbol
        qty = pos.qty
        engine = self.engine
        key = (ID, name, symbol)
        if value > limit:
            warn_at = params.warn_at
            if (warn_at is None or value > warn_at * limit or key in engine.warned) \
                    and key not in engine.fired:
                return
        elif key in engine.fired:
            return
        engine.evaluate(
            ID, params, acct, symbol, value, limit, "le",
            lambda v: (f"{name} {symbol} position of {qty} is at {v:.2f} unrealized, "
                       f"limit {limit:.2f}"),
        )


RULE = MaxPositionLoss
