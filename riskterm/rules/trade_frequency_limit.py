"""trade_frequency_limit: more fills than allowed in the rolling minute, hour or trading day.

Every fill counts (a partial fill is a fill). The windows are checked in the order minute, hour,
session (the trading day, between two daily resets); the first one breached decides the lockout
from ``cooldown`` and the violation's value and limit. One violation per offending fill. Rolling
windows are half-open on the engine clock: a fill at t counts the fills in (t - 60s, t] and
(t - 1h, t].

State in ``acct.rule_state["trade_frequency_limit"]`` (persisted with the account):
``per_minute`` / ``per_hour``: recent fill times; ``day`` and ``n``: the trading day and its
count of fills (a count from an older trading day is dropped, also after a restart).
Warnings at ``warn_at`` x a window's limit, symbol null, once per trading day.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.order_rate_limit import push_window, rule_state
from riskterm.rules.params import TradeFrequencyLimitParams

WINDOWS = (("per_minute", 60.0, "in the last minute"), ("per_hour", 3600.0, "in the last hour"))


def _message(name: str, words: str, limit: int) -> Callable[[float], str]:
    return lambda v: f"{name} has {v:g} fills {words}, limit {limit}"


class TradeFrequencyLimit(Rule):
    id = "trade_frequency_limit"
    events = ("fill",)

    def check(self, ev: dict[str, Any], acct: AccountState,
              params: TradeFrequencyLimitParams) -> None:
        engine = self.engine
        st = rule_state(engine, acct, self.id)
        if st.get("day") != acct.trading_day:
            st["day"], st["n"] = acct.trading_day, 0
        st["n"] += 1
        now = engine.clock
        counts: list[tuple[str, int, int, str]] = []
        for key, span, words in WINDOWS:
            limit = getattr(params, key)
            if limit is None:
                st.pop(key, None)
                continue
            n = push_window(st.setdefault(key, []), now, span, limit)
            counts.append((key, n, limit, words))
        if params.per_session is not None:
            counts.append(("per_session", st["n"], params.per_session, "this trading day"))
        name = acct.name
        for key, n, limit, words in counts:
            if n > limit:
                engine.violate(
                    self.id, acct, ev["symbol"], n, limit,
                    f"{name} has {n} fills {words}, limit {limit} (fill of order "
                    f"{ev['order_id']}: {ev['side']} {ev['qty']} {ev['symbol']})",
                    actions=params.action, lockout=getattr(params.cooldown, key),
                    lockout_state=params.lockout_state,
                )
                return
        warn_at = params.warn_at
        if warn_at is None or (self.id, name, None) in engine.warned:
            return
        for _, n, limit, words in counts:
            if n >= warn_at * limit:
                engine.evaluate(self.id, params, acct, None, n, limit, "gt",
                                _message(name, words, limit), money=False)

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        st = acct.rule_state.get(self.id)
        if st is not None:
            st["day"], st["n"] = acct.trading_day, 0
            self.engine.touch(acct.name)


RULE = TradeFrequencyLimit
