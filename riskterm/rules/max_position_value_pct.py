"""max_position_value_pct: a position's notional over max_pct of the account's equity.

Notional = abs(qty x price x point value) at the latest mark (the average price before any);
equity = ``AccountState.live_equity`` (the broker's equity when reported, else balance plus open
P&L). The rule waits while the equity is unknown or not positive (no ratio to speak of).
The violation's value is the ratio (rounded to 10 places, so float noise does not decide a breach
at the limit) and its limit max_pct; reduce_position brings the position to the largest size
within the limit.

Every open position of the account is re-checked on each event, since the equity moves with
every mark; with a broker-reported equity a quote re-checks only the quoted symbol. The pass path
is a comparison per position with no rounding, allocation or call into the engine.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.book import Position
from riskterm.rules.base import Rule

ID = "max_position_value_pct"
EPS = 1e-9  # more than the rounding to 10 places can move a ratio


def _pct(x: float) -> str:
    return f"{x * 100:.4g}%"


class MaxPositionValuePct(Rule):
    id = ID
    # cash: a deposit or withdrawal moves the equity the ratio is taken of
    events = ("quote", "fill", "position", "account", "cash")

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
            many = True
        else:
            # the broker's equity does not move with our marks: a quote changes one position
            many = etype != "quote"
        if equity <= 0:
            return
        max_pct: float = params.max_pct
        warn_at = params.warn_at
        # pass path bound: a ratio below it is inside the limit and the warning
        bound = (max_pct if warn_at is None else warn_at * max_pct) - EPS
        fired = engine.fired
        if many:
            for p in positions.values():
                q = p.qty
                if q:
                    mark = p.mark
                    price = p.avg_price if mark is None else mark
                    ratio = abs(q * price * p.point_value) / equity
                    if ratio < bound and (not fired or (ID, acct.name, p.symbol) not in fired):
                        continue
                    self._evaluate(acct, params, p, ratio, equity)
        else:
            p = positions[ev["symbol"]]
            mark = p.mark
            ratio = abs(p.qty * (p.avg_price if mark is None else mark) * p.point_value) / equity
            if ratio < bound and (not fired or (ID, acct.name, p.symbol) not in fired):
                return
            self._evaluate(acct, params, p, ratio, equity)

    def _evaluate(self, acct: AccountState, params: Any, pos: Position, ratio: float,
                  equity: float) -> None:
        ratio = round(ratio, 10)
        max_pct: float = params.max_pct
        name = acct.name
        symbol = pos.symbol
        qty = pos.qty
        unit = abs((pos.avg_price if pos.mark is None else pos.mark) * pos.point_value)
        notional = abs(qty) * unit
        engine = self.engine
        key = (ID, name, symbol)
        target = None
        if ratio <= max_pct:
            warn_at = params.warn_at
            if (warn_at is None or ratio < warn_at * max_pct or key in engine.warned) \
                    and key not in engine.fired:
                return
        elif key in engine.fired:
            return
        else:
            allowed = int(max_pct * equity / unit + EPS) if unit > 0 else abs(qty)
            target = max(0, min(allowed, abs(qty) - 1))
        engine.evaluate(
            ID, params, acct, symbol, ratio, max_pct, "gt",
            lambda v: (f"{name} {symbol} position of {qty} is worth {notional:.2f}, "
                       f"{_pct(v)} of equity {equity:.2f}, limit {_pct(max_pct)}"),
            target_qty=target, money=False,
        )


RULE = MaxPositionValuePct
