"""consecutive_losses: ``max_losses`` losing closing fills in a row.

A closing fill is one that reduces, closes or reverses a position (it realizes P&L); it is losing
when its realized P&L after fees, rounded to cents, is below zero, winning when above zero (a
win resets the streak). A fill that closes nothing, or closes at exactly 0.00, leaves the streak
as it is. When the streak reaches ``max_losses`` the rule fires (default flatten / 1h) and the
streak starts again from zero, so after the cooldown another ``max_losses`` losses in a row fire
again. The streak is per account and trading day (it restarts at the daily reset), kept in
``acct.rule_state["consecutive_losses"]`` so it survives a restart. Warnings (symbol null) at
``warn_at`` x max_losses.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.order_rate_limit import rule_state
from riskterm.rules.params import ConsecutiveLossesParams


class ConsecutiveLosses(Rule):
    id = "consecutive_losses"
    events = ("fill",)

    def check(self, ev: dict[str, Any], acct: AccountState,
              params: ConsecutiveLossesParams) -> None:
        before: int = ev["_before"]
        if before == 0 or (before > 0) != (ev["side"] == "sell"):
            return  # closes nothing
        realized = round(ev["_realized"], 2)
        if realized == 0:
            return
        engine = self.engine
        st = rule_state(engine, acct, self.id)
        if st.get("day") != acct.trading_day:
            st["day"], st["n"] = acct.trading_day, 0
        st["n"] = st["n"] + 1 if realized < 0 else 0
        name, limit = acct.name, params.max_losses
        if st["n"] == 0 and (self.id, name, None) not in engine.fired:
            return  # a win with nothing to re-arm
        breached = engine.evaluate(
            self.id, params, acct, None, st["n"], limit, "ge",
            lambda v: f"{name} has {v:g} losing closing fills in a row, limit {limit}",
            money=False,
        )
        if breached:  # the streak has been dealt with: the next one counts from zero
            st["n"] = 0
            engine.clear(self.id, name, None)

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        st = acct.rule_state.get(self.id)
        if st is not None:
            st["day"], st["n"] = acct.trading_day, 0
            self.engine.touch(acct.name)
        self.engine.clear(self.id, acct.name, None)


RULE = ConsecutiveLosses
