"""max_contracts_per_instrument: the size of one symbol's position over its limit."""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule


def limit_for(params: Any, symbol: str) -> int | None:
    """The contract limit of `symbol`; None when the symbol has no limit at all."""
    limit = params.limits.get(symbol)
    if limit is None:
        limit = params.default_limit
    if limit is None and params.unknown_symbol == "block":
        return 0
    return limit


class MaxContractsPerInstrument(Rule):
    id = "max_contracts_per_instrument"
    events = ("fill", "position")

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        symbol = ev["symbol"]
        limit = limit_for(params, symbol)
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
