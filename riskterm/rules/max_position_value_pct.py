"""max_position_value_pct: a position's notional over max_pct of the account's equity.

Notional = abs(qty x price x point value) at the latest mark (the average price before any);
equity = ``AccountState.live_equity`` (the broker's equity when reported, else balance plus open
P&L). The rule waits while the equity is unknown or not positive (no ratio to speak of).
The violation's value is the ratio and its limit max_pct; reduce_position brings the position to
the largest size within the limit.

Every open position of the account is re-checked on each event, since the equity moves with
every mark; with a broker-reported equity a quote re-checks only the quoted symbol.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "max_position_value_pct"


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


class MaxPositionValuePct(Rule):
    id = ID
    events = ("quote", "fill", "position", "account")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        engine = self.engine
        positions = acct.positions
        etype = ev["type"]
        if etype == "fill" or etype == "position":
            pos = positions.get(ev["symbol"])
            if (pos is None or not pos.qty) and engine.fired:
                engine.clear(ID, acct.name, ev["symbol"])
        equity = acct.equity
        if equity is None:
            balance = acct.balance
            if balance is None:
                return
            equity = balance
            for p in positions.values():
                q = p.qty
                if q:
                    mark = p.mark
                    if mark is not None:
                        equity += (mark - p.avg_price) * q * p.point_value
        elif etype == "quote":
            # the broker's equity does not move with our marks: only the quoted symbol changed
            self._check(acct, params, ev["symbol"], positions[ev["symbol"]], equity)
            return
        if equity <= 0:
            return
        for symbol, p in positions.items():
            if p.qty:
                self._check(acct, params, symbol, p, equity)

    def _check(self, acct: AccountState, params: Any, symbol: str, pos: Any,
               equity: float) -> None:
        if equity <= 0:
            return
        qty = pos.qty
        mark = pos.mark
        unit = abs((pos.avg_price if mark is None else mark) * pos.point_value)
        notional = abs(qty) * unit
        # rounded to 10 places: float noise in the division must not decide a breach at the limit
        ratio = round(notional / equity, 10)
        max_pct: float = params.max_pct
        name = acct.name
        engine = self.engine
        fired = engine.fired
        # pass path: nothing to write and nothing to re-arm -> no call into the engine
        if ratio <= max_pct:
            warn_at = params.warn_at
            if warn_at is None or ratio < warn_at * max_pct:
                if not fired or (ID, name, symbol) not in fired:
                    return
            else:
                key = (ID, name, symbol)
                if key in engine.warned and key not in fired:
                    return
        elif fired and (ID, name, symbol) in fired:
            return
        target = None
        if ratio > max_pct:
            allowed = int(max_pct * equity / unit + 1e-9) if unit > 0 else abs(qty)
            target = max(0, min(allowed, abs(qty) - 1))
        engine.evaluate(
            ID, params, acct, symbol, ratio, max_pct, "gt",
            lambda v: (f"{name} {symbol} position of {qty} is worth {notional:.2f}, "
                       f"{_pct(v)} of equity {equity:.2f}, limit {_pct(max_pct)}"),
            target_qty=target, money=False,
        )


RULE = MaxPositionValuePct
