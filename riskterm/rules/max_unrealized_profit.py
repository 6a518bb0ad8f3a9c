"""max_unrealized_profit: one position's unrealized P&L at or above the target.

Checked per (account, symbol); a quote only re-checks the quoted symbol, so the pass path is
O(1): no rounding, allocation or call into the engine.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "max_unrealized_profit"


class MaxUnrealizedProfit(Rule):
    id = ID
    events = ("quote", "fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        symbol: str = ev["symbol"]
        pos = acct.positions.get(symbol)
        if pos is None or not pos.qty:
            if self.engine.fired:
                self.engine.clear(ID, acct.name, symbol)
            return
        mark = pos.mark
        qty = pos.qty
        pnl = 0.0 if mark is None else (mark - pos.avg_price) * qty * pos.point_value
        target: float = params.target
        # pass path: a cent below the target and the warning cannot round to either
        if pnl < target - 0.01:
            warn_at = params.warn_at
            if warn_at is None or pnl < warn_at * target - 0.01:
                fired = self.engine.fired
                if not fired or (ID, acct.name, symbol) not in fired:
                    return
        value = round(pnl, 2)
        name = acct.name
        engine = self.engine
        key = (ID, name, symbol)
        if value < target:
            warn_at = params.warn_at
            if (warn_at is None or value < warn_at * target or key in engine.warned) \
                    and key not in engine.fired:
                return
        elif key in engine.fired:
            return
        engine.evaluate(
            ID, params, acct, symbol, value, target, "ge",
            lambda v: (f"{name} {symbol} position of {qty} is at {v:.2f} unrealized, "
                       f"target {target:.2f}"),
        )


RULE = MaxUnrealizedProfit
