"""order_rate_limit: more than ``max_orders`` order_placed within ``per_seconds``.

One violation per offending order (its action cancel_order targets that order). The window is
rolling on the engine clock and half-open: an order at time t counts the orders placed in
(t - per_seconds, t], itself included; every placed order counts, offending ones too.

The timestamps live in ``acct.rule_state["order_rate_limit"]["t"]`` (persisted with the account),
pruned to the window and capped, so the state stays small whatever the order flow.
A warning (once per trading day, symbol null) when the count reaches ``warn_at`` x max_orders.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import OrderRateLimitParams

#: at least this many timestamps are kept per window, so a violation reports the real count
MIN_CAP = 1000


def push_window(times: list[float], now: float, span: float, limit: int) -> int:
    """Add `now` to a sorted list of times; return how many lie in (now - span, now].

    Times at or before now - span are dropped; the list is capped at max(limit + 1, MIN_CAP)
    entries, enough to tell whether the count exceeds `limit`.
    """
    if times and times[-1] > now:  # a clock never goes back; guard restored state anyway
        times.sort()
    times.append(now)
    cut = bisect_right(times, now - span)
    cap = max(limit + 1, MIN_CAP)
    if len(times) - cut > cap:
        cut = len(times) - cap
    if cut:
        del times[:cut]
    return len(times)


def rule_state(engine: Any, acct: AccountState, rule_id: str) -> dict[str, Any]:
    """The rule's persisted state for an account (created empty); marks the account dirty."""
    engine.touch(acct.name)
    st = acct.rule_state.get(rule_id)
    if st is None:
        st = acct.rule_state[rule_id] = {}
    return st


def _message(name: str, per: float, limit: int) -> Callable[[float], str]:
    return lambda v: f"{name} placed {v:g} orders within {per:g}s, limit {limit}"


class OrderRateLimit(Rule):
    id = "order_rate_limit"
    events = ("order_placed",)

    def check(self, ev: dict[str, Any], acct: AccountState, params: OrderRateLimitParams) -> None:
        engine = self.engine
        st = rule_state(engine, acct, self.id)
        times: list[float] = st.setdefault("t", [])
        per, limit = params.per_seconds, params.max_orders
        n = push_window(times, engine.clock, per, limit)
        name = acct.name
        if n > limit:
            order_id = ev["order_id"]
            engine.violate(
                self.id, acct, ev["symbol"], n, limit,
                f"{_message(name, per, limit)(n)}: order {order_id} "
                f"({ev['side']} {ev['qty']} {ev['symbol']})",
                actions=params.action, lockout=params.lockout,
                lockout_state=params.lockout_state, order_id=order_id,
            )
        elif params.warn_at is not None and n >= params.warn_at * limit \
                and (self.id, name, None) not in engine.warned:
            engine.evaluate(self.id, params, acct, None, n, limit, "gt",
                            _message(name, per, limit), money=False)


RULE = OrderRateLimit
