"""`ProjectXBroker`: the ProjectX Gateway as a live source of section-1 events and the target
of enforcement (CONTRACT §9), behind the broker interface (riskterm.brokers.base):
`--source projectx` (riskterm.brokers.projectx.adapter makes it from the environment).

Life cycle: `await start()` logs in (AuthError on a refused key: exit 2), reads the accounts to
watch and resolves the instruments, then keeps both hubs up. On every connect and reconnect of
the user hub it subscribes the watched accounts and then re-reads the broker's view over REST
before live pushes are trusted again: the trades since the last one applied (on the first
connect: since `day_start()`) as fills, each trade once; how the orders it knew and no longer
sees ended (filled, cancelled, rejected); then a Snapshot of the accounts, open positions and
working orders, which the engine takes as the whole truth. A view that cannot be mapped whole is
no snapshot: the link is dropped and the reconnect reads it again. A lost user hub writes
`connection` disconnected with the reason; the re-sync after the reconnect writes `connection`
connected. The market hub re-subscribes its quotes after every reconnect.
Hub pushes and re-syncs go through one queue, so events come out in the order they happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from riskterm.brokers.base import (
    BrokerError,
    BrokerStartError,
    CancelOrder,
    Command,
    Flatten,
    LimitOrder,
    Link,
    MarketOrder,
    OrderNotWorking,
    OutcomeUnknown,
    Snapshot,
    StopOrder,
)
from riskterm.brokers.projectx.errors import (
    AuthError,
    BusinessError,
    GatewayUnavailable,
    ProjectXError,
)
from riskterm.brokers.projectx.mapping import ORDER_TYPES as PX_ORDER_TYPES
from riskterm.brokers.projectx.mapping import SIDES, Mapper, MapResult
from riskterm.brokers.projectx.problems import Problem, ProblemLog
from riskterm.brokers.projectx.rest import ProjectXRest
from riskterm.brokers.projectx.settings import ProjectXSettings
from riskterm.brokers.projectx.signalr import HubClient

USER_PUSHES = ("GatewayUserAccount", "GatewayUserOrder", "GatewayUserPosition",
               "GatewayUserTrade")
ORDER_TYPES = {"limit": 1, "market": 2, "stop": 4}
RESYNC_OVERLAP = 5.0  # seconds of trades read again before the last one applied
_MONTH = re.compile(r"^(?P<root>[A-Z0-9]+?)[FGHJKMNQUVXZ]\d{1,2}$")


@dataclass(frozen=True, slots=True)
class ActionResult:
    status: Literal["ok", "skipped"]
    detail: str


def _fields(ev: dict[str, Any]) -> dict[str, Any]:
    """An event's fields as a Snapshot lists them (without type and ts)."""
    return {k: v for k, v in ev.items() if k not in ("type", "ts")}


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ResyncIncomplete(ProjectXError):
    """Part of the broker's view could not be mapped: no snapshot is taken from it."""


def _tag() -> str:
    """A customTag unique to one action: the Gateway refuses a second order with it, so a
    request retried after a lost answer can never place the order twice."""
    return f"riskterm-{uuid.uuid4().hex[:20]}"


class ProjectXBroker:
    name = "projectx"
    title = "ProjectX"
    executes = True
    live = True
    flattens = True  # Flatten is the Gateway's: cancel all, close all, re-read, finish

    def __init__(
        self,
        settings: ProjectXSettings,
        *,
        accounts: Iterable[str] | Callable[[str], bool] | None = None,
        instruments: Iterable[str] = (),
        day_start: Callable[[], float] | None = None,
        on_problem: Callable[[Problem], None] | None = None,
        rest: ProjectXRest | None = None,
        hub_options: dict[str, Any] | None = None,
        now: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.rest = rest or ProjectXRest(settings)
        self.problems = ProblemLog(on_problem)
        self.mapper = Mapper(now=now, problems=self.problems)
        self._now = now
        self._names = set(accounts) if accounts is not None and not callable(accounts) else None
        self._watch: Callable[[str], bool] | None = (
            accounts if callable(accounts) else (self._names.__contains__ if self._names
                                                 is not None else None))
        self._instruments = list(instruments)
        self._day_start = day_start or (lambda: now() - 86400.0)
        self.account_ids: dict[str, int] = {}  # watched account name → id
        self.quote_contracts: set[str] = set()
        self._queue: asyncio.Queue[tuple[str, Any, Any]] = asyncio.Queue()
        self._out: asyncio.Queue[dict[str, Any] | Snapshot] = asyncio.Queue()
        opts = {"redact": self.rest.redact, "problems": self.problems,
                "on_unauthorized": self.rest.relogin, **(hub_options or {})}
        self.user_hub = HubClient(settings.user_hub, self.rest.ensure_token, name="user", **opts)
        self.market_hub = HubClient(settings.market_hub, self.rest.ensure_token, name="market",
                                    **opts)
        for target in USER_PUSHES:
            self.user_hub.on(target, lambda args, t=target: self._queue.put_nowait(
                ("user", t, args)))
        for target in ("GatewayQuote", "GatewayTrade", "GatewayDepth"):
            self.market_hub.on(target, lambda args, t=target: self._queue.put_nowait(
                ("market", t, args)))
        self.user_hub.on_connected = self._user_connected
        self.user_hub.on_disconnected = self._user_disconnected
        self.market_hub.on_connected = self._market_connected
        self.connected = False
        self._link = Link("connecting")
        self._fails_at_drop = 0
        self._consumer: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ life cycle

    async def start(self) -> None:
        """Logs in and reads the accounts; BrokerStartError (exit 2) for a refused key, no
        active account, or none of the accounts to watch."""
        try:
            await self.rest.login()
            accounts = await self.rest.search_accounts(only_active=True)
        except AuthError as exc:
            raise BrokerStartError(f"ProjectX refused the login: {exc}") from None
        except ProjectXError as exc:
            raise BrokerStartError(f"ProjectX could not be reached: {exc}") from None
        for a in accounts:
            self.mapper.learn_account(a)
        names = {a["name"]: a["id"] for a in accounts
                 if isinstance(a.get("name"), str) and isinstance(a.get("id"), int)}
        if not names:
            raise BrokerStartError("ProjectX reports no active account for this user")
        if self._names is not None:
            missing = sorted(self._names - names.keys())
            if missing and len(missing) == len(self._names):
                raise BrokerStartError("ProjectX reports none of the accounts to watch: "
                                       + ", ".join(missing))
        if self._watch is not None:
            watched = {n: i for n, i in names.items() if self._watch(n)}
            if not watched:
                raise BrokerStartError("--accounts matches none of the ProjectX accounts ("
                                       + ", ".join(sorted(names)) + ")")
            names = watched
        self.account_ids = names
        for symbol in self._instruments:
            await self._resolve_instrument(symbol)
        self._consumer = asyncio.create_task(self._consume(), name="projectx-consumer")
        self.user_hub.start()
        self.market_hub.start()

    async def close(self) -> None:
        await self.user_hub.stop()
        await self.market_hub.stop()
        if self._consumer is not None:
            self._consumer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._consumer
        await self.rest.aclose()

    async def events(self) -> AsyncIterator[dict[str, Any] | Snapshot]:
        """Section-1 event dicts and, on every connect, a Snapshot, in the order they
        happened, for as long as the broker runs."""
        while True:
            yield await self._out.get()

    def instrument_specs(self) -> dict[str, dict[str, float]]:
        return self.mapper.instrument_specs()

    def instrument(self, symbol: str) -> tuple[float, float] | None:
        """(tick size, tick value) of a contract, as the broker states it."""
        return self.mapper.spec(symbol)

    @property
    def link(self) -> Link:
        link = self._link
        if link.state in ("connecting", "reconnecting"):
            link.attempt = max(0, self.user_hub.failed_attempts - self._fails_at_drop)
            if self.user_hub.last_reason:
                link.reason = self.rest.redact(self.user_hub.last_reason)
        return link

    # ------------------------------------------------------------ hubs

    async def _user_connected(self) -> None:
        await self.user_hub.invoke("SubscribeAccounts")
        for aid in self.account_ids.values():
            for method in ("SubscribeOrders", "SubscribePositions", "SubscribeTrades"):
                await self.user_hub.invoke(method, aid)
        self._queue.put_nowait(("resync", None, None))

    def _user_disconnected(self, reason: str) -> None:
        self._queue.put_nowait(("disconnected", reason, None))

    async def _market_connected(self) -> None:
        for cid in sorted(self.quote_contracts):
            await self.market_hub.invoke("SubscribeContractQuotes", cid)

    async def _watch_quotes(self, cid: str) -> None:
        if cid in self.quote_contracts:
            return
        self.quote_contracts.add(cid)
        if self.market_hub.connected:
            try:
                await self.market_hub.invoke("SubscribeContractQuotes", cid)
            except Exception as exc:  # the next reconnect subscribes it again
                self.problems.add(Problem("quote_subscribe_failed", self.rest.redact(
                    f"subscribing quotes of {cid[:64]} failed: {exc}")))

    # ------------------------------------------------------------ the one queue

    async def _consume(self) -> None:
        while True:
            kind, a, b = await self._queue.get()
            try:
                if kind == "user":
                    await self._user_push(a, b)
                elif kind == "market":
                    self._emit(self.mapper.market_event(a, b))
                elif kind == "resync":
                    await self._resync()
                elif kind == "disconnected" and self.connected:
                    self.connected = False
                    self._fails_at_drop = self.user_hub.failed_attempts
                    self._link.set("reconnecting", a)
                    self._out.put_nowait({"type": "connection", "ts": self._now(),
                                          "status": "disconnected", "reason": a})
            except ProjectXError as exc:
                # a re-sync that failed: drop the link so the reconnect re-reads everything
                self.problems.add(Problem("resync_failed", f"re-reading ProjectX failed: {exc}"))
                await self._drop_user_hub()
            except Exception as exc:  # never let one payload end the broker
                self.problems.add(Problem("broker_internal",
                                          f"handling a ProjectX {kind} failed: "
                                          f"{type(exc).__name__}: {exc}"))

    async def _drop_user_hub(self) -> None:
        ws = self.user_hub._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()

    async def _user_push(self, target: str, args: Any) -> None:
        entities = self.mapper.user_entities(target, args)
        if isinstance(entities, Problem):
            return
        await self._resolve_contracts(entities)
        result = self.mapper.user_event(target, args)
        # SubscribeAccounts pushes every account of the user: only the watched ones go on
        result.events = [ev for ev in result.events if ev.get("account") in self.account_ids]
        self._emit(result)
        for ev in result.events:
            if ev["type"] in ("order_placed", "position") and ev.get("qty"):
                cid = self._contract_id(ev["symbol"])
                if cid:
                    await self._watch_quotes(cid)

    async def _resolve_contracts(self, entities: list[Any]) -> None:
        for cid in sorted(self.mapper.unknown_contracts(entities)):
            try:
                self.mapper.learn_contract(await self.rest.contract_by_id(cid))
            except ProjectXError as exc:
                self.problems.add(Problem("contract_unresolved",
                                          f"ProjectX could not name contract {cid[:64]}: {exc}"))

    def _emit(self, result: MapResult) -> None:
        for ev in result.events:
            self._out.put_nowait(ev)

    # ------------------------------------------------------------ re-sync

    async def _resync(self) -> None:
        """The broker's view, re-read before live pushes are trusted again."""
        accounts = await self.rest.search_accounts(only_active=True)
        out: list[dict[str, Any]] = []
        snap = Snapshot(self._now())
        for a in accounts:
            if a.get("id") in self.account_ids.values():
                result = self._whole(self.mapper.account(a), "account")
                snap.accounts += [_fields(ev) for ev in result.events]
        for name, aid in self.account_ids.items():
            out += await self._resync_account(name, aid, snap)
        for ev in out:
            self._out.put_nowait(ev)
        self._out.put_nowait(snap)
        self.connected = True
        self._link.set("connected")
        self._out.put_nowait({"type": "connection", "ts": self._now(), "status": "connected"})

    def _whole(self, result: MapResult, what: str) -> MapResult:
        if result.problems:  # reported already (ProblemLog); this view is not the whole truth
            raise ResyncIncomplete(f"a {what} of the broker's view could not be mapped: "
                                   + result.problems[0].sentence)
        return result

    async def _resync_account(self, name: str, aid: int, snap: Snapshot) -> list[dict[str, Any]]:
        """The fills of the gap and how vanished orders ended (returned, to go before the
        snapshot), and the account's positions and working orders (added to `snap`)."""
        m = self.mapper
        positions = await self.rest.open_positions(aid)
        orders = await self.rest.open_orders(aid)
        last = m.last_trade_ts.get(aid)
        start = last - RESYNC_OVERLAP if last is not None else self._day_start()
        trades = await self.rest.search_trades(aid, _iso(start))
        await self._resolve_contracts([*positions, *orders, *trades])
        out: list[dict[str, Any]] = []
        # trades first: an order that filled during a gap is gone from the open orders
        for t in sorted(trades, key=lambda t: (str(t.get("creationTimestamp")), t.get("id", 0))):
            out += m.trade(t).events  # a trade that cannot be mapped is reported, not applied
        held: set[str] = set()
        for p in positions:
            evs = self._whole(m.position(p), "position").events
            for ev in evs:
                if ev["qty"]:
                    snap.positions.append(_fields(ev))
                    held.add(ev["symbol"])
            if isinstance(p.get("contractId"), str):
                await self._watch_quotes(p["contractId"])
        for (a, cid), _qty in list(m.positions.items()):
            if a == aid and m.contract_name(cid) not in held:
                m.position({"accountId": aid, "contractId": cid, "size": 0})  # gone: forget it
        open_ids = set()
        for o in orders:
            self._whole(m.order(o), "working order")  # the mapper's order state
            oid = o.get("id")
            if isinstance(oid, int) and oid in m.working:
                open_ids.add(oid)
                snap.orders.append(self._order_fields(name, o))
            if isinstance(o.get("contractId"), str):
                await self._watch_quotes(o["contractId"])
        gone = [oid for oid, (a, _c, _s) in m.working.items() if a == aid and oid not in open_ids]
        if gone:
            # how did they end? filled (the trades above said so), cancelled, or rejected
            final = {o.get("id"): o for o in await self.rest.search_orders(
                aid, _iso(min(start, self._day_start())))}
            for oid in gone:
                result = m.order(final[oid]) if oid in final else MapResult()
                if oid in m.working:  # not found, or still reported working: it is gone
                    del m.working[oid]
                    result = MapResult([{"type": "order_cancelled", "ts": self._now(),
                                         "account": name, "order_id": str(oid)}])
                out += result.events
        return out

    def _order_fields(self, account: str, o: dict[str, Any]) -> dict[str, Any]:
        """A working order as a Snapshot lists it (order_placed's fields), from a payload the
        mapper has just accepted."""
        _, cid, (size, price, stop) = self.mapper.working[o["id"]]
        fields: dict[str, Any] = {
            "account": account, "symbol": self.mapper.contract_name(cid) or cid,
            "order_id": str(o["id"]), "side": SIDES[o["side"]], "qty": size,
            "order_type": PX_ORDER_TYPES[o["type"]]}
        if price is not None:
            fields["price"] = price
        if stop is not None:
            fields["stop_price"] = stop
        return fields

    # ------------------------------------------------------------ instruments

    async def _resolve_instrument(self, symbol: str) -> None:
        """An `instruments` symbol (a root such as MNQ, or a contract such as MNQH26): the
        broker's active contract for it, learnt and watched for quotes."""
        try:
            found = await self.rest.search_contracts(symbol, live=False)
        except ProjectXError as exc:
            self.problems.add(Problem("instrument_unresolved",
                                      f"ProjectX could not resolve {symbol}: {exc}"))
            return
        exact = [c for c in found if c.get("name") == symbol]
        by_root = [c for c in found if isinstance(c.get("name"), str)
                   and (mt := _MONTH.match(c["name"])) and mt["root"] == symbol
                   and c.get("activeContract", True)]
        pick = (exact or by_root or [None])[0]
        if pick is None:
            self.problems.add(Problem("instrument_unresolved",
                                      f"ProjectX has no active contract for {symbol}"))
            return
        if self.mapper.learn_contract(pick) is None:
            self.quote_contracts.add(pick["id"])

    def _contract_id(self, symbol: str) -> str | None:
        for c in self.mapper.contracts.values():
            if c.name == symbol:
                return c.id
        return None

    # ------------------------------------------------------------ actions

    def submit(self, command: Command) -> Awaitable[str | None]:
        """The engine's command as the Gateway's calls (CONTRACT §9); the awaitable answers
        the broker's confirmation or raises BrokerError with its reason."""
        return self._execute(command)

    async def _execute(self, command: Command) -> str | None:
        if isinstance(command, CancelOrder):
            return (await self.cancel_order(command.account, command.order_id)).detail
        if isinstance(command, Flatten):
            return (await self.flatten(command.account)).detail
        if isinstance(command, MarketOrder):
            if command.intent == "close":
                return (await self.close_position(command.account, command.symbol)).detail
            return (await self.reduce_position(command.account, command.symbol,
                                               command.qty)).detail
        if isinstance(command, StopOrder | LimitOrder):
            stop = isinstance(command, StopOrder)
            oid = await self.place_order(
                command.account, command.symbol, command.side, command.qty,
                order_type="stop" if stop else "limit",
                price=None if stop else command.price,  # type: ignore[union-attr]
                stop_price=command.stop_price if stop else None,  # type: ignore[union-attr]
                tag=_tag())
            return f"order {oid} placed"
        raise BrokerError(f"ProjectX cannot carry out {type(command).__name__}")

    def _ids(self, account: str, symbol: str | None = None) -> tuple[int, str | None]:
        aid = self.account_ids.get(account)
        if aid is None:
            raise BrokerError(f"account {account} is not watched on ProjectX")
        if symbol is None:
            return aid, None
        cid = self._contract_id(symbol)
        if cid is None:
            raise BrokerError(f"ProjectX has no contract named {symbol}")
        return aid, cid

    async def cancel_order(self, account: str, order_id: str) -> ActionResult:
        aid, _ = self._ids(account)
        try:
            await self.rest.cancel_order(aid, int(order_id))
        except ValueError:
            raise BrokerError(f"order id {order_id} is not a ProjectX order id") from None
        except BusinessError as exc:
            if exc.code_name == "OrderNotFound":
                raise OrderNotWorking(str(exc)) from None
            raise BrokerError(str(exc)) from None
        except ProjectXError as exc:
            raise BrokerError(str(exc)) from None
        return ActionResult("ok", f"cancelled order {order_id}")

    async def cancel_orders(self, account: str, symbol: str | None = None) -> ActionResult:
        aid, cid = self._ids(account, symbol)
        try:
            orders = await self.rest.open_orders(aid)
        except ProjectXError as exc:
            raise BrokerError(str(exc)) from None
        done, errors = await self._cancel_all(aid, orders, cid)
        if errors:
            raise BrokerError("; ".join(errors))
        if not done:
            return ActionResult("skipped", "no working orders")
        return ActionResult("ok", "cancelled " + ", ".join(done))

    async def close_position(self, account: str, symbol: str) -> ActionResult:
        aid, cid = self._ids(account, symbol)
        assert cid is not None
        try:
            await self.rest.close_position(aid, cid)
        except BusinessError as exc:
            if exc.code_name == "PositionNotFound":
                return ActionResult("skipped", f"no position in {symbol}")
            raise BrokerError(str(exc)) from None
        except ProjectXError as exc:
            raise BrokerError(str(exc)) from None
        return ActionResult("ok", f"closed {symbol}")

    async def reduce_position(self, account: str, symbol: str, qty: int) -> ActionResult:
        aid, cid = self._ids(account, symbol)
        assert cid is not None
        try:
            await self.rest.partial_close_position(aid, cid, qty)
        except BusinessError as exc:
            if exc.code_name == "PositionNotFound":
                return ActionResult("skipped", f"no position in {symbol}")
            raise BrokerError(str(exc)) from None
        except GatewayUnavailable as exc:  # sent, no answer: it may have reduced already
            raise OutcomeUnknown(str(exc)) from None
        except ProjectXError as exc:
            raise BrokerError(str(exc)) from None
        return ActionResult("ok", f"reduced {symbol} by {qty}")

    async def place_order(
        self, account: str, symbol: str, side: Literal["buy", "sell"], qty: int, *,
        order_type: Literal["market", "limit", "stop"] = "market",
        price: float | None = None, stop_price: float | None = None, tag: str,
    ) -> str:
        """Places one order carrying `tag` as its customTag (unique to the action, so a
        retried request can never place it twice). Answers the broker's order id."""
        aid, cid = self._ids(account, symbol)
        assert cid is not None
        try:
            oid = await self.rest.place_order(
                aid, cid, type=ORDER_TYPES[order_type], side=0 if side == "buy" else 1,
                size=qty, limit_price=price, stop_price=stop_price, custom_tag=tag)
        except ProjectXError as exc:
            raise BrokerError(str(exc)) from None
        return str(oid)

    async def flatten(self, account: str) -> ActionResult:
        """Every working order cancelled and every position closed; then both re-read and
        whatever is left cancelled or closed once more. BrokerError names what stayed."""
        aid, _ = self._ids(account)
        cancelled: list[str] = []
        closed: list[str] = []
        errors: list[str] = []
        for attempt in (1, 2):
            try:
                orders = await self.rest.open_orders(aid)
                positions = await self.rest.open_positions(aid)
            except ProjectXError as exc:
                errors.append(str(exc))
                break
            if attempt == 2 and not orders and not positions:
                errors = []  # the second look found everything gone
                break
            errors = []
            done, errs = await self._cancel_all(aid, orders, None)
            cancelled += done
            errors += errs
            for p in positions:
                cid = p.get("contractId")
                if not isinstance(cid, str):
                    continue
                name = self.mapper.contract_name(cid) or p.get("contractDisplayName") or cid
                try:
                    await self.rest.close_position(aid, cid)
                    closed.append(str(name))
                except BusinessError as exc:
                    if exc.code_name != "PositionNotFound":
                        errors.append(f"closing {name}: {exc}")
                except ProjectXError as exc:
                    errors.append(f"closing {name}: {exc}")
        if errors:
            raise BrokerError("flatten left work undone: " + "; ".join(errors))
        if not cancelled and not closed:
            return ActionResult("skipped", "nothing to flatten")
        parts = []
        if closed:
            parts.append("closed " + ", ".join(dict.fromkeys(closed)))
        if cancelled:
            parts.append("cancelled " + ", ".join(dict.fromkeys(cancelled)))
        return ActionResult("ok", "; ".join(parts))

    async def _cancel_all(self, aid: int, orders: list[dict],
                          cid: str | None) -> tuple[list[str], list[str]]:
        done: list[str] = []
        errors: list[str] = []
        for o in orders:
            oid = o.get("id")
            if not isinstance(oid, int) or (cid is not None and o.get("contractId") != cid):
                continue
            try:
                await self.rest.cancel_order(aid, oid)
                done.append(str(oid))
            except BusinessError as exc:
                if exc.code_name != "OrderNotFound":
                    errors.append(f"cancelling order {oid}: {exc}")
            except ProjectXError as exc:
                errors.append(f"cancelling order {oid}: {exc}")
        return done, errors
