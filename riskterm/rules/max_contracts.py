"""max_contracts: contracts of the account over all symbols above the limit.

Count: ``net`` = abs(sum of signed positions), ``gross`` = sum of abs(position). The condition is
about the account, so it is edge-triggered per account: one violation when the count goes over
the limit, none for later events while it stays over, re-armed when it is back within the limit.
The violation carries the symbol of the event that took the account over, and its
reduce_position targets that symbol: down by the excess (never below 0). In net mode, when that
symbol's position runs against the account's net (a hedge), reducing it would raise the net, so
the target leaves it as it is (the enforcement is recorded as skipped).
Warnings (symbol null) at ``warn_at`` x limit; none for an empty account.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import MaxContractsParams


def _message(name: str, mode: str, limit: int) -> Callable[[float], str]:
    return lambda v: f"{name} holds {v:g} contracts ({mode}) over all symbols, limit {limit}"


class MaxContracts(Rule):
    id = "max_contracts"
    events = ("fill", "position")

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        # account -> the symbol whose violation stands (its key in engine.fired); kept in step
        # with engine.fired, indexed from it once per fired set (a restore replaces the set)
        self._fired: dict[str, str | None] = {}
        self._indexed: set[tuple[str, str, str | None]] | None = None

    def _fired_symbol(self, name: str) -> str | None:
        fired = self.engine.fired
        if self._indexed is not fired:  # first look after a start or a restore: one pass
            self._indexed = fired
            self._fired = {k[1]: k[2] for k in fired if k[0] == self.id}
        sym = self._fired.get(name)
        # the engine may drop a key in place (a re-sync drops a position): trust the set
        if sym is not None and (self.id, name, sym) not in fired:
            del self._fired[name]
            return None
        return sym

    def check(self, ev: dict[str, Any], acct: AccountState, params: MaxContractsParams) -> None:
        net = gross = 0
        for p in acct.positions.values():
            net += p.qty
            gross += abs(p.qty)
        mode = params.count
        count = gross if mode == "gross" else abs(net)
        limit = params.limit
        name = acct.name
        fired = self._fired_symbol(name)
        if count > limit:
            if fired is not None:
                return
            symbol: str = ev["symbol"]
            pos = acct.positions.get(symbol)
            qty = pos.qty if pos is not None else 0
            if mode == "net" and qty * net < 0:
                target = abs(qty)
            else:
                target = max(0, abs(qty) - (count - limit))
            self.engine.evaluate(self.id, params, acct, symbol, count, limit, "gt",
                                 _message(name, mode, limit), target_qty=target, money=False)
            self._fired[name] = symbol
            return
        if fired is not None:
            self.engine.clear(self.id, name, fired)
            self._fired[name] = None
        warn_at = params.warn_at
        if warn_at is None or not count or count < warn_at * limit:
            return
        if (self.id, name, None) not in self.engine.warned:
            self.engine.evaluate(self.id, params, acct, None, count, limit, "gt",
                                 _message(name, mode, limit), money=False)


RULE = MaxContracts
