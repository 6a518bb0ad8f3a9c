"""max_position_loss: one position's unrealized P&L at or below the limit.

``limit`` (< 0) and/or ``limit_pct`` (a fraction of the position's entry notional,
abs(qty) x avg price x point value, rounded to cents); with both the tighter one applies.
Checked per (account, symbol); a quote only re-checks the quoted symbol.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "max_position_loss"


class MaxPositionLoss(Rule):
    id = ID
    events = ("quote", "fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        symbol: str = ev["symbol"]
        name = acct.name
        engine = self.engine
        fired = engine.fired
        pos = acct.positions.get(symbol)
        qty = pos.qty if pos is not None else 0
        if not qty:
            if fired:
                engine.clear(ID, name, symbol)
            return
        assert pos is not None
        mark = pos.mark
        avg = pos.avg_price
        pv = pos.point_value
        value = 0.0 if mark is None else round((mark - avg) * qty * pv, 2)
        limit: float | None = params.limit
        pct = params.limit_pct
        if pct is not None:
            by_pct = round(-pct * abs(qty * avg * pv), 2)
            if limit is None or by_pct > limit:
                limit = by_pct
        assert limit is not None
        # pass path: nothing to write and nothing to re-arm -> no call into the engine
        if value > limit:
            warn_at = params.warn_at
            if warn_at is None or value > warn_at * limit:
                if not fired or (ID, name, symbol) not in fired:
                    return
            else:
                key = (ID, name, symbol)
                if key in engine.warned and key not in fired:
                    return
        elif fired and (ID, name, symbol) in fired:
            return
        engine.evaluate(
            ID, params, acct, symbol, value, limit, "le",
            lambda v: (f"{name} {symbol} position of {qty} is at {v:.2f} unrealized, "
                       f"limit {limit:.2f}"),
        )


RULE = MaxPositionLoss
