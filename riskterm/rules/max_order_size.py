"""max_order_size: an order_placed over max_qty, over max_notional or under min_notional.

Notional = qty x price x point value, where the price is the order's price, else its stop price,
else the symbol's latest mark; with no price known only max_qty applies. Bounds are exclusive
(an order of exactly max_qty is allowed; notional is rounded to cents first) and are checked in
the order max_qty, max_notional, min_notional: the first broken one is the violation's value and
limit. One violation per offending order; cancel_order targets it. Warnings, once per trading day
per (account, symbol), when qty or notional reaches ``warn_at`` x max_qty / max_notional.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import MaxOrderSizeParams


def _price(ev: dict[str, Any], marks: dict[str, float]) -> float | None:
    price = ev.get("price")
    if price is None:
        price = ev.get("stop_price")
    if price is None:
        price = marks.get(ev["symbol"])
    return None if price is None else float(price)


class MaxOrderSize(Rule):
    id = "max_order_size"
    events = ("order_placed",)

    def _notional(self, ev: dict[str, Any], acct: AccountState) -> float | None:
        price = _price(ev, self.engine.marks)
        if price is None:
            return None
        symbol = ev["symbol"]
        pos = acct.positions.get(symbol)
        point_value = pos.point_value if pos is not None else self.engine._point_value(
            acct.name, symbol)
        return round(abs(ev["qty"] * price * point_value), 2)

    def check(self, ev: dict[str, Any], acct: AccountState, params: MaxOrderSizeParams) -> None:
        qty: int = ev["qty"]
        symbol: str = ev["symbol"]
        max_qty, max_n, min_n = params.max_qty, params.max_notional, params.min_notional
        notional = self._notional(ev, acct) if max_n is not None or min_n is not None else None
        order = f"{acct.name} order {ev['order_id']} ({ev['side']} {qty} {symbol})"
        breach: tuple[float, float, str] | None = None
        if max_qty is not None and qty > max_qty:
            breach = (qty, max_qty, f"{order} is over max_qty {max_qty}")
        elif notional is not None and max_n is not None and notional > max_n:
            breach = (notional, max_n, f"{order} has notional {notional:.2f}, "
                                       f"max_notional {max_n:.2f}")
        elif notional is not None and min_n is not None and notional < min_n:
            breach = (notional, min_n, f"{order} has notional {notional:.2f}, "
                                       f"min_notional {min_n:.2f}")
        if breach is not None:
            value, limit, message = breach
            self.engine.violate(
                self.id, acct, symbol, value, limit, message, actions=params.action,
                lockout=params.lockout, lockout_state=params.lockout_state,
                order_id=ev["order_id"],
            )
            return
        warn_at = params.warn_at
        if warn_at is None or (self.id, acct.name, symbol) in self.engine.warned:
            return
        if max_qty is not None and qty and qty >= warn_at * max_qty:
            self.engine.evaluate(
                self.id, params, acct, symbol, qty, max_qty, "gt",
                lambda v: f"{order} is {v:g} contracts, max_qty {max_qty}", money=False,
            )
        if notional and max_n is not None and notional >= warn_at * max_n - 0.01:
            self.engine.evaluate(
                self.id, params, acct, symbol, notional, max_n, "gt",
                lambda v: f"{order} has notional {v:.2f}, max_notional {max_n:.2f}",
            )


RULE = MaxOrderSize
