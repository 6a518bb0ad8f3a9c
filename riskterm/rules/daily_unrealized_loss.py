"""daily_unrealized_loss: the sum of the unrealized P&L of open positions at or below the limit."""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "daily_unrealized_loss"


class DailyUnrealizedLoss(Rule):
    id = ID
    events = ("quote", "fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        total = 0.0
        for p in acct.positions.values():
            q = p.qty
            if q:
                mark = p.mark
                if mark is not None:
                    total += (mark - p.avg_price) * q * p.point_value
        value = round(total, 2)
        limit: float = params.limit
        name = acct.name
        engine = self.engine
        fired = engine.fired
        # pass path: nothing to write and nothing to re-arm -> no call into the engine
        if value > limit:
            warn_at = params.warn_at
            if warn_at is None or value > warn_at * limit:
                if not fired or (ID, name, None) not in fired:
                    return
            else:
                key = (ID, name, None)
                if key in engine.warned and key not in fired:
                    return
        elif fired and (ID, name, None) in fired:
            return
        engine.evaluate(
            ID, params, acct, None, value, limit, "le",
            lambda v: f"{name} open P&L is {v:.2f}, limit {limit:.2f}",
        )


RULE = DailyUnrealizedLoss
