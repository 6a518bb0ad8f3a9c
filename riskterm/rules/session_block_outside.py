"""session_block_outside: trading outside the session, and positions left open at its end.

- An order_placed, or a fill that opens, increases or reverses a position, at an engine-clock
  time outside the session (session days and hours, holidays) is one violation each (default
  flatten / until_session_start; with cancel_order it targets that order). Closing fills are
  allowed: getting out after hours is not what the rule blocks.
- With ``flatten_at_close``, a timer at each session end writes, for every account still holding
  a position, one violation (symbol null; value = contracts held, limit 0) with the rule's
  action and lockout. The records carry the session end as their time. The timer is armed when
  the engine clock starts (``on_start``) and re-armed after each firing; after a rules reload
  that moved the session, a firing that is no longer at a session end only re-arms.

Value and limit of an order/fill violation: the local time of the event and the session window.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from riskterm.account import AccountState
from riskterm.rules.base import Rule
from riskterm.rules.params import SessionBlockOutsideParams


def _opens(before: int, side: str, qty: int) -> bool:
    after = before + (qty if side == "buy" else -qty)
    return abs(after) > abs(before) or (before != 0 and after != 0 and (before > 0) != (after > 0))


class SessionBlockOutside(Rule):
    id = "session_block_outside"
    events = ("order_placed", "fill")

    def __init__(self, engine: Any) -> None:
        super().__init__(engine)
        self._generation = 0
        # (calendar, from, until, inside): in_session is `inside` for clock times in [from, until)
        self._span: tuple[Any, float, float, bool] | None = None

    def _in_session(self, now: float) -> bool:
        """calendar.in_session(now), remembered until the next session start or end."""
        calendar = self.engine.calendar
        span = self._span
        if span is not None and span[0] is calendar and span[1] <= now < span[2]:
            return span[3]
        inside = calendar.in_session(now)
        try:
            until = calendar.next_session_end(now) if inside else calendar.next_session_start(now)
        except ValueError:  # no session is ever held
            until = float("inf")
        self._span = (calendar, now, until, inside)
        return inside

    def _window(self) -> str:
        session = self.engine.calendar.session
        return f"{session.start:%H:%M}-{session.end:%H:%M} {self.engine.config.timezone}"

    def _local(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, self.engine.calendar.tz).isoformat(timespec="seconds")

    def check(self, ev: dict[str, Any], acct: AccountState,
              params: SessionBlockOutsideParams) -> None:
        engine = self.engine
        now = engine.clock
        if self._in_session(now):
            return
        symbol: str = ev["symbol"]
        if ev["type"] == "fill":
            if not _opens(ev["_before"], ev["side"], ev["qty"]):
                return
            what = f"fill of order {ev['order_id']}"
        else:
            what = f"order {ev['order_id']}"
        local = self._local(now)
        message = (f"{acct.name} {what} ({ev['side']} {ev['qty']} {symbol}) at {local} is "
                   f"outside the trading session ({self._window()})")
        engine.violate(self.id, acct, symbol, local, self._window(), message,
                       actions=params.action, lockout=params.lockout,
                       lockout_state=params.lockout_state, order_id=ev["order_id"])

    # -- flatten at the session end ------------------------------------------------------------

    def on_start(self) -> None:
        self._arm()

    def _arm(self) -> None:
        self._generation += 1
        try:
            due = self.engine.calendar.next_session_end(self.engine.rearm_from())
        except ValueError:  # no session is ever held: nothing to close at
            return
        self.engine.schedule(due, self._at_close, self._generation)

    def _at_close(self, generation: int) -> None:
        engine = self.engine
        if generation != self._generation or engine.rules.get(self.id) is not self:
            return  # superseded chain, or this rule was disabled / replaced by a reload
        now = engine.clock
        calendar = engine.calendar
        if calendar.in_session(now - 0.001) and not calendar.in_session(now):
            for acct in list(engine.accounts.values()):
                params = acct.rules.get(self.id)
                if params is not None and params.flatten_at_close:
                    self._close(acct, params)
        self._arm()

    def _close(self, acct: AccountState, params: SessionBlockOutsideParams) -> None:
        held = [p for p in acct.positions.values() if p.qty]
        if not held:
            return
        contracts = sum(abs(p.qty) for p in held)
        listing = ", ".join(f"{abs(p.qty)} {p.symbol} {'long' if p.qty > 0 else 'short'}"
                            for p in held)
        message = (f"{acct.name} still holds {listing} at the session end "
                   f"({self._local(self.engine.clock)})")
        self.engine.violate(self.id, acct, None, contracts, 0, message, actions=params.action,
                            lockout=params.lockout, lockout_state=params.lockout_state)


RULE = SessionBlockOutside
