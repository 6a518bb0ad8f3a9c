"""daily_unrealized_loss: the sum of the unrealized P&L of open positions at or below the limit.

Speed: the pass path (clearly inside the limit and the warning, nothing to re-arm) is one loop
over the account's positions with no rounding, allocation or call into the engine.
"""

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
        limit: float = params.limit
        # pass path: a cent above the limit and the warning cannot round to either
        if total > limit + 0.01:
            warn_at = params.warn_at
            if warn_at is None or total > warn_at * limit + 0.01:
                fired = self.engine.fired
                if not fired or (ID, acct.name, None) not in fired:
                    return
        value = round(total, 2)
        name = acct.name
        engine = self.engine
        key = (ID, name, None)
        if value > limit:
            warn_at = params.warn_at
            if (warn_at is None or value > warn_at * limit or key in engine.warned) \
                    and key not in engine.fired:
                return
        elif key in engine.fired:
            return
        engine.evaluate(
            ID, params, acct, None, value, limit, "le",
            lambda v: f"{name} open P&L is {v:.2f}, limit {limit:.2f}",
        )


RULE = DailyUnrealizedLoss
