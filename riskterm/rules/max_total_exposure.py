"""max_total_exposure: the sum of the notional of open positions over the limit.

Notional = abs(qty x price x point value) at the latest mark (the average price before any).
Speed: the pass path is one loop over the account's positions with no rounding, allocation or
call into the engine.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "max_total_exposure"


class MaxTotalExposure(Rule):
    id = ID
    events = ("quote", "fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        total = 0.0
        for p in acct.positions.values():
            q = p.qty
            if q:
                mark = p.mark
                total += abs(q * (p.avg_price if mark is None else mark) * p.point_value)
        limit: float = params.limit
        # pass path: a cent below the limit and the warning cannot round to either
        if total < limit - 0.01:
            warn_at = params.warn_at
            if warn_at is None or total < warn_at * limit - 0.01:
                fired = self.engine.fired
                if not fired or (ID, acct.name, None) not in fired:
                    return
        value = round(total, 2)
        name = acct.name
        engine = self.engine
        key = (ID, name, None)
        if value <= limit:
            warn_at = params.warn_at
            if (warn_at is None or value < warn_at * limit or key in engine.warned) \
                    and key not in engine.fired:
                return
        elif key in engine.fired:
            return

        def message(v: float) -> str:
            n = sum(1 for p in acct.positions.values() if p.qty)
            s = "" if n == 1 else "s"
            return f"{name} exposure is {v:.2f} over {n} open position{s}, limit {limit:.2f}"

        engine.evaluate(ID, params, acct, None, value, limit, "gt", message)


RULE = MaxTotalExposure
