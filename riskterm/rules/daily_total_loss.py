"""daily_total_loss: realized plus unrealized P&L of the trading day at or below the limit.

``limit`` (< 0) and/or ``limit_pct`` (a fraction of the start-of-day balance, standing for a loss
of that size, rounded to cents); with both the tighter one (closer to zero) applies. While the
start-of-day balance is unknown only ``limit`` counts, and a rule with ``limit_pct`` alone waits.

The unrealized part is the open P&L of the positions at their latest marks (what
``AccountState.unrealized`` gives), so the value equals equity minus the start-of-day balance when
the balance does not include open P&L.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "daily_total_loss"


class DailyTotalLoss(Rule):
    id = ID
    # quote: marks move; fill/position: P&L and sizes change; account: start-of-day balance
    events = ("quote", "fill", "position", "account")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        limit: float | None = params.limit
        pct = params.limit_pct
        if pct is not None:
            sod = acct.sod_balance
            if sod is not None:
                by_pct = round(-pct * abs(sod), 2)
                if limit is None or by_pct > limit:
                    limit = by_pct
            if limit is None:
                return
        assert limit is not None
        realized = acct.realized
        total = realized
        for p in acct.positions.values():
            q = p.qty
            if q:
                mark = p.mark
                if mark is not None:
                    total += (mark - p.avg_price) * q * p.point_value
        value = round(total, 2)
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
            lambda v: (f"{name} P&L today is {v:.2f} (realized {realized:.2f}, unrealized "
                       f"{total - realized:.2f}), limit {limit:.2f}"),
        )

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        self.engine.clear(ID, acct.name, None)


RULE = DailyTotalLoss
