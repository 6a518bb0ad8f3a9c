"""cooldown_after_loss: a fill that realizes a loss at or below a tier's loss.

The deepest tier the fill reaches decides the lockout (its ``lockout``); the action is the rule's
(default flatten). Realized P&L is the fill's, after fees, rounded to cents.

Edge-triggered per account: once a fill has fired, further fills that reach the same or a
shallower tier (the rest of the same exit, the fills of the flatten itself) write nothing; a fill
reaching a deeper tier fires again with the deeper lockout; any fill that reaches no tier (a
win, a small loss, an opening fill) re-arms the rule. The violation carries the fill's symbol.
The standing violation (its symbol and tier) is kept in
``acct.rule_state["cooldown_after_loss"]`` so that a restart behaves like an uninterrupted run.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import CooldownAfterLossParams


class CooldownAfterLoss(Rule):
    id = "cooldown_after_loss"
    events = ("fill",)

    def check(self, ev: dict[str, Any], acct: AccountState,
              params: CooldownAfterLossParams) -> None:
        realized = round(ev["_realized"], 2)
        tier = params.tier_for(realized)
        standing: dict[str, Any] | None = acct.rule_state.get(self.id)
        engine = self.engine
        name = acct.name
        if tier is None:
            if standing is not None:  # re-arm
                engine.clear(self.id, name, standing["symbol"])
                del acct.rule_state[self.id]
                engine.touch(name)
            return
        engine.touch(name)
        if standing is not None:
            if tier.loss >= standing["loss"]:
                return  # no deeper than the tier that already fired
            engine.clear(self.id, name, standing["symbol"])
        symbol: str = ev["symbol"]
        loss, lockout = tier.loss, tier.lockout
        engine.evaluate(
            self.id, params.model_copy(update={"lockout": lockout}), acct, symbol, realized,
            loss, "le",
            lambda v: (f"{name} fill of order {ev['order_id']} on {symbol} realized {v:.2f}, "
                       f"tier {loss:.2f}: lockout {lockout}"),
        )
        acct.rule_state[self.id] = {"symbol": symbol, "loss": loss}


RULE = CooldownAfterLoss
