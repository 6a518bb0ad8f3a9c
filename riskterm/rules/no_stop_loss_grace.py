"""no_stop_loss_grace: a position open for grace_seconds without a working stop.

A timer is armed when a position becomes unprotected (opened, reversed, or its stop removed);
when it fires, the rule checks again and fires if the position is still naked.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule


class NoStopLossGrace(Rule):
    id = "no_stop_loss_grace"
    events = ("fill", "position", "order_placed", "order_updated", "order_cancelled",
              "order_rejected")

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        # (account, symbol) -> the time the position became unprotected
        self.naked_since: dict[tuple[str, str], float] = {}

    def _symbols(self, ev: dict[str, Any], acct: AccountState) -> list[str]:
        symbol = ev.get("symbol")
        if symbol is not None:
            return [symbol]
        # order_updated / cancelled / rejected carry no symbol: re-check every position
        return [s for s, p in acct.positions.items() if p.qty]

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> None:
        for symbol in self._symbols(ev, acct):
            self._reassess(acct, symbol, params)

    def _reassess(self, acct: AccountState, symbol: str, params: Any) -> None:
        key = (acct.name, symbol)
        pos = acct.positions.get(symbol)
        naked = bool(pos and pos.qty) and not acct.has_stop(symbol, pos.qty)  # type: ignore[union-attr]
        if not naked:
            self.naked_since.pop(key, None)
            self.engine.clear(self.id, acct.name, symbol)
            return
        if key not in self.naked_since:
            now = self.engine.clock
            self.naked_since[key] = now
            self.engine.schedule(now + params.grace_seconds, self._due, (acct.name, symbol, now))

    def _due(self, arg: tuple[str, str, float]) -> None:
        account, symbol, since = arg
        if self.naked_since.get((account, symbol)) != since:
            return  # protected or closed meanwhile; a newer timer covers a new exposure
        acct = self.engine.accounts[account]
        params = acct.rules.get(self.id)
        pos = acct.positions.get(symbol)
        if params is None or pos is None or not pos.qty:
            return
        grace = params.grace_seconds
        self.engine.evaluate(
            self.id, params, acct, symbol, self.engine.clock - since, grace, "ge",
            lambda v: (f"{account} {symbol} position of {pos.qty} has had no stop "
                       f"for {v:g}s (grace {grace:g}s)"),
            money=False,
        )

    def on_start(self) -> None:
        """After a restart: re-arm timers for positions restored without a stop."""
        for acct in self.engine.accounts.values():
            params = acct.rules.get(self.id)
            if params is None:
                continue
            for symbol, pos in acct.positions.items():
                if pos.qty:
                    self._reassess(acct, symbol, params)


RULE = NoStopLossGrace
