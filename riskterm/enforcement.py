"""Turning rule actions into broker commands and `enforcement` records.

One record per action and target; a flatten is one record whose detail lists what it closed and
cancelled. The same action for the same target is not sent again while one is in flight.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from riskterm.broker import (
    BrokerError,
    CancelOrder,
    Command,
    LimitOrder,
    MarketOrder,
    OrderNotWorking,
    StopOrder,
)

if TYPE_CHECKING:
    from riskterm.account import AccountState
    from riskterm.engine import Engine

IN_FLIGHT_SECONDS = 5.0
RETRY_DELAYS = (1.0, 3.0)  # engine-clock seconds before the 2nd and 3rd attempt of a failed action


def _close_side(qty: int) -> str:
    return "sell" if qty > 0 else "buy"


def _fmt_price(price: float) -> str:
    return f"{price:.10g}"


class Enforcer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.inflight: dict[tuple[str, str, str | None], float] = {}

    # -- bookkeeping -------------------------------------------------------------------------

    def settle(self, account: str, symbol: str | None = None, order_id: str | None = None) -> None:
        """The broker confirmed a new state for this target: its actions are no longer in flight."""
        if not self.inflight:
            return
        for key in [k for k in self.inflight if k[1] == account]:
            action, _, target = key
            if (
                (symbol is not None and target == symbol)
                or (order_id is not None and target == order_id)
                or action in ("flatten", "cancel_orders")
            ):
                del self.inflight[key]

    def _busy(self, key: tuple[str, str, str | None]) -> bool:
        expiry = self.inflight.get(key)
        if expiry is None:
            return False
        if expiry <= self.engine.clock:
            del self.inflight[key]
            return False
        return True

    def _send(self, commands: list[Command], key: tuple[str, str, str | None]) -> tuple[str, str]:
        """Submit commands; returns (status, error detail or '')."""
        broker = self.engine.broker
        if not broker.executes:
            for command in commands:
                broker.submit(command)
            return "dry_run", ""
        errors = []
        for command in commands:
            try:
                broker.submit(command)
            except OrderNotWorking:
                continue  # it went away on its own: the goal is reached
            except BrokerError as exc:
                errors.append(str(exc))
            except Exception as exc:  # a broker bug must not stop the engine
                errors.append(f"broker error: {exc!r}")
        if errors:
            return "failed", "; ".join(errors)
        self.inflight[key] = self.engine.clock + IN_FLIGHT_SECONDS
        return "ok", ""

    def _record(
        self,
        action: str,
        rule: str,
        account: str,
        symbol: str | None,
        order_id: str | None,
        status: str,
        detail: str,
    ) -> dict[str, Any]:
        return self.engine.emit_enforcement(action, rule, account, symbol, order_id, status, detail)

    # -- actions -----------------------------------------------------------------------------

    def run(
        self,
        action: str,
        rule: str,
        acct: AccountState,
        symbol: str | None,
        order_id: str | None = None,
        target_qty: int | None = None,
        **extra: Any,
    ) -> dict[str, Any] | None:
        """Carry out one action; returns its enforcement record (None for `alert`)."""
        handler = getattr(self, f"_do_{action}", None)
        if handler is None or action == "alert":
            return None
        rec = handler(rule, acct, symbol, order_id, target_qty, **extra)
        attempt = extra.pop("_attempt", 1)
        if rec is not None and rec["status"] == "failed" and attempt <= len(RETRY_DELAYS):
            # the violation stands; try again later (the retry re-checks what is still needed)
            rec["detail"] += f" (attempt {attempt}, retrying in {RETRY_DELAYS[attempt - 1]:g}s)"
            retry = (action, rule, acct.name, symbol, order_id, target_qty,
                     {**extra, "_attempt": attempt + 1})
            self.engine.schedule(self.engine.clock + RETRY_DELAYS[attempt - 1], self._retry,
                                 retry)
        elif rec is not None and rec["status"] == "failed":
            rec["detail"] += f" (attempt {attempt}, giving up)"
        return rec

    def _retry(self, args: tuple[Any, ...]) -> None:
        action, rule, account, symbol, order_id, target_qty, extra = args
        acct = self.engine.accounts.get(account)
        if acct is not None:
            self.run(action, rule, acct, symbol, order_id, target_qty, **extra)

    def _do_cancel_order(self, rule, acct, symbol, order_id, target_qty, **_):
        name = acct.name
        order = acct.orders.get(order_id) if order_id else None
        if order is None:
            what = f"order {order_id} is not working" if order_id else "no order to cancel"
            return self._record("cancel_order", rule, name, symbol, order_id, "skipped", what)
        key = ("cancel_order", name, order_id)
        if self._busy(key):
            detail = f"cancel of order {order_id} already in flight"
            return self._record("cancel_order", rule, name, symbol, order_id, "skipped", detail)
        status, err = self._send([CancelOrder(name, order.order_id)], key)
        detail = err or f"cancel order {order_id} ({order.side} {order.qty} {order.symbol})"
        return self._record("cancel_order", rule, name, symbol, order_id, status, detail)

    def _do_cancel_orders(self, rule, acct, symbol, order_id, target_qty, **_):
        name = acct.name
        ids = list(acct.orders)
        if not ids:
            return self._record("cancel_orders", rule, name, symbol, None, "skipped",
                                "no working orders")
        key = ("cancel_orders", name, None)
        if self._busy(key):
            return self._record("cancel_orders", rule, name, symbol, None, "skipped",
                                "cancel of all orders already in flight")
        status, err = self._send([CancelOrder(name, oid) for oid in ids], key)
        detail = err or f"cancelled orders {', '.join(ids)}"
        return self._record("cancel_orders", rule, name, symbol, None, status, detail)

    def _market(self, action, rule, acct, symbol, reduce_to: int):
        """Bring the position in `symbol` to abs(qty) == reduce_to with a market order."""
        name = acct.name
        pos = acct.positions.get(symbol) if symbol else None
        qty = pos.qty if pos else 0
        excess = abs(qty) - reduce_to
        if excess <= 0:
            detail = f"{name} has no {symbol} position" if qty == 0 else (
                f"{name} holds {abs(qty)} {symbol}, already within {reduce_to}")
            return self._record(action, rule, name, symbol, None, "skipped", detail)
        key = (action, name, symbol)
        if self._busy(key):
            return self._record(action, rule, name, symbol, None, "skipped",
                                f"{action} of {symbol} already in flight")
        side = _close_side(qty)
        status, err = self._send([MarketOrder(name, symbol, side, excess, rule)], key)
        goal = "to close" if reduce_to == 0 else f"to reach {reduce_to}"
        detail = err or f"{side} {excess} {symbol} {goal}"
        return self._record(action, rule, name, symbol, None, status, detail)

    def _do_close_position(self, rule, acct, symbol, order_id, target_qty, **_):
        return self._market("close_position", rule, acct, symbol, 0)

    def _do_reduce_position(self, rule, acct, symbol, order_id, target_qty, **_):
        return self._market("reduce_position", rule, acct, symbol, max(0, target_qty or 0))

    def _do_flatten(self, rule, acct, symbol, order_id, target_qty, **_):
        name = acct.name
        order_ids = list(acct.orders)
        commands: list[Command] = [CancelOrder(name, oid) for oid in order_ids]
        closed = []
        for sym, pos in sorted(acct.positions.items()):
            if pos.qty:
                commands.append(MarketOrder(name, sym, _close_side(pos.qty), abs(pos.qty), rule))
                closed.append(f"{abs(pos.qty)} {sym} {'long' if pos.qty > 0 else 'short'}")
        if not commands:
            return self._record("flatten", rule, name, symbol, None, "skipped",
                                f"{name} is already flat with no working orders")
        key = ("flatten", name, None)
        if self._busy(key):
            return self._record("flatten", rule, name, symbol, None, "skipped",
                                "flatten already in flight")
        status, err = self._send(commands, key)
        parts = []
        if closed:
            parts.append("closed " + ", ".join(closed))
        if order_ids:
            parts.append("cancelled orders " + ", ".join(order_ids))
        detail = "; ".join(parts) + (f" — failed: {err}" if err else "")
        return self._record("flatten", rule, name, symbol, None, status, detail)

    def _do_smart_review(self, rule, acct, symbol, order_id, target_qty, **_):
        enqueue = self.engine.enqueue_job
        if enqueue is None:
            return self._record("smart_review", rule, acct.name, symbol, None, "skipped",
                                "no job pool is running")
        try:
            job_id, duplicate = enqueue(acct.name, origin=f"rule:{rule}")
        except Exception as exc:
            return self._record("smart_review", rule, acct.name, symbol, None, "failed",
                                f"could not enqueue a review: {exc}")
        detail = (f"job {job_id} already queued for {acct.name}" if duplicate
                  else f"queued Smart Risk Manager job {job_id}")
        return self._record("smart_review", rule, acct.name, symbol, None, "ok", detail)

    def _protect(self, action, rule, acct, symbol, price, *, stop: bool):
        name = acct.name
        pos = acct.positions.get(symbol) if symbol else None
        if pos is None or pos.qty == 0 or price is None:
            why = "no price given" if price is None else f"{name} has no {symbol} position"
            return self._record(action, rule, name, symbol, None, "skipped", why)
        key = (action, name, symbol)
        if self._busy(key):
            return self._record(action, rule, name, symbol, None, "skipped",
                                f"{action} of {symbol} already in flight")
        side = _close_side(pos.qty)
        qty = abs(pos.qty)
        command: Command = (StopOrder(name, symbol, side, qty, price, rule) if stop
                            else LimitOrder(name, symbol, side, qty, price, rule))
        status, err = self._send([command], key)
        kind = "stop" if stop else "limit"
        detail = err or f"{side} {qty} {symbol} {kind} at {_fmt_price(price)}"
        return self._record(action, rule, name, symbol, None, status, detail)

    def _do_set_stop_loss(self, rule, acct, symbol, order_id, target_qty, price=None, **_):
        return self._protect("set_stop_loss", rule, acct, symbol, price, stop=True)

    def _do_set_take_profit(self, rule, acct, symbol, order_id, target_qty, price=None, **_):
        return self._protect("set_take_profit", rule, acct, symbol, price, stop=False)
