"""The broker behind the test gateway: accounts, contracts, orders, positions, trades.

It behaves as the facts file describes the live Gateway: a market order is pushed as status 6
(Pending), then its trade (action 0), the order at status 2, the position and the account
(action 1); limit and stop orders appear at status 1 and fill when the last price crosses
them (a limit at its price, a stop at the last price); a close is a market order whose position
push has size 0; a cancel pushes status 3; the balance moves by profitAndLoss - fees -
commissions per fill (average-cost P&L; profitAndLoss omitted on an opening trade).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

CONTRACTS: list[dict[str, Any]] = [
    {"id": "CON.F.US.MNQ.H26", "name": "MNQH26", "tickSize": 0.25, "tickValue": 0.5,
     "description": "Micro E-mini Nasdaq-100: March 2026", "symbolId": "F.US.MNQ"},
    {"id": "CON.F.US.EP.H26", "name": "ESH26", "tickSize": 0.25, "tickValue": 12.5,
     "description": "E-Mini S&P 500: March 2026", "symbolId": "F.US.EP"},
    {"id": "CON.F.US.MES.H26", "name": "MESH26", "tickSize": 0.25, "tickValue": 1.25,
     "description": "Micro E-mini S&P 500: March 2026", "symbolId": "F.US.MES"},
    {"id": "CON.F.US.CLE.F26", "name": "CLF26", "tickSize": 0.01, "tickValue": 10.0,
     "description": "Crude Light: January 2026", "symbolId": "F.US.CLE"},
]
# per contract and side: (fees, commissions)
COSTS = {"F.US.MNQ": (0.37, 0.25), "F.US.EP": (1.40, 1.00), "F.US.MES": (0.37, 0.25),
         "F.US.CLE": (1.60, 1.00)}
START_QUOTES = {"CON.F.US.MNQ.H26": 21000.0, "CON.F.US.EP.H26": 6000.0,
                "CON.F.US.MES.H26": 6000.0, "CON.F.US.CLE.F26": 60.0}


@dataclass
class Faults:
    """Switchable faults; counters apply to the next N requests (of `only` when it is set)."""

    rest_5xx: int = 0
    rest_timeout: int = 0
    stall_seconds: float = 3.0
    rest_429: int = 0
    retry_after: str | None = "0.05"
    only: set[str] = field(default_factory=set)  # endpoints the counters apply to; empty = all
    refuse_login: bool = False
    reject_orders: int = 0  # Order/place answers success:false OrderRejected
    reject_async: int = 0  # Order/place succeeds, then the order is pushed 6 -> 5
    reject_close: int = 0  # closeContract / partialCloseContract answer OrderRejected
    duplicate_trades: bool = False  # every trade pushed twice
    gap: bool = False  # pushes are not sent (state still moves; REST finds it)
    mute_hubs: bool = False  # hubs send nothing at all, pings included
    refuse_hubs_until: float = 0.0  # monotonic time until which hubs answer 503
    rate_limit: tuple[int, float] = (200, 60.0)  # per token
    # the facts file's unconfirmed behaviours, off by default as it assumes
    snapshot_on_subscribe: bool = False  # Subscribe* pushes the current state to the caller
    account_echo: bool = False  # every account push sent twice (as the live log shows)

    def take(self, name: str, endpoint: str) -> bool:
        if self.only and endpoint not in self.only:
            return False
        n = getattr(self, name)
        if n > 0:
            setattr(self, name, n - 1)
            return True
        return False


class Refused(Exception):
    """A business error: success:false with this errorCode and message."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


def hub_ts(t: float) -> str:
    """A hub timestamp: .NET round-trip with 7 fractional digits."""
    whole = int(t)
    ticks = round((t - whole) * 10_000_000)
    if ticks == 10_000_000:
        whole, ticks = whole + 1, 0
    base = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{ticks:07d}+00:00"


def rest_ts(stamp: str) -> str:
    """The REST form of a hub timestamp: 6 fractional digits."""
    head, frac = stamp[:19], stamp[20:27]
    return f"{head}.{frac[:6]}+00:00"


Push = Callable[[str, str, list[Any], tuple], None]  # hub, target, arguments, subscription key


class GatewayState:
    def __init__(self, faults: Faults, clock: Callable[[], float] = time.time) -> None:
        self.faults = faults
        self._clock = clock
        self._last_t = 0.0
        self.accounts: dict[int, dict[str, Any]] = {}
        self.contracts = {c["id"]: {**c, "activeContract": True} for c in CONTRACTS}
        self.quotes: dict[str, dict[str, float]] = {
            cid: {"last": p, "bid": p - self.contracts[cid]["tickSize"], "ask": p}
            for cid, p in START_QUOTES.items()}
        self.orders: dict[int, dict[str, Any]] = {}
        self.positions: dict[tuple[int, str], dict[str, Any]] = {}
        self.trades: list[dict[str, Any]] = []
        self._next_order = 2934939764  # live order ids exceed int32
        self._next_trade = 1661000000
        self._next_position = 470000000
        self.push: Push = lambda hub, target, args, key: None

    # ------------------------------------------------------------ helpers

    def now(self) -> float:
        t = max(self._clock(), self._last_t + 1e-6)  # strictly increasing stamps
        self._last_t = t
        return t

    def add_account(self, aid: int, name: str, balance: float = 50000.0, *,
                    can_trade: bool = True, simulated: bool = True) -> dict:
        acct = {"id": aid, "name": name, "balance": balance, "canTrade": can_trade,
                "isVisible": True, "simulated": simulated}
        self.accounts[aid] = acct
        return acct

    def _user(self, target: str, key: tuple, data: dict, action: int = 1) -> None:
        self.push("user", target, [{"action": action, "data": _normal(data)}], key)

    def _push_account(self, aid: int) -> None:
        self._user("GatewayUserAccount", ("accounts",), self.accounts[aid])
        if self.faults.account_echo:
            self._user("GatewayUserAccount", ("accounts",), self.accounts[aid])

    def snapshot(self, key: tuple) -> list[tuple[str, list[Any]]]:
        """What a subscription to `key` would be sent first, if the server sent snapshots."""
        wrap = lambda d: [{"action": 1, "data": _normal(d)}]  # noqa: E731
        if key == ("accounts",):
            return [("GatewayUserAccount", wrap(a)) for a in self.accounts.values()]
        if key[0] == "orders":
            return [("GatewayUserOrder", wrap(o)) for o in self.open_orders(key[1])]
        if key[0] == "positions":
            return [("GatewayUserPosition", wrap(p)) for p in self.open_positions(key[1])]
        if key[0] == "trades":
            return [("GatewayUserTrade", wrap(t)) for t in self.trades if t["accountId"] == key[1]]
        return []

    def _push_order(self, order: dict) -> None:
        self._user("GatewayUserOrder", ("orders", order["accountId"]), order)

    def _push_trade(self, trade: dict, action: int = 0) -> None:
        self._user("GatewayUserTrade", ("trades", trade["accountId"]), trade, action)
        if self.faults.duplicate_trades:
            self._user("GatewayUserTrade", ("trades", trade["accountId"]), trade, action)

    def _position_wire(self, aid: int, cid: str, pos: dict) -> dict:
        qty = pos["qty"]
        return {"id": pos["id"], "accountId": aid, "contractId": cid,
                "contractDisplayName": self.contracts[cid]["name"],
                "creationTimestamp": pos["created"],
                "type": 1 if qty > 0 or (qty == 0 and pos.get("was", 1) > 0) else 2,
                "size": abs(qty), "averagePrice": pos["avg"]}

    def _push_position(self, aid: int, cid: str, pos: dict) -> None:
        self._user("GatewayUserPosition", ("positions", aid), self._position_wire(aid, cid, pos))

    def _account(self, aid: Any) -> dict:
        acct = self.accounts.get(aid) if isinstance(aid, int) else None
        if acct is None:
            raise Refused(1, "Account not found.")
        return acct

    # ------------------------------------------------------------ REST views

    def open_orders(self, aid: int) -> list[dict]:
        return [o for o in self.orders.values()
                if o["accountId"] == aid and o["status"] in (1, 6, 7)]

    def open_positions(self, aid: int) -> list[dict]:
        return [self._position_wire(a, c, p) for (a, c), p in self.positions.items()
                if a == aid and p["qty"] != 0]

    # ------------------------------------------------------------ orders

    def place(self, aid: Any, cid: Any, otype: Any, side: Any, size: Any, *,
              limit: float | None = None, stop: float | None = None,
              tag: str | None = None) -> int:
        acct = self._account(aid)
        if cid not in self.contracts:
            raise Refused(8, "Contract not found.")
        if not acct["canTrade"]:
            raise Refused(2, "The account is not allowed to trade.")
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise Refused(2, "Invalid order size.")
        if side not in (0, 1):
            raise Refused(2, "Invalid order side.")
        if otype not in (1, 2, 4):
            raise Refused(2, "Order type not supported.")
        if (otype == 1 and limit is None) or (otype == 4 and stop is None):
            raise Refused(2, "Missing price for the order type.")
        if tag is not None and any(o.get("customTag") == tag and o["accountId"] == aid
                                   for o in self.orders.values()):
            raise Refused(2, "customTag must be unique across the account.")
        if self.faults.take("reject_orders", "Order/place"):
            raise Refused(2, "Order rejected by the risk system.")
        oid = self._next_order
        self._next_order += 1
        stamp = hub_ts(self.now())
        c = self.contracts[cid]
        order: dict[str, Any] = {
            "id": oid, "accountId": aid, "contractId": cid, "symbolId": c["symbolId"],
            "creationTimestamp": stamp, "updateTimestamp": stamp,
            "status": 6 if otype == 2 else 1, "type": otype, "side": side, "size": size,
            "limitPrice": limit if otype == 1 else None,
            "stopPrice": stop if otype == 4 else None, "fillVolume": 0, "filledPrice": None,
            "customTag": tag,
        }
        self.orders[oid] = order
        self._push_order(order)
        if self.faults.take("reject_async", "Order/place"):
            self._set_status(order, 5)
        elif otype == 2:
            self._fill(order, self.quotes[cid]["last"])
        else:
            self._check_cross(order)
        return oid

    def _set_status(self, order: dict, status: int) -> None:
        order["status"] = status
        order["updateTimestamp"] = hub_ts(self.now())
        self._push_order(order)

    def cancel(self, aid: Any, oid: Any) -> None:
        self._account(aid)
        order = self.orders.get(oid) if isinstance(oid, int) else None
        if order is None or order["accountId"] != aid or order["status"] not in (1, 6, 7):
            raise Refused(2, "Order not found.")
        self._set_status(order, 3)

    def close(self, aid: Any, cid: Any, size: Any = None) -> None:
        acct = self._account(aid)
        if cid not in self.contracts:
            raise Refused(3, "Contract not found.")
        pos = self.positions.get((aid, cid))
        if pos is None or pos["qty"] == 0:
            raise Refused(2, "Position not found.")
        partial = size is not None
        if partial and (not isinstance(size, int) or isinstance(size, bool)
                        or not 0 < size <= abs(pos["qty"])):
            raise Refused(5, "Invalid close size.")
        endpoint = "Position/partialCloseContract" if partial else "Position/closeContract"
        if not acct["canTrade"] or self.faults.take("reject_close", endpoint):
            raise Refused(6 if partial else 5, "Order rejected.")
        qty = size if partial else abs(pos["qty"])
        self.place(aid, cid, 2, 1 if pos["qty"] > 0 else 0, qty)

    # ------------------------------------------------------------ market

    def move(self, cid: str, last: float, bid: float | None = None,
             ask: float | None = None) -> None:
        """The market moves: a partial GatewayQuote is pushed, resting orders that the last
        price crosses fill."""
        q = self.quotes[cid]
        partial: dict[str, Any] = {"symbol": self.contracts[cid]["symbolId"],
                                   "symbolName": "/" + self.contracts[cid]["symbolId"][5:],
                                   "lastPrice": last}
        q["last"] = last
        if bid is not None:
            q["bid"] = partial["bestBid"] = bid
        if ask is not None:
            q["ask"] = partial["bestAsk"] = ask
        stamp = hub_ts(self.now())
        partial["lastUpdated"] = partial["timestamp"] = stamp
        self.push("market", "GatewayQuote", [cid, _normal(partial)], ("quotes", cid))
        for order in list(self.orders.values()):
            if order["contractId"] == cid and order["status"] == 1:
                self._check_cross(order)

    def _check_cross(self, order: dict) -> None:
        last = self.quotes[order["contractId"]]["last"]
        buy = order["side"] == 0
        if order["type"] == 1:
            lim = order["limitPrice"]
            if (buy and last <= lim) or (not buy and last >= lim):
                self._fill(order, lim)
        elif order["type"] == 4:
            stp = order["stopPrice"]
            if (buy and last >= stp) or (not buy and last <= stp):
                self._fill(order, last)

    # ------------------------------------------------------------ fills

    def _fill(self, order: dict, price: float) -> None:
        aid, cid, size = order["accountId"], order["contractId"], order["size"]
        c = self.contracts[cid]
        point = c["tickValue"] / c["tickSize"]
        signed = size if order["side"] == 0 else -size
        key = (aid, cid)
        pos = self.positions.get(key)
        stamp = hub_ts(self.now())
        if pos is None or pos["qty"] == 0:
            self._next_position += 1
            pos = {"id": self._next_position, "qty": 0, "avg": 0.0, "created": stamp}
            self.positions[key] = pos
        old = pos["qty"]
        pnl: float | None = None
        if old and (old > 0) != (signed > 0):
            closed = min(abs(old), abs(signed))
            pnl = round((price - pos["avg"]) * closed * (1 if old > 0 else -1) * point, 2)
        new = old + signed
        if new == 0:
            pos["avg"] = 0.0
        elif old == 0 or (old > 0) != (new > 0):
            pos["avg"] = price  # opened, or flipped through zero
        elif (old > 0) == (signed > 0):
            pos["avg"] = (pos["avg"] * abs(old) + price * abs(signed)) / abs(new)
        pos["qty"], pos["was"] = new, old
        fee_side, comm_side = COSTS[c["symbolId"]]
        fees, comms = round(fee_side * size, 2), round(comm_side * size, 2)
        self._next_trade += 1
        trade = {"id": self._next_trade, "accountId": aid, "contractId": cid,
                 "creationTimestamp": stamp, "price": price, "profitAndLoss": pnl,
                 "fees": fees, "commissions": comms, "side": order["side"], "size": size,
                 "voided": False, "orderId": order["id"]}
        self.trades.append(trade)
        acct = self.accounts[aid]
        acct["balance"] = round(acct["balance"] + (pnl or 0.0) - fees - comms, 2)
        self._push_trade(trade)
        order.update(status=2, fillVolume=size, filledPrice=price,
                     updateTimestamp=hub_ts(self.now()))
        self._push_order(order)
        wire_pos = dict(pos)
        self._push_position(aid, cid, wire_pos)
        if new == 0:
            del self.positions[key]
        self._push_account(aid)

    def push_voided_trade(self, aid: int, cid: str, price: float, size: int, side: int) -> dict:
        """A busted trade: recorded and pushed with voided true, moving nothing."""
        self._next_trade += 1
        trade = {"id": self._next_trade, "accountId": aid, "contractId": cid,
                 "creationTimestamp": hub_ts(self.now()), "price": price, "profitAndLoss": None,
                 "fees": 0.0, "commissions": 0.0, "side": side, "size": size, "voided": True,
                 "orderId": self._next_order}
        self._next_order += 1
        self.trades.append(trade)
        self._push_trade(trade)
        return trade

    def void_trade(self, trade_id: int) -> None:
        """The broker busts a trade after the fact: re-pushed (action 1) with voided true."""
        for trade in self.trades:
            if trade["id"] == trade_id:
                trade["voided"] = True
                self._push_trade(trade, action=1)
                return
        raise KeyError(trade_id)


def _normal(data: dict) -> dict:
    """A hub payload: nulls omitted, integral numbers as integers (as the live hubs send)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out[k] = v
    return out
