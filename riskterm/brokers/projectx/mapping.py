"""Gateway payloads (REST and hub) → CONTRACT §1 event dicts.

`Mapper` holds what needs state: account id → name, contract id → contract (name such as
MNQH26, tick size and value), the trade ids seen per account (a trade is applied once, a voided
one never), the merged quote per contract, the order status machine and the open positions.
Every payload that cannot be mapped becomes a `Problem` (counted per kind, reported once),
never an exception and never a half-applied event: an entity is checked whole before any
state changes.
"""

from __future__ import annotations

import calendar
import functools
import math
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from riskterm.brokers.projectx.problems import Problem, ProblemLog

# enums of the Gateway
ORDER_STATUS = {0: "None", 1: "Open", 2: "Filled", 3: "Cancelled", 4: "Expired", 5: "Rejected",
                6: "Pending", 7: "PendingCancellation", 8: "Suspended"}
WORKING_STATUSES = (1, 6, 7)
ORDER_TYPES = {1: "limit", 2: "market", 3: "stop_limit", 4: "stop", 5: "stop",  # 5 trailing
               6: "limit", 7: "limit"}  # 6 JoinBid, 7 JoinAsk rest as limits
SIDES = {0: "buy", 1: "sell"}  # 0 Bid, 1 Ask
POSITION_TYPES = {1: 1, 2: -1}  # 1 Long, 2 Short
USER_ACTIONS = (0, 1)  # seen live: 0 a new trade, 1 every other push and re-pushes

MAX_ID = 64
MAX_QTY = 1_000_000
MAX_REMEMBERED = 200_000  # trade ids / finished order ids kept per mapper

_TS = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|[+-]\d{2}:?\d{2})$"
)




def parse_ts(text: str) -> float:
    """A .NET round-trip timestamp (`2026-05-06T13:36:03.4962794+00:00`, up to 9 fractional
    digits, an offset required) → epoch seconds. The whole seconds are computed exactly as an
    integer and the fraction from its digits, so 7 digits lose nothing a float can hold."""
    # the hubs' shape (a fraction, a ±HH:MM offset) takes a fast path: every quote carries a
    # stamp, and many share their second, whose value is validated and computed once
    if (isinstance(text, str) and len(text) >= 27 and text[19] == "." and text[-3] == ":"
            and text[-6] in "+-"):
        frac = text[20:-6]
        if len(frac) <= 9 and frac.isascii() and frac.isdigit():
            return _whole_seconds(text[:19] + text[-6:]) + int(frac) / 10 ** len(frac)
    return _parse_ts(text)


@functools.lru_cache(maxsize=4096)
def _whole_seconds(stamp: str) -> int:
    """ "YYYY-MM-DDTHH:MM:SS±HH:MM" → epoch seconds, validated by the full parser once."""
    return int(_parse_ts(stamp))


def _parse_ts(text: str) -> float:
    m = _TS.match(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ValueError("not a timestamp with an offset")
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    datetime(y, mo, d, h, mi, s)  # validates the calendar fields (ValueError)
    whole = calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0))
    off = m.group(8)
    if off != "Z":
        sign = -1 if off[0] == "-" else 1
        digits = off[1:].replace(":", "")
        oh, om = int(digits[:2]), int(digits[2:])
        if oh > 23 or om > 59:
            raise ValueError("offset out of range")
        whole -= sign * (oh * 3600 + om * 60)
    frac = m.group(7)
    return whole + (int(frac) / 10 ** len(frac) if frac else 0.0)


@dataclass(frozen=True, slots=True)
class Contract:
    id: str
    name: str
    tick_size: float | None = None
    tick_value: float | None = None
    symbol_id: str | None = None


@dataclass(slots=True)
class MapResult:
    events: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def extend(self, other: MapResult) -> None:
        self.events.extend(other.events)
        self.problems.extend(other.problems)


class _Bad(Exception):
    def __init__(self, kind: str, sentence: str) -> None:
        super().__init__(sentence)
        self.kind, self.sentence = kind, sentence


def _get(d: dict, key: str, what: str) -> Any:
    if key not in d or d[key] is None:
        raise _Bad(f"{what}_missing_field", f"{what} without {key}")
    return d[key]


def _int(d: dict, key: str, what: str, *, optional: bool = False) -> int | None:
    if optional and d.get(key) is None:
        return None
    v = _get(d, key, what)
    if isinstance(v, bool) or not isinstance(v, int):
        raise _Bad(f"{what}_bad_field", f"{what} whose {key} is not an integer")
    return v


def _num(d: dict, key: str, what: str, *, optional: bool = False) -> float | None:
    if optional and d.get(key) is None:
        return None
    v = _get(d, key, what)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _Bad(f"{what}_bad_field", f"{what} whose {key} is not a finite number")
    return float(v)


def _str(d: dict, key: str, what: str, *, optional: bool = False) -> str | None:
    if optional and d.get(key) is None:
        return None
    v = _get(d, key, what)
    if not isinstance(v, str) or not v.strip():
        raise _Bad(f"{what}_bad_field", f"{what} whose {key} is not a non-empty string")
    return v


def _bool(d: dict, key: str, what: str, default: bool) -> bool:
    v = d.get(key)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise _Bad(f"{what}_bad_field", f"{what} whose {key} is not true/false")
    return v


def _ts(d: dict, keys: tuple[str, ...], what: str) -> float | None:
    for key in keys:
        v = d.get(key)
        if v is None:
            continue
        try:
            return parse_ts(v)
        except (ValueError, TypeError, OverflowError):
            raise _Bad(f"{what}_bad_field", f"{what} whose {key} is not a timestamp "
                                            "with an offset") from None
    return None


class Mapper:
    """Stateful mapping of one Gateway session's payloads onto section-1 events."""

    def __init__(
        self, *, now: Callable[[], float] = time.time, problems: ProblemLog | None = None
    ) -> None:
        self._now = now
        self.problems = problems if problems is not None else ProblemLog()
        self.accounts: dict[int, str] = {}
        self.can_trade: dict[int, bool] = {}
        self.contracts: dict[str, Contract] = {}
        self.quotes: dict[str, dict[str, float]] = {}
        self.positions: dict[tuple[int, str], int] = {}  # (account id, contract id) → qty
        self.working: dict[int, tuple[int, str, tuple]] = {}  # order id → (acct, cid, shape)
        self._finished: OrderedDict[int, None] = OrderedDict()
        self._trades: dict[int, OrderedDict[int, bool]] = {}  # acct → trade id → applied
        # contracts traded per order id the mapper did not know as working: a re-sync can read
        # an order's trades before the hub's push of that order (status 6) is handled
        self._traded_early: OrderedDict[int, int] = OrderedDict()
        self.last_trade_ts: dict[int, float] = {}  # acct → creation time of the last applied

    # ------------------------------------------------------------ learning

    def learn_account(self, d: Any) -> Problem | None:
        try:
            aid, name = self._account_fields(d)
        except _Bad as bad:
            return self._problem(bad)
        self.accounts[aid] = name
        return None

    def _account_fields(self, d: Any) -> tuple[int, str]:
        if not isinstance(d, dict):
            raise _Bad("account_bad_shape", "account payload that is not an object")
        aid = _int(d, "id", "account")
        name = _str(d, "name", "account")
        assert aid is not None and name is not None
        if len(name) > MAX_ID:
            raise _Bad("account_bad_field", f"account {aid} whose name is over {MAX_ID} chars")
        return aid, name

    def learn_contract(self, d: Any) -> Problem | None:
        """A contract from Contract/search or Contract/searchById."""
        try:
            if not isinstance(d, dict):
                raise _Bad("contract_bad_shape", "contract payload that is not an object")
            cid = _str(d, "id", "contract")
            name = _str(d, "name", "contract")
            tick_size = _num(d, "tickSize", "contract", optional=True)
            tick_value = _num(d, "tickValue", "contract", optional=True)
            symbol_id = d.get("symbolId") if isinstance(d.get("symbolId"), str) else None
            assert cid is not None and name is not None
            if len(name) > MAX_ID:
                raise _Bad("contract_bad_field", f"contract {cid} whose name is too long")
            if tick_size is not None and tick_size <= 0:
                raise _Bad("contract_bad_field", f"contract {name} with a tick size <= 0")
        except _Bad as bad:
            return self._problem(bad)
        self.contracts[cid] = Contract(cid, name, tick_size, tick_value, symbol_id)
        return None

    def contract_name(self, cid: str) -> str | None:
        c = self.contracts.get(cid)
        return c.name if c else None

    def spec(self, name: str) -> tuple[float, float] | None:
        """(tick size, tick value) of the contract named `name`, as the broker states them."""
        for c in self.contracts.values():
            if c.name == name and c.tick_size and c.tick_value:
                return c.tick_size, c.tick_value
        return None

    def instrument_specs(self) -> dict[str, dict[str, float]]:
        """Contract name → tick_size / tick_value, as the broker states them."""
        return {c.name: {"tick_size": c.tick_size, "tick_value": c.tick_value}
                for c in self.contracts.values()
                if c.tick_size is not None and c.tick_value is not None}

    def unknown_contracts(self, entities: list[Any]) -> set[str]:
        """Contract ids in these payloads that the mapper cannot name yet (to resolve with
        Contract/searchById before mapping). A position carries its own display name."""
        out: set[str] = set()
        for d in entities:
            if isinstance(d, dict):
                cid = d.get("contractId")
                if (isinstance(cid, str) and cid not in self.contracts
                        and not isinstance(d.get("contractDisplayName"), str)):
                    out.add(cid)
        return out

    # ------------------------------------------------------------ entities

    def account(self, d: Any) -> MapResult:
        try:
            aid, name = self._account_fields(d)
            balance = _num(d, "balance", "account", optional=True)
            can_trade = _bool(d, "canTrade", "account", True)
        except _Bad as bad:
            return self._fail(bad)
        self.accounts[aid] = name
        self.can_trade[aid] = can_trade
        ev: dict[str, Any] = {"type": "account", "ts": self._now(), "account": name,
                              "can_trade": can_trade}
        if balance is not None:
            ev["balance"] = balance
        return MapResult([ev])

    def order(self, d: Any) -> MapResult:
        try:
            if not isinstance(d, dict):
                raise _Bad("order_bad_shape", "order payload that is not an object")
            oid = _int(d, "id", "order")
            aid = _int(d, "accountId", "order")
            cid = _str(d, "contractId", "order")
            status = _int(d, "status", "order")
            otype = _int(d, "type", "order")
            side = _int(d, "side", "order")
            size = _int(d, "size", "order")
            limit = _num(d, "limitPrice", "order", optional=True)
            stop = _num(d, "stopPrice", "order", optional=True)
            trail = _num(d, "trailPrice", "order", optional=True)
            ts = _ts(d, ("updateTimestamp", "creationTimestamp"), "order")
            assert oid is not None and aid is not None and cid is not None
            assert status is not None and otype is not None and side is not None
            assert size is not None
            account = self._account_name(aid, "order")
            symbol = self._symbol(cid, "order")
            if status not in ORDER_STATUS or status == 0:
                raise _Bad("order_unknown_status",
                           f"order {oid} with status {status}, which riskterm does not know")
            if status in WORKING_STATUSES:
                if otype not in ORDER_TYPES:
                    raise _Bad("order_unknown_type", f"order {oid} of type {otype}, "
                                                     "which riskterm does not know")
                if side not in SIDES:
                    raise _Bad("order_unknown_side", f"order {oid} with side {side}")
                if not 0 < size <= MAX_QTY:
                    raise _Bad("order_bad_field", f"order {oid} of size {size}")
        except _Bad as bad:
            return self._fail(bad)
        ts = ts if ts is not None else self._now()
        base = {"ts": ts, "account": account, "order_id": str(oid)}
        if oid in self._finished:
            return MapResult()  # a re-push of a finished order
        if status in WORKING_STATUSES:
            kind = ORDER_TYPES[otype]
            price = limit if kind in ("limit", "stop_limit") else None
            stop_price = stop if stop is not None else (trail if otype == 5 else None)
            if kind not in ("stop", "stop_limit"):
                stop_price = None
            shape = (size, price, stop_price)
            known = self.working.get(oid)
            if known is None and self._traded_early.get(oid, 0) >= size:
                # its trades were applied already (read by a re-sync): it is not working
                self._remember_finished(oid)
                return MapResult()
            if known is None:
                self.working[oid] = (aid, cid, shape)
                ev = {"type": "order_placed", **base, "symbol": symbol, "side": SIDES[side],
                      "qty": size, "order_type": kind}
                if price is not None:
                    ev["price"] = price
                if stop_price is not None:
                    ev["stop_price"] = stop_price
                return MapResult([ev])
            if known[2] == shape:
                return MapResult()
            self.working[oid] = (aid, cid, shape)
            ev = {"type": "order_updated", **base}
            for key, old, new in zip(("qty", "price", "stop_price"), known[2], shape,
                                     strict=True):
                if new is not None and new != old:
                    ev[key] = new
            return MapResult([ev])
        if status == 8:  # Suspended: a bracket leg waiting for its parent, not working yet
            return MapResult()
        self.working.pop(oid, None)
        self._remember_finished(oid)
        if status == 2:  # Filled: the fills come from the trades
            return MapResult()
        if status == 5:
            return MapResult([{"type": "order_rejected", **base,
                               "reason": "rejected by the broker"}])
        return MapResult([{"type": "order_cancelled", **base}])  # 3 Cancelled, 4 Expired

    def trade(self, d: Any) -> MapResult:
        try:
            if not isinstance(d, dict):
                raise _Bad("trade_bad_shape", "trade payload that is not an object")
            tid = _int(d, "id", "trade")
            aid = _int(d, "accountId", "trade")
            cid = _str(d, "contractId", "trade")
            price = _num(d, "price", "trade")
            size = _int(d, "size", "trade")
            side = _int(d, "side", "trade")
            oid = _int(d, "orderId", "trade")
            fees = _num(d, "fees", "trade", optional=True) or 0.0
            commissions = _num(d, "commissions", "trade", optional=True) or 0.0
            pnl = _num(d, "profitAndLoss", "trade", optional=True)
            voided = _bool(d, "voided", "trade", False)
            ts = _ts(d, ("creationTimestamp",), "trade")
            assert tid is not None and aid is not None and cid is not None
            assert size is not None and side is not None and oid is not None
            account = self._account_name(aid, "trade")
            symbol = self._symbol(cid, "trade")
            if side not in SIDES:
                raise _Bad("trade_unknown_side", f"trade {tid} with side {side}")
            if not 0 < size <= MAX_QTY:
                raise _Bad("trade_bad_field", f"trade {tid} of size {size}")
        except _Bad as bad:
            return self._fail(bad)
        seen = self._trades.setdefault(aid, OrderedDict())
        if tid in seen:
            if voided and seen[tid]:
                return self._fail(_Bad("trade_voided_after_fill",
                                       f"trade {tid} was voided after riskterm applied it; "
                                       "the broker's positions and balance will correct it"))
            return MapResult()  # pushed twice, or found again by a re-sync
        seen[tid] = not voided
        if len(seen) > MAX_REMEMBERED:
            seen.popitem(last=False)
        if voided:
            return MapResult()
        ts = ts if ts is not None else self._now()
        if oid not in self.working and oid not in self._finished:
            self._traded_early[oid] = self._traded_early.get(oid, 0) + size
            if len(self._traded_early) > MAX_REMEMBERED:
                self._traded_early.popitem(last=False)
        self.last_trade_ts[aid] = max(ts, self.last_trade_ts.get(aid, ts))
        ev: dict[str, Any] = {"type": "fill", "ts": ts, "account": account, "symbol": symbol,
                              "order_id": str(oid), "side": SIDES[side], "qty": size,
                              "price": price, "fee": round(fees + commissions, 10),
                              "trade_id": str(tid)}
        if pnl is not None:
            ev["realized_pnl"] = pnl
        return MapResult([ev])

    def position(self, d: Any) -> MapResult:
        try:
            if not isinstance(d, dict):
                raise _Bad("position_bad_shape", "position payload that is not an object")
            aid = _int(d, "accountId", "position")
            cid = _str(d, "contractId", "position")
            ptype = _int(d, "type", "position", optional=True)
            size = _int(d, "size", "position")
            avg = _num(d, "averagePrice", "position", optional=True)
            display = _str(d, "contractDisplayName", "position", optional=True)
            assert aid is not None and cid is not None and size is not None
            account = self._account_name(aid, "position")
            if display is not None and len(display) > MAX_ID:
                raise _Bad("position_bad_field", "position whose contract name is too long")
            symbol = display if cid not in self.contracts and display else None
            symbol = symbol or self._symbol(cid, "position")
            if not 0 <= size <= MAX_QTY:
                raise _Bad("position_bad_field", f"position in {symbol} of size {size}")
            if size and ptype not in POSITION_TYPES:
                raise _Bad("position_unknown_type", f"position in {symbol} of type {ptype}, "
                                                    "neither long (1) nor short (2)")
        except _Bad as bad:
            return self._fail(bad)
        if cid not in self.contracts:
            self.contracts[cid] = Contract(cid, symbol)
        qty = POSITION_TYPES[ptype] * size if size else 0  # type: ignore[index]
        if qty:
            self.positions[(aid, cid)] = qty
        else:
            self.positions.pop((aid, cid), None)
        ev: dict[str, Any] = {"type": "position", "ts": self._now(), "account": account,
                              "symbol": symbol, "qty": qty}
        if qty and avg is not None:
            ev["avg_price"] = avg
        return MapResult([ev])

    def quote(self, cid: Any, d: Any) -> MapResult:
        """A GatewayQuote, often partial: merged into what is known of the contract."""
        try:
            if not isinstance(cid, str) or not isinstance(d, dict):
                raise _Bad("quote_bad_shape", "quote that is not [contractId, {fields}]")
            symbol = self._symbol(cid, "quote")
            fields = {}
            for key, name in (("bestBid", "bid"), ("bestAsk", "ask"), ("lastPrice", "last")):
                v = d.get(key)
                if v is not None:
                    # a finite float, the usual case, without _num's call (quotes are many)
                    fields[name] = (v if v.__class__ is float and math.isfinite(v)
                                    else _num(d, key, "quote"))
            ts = _ts(d, ("timestamp", "lastUpdated"), "quote")
        except _Bad as bad:
            return self._fail(bad)
        merged = self.quotes.setdefault(cid, {})
        changed = False
        for name, value in fields.items():
            if value == 0:  # no bid / no ask: nothing to mark with
                changed = merged.pop(name, None) is not None or changed
            elif merged.get(name) != value:
                merged[name] = value  # type: ignore[assignment]
                changed = True
        if not changed or not merged:
            return MapResult()
        ev: dict[str, Any] = {"type": "quote", "ts": ts if ts is not None else self._now(),
                              "symbol": symbol, **merged}
        return MapResult([ev])

    # ------------------------------------------------------------ hub messages

    USER_TARGETS = ("GatewayUserAccount", "GatewayUserOrder", "GatewayUserPosition",
                    "GatewayUserTrade")

    def user_entities(self, target: str, arguments: Any) -> list[Any] | Problem:
        """The entities of a user-hub push: `[{action, data}]` or the bare `[entity]`."""
        if target not in self.USER_TARGETS:
            return self._problem(_Bad(f"hub_unknown_target:{target[:40]}",
                                      f"user hub event {target[:40]!r} is not one riskterm "
                                      "uses"))
        if not isinstance(arguments, list) or not arguments:
            return self._problem(_Bad("hub_bad_envelope", f"{target} without arguments"))
        out: list[Any] = []
        for item in arguments:
            if isinstance(item, dict) and isinstance(item.get("data"), dict):
                action = item.get("action")
                if action is not None and (isinstance(action, bool)
                                           or action not in USER_ACTIONS):
                    return self._problem(_Bad("hub_unknown_action",
                                              f"{target} with action {action!r}, which "
                                              "riskterm does not know"))
                out.append(item["data"])
            elif isinstance(item, dict) and "data" not in item and (
                    "id" in item or "accountId" in item):
                out.append(item)
            else:
                return self._problem(_Bad("hub_bad_envelope", f"{target} whose argument is "
                                          "neither {action, data} nor an entity"))
        return out

    def user_event(self, target: str, arguments: Any) -> MapResult:
        entities = self.user_entities(target, arguments)
        if isinstance(entities, Problem):
            return MapResult(problems=[entities])
        fn = {"GatewayUserAccount": self.account, "GatewayUserOrder": self.order,
              "GatewayUserPosition": self.position, "GatewayUserTrade": self.trade}[target]
        result = MapResult()
        for entity in entities:
            result.extend(fn(entity))
        return result

    def market_event(self, target: str, arguments: Any) -> MapResult:
        if target == "GatewayQuote":
            if not isinstance(arguments, list) or len(arguments) != 2:
                return self._fail(_Bad("quote_bad_shape",
                                       "GatewayQuote that is not [contractId, {fields}]"))
            return self.quote(arguments[0], arguments[1])
        if target in ("GatewayTrade", "GatewayDepth"):
            return MapResult()  # market trades and depth: not used by riskterm
        return self._fail(_Bad(f"hub_unknown_target:{target[:40]}",
                               f"market hub event {target[:40]!r} is not one riskterm uses"))

    # ------------------------------------------------------------ helpers

    def _account_name(self, aid: int, what: str) -> str:
        name = self.accounts.get(aid)
        if name is None:
            raise _Bad(f"{what}_unknown_account", f"{what} of account {aid}, which is not "
                                                  "among the watched accounts")
        return name

    def _symbol(self, cid: str, what: str) -> str:
        c = self.contracts.get(cid)
        if c is None:
            raise _Bad(f"{what}_unknown_contract", f"{what} in contract {cid[:64]!r}, which "
                                                   "the broker did not resolve")
        return c.name

    def _remember_finished(self, oid: int) -> None:
        self._finished[oid] = None
        self._traded_early.pop(oid, None)
        if len(self._finished) > MAX_REMEMBERED:
            self._finished.popitem(last=False)

    def _problem(self, bad: _Bad) -> Problem:
        problem = Problem(bad.kind, bad.sentence)
        self.problems.add(problem)
        return problem

    def _fail(self, bad: _Bad) -> MapResult:
        return MapResult(problems=[self._problem(bad)])
