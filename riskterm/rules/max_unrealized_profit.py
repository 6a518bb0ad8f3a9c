"""max_unrealized_profit: one position's unrealized P&L at or above the target.

Checked per (account, symbol); a quote only re-checks the quoted symbol.
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
        value = 0.0 if mark is None else round((mark - pos.avg_price) * qty * pos.point_value, 2)
        target: float = params.target
        # pass path: nothing to write and nothing to re-arm -> no call into the engine
        if value < target:
            warn_at = params.warn_at
            if warn_at is None or value < warn_at * target:
                if not fired or (ID, name, symbol) not in fired:
                    return
            else:
                key = (ID, name, symbol)
                if key in engine.warned and key not in fired:
                    return
        elif fired and (ID, name, symbol) in fired:
            return
        engine.evaluate(
            ID, params, acct, symbol, value, target, "ge",
            lambda v: (f"{name} {symbol} position of {qty} is at {v:.2f} unrealized, "
                       f"target {target:.2f}"),
        )


RULE = MaxUnrealizedProfit
