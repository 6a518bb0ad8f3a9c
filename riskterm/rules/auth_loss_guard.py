"""auth_loss_guard: the broker link of an account went down (a `connection` event, disconnected).

Edge-triggered per account: one violation when the link drops, re-armed by a `connected` event.
A `connection` event without an account concerns every account the engine knows (the engine
dispatches it to each). The record's value is 1 (disconnected) against a limit of 1; the
message carries the broker's reason when it gave one.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import AuthLossGuardParams


class AuthLossGuard(Rule):
    id = "auth_loss_guard"
    events = ("connection",)

    def check(self, ev: dict[str, Any], acct: AccountState, params: AuthLossGuardParams) -> None:
        down = ev["status"] == "disconnected"
        if not down and (self.id, acct.name, None) not in self.engine.fired:
            return  # connected and nothing to re-arm
        name = acct.name
        reason = ev.get("reason")
        why = f": {reason}" if reason else ""
        self.engine.evaluate(
            self.id, params, acct, None, 1 if down else 0, 1, "ge",
            lambda _: f"broker connection lost for {name}{why}",
            money=False,
        )


RULE = AuthLossGuard
