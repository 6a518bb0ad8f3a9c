"""trailing_drawdown: equity high-water mark minus equity at or above ``amount``.

State per account, in ``acct.rule_state["trailing_drawdown"]`` (persisted with the account):

- ``mark``: the high-water mark. It starts at the first equity seen; in ``intraday`` mode it
  follows every new equity high, in ``eod`` mode it moves only at the daily reset (to the equity
  at that instant, if higher).
- ``start``: the starting balance, the first balance the account reported (None until one is).
  With ``stop_at_start_balance`` the floor (mark - amount) stops rising once it reaches it, i.e.
  the drawdown is measured from min(mark, start + amount).
- ``unbooked``: realized P&L of fills since the last reported balance (see below).
- ``day``: the trading day the mark was last set for (eod mode catches up a reset missed while
  the engine was not running).

A ``cash`` event (a deposit, a withdrawal, a payout: not P&L) moves the mark by its amount in
either mode, as the engine moves the balance and equity, so the distance to the floor is kept
(until the floor reaches its stop at ``start`` + amount, which does not move).

Equity is the broker's equity when it reports one; otherwise the last balance plus the realized
P&L of fills since that balance plus open P&L. Without the ``unbooked`` term a profitable close
would look like a drawdown (the open profit leaves unrealized P&L before the broker's next
balance books it), and a feed that never re-sends the balance would hide realized losses.
The violation's value is the drawdown and its limit ``amount``.
"""

from __future__ import annotations

from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule

ID = "trailing_drawdown"
INF = float("inf")


def equity_of(acct: AccountState, st: dict[str, Any] | None) -> float | None:
    """The equity the rule judges (see the module's docstring); None before a balance."""
    equity = acct.equity
    if equity is not None:
        return equity
    balance = acct.balance
    if balance is None:
        return None
    equity = balance + (st["unbooked"] if st is not None else 0.0)
    for p in acct.positions.values():
        q = p.qty
        if q:
            mark = p.mark
            if mark is not None:
                equity += (mark - p.avg_price) * q * p.point_value
    return equity


def levels(acct: AccountState, params: Any) -> dict[str, float | None] | None:
    """What the rule holds for an account now, for display: the high-water mark, the mark the
    drawdown is measured from (capped at start + amount), the floor, the equity and the
    drawdown; None before the rule has seen an equity."""
    st = acct.rule_state.get(ID)
    if st is None:
        return None
    mark: float = st["mark"]
    amount: float = params.amount
    top = mark
    start = st["start"]
    if start is not None and top > start + amount and params.stop_at_start_balance:
        top = start + amount
    equity = equity_of(acct, st)
    return {"mark": mark, "top": top, "floor": top - amount, "equity": equity,
            "drawdown": None if equity is None else top - equity}


class TrailingDrawdown(Rule):
    id = ID
    events = ("quote", "fill", "position", "account", "cash")

    def _equity(self, acct: AccountState, st: dict[str, Any] | None) -> float | None:
        return equity_of(acct, st)

    def check(self, ev: dict[str, Any], acct: AccountState, params: Any) -> float | None:
        st: dict[str, Any] | None = acct.rule_state.get(ID)
        etype = ev["type"]
        if etype == "quote" and st is not None:
            # the hot path, inlined: equity from our marks, unless the broker reports it
            if acct.equity is not None:
                return INF  # the broker's equity does not move with our marks
            balance = acct.balance
            if balance is None:
                return INF  # nothing to judge until a balance arrives (an account event)
            equity = balance + st["unbooked"]
            for p in acct.positions.values():
                q = p.qty
                if q:
                    mark = p.mark
                    if mark is not None:
                        equity += (mark - p.avg_price) * q * p.point_value
        else:
            if etype == "fill":
                if st is not None and ev.get("_realized"):
                    st["unbooked"] += ev["_realized"]
                    self.engine.touch(acct.name)
            elif etype == "account" and st is not None and ev.get("balance") is not None:
                changed = st["unbooked"] != 0.0
                st["unbooked"] = 0.0
                if st["start"] is None:
                    st["start"] = acct.balance
                    changed = True
                if changed:
                    self.engine.touch(acct.name)
            elif etype == "cash" and st is not None:
                # the equity already moved (Engine._on_cash); a mark set after it includes it
                st["mark"] += ev["amount"]
                self.engine.touch(acct.name)
            found = self._equity(acct, st)
            if found is None:
                return None
            equity = found
            if st is None:
                st = acct.rule_state[ID] = {
                    "mark": equity, "start": acct.balance, "unbooked": 0.0,
                    "day": acct.trading_day,
                }
                self.engine.touch(acct.name)
        mark: float = st["mark"]
        if equity > mark and params.mode == "intraday":
            mark = st["mark"] = equity
            self.engine.touch(acct.name)
        amount: float = params.amount
        top = mark
        start = st["start"]
        if start is not None and top > start + amount and params.stop_at_start_balance:
            top = start + amount
        drawdown = top - equity
        # pass path: a cent below the amount and the warning cannot round to either
        if drawdown < amount - 0.01:
            warn_at = params.warn_at
            if warn_at is None or drawdown < warn_at * amount - 0.01:
                fired = self.engine.fired
                if not fired or (ID, acct.name, None) not in fired:
                    return self._room(acct, params, drawdown, mark - equity)
        self._judge(acct, params, equity, mark, top, start)
        return self._room(acct, params, drawdown, mark - equity)

    def _room(self, acct: AccountState, params: Any, drawdown: float, below_mark: float) -> float:
        """Dollars equity may move before a breach, a warning, a re-arm or (intraday) a new
        high-water mark (the quote gate)."""
        amount: float = params.amount
        room = abs(amount - drawdown)
        warn_at = params.warn_at
        if warn_at is not None and (ID, acct.name, None) not in self.engine.warned:
            room = min(room, abs(warn_at * amount - drawdown))
        if params.mode == "intraday":
            room = min(room, below_mark)
        return room - 0.01

    def _judge(self, acct: AccountState, params: Any, equity: float, mark: float, top: float,
               start: float | None) -> None:
        amount: float = params.amount
        value = round(top - equity, 2)
        name = acct.name
        engine = self.engine
        key = (ID, name, None)
        if value < amount:
            warn_at = params.warn_at
            if (warn_at is None or value < warn_at * amount or key in engine.warned) \
                    and key not in engine.fired:
                return
        elif key in engine.fired:
            return

        def message(v: float) -> str:
            capped = (f" (the mark {mark:.2f} capped at the starting balance {start:.2f} "
                      f"plus the amount)" if top < mark else "")
            return (f"{name} equity {equity:.2f} is {v:.2f} below the high-water mark "
                    f"{top:.2f}{capped}, limit {amount:.2f} (floor {top - amount:.2f})")

        engine.evaluate(ID, params, acct, None, value, amount, "ge", message)

    def _end_of_day(self, acct: AccountState, params: Any) -> None:
        st = acct.rule_state.get(ID)
        if st is None or params.mode != "eod":
            return
        equity = self._equity(acct, st)
        if equity is not None and equity > st["mark"]:
            st["mark"] = equity
        st["day"] = acct.trading_day
        self.engine.touch(acct.name)

    def on_new_day(self, acct: AccountState, params: Any) -> None:
        self._end_of_day(acct, params)

    def on_start(self) -> None:
        """After a restart on a later trading day: the reset(s) missed meanwhile move the mark."""
        for acct in self.engine.accounts.values():
            params = acct.rules.get(ID)
            st = acct.rule_state.get(ID)
            if params is not None and st is not None and st.get("day") != acct.trading_day:
                self._end_of_day(acct, params)


RULE = TrailingDrawdown
