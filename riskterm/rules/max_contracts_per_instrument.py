"""max_contracts_per_instrument: the size of one symbol's position over its limit.

`limits` names a symbol or its root (`MNQ: 10` limits each of `MNQH6`, `MNQM6`); a symbol listed
as it is wins over its root.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule


class MaxContractsPerInstrument(Rule):
    id = "max_contracts_per_instrument"
    events = ("fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        symbol = ev["symbol"]
        limit = params.limit_for(symbol)  # the symbol, else its root (riskterm.symbols)
        if limit is None:
            return
        pos = acct.positions.get(symbol)
        size = abs(pos.qty) if pos else 0
        name = acct.name
        self.engine.evaluate(
            self.id, params, acct, symbol, size, limit, "gt",
            lambda v: f"{name} holds {v} {symbol}, limit {limit}",
            target_qty=limit, money=False,
        )


RULE = MaxContractsPerInstrument
