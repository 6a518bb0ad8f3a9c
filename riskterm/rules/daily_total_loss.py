"""daily_total_loss: realized plus unrealized P&L of the trading day at or below the limit.

``limit`` (< 0) and/or ``limit_pct`` (a fraction of the start-of-day balance, standing for a loss
of that size, rounded to cents); with both the tighter one (closer to zero) applies. While the
start-of-day balance is unknown only ``limit`` counts, and a rule with ``limit_pct`` alone waits.

The unrealized part is the open P&L of the positions at their latest marks (what
``AccountState.unrealized`` gives), so the value equals equity minus the start-of-day balance when
the balance does not include open P&L. Cash that is not P&L (``cash`` events: deposits,
withdrawals, payouts) is in the balance and equity but in neither part, so the value is the
contract's equity - the cash moved since the reset - the day start, and the rule need not listen
to ``cash``.

Speed: this runs once per quote per account holding the symbol. The pass path (clearly inside the
limit and the warning, nothing to re-arm) costs one loop over the account's positions and no
rounding, allocation or call into the engine; ``round`` is only paid within a cent of a bound.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "daily_total_loss"
INF = float("inf")


class DailyTotalLoss(Rule):
    id = ID
    # quote: marks move; fill/position: P&L and sizes change; account: start-of-day balance
    events = ("quote", "fill", "position", "account")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> float | None:
        limit: float | None = params.limit
        pct = params.limit_pct
        if pct is not None:
            sod = acct.sod_balance
            if sod is not None:
                by_pct = -pct * abs(sod)
                if limit is None or by_pct > limit:
                    limit = by_pct
            if limit is None:
                return INF  # waits for a balance, which comes with an event that re-checks
        assert limit is not None
        total = acct.realized
        for p in acct.positions.values():
            q = p.qty
            if q:
                mark = p.mark
                if mark is not None:
                    total += (mark - p.avg_price) * q * p.point_value
        # pass path: a cent above the limit and the warning cannot round to either
        if total > limit + 0.01:
            warn_at = params.warn_at
            if warn_at is None or total > warn_at * limit + 0.01:
                fired = self.engine.fired
                if not fired or (ID, acct.name, None) not in fired:
                    return self._room(acct, params, total, limit)
        self._evaluate(acct, params, total, limit)
        return self._room(acct, params, total, limit)

    def _room(self, acct: AccountState, params: Any, total: float, limit: float) -> float:
        """Dollars P&L may move either way before the outcome could change (the quote gate)."""
        room = abs(total - limit)
        warn_at = params.warn_at
        if warn_at is not None and (ID, acct.name, None) not in self.engine.warned:
            room = min(room, abs(total - warn_at * limit))
        return room - 0.01

    def _evaluate(self, acct: AccountState, params: Any, total: float, limit: float) -> None:
        if params.limit_pct is not None:
            limit = round(limit, 2)
        value = round(total, 2)
        name = acct.name
        engine = self.engine
        fired = engine.fired
        key = (ID, name, None)
        if value > limit:
            warn_at = params.warn_at
            if (warn_at is None or value > warn_at * limit or key in engine.warned) \
                    and key not in fired:
                return
        elif key in fired:
            return
        realized = acct.realized
        cash = acct.cash_moved
        # a person who moved money today sees that it was left out of the P&L
        moved = f", cash moved {cash:.2f} not counted" if round(cash, 2) else ""
        engine.evaluate(
            ID, params, acct, None, value, limit, "le",
            lambda v: (f"{name} P&L today is {v:.2f} (realized {realized:.2f}, unrealized "
                       f"{total - realized:.2f}{moved}), limit {limit:.2f}"),
        )

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        self.engine.clear(ID, acct.name, None)


RULE = DailyTotalLoss
