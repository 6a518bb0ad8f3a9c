"""daily_realized_profit: realized P&L of the trading day at or above the target.

Edge-triggered per account (symbol null); warnings at ``warn_at`` x target; re-armed at the daily
reset, when the day's realized P&L starts again from zero.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import DailyRealizedProfitParams


class DailyRealizedProfit(Rule):
    id = "daily_realized_profit"
    events = ("fill",)

    def check(self, ev: dict[str, Any], acct: AccountState,
              params: DailyRealizedProfitParams) -> None:
        name = acct.name
        target = params.target
        realized = acct.realized
        warn_at = params.warn_at
        # pass path: a cent below the target and the warning, and nothing to re-arm
        if realized < (target if warn_at is None else warn_at * target) - 0.01 \
                and (self.id, name, None) not in self.engine.fired:
            return
        self.engine.evaluate(
            self.id, params, acct, None, realized, target, "ge",
            lambda v: f"{name} realized P&L today is {v:.2f}, target {target:.2f}",
        )

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        self.engine.clear(self.id, acct.name, None)


RULE = DailyRealizedProfit
