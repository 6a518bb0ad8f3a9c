"""daily_realized_loss: realized P&L of the trading day at or below the limit."""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule


class DailyRealizedLoss(Rule):
    id = "daily_realized_loss"
    events = ("fill",)

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        name = acct.name
        self.engine.evaluate(
            self.id, params, acct, None, acct.realized, params.limit, "le",
            lambda v: f"{name} realized P&L today is {v:.2f}, limit {params.limit:.2f}",
        )

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        self.engine.clear(self.id, acct.name, None)


RULE = DailyRealizedLoss
