"""symbol_blocks: an order or fill on a blocked symbol.

Patterns are fnmatch patterns, case-insensitive, matched against the symbol and its root
(`MNQ` blocks `MNQH6`; riskterm.symbols).
"""

from __future__ import annotations

from typing import Any

from riskterm import symbols
from riskterm.account import AccountState
from riskterm.rules.base import Rule


class SymbolBlocks(Rule):
    id = "symbol_blocks"
    events = ("order_placed", "fill")

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._cache: dict[tuple[tuple[str, ...], str], str | None] = {}

    def _match(self, patterns: tuple[str, ...], symbol: str) -> str | None:
        key = (patterns, symbol)
        if key not in self._cache:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = symbols.match(patterns, symbol)
        return self._cache[key]

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        symbol = ev["symbol"]
        pattern = self._match(tuple(params.symbols), symbol)
        if pattern is None:
            return
        is_order = ev["type"] == "order_placed"
        actions = params.action
        if "action" not in params.model_fields_set:
            actions = ("cancel_order",) if is_order else ("close_position",)
        what = f"order {ev['order_id']}" if is_order else f"fill of order {ev['order_id']}"
        message = f"{acct.name} {what} on blocked symbol {symbol} (matches {pattern!r})"
        self.engine.violate(
            self.id, acct, symbol, symbol, pattern, message, actions=actions,
            lockout=params.lockout, lockout_state=params.lockout_state,
            order_id=ev["order_id"] if is_order else None,
        )


RULE = SymbolBlocks
