"""Guardrails: every proposed action is checked before it runs (and again when approved).

A proposal passes only when its account and symbol are known, the action is in
smart_risk.allow, and it can only lower exposure: no reversal of a position, no order that a
halted account would have cancelled, no stop or target on the wrong side of the market, no
cancel that strips a position of its protective stop.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from riskterm.jobs import risk
from riskterm.jobs.tools import ACTION_TOOLS

_SYMBOL_ACTIONS = ("close_position", "reduce_position", "set_stop_loss", "set_take_profit")


def check(action: str, arguments: dict[str, Any], snapshot: dict[str, Any],
          allow: Iterable[str], known_accounts: Iterable[str],
          accepted: list[dict[str, Any]], seen: dict[str, Any] | None = None) -> str | None:
    """Why the proposal must not run, or None when it may. `accepted`: proposals of the same
    job already accepted (a later one must not undo or repeat them). `seen`: at approval, the
    snapshot the job made its proposal on, so a position closed since is called that, not an
    unknown symbol (the account as it is now may no longer mention the symbol at all)."""
    account = snapshot.get("account")
    if action not in ACTION_TOOLS:
        return f"{action} is not an action the Smart Risk Manager may take"
    if action not in tuple(allow):
        return f"{action} is not allowed by smart_risk.allow"
    if account not in set(known_accounts):
        return f"unknown account {account}"
    if action == "cancel_orders":
        return _check_cancel(snapshot, accepted)
    symbol = arguments.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        return f"{action} needs a symbol"
    pos = risk.position(snapshot, symbol)
    if pos is None:
        if seen is not None and risk.position(seen, symbol) is not None:
            return (f"{account} no longer holds a {symbol} position: it was closed after the "
                    "job looked at the account")
        if symbol not in risk.known_symbols(snapshot) | risk.known_symbols(seen or {}):
            return f"unknown symbol {symbol} for account {account}"
        return f"{account} has no open {symbol} position"
    same = [a for a in accepted if a["arguments"].get("symbol") == symbol]
    if any(a["action"] == "close_position" for a in same):
        return f"{symbol} is already being closed by an earlier proposal"
    if any(a["action"] == action for a in same) and action != "reduce_position":
        return f"duplicate: {action} for {symbol} was already proposed"
    held = abs(int(pos["qty"]))
    if action == "reduce_position":
        qty = arguments.get("qty")
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            return "reduce_position needs a whole number of contracts, at least 1"
        already = sum(int(a["arguments"].get("qty") or 0) for a in same
                      if a["action"] == "reduce_position")
        if qty + already > held:
            return (f"reducing {symbol} by {qty} would reverse the {held}-contract position "
                    "(exposure would increase); close it instead")
        return None
    if action in ("set_stop_loss", "set_take_profit"):
        return _check_order(action, arguments, snapshot, pos)
    return None


def _check_order(action: str, arguments: dict[str, Any], snapshot: dict[str, Any],
                 pos: dict[str, Any]) -> str | None:
    symbol = pos["symbol"]
    if snapshot.get("state") == "halted":
        return (f"{snapshot.get('account')} is halted: a new {symbol} order would be cancelled; "
                "close or reduce the position instead")
    price = arguments.get("price")
    if not isinstance(price, int | float) or isinstance(price, bool) or not price > 0:
        return f"{action} needs a positive price"
    ref = risk.reference_price(pos)
    if ref is None:
        return f"no price is known for {symbol}, so the order side cannot be checked"
    long = pos["qty"] > 0
    side = "long" if long else "short"
    if action == "set_stop_loss":
        ok = price < ref if long else price > ref
        where = "below" if long else "above"
        what = "a protective stop"
    else:
        ok = price > ref if long else price < ref
        where = "above" if long else "below"
        what = "a take-profit"
    if not ok:
        return (f"{what} for a {side} {symbol} position must be {where} the market "
                f"({ref:g}); {price:g} would fill at once")
    return None


def _check_cancel(snapshot: dict[str, Any], accepted: list[dict[str, Any]]) -> str | None:
    orders = snapshot.get("working_orders") or []
    if not orders:
        return "there are no working orders to cancel"
    if any(a["action"] == "cancel_orders" for a in accepted):
        return "duplicate: cancel_orders was already proposed"
    closing = {a["arguments"].get("symbol") for a in accepted if a["action"] == "close_position"}
    protected = sorted(p["symbol"] for p in snapshot.get("positions") or []
                       if p.get("qty") and p.get("stops") and p["symbol"] not in closing)
    if protected:
        return ("cancel_orders would also cancel the protective stop of "
                + ", ".join(protected) + " while the position stays open")
    return None
