"""Turning rule actions into broker commands and `enforcement` records.

One record per action and target; a flatten is one record whose detail lists what it closed and
cancelled.

Idempotency is per target and quantity, not per action name (CONTRACT §2): the enforcer keeps a
ledger of what it has in flight, per position the contracts its closing orders still have to
fill and per order a cancel sent. Every closing action (close_position, reduce_position, flatten,
from a rule, the dashboard or a Smart Risk Manager job) sends only what the position holds beyond
what is already closing, so one event breaching a `flatten` rule and a `close_position` rule sends
one close, never two (two would reverse the position). A closing fill draws its quantity down; a
`position` event caps it at the size the broker reports; an entry lapses after
IN_FLIGHT_SECONDS of engine time. In a dry run nothing is sent and no fill answers: an entry
holds for the event that wrote it, so the records still show one close per position.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from riskterm.brokers.base import (
    BrokerError,
    CancelOrder,
    Command,
    Flatten,
    LimitOrder,
    MarketOrder,
    OrderNotWorking,
    OutcomeUnknown,
    StopOrder,
    parts,
)

if TYPE_CHECKING:
    from riskterm.account import AccountState
    from riskterm.engine import Engine

# a close sent and not yet answered by a fill or a position event holds its quantity this long:
# a broker slower than this could be sent the same close again (and reverse the position), so
# it is long; a close that got lost is re-sent only after it (live brokers' confirmations will
# settle entries directly)
IN_FLIGHT_SECONDS = 30.0
PRUNE_AT = 4096  # ledger entries before a pass drops the lapsed ones
RETRY_DELAYS = (1.0, 3.0)  # engine-clock seconds before the 2nd and 3rd attempt of a failed action

PENDING = "pending"  # internal: sent to a live broker, its confirmation awaited (never stored)

Token = tuple[int, float] | None  # a dry run's entry holds for one event: (event no., clock)


def _close_side(qty: int) -> str:
    return "sell" if qty > 0 else "buy"


def _fmt_price(price: float) -> str:
    return f"{price:.10g}"


@dataclass(slots=True)
class Closing:
    """Closing orders in flight for one (account, symbol)."""

    qty: int  # contracts the closing orders sent still have to fill
    side: str  # their side: "sell" closes a long, "buy" a short
    until: float  # engine clock at which the entry lapses
    token: Token
    by: str  # "flatten by daily_total_loss", for the records


class Enforcer:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.closing: dict[tuple[str, str], Closing] = {}  # (account, symbol)
        self.cancelling: dict[tuple[str, str], tuple[float, Token]] = {}  # (account, order id)
        # protective orders (set_stop_loss, set_take_profit): (account, symbol) -> action -> ...
        self.inflight: dict[tuple[str, str | None], dict[str, tuple[float, Token]]] = {}
        self._token_seen: Token = None
        self._prune_at = PRUNE_AT
        # what _send left for the record being made: (awaitables, errors so far, key)
        self._unconfirmed: tuple[list[tuple[Command, Awaitable[str | None]]], list[str],
                                 tuple[str, str, str | None] | None] | None = None

    # -- the in-flight ledger ----------------------------------------------------------------

    def _token(self) -> Token:
        engine = self.engine
        return None if engine.broker.executes else (engine.n_events, engine.clock)

    def _alive(self, until: float, token: Token) -> bool:
        if token is not None:
            return token == (self.engine.n_events, self.engine.clock)
        return until > self.engine.clock

    def in_flight_close(self, account: str, symbol: str, side: str) -> Closing | None:
        """The closing orders in flight for a position whose closing side is `side`."""
        entry = self.closing.get((account, symbol))
        if entry is None:
            return None
        if entry.side != side or entry.qty <= 0 or not self._alive(entry.until, entry.token):
            del self.closing[(account, symbol)]
            return None
        return entry

    def _cancel_pending(self, account: str, order_id: str) -> bool:
        key = (account, order_id)
        entry = self.cancelling.get(key)
        if entry is None:
            return False
        if not self._alive(*entry):
            del self.cancelling[key]
            return False
        return True

    def _busy(self, key: tuple[str, str, str | None]) -> bool:
        action, account, symbol = key
        entries = self.inflight.get((account, symbol))
        if not entries or action not in entries:
            return False
        if not self._alive(*entries[action]):
            del entries[action]
            return False
        return True

    def _forget_lapsed(self, token: Token) -> None:
        """Keep the ledger to what can still be in flight: in a dry run what the current event
        sent, else what has not lapsed (a pass when it has doubled since the last one)."""
        if token is not None:
            if token != self._token_seen:
                self._token_seen = token
                self.closing.clear()
                self.cancelling.clear()
                self.inflight.clear()
            return
        if len(self.closing) + len(self.cancelling) + len(self.inflight) < self._prune_at:
            return
        now = self.engine.clock
        self.closing = {k: e for k, e in self.closing.items() if e.until > now}
        self.cancelling = {k: e for k, e in self.cancelling.items() if e[0] > now}
        self.inflight = {k: live for k, e in self.inflight.items()
                         if (live := {a: v for a, v in e.items() if v[0] > now})}
        size = len(self.closing) + len(self.cancelling) + len(self.inflight)
        self._prune_at = max(PRUNE_AT, 2 * size)

    def _mark(self, command: Command, key: tuple[str, str, str | None] | None, by: str) -> None:
        """A command went out (or would have, in a dry run): it is in flight now."""
        until, token = self.engine.clock + IN_FLIGHT_SECONDS, self._token()
        self._forget_lapsed(token)
        for part in parts(command):
            if isinstance(part, CancelOrder):
                self.cancelling[(part.account, part.order_id)] = (until, token)
            elif isinstance(part, MarketOrder):
                target = (part.account, part.symbol)
                entry = self.in_flight_close(part.account, part.symbol, part.side)
                qty = part.qty + (entry.qty if entry is not None else 0)
                self.closing[target] = Closing(qty, part.side, until, token, by)
            elif key is not None:
                self.inflight.setdefault((key[1], key[2]), {})[key[0]] = (until, token)

    def filled(self, account: str, symbol: str, side: str, qty: int) -> None:
        """A fill on the closing side draws down what is in flight for the position."""
        if not self.closing:
            return
        entry = self.closing.get((account, symbol))
        if entry is not None and entry.side == side:
            entry.qty -= qty
            if entry.qty <= 0:
                del self.closing[(account, symbol)]

    def settle(self, account: str, symbol: str | None = None, order_id: str | None = None,
               qty: int | None = None) -> None:
        """The broker confirmed a new state: a position of `qty` in `symbol` (no more can be
        closing than it holds), or `order_id` no longer working (its cancel is done)."""
        if order_id is not None:
            self.cancelling.pop((account, order_id), None)
        if symbol is not None:
            entry = self.closing.get((account, symbol))
            if entry is not None:
                # what the position holds on the side those orders close (0 once reversed)
                held = abs(qty) if qty and (qty > 0) == (entry.side == "sell") else 0
                if held < entry.qty:
                    entry.qty = held
                if entry.qty <= 0:
                    del self.closing[(account, symbol)]
            self.inflight.pop((account, symbol), None)

    def _send(self, commands: list[Command], key: tuple[str, str, str | None] | None = None,
              by: str = "") -> tuple[str, str]:
        """Submit commands; returns (status, error detail or ''). Each command that goes out is
        in flight from then on, whatever happens to the others. A broker that confirms later
        (a live one: submit returns an awaitable) makes the status PENDING; the awaitables wait
        in `self._unconfirmed` for the record `_record` makes next (see `run`)."""
        broker = self.engine.broker
        if not getattr(broker, "flattens", False):  # a flatten as its orders, one at a time
            commands = [part for command in commands for part in parts(command)]
        if not broker.executes:
            for command in commands:
                broker.submit(command)
                self._mark(command, key, by)
            return "dry_run", ""
        errors = []
        waiting: list[tuple[Command, Awaitable[str | None]]] = []
        for command in commands:
            try:
                answer = broker.submit(command)
            except OrderNotWorking:
                continue  # it went away on its own: the goal is reached
            except BrokerError as exc:
                errors.append(str(exc))
                continue
            except Exception as exc:  # a broker bug must not stop the engine
                errors.append(f"broker error: {exc!r}")
                continue
            self._mark(command, key, by)
            if answer is not None:
                waiting.append((command, answer))
        if waiting:
            self._unconfirmed = (waiting, errors, key)
            return PENDING, ""
        if errors:
            return "failed", "; ".join(errors)
        return "ok", ""

    def _unmark(self, command: Command, key: tuple[str, str, str | None] | None) -> None:
        """A command the broker refused never went out: it is no longer in flight."""
        for part in parts(command):
            if isinstance(part, CancelOrder):
                self.cancelling.pop((part.account, part.order_id), None)
            elif isinstance(part, MarketOrder):
                entry = self.closing.get((part.account, part.symbol))
                if entry is not None and entry.side == part.side:
                    entry.qty -= part.qty
                    if entry.qty <= 0:
                        del self.closing[(part.account, part.symbol)]
            elif key is not None:
                entries = self.inflight.get((key[1], key[2]))
                if entries is not None:
                    entries.pop(key[0], None)

    def confirmed(self, rec: dict[str, Any], outcomes: list[tuple[Command, BaseException | str
                                                                  | None]],
                  errors: list[str], key: tuple[str, str, str | None] | None) -> bool:
        """The broker answered every command of a PENDING record: make it `ok` or `failed`
        (with the broker's reasons). A refused command is taken off the in-flight ledger; one
        whose outcome is unknown stays on it, so it is never sent twice. True when an outcome
        is unknown."""
        notes = []
        unknown = False
        for command, outcome in outcomes:
            if isinstance(outcome, OrderNotWorking):
                continue
            if isinstance(outcome, BaseException):
                if isinstance(outcome, OutcomeUnknown):
                    unknown = True
                else:
                    self._unmark(command, key)
                errors.append(str(outcome) if isinstance(outcome, BrokerError)
                              else f"broker error: {outcome!r}")
            elif outcome:
                notes.append(str(outcome))
        if errors:
            rec["status"] = "failed"
            rec["detail"] = "; ".join(errors) if not rec["detail"] else (
                f"{rec['detail']} — failed: {'; '.join(errors)}")
        else:
            rec["status"] = "ok"
            if notes:
                rec["detail"] += f" (broker: {'; '.join(notes)})"
        return unknown

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
        if not acct.reported:  # CONTRACT section 9: an account the broker does not report
            return self._record(action, rule, acct.name, symbol, order_id, "skipped",
                                f"{acct.name} is not reported by the broker; nothing sent")
        self._unconfirmed = None
        rec = handler(rule, acct, symbol, order_id, target_qty, **extra)
        attempt = extra.pop("_attempt", 1)
        retry = (action, rule, acct.name, symbol, order_id, target_qty,
                 {**extra, "_attempt": attempt + 1})
        if rec is not None and rec["status"] == PENDING and self._unconfirmed is not None:
            waiting, errors, key = self._unconfirmed
            self._unconfirmed = None

            def done(outcomes: list[tuple[Command, BaseException | str | None]]) -> None:
                unknown = self.confirmed(rec, outcomes, errors, key)
                self._settled(rec, attempt, retry, unknown)

            self.engine.await_confirmation(rec, waiting, done)
        elif rec is not None:
            self._settled(rec, attempt, retry)
        return rec

    def _settled(self, rec: dict[str, Any], attempt: int, retry: tuple[Any, ...],
                 unknown: bool = False) -> None:
        """The record's final status is known: a failure is tried again later (the retry
        re-checks what is still needed), at most len(RETRY_DELAYS) times. After an unknown
        outcome the close stays in flight until a fill or position settles it or it lapses,
        so the retry comes once it has lapsed: a close that never happened is sent again
        then, instead of leaving the position over its limit for good."""
        if rec["status"] != "failed":
            return
        if attempt <= len(RETRY_DELAYS):
            delay = IN_FLIGHT_SECONDS + 1.0 if unknown else RETRY_DELAYS[attempt - 1]
            # the violation stands; try again later (the retry re-checks what is still needed)
            rec["detail"] += f" (attempt {attempt}, retrying in {delay:g}s)"
            self.engine.schedule(self.engine.clock + delay, self._retry, retry)
        else:
            rec["detail"] += f" (attempt {attempt}, giving up)"

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
        if self._cancel_pending(name, order.order_id):
            detail = f"cancel of order {order_id} already in flight"
            return self._record("cancel_order", rule, name, symbol, order_id, "skipped", detail)
        status, err = self._send([CancelOrder(name, order.order_id)])
        detail = err or f"cancel order {order_id} ({order.side} {order.qty} {order.symbol})"
        return self._record("cancel_order", rule, name, symbol, order_id, status, detail)

    def _do_cancel_orders(self, rule, acct, symbol, order_id, target_qty, **_):
        name = acct.name
        if not acct.orders:
            return self._record("cancel_orders", rule, name, symbol, None, "skipped",
                                "no working orders")
        ids = [oid for oid in acct.orders if not self._cancel_pending(name, oid)]
        if not ids:
            return self._record("cancel_orders", rule, name, symbol, None, "skipped",
                                "cancel of all orders already in flight")
        status, err = self._send([CancelOrder(name, oid) for oid in ids])
        detail = err or f"cancelled orders {', '.join(ids)}"
        return self._record("cancel_orders", rule, name, symbol, None, status, detail)

    def _to_close(self, acct: AccountState, symbol: str) -> tuple[int, int, Closing | None]:
        """(signed position, contracts not yet closing, the closing orders in flight)."""
        pos = acct.positions.get(symbol)
        qty = pos.qty if pos else 0
        if not qty:
            return 0, 0, None
        entry = self.in_flight_close(acct.name, symbol, _close_side(qty))
        return qty, abs(qty) - (entry.qty if entry is not None else 0), entry

    def _market(self, action, rule, acct, symbol, reduce_to: int):
        """Bring the position in `symbol` to abs(qty) == reduce_to with a market order, counting
        the closing orders already in flight for it."""
        name = acct.name
        qty, open_qty, entry = self._to_close(acct, symbol) if symbol else (0, 0, None)
        if abs(qty) <= reduce_to:
            detail = f"{name} has no {symbol} position" if qty == 0 else (
                f"{name} holds {abs(qty)} {symbol}, already within {reduce_to}")
            return self._record(action, rule, name, symbol, None, "skipped", detail)
        excess = open_qty - reduce_to
        if excess <= 0:
            assert entry is not None
            detail = (f"{entry.side} {entry.qty} {symbol} already in flight ({entry.by}): "
                      f"{name} will hold {abs(qty) - entry.qty} of {abs(qty)}")
            return self._record(action, rule, name, symbol, None, "skipped", detail)
        side = _close_side(qty)
        intent = "close" if reduce_to == 0 else "reduce"
        status, err = self._send([MarketOrder(name, symbol, side, excess, rule, intent)],
                                 by=f"{action} by {rule}")
        goal = "to close" if reduce_to == 0 else f"to reach {reduce_to}"
        detail = err or f"{side} {excess} {symbol} {goal}" + (
            f" ({entry.qty} already in flight, {entry.by})" if entry is not None else "")
        return self._record(action, rule, name, symbol, None, status, detail)

    def _do_close_position(self, rule, acct, symbol, order_id, target_qty, **_):
        return self._market("close_position", rule, acct, symbol, 0)

    def _do_reduce_position(self, rule, acct, symbol, order_id, target_qty, **_):
        return self._market("reduce_position", rule, acct, symbol, max(0, target_qty or 0))

    def _do_flatten(self, rule, acct, symbol, order_id, target_qty, **_):
        name = acct.name
        if not acct.orders and not any(p.qty for p in acct.positions.values()):
            return self._record("flatten", rule, name, symbol, None, "skipped",
                                f"{name} is already flat with no working orders")
        order_ids = [oid for oid in acct.orders if not self._cancel_pending(name, oid)]
        cancels = tuple(CancelOrder(name, oid) for oid in order_ids)
        closes: list[MarketOrder] = []
        closed, closing = [], []
        for sym in sorted(acct.positions):
            qty, open_qty, entry = self._to_close(acct, sym)
            if entry is not None:
                closing.append(f"{entry.qty} {sym} ({entry.by})")
            if open_qty > 0:
                closes.append(MarketOrder(name, sym, _close_side(qty), open_qty, rule))
                closed.append(f"{open_qty} {sym} {'long' if qty > 0 else 'short'}")
        in_flight = "already in flight: " + ", ".join(closing) if closing else ""
        if not cancels and not closes:
            detail = "flatten already in flight" + (f" ({in_flight})" if in_flight else "")
            return self._record("flatten", rule, name, symbol, None, "skipped", detail)
        status, err = self._send([Flatten(name, cancels, tuple(closes), rule)],
                                 by=f"flatten by {rule}")
        parts = []
        if closed:
            parts.append("closed " + ", ".join(closed))
        if order_ids:
            parts.append("cancelled orders " + ", ".join(order_ids))
        if in_flight:
            parts.append(in_flight)
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
        status, err = self._send([command], key, by=f"{action} by {rule}")
        kind = "stop" if stop else "limit"
        detail = err or f"{side} {qty} {symbol} {kind} at {_fmt_price(price)}"
        return self._record(action, rule, name, symbol, None, status, detail)

    def _do_set_stop_loss(self, rule, acct, symbol, order_id, target_qty, price=None, **_):
        return self._protect("set_stop_loss", rule, acct, symbol, price, stop=True)

    def _do_set_take_profit(self, rule, acct, symbol, order_id, target_qty, price=None, **_):
        return self._protect("set_take_profit", rule, acct, symbol, price, stop=False)
