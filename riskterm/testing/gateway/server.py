"""The test gateway's wire: REST (`/api/...`) and the SignalR hubs (`/hubs/user`,
`/hubs/market`, each with `/negotiate`) on one aiohttp server bound to 127.0.0.1.

REST: JSON POST, Bearer tokens (JWTs with an exp claim), 401 with the JwtBearer header for a
bad or expired token, success:false with the Gateway's errorCodes, 429 beyond the rate limit
(per token), .NET-style decimals (`6065.250000000`) and 6-digit timestamps. Hubs: negotiate v0
and v1 (one-use ids: unknown → 404, reused → 409), `access_token` query or Bearer header, the
JSON handshake, `\\x1e` records, pings, Subscribe*/Unsubscribe* invocations with completions
(none for a non-blocking call), close messages. Every request is recorded.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from riskterm.testing.gateway.state import Faults, GatewayState, Refused, rest_ts

RS = "\x1e"
USERNAME = "trader@example.com"
API_KEY = "pxk_TEST+9f3c2b1a7e6d5c4b3a2f1e0d9c8b7a6f=="

USER_METHODS = {"SubscribeAccounts": 0, "UnsubscribeAccounts": 0,
                "SubscribeOrders": 1, "UnsubscribeOrders": 1,
                "SubscribePositions": 1, "UnsubscribePositions": 1,
                "SubscribeTrades": 1, "UnsubscribeTrades": 1}
MARKET_METHODS = {"SubscribeContractQuotes": 1, "UnsubscribeContractQuotes": 1,
                  "SubscribeContractTrades": 1, "UnsubscribeContractTrades": 1,
                  "SubscribeContractMarketDepth": 1, "UnsubscribeContractMarketDepth": 1}
PRICE_KEYS = {"price", "averagePrice", "limitPrice", "stopPrice", "filledPrice",
              "tickSize", "tickValue"}
MONEY_KEYS = {"fees", "commissions", "profitAndLoss", "balance"}
TS_KEYS = {"creationTimestamp", "updateTimestamp"}


@dataclass
class Recorded:
    kind: str  # "rest", "negotiate", "ws", "invoke"
    path: str
    body: Any = None
    status: int | None = None
    hub: str | None = None
    query: dict[str, str] = field(default_factory=dict)


class _Dec:
    """A decimal written with a fixed .NET scale."""

    def __init__(self, value: float, scale: int) -> None:
        self.text = f"{value:.{scale}f}"


def dotnet_json(obj: Any) -> str:
    if isinstance(obj, _Dec):
        return obj.text
    if isinstance(obj, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{dotnet_json(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, list):
        return "[" + ",".join(dotnet_json(v) for v in obj) + "]"
    return json.dumps(obj)


def rest_view(entity: dict) -> dict:
    """An entity as REST prints it: decimals with their scale, 6-digit timestamps."""
    out: dict[str, Any] = {}
    for k, v in entity.items():
        if isinstance(v, int | float) and not isinstance(v, bool):
            if k in PRICE_KEYS:
                v = _Dec(v, 9)
            elif k in MONEY_KEYS:
                v = _Dec(v, 4)
        elif isinstance(v, str) and k in TS_KEYS:
            v = rest_ts(v)
        out[k] = v
    return out


def make_jwt(exp: float, sub: str) -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    sig = secrets.token_urlsafe(24)
    return f"{b64({'alg': 'HS256', 'typ': 'JWT'})}.{b64({'sub': sub, 'exp': int(exp)})}.{sig}"


class _Conn:
    """One hub connection: its subscriptions and an ordered outbox."""

    def __init__(self, hub: str, ws: web.WebSocketResponse) -> None:
        self.hub, self.ws = hub, ws
        self.subs: set[tuple] = set()
        self.outbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.last_in = time.monotonic()

    def send(self, text: str) -> None:
        self.outbox.put_nowait(text)


class TestGateway:
    __test__ = False  # not a pytest class

    def __init__(self, *, token_lifetime: float = 86400.0, ping_interval: float = 15.0,
                 client_timeout: float = 30.0) -> None:
        self.faults = Faults()
        self.state = GatewayState(self.faults)
        self.state.push = self._push
        self.token_lifetime = token_lifetime
        self.ping_interval, self.client_timeout = ping_interval, client_timeout
        self.tokens: dict[str, float] = {}  # token -> exp
        self.requests: list[Recorded] = []
        self.conns: list[_Conn] = []
        self.pushed: list[tuple[str, str, list]] = []  # every push sent (hub, target, args)
        # called with each REST request as it arrives, before it is answered (the broker
        # benchmark timestamps enforcement requests here)
        self.on_request: Callable[[Recorded], None] | None = None
        self.hub_connects: dict[str, int] = {"user": 0, "market": 0}
        self._negotiated: dict[str, bool] = {}  # id -> used
        self._calls: dict[str, deque[float]] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> TestGateway:
        app = web.Application()
        app.router.add_post("/api/{endpoint:.+}", self._rest)
        app.router.add_post("/hubs/{hub}/negotiate", self._negotiate)
        app.router.add_get("/hubs/{hub}", self._hub)
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5,
                                     access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def stop(self) -> None:
        for conn in list(self.conns):
            conn.send(None)
            with contextlib.suppress(Exception):
                await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, **extra: str) -> dict[str, str]:
        return {"PROJECTX_USERNAME": USERNAME, "PROJECTX_API_KEY": API_KEY,
                "PROJECTX_API_URL": self.url, "PROJECTX_USER_HUB": f"{self.url}/hubs/user",
                "PROJECTX_MARKET_HUB": f"{self.url}/hubs/market", **extra}

    # ------------------------------------------------------------ controls

    async def expire_tokens(self, *, close_hubs: bool = False) -> None:
        """Every token stops working; with `close_hubs` the open hub connections end too
        (a close message saying so), else they stay open as the facts file assumes."""
        self.tokens.clear()
        if close_hubs:
            await self.drop_hubs(error="Unauthorized: the access token expired")

    def quote(self, contract_id: str, last: float, bid: float | None = None,
              ask: float | None = None) -> None:
        self.state.move(contract_id, last, bid, ask)

    def refuse_hubs(self, seconds: float) -> None:
        self.faults.refuse_hubs_until = time.monotonic() + seconds

    async def drop_hubs(self, hub: str | None = None, *, close_message: bool = True,
                        allow_reconnect: bool = True, error: str = "Connection reset") -> int:
        """Ends every open hub connection (of `hub`), with or without a close message."""
        n = 0
        for conn in list(self.conns):
            if hub is not None and conn.hub != hub:
                continue
            if close_message:
                conn.send(json.dumps({"type": 7, "error": error,
                                      "allowReconnect": allow_reconnect}) + RS)
            conn.send(None)
            n += 1
        return n

    def send_raw(self, hub: str, text: str) -> None:
        """Writes `text` as it is (one WebSocket frame) to every connection of `hub`."""
        for conn in self.conns:
            if conn.hub == hub:
                conn.send(text)

    def requests_to(self, endpoint: str) -> list[Recorded]:
        return [r for r in self.requests if r.kind == "rest" and r.path == endpoint]

    def invocations(self, hub: str | None = None) -> list[Recorded]:
        return [r for r in self.requests if r.kind == "invoke" and (hub is None or r.hub == hub)]

    def subscriptions(self, hub: str) -> set[tuple]:
        out: set[tuple] = set()
        for conn in self.conns:
            if conn.hub == hub:
                out |= conn.subs
        return out

    # ------------------------------------------------------------ pushes

    def _push(self, hub: str, target: str, args: list, key: tuple) -> None:
        if self.faults.gap:
            return
        text = json.dumps({"type": 1, "target": target, "arguments": args}) + RS
        sent = False
        for conn in self.conns:
            if conn.hub == hub and key in conn.subs:
                conn.send(text)
                sent = True
        if sent:
            self.pushed.append((hub, target, args))

    # ------------------------------------------------------------ auth

    def _token_of(self, request: web.Request) -> str | None:
        auth = request.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else request.query.get("access_token")
        if token and self.tokens.get(token, 0) > time.time():
            return token
        return None

    def _issue(self) -> str:
        token = make_jwt(time.time() + self.token_lifetime, USERNAME)
        self.tokens[token] = time.time() + self.token_lifetime
        return token

    @staticmethod
    def _unauthorized() -> web.Response:
        return web.Response(status=401,
                            headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})

    def _rate_limited(self, key: str, endpoint: str) -> bool:
        limit, window = (50, 30.0) if endpoint.startswith("History/") else self.faults.rate_limit
        calls = self._calls.setdefault(f"{key}:{endpoint.startswith('History/')}", deque())
        now = time.monotonic()
        while calls and calls[0] <= now - window:
            calls.popleft()
        if len(calls) >= limit:
            return True
        calls.append(now)
        return False

    # ------------------------------------------------------------ REST

    async def _rest(self, request: web.Request) -> web.StreamResponse:
        endpoint = request.match_info["endpoint"]
        raw = await request.read()
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = None
        rec = Recorded("rest", endpoint, body)
        self.requests.append(rec)
        if self.on_request is not None:
            self.on_request(rec)
        resp = await self._answer(request, endpoint, body)
        rec.status = resp.status
        return resp

    async def _answer(self, request: web.Request, endpoint: str, body: Any) -> web.Response:
        f = self.faults
        if f.take("rest_timeout", endpoint):
            await asyncio.sleep(f.stall_seconds)
        if f.take("rest_5xx", endpoint):
            return web.Response(status=503, text="Service Unavailable")
        if f.take("rest_429", endpoint):
            headers = {"Retry-After": f.retry_after} if f.retry_after else {}
            return web.Response(status=429, headers=headers)
        if not isinstance(body, dict):
            return web.json_response({"status": 400, "title": "One or more validation errors "
                                      "occurred."}, status=400)
        body = {k.lower(): v for k, v in body.items()}  # System.Text.Json web defaults
        token = None
        if endpoint != "Auth/loginKey":
            token = self._token_of(request)
            if token is None:
                return self._unauthorized()
            if self._rate_limited(token, endpoint):
                return web.Response(status=429)
        try:
            data = self._call(endpoint, body, token)
        except Refused as r:
            data = {"success": False, "errorCode": r.code, "errorMessage": r.message}
        except KeyError:
            return web.Response(status=404)
        data = {**data, **({"success": True, "errorCode": 0, "errorMessage": None}
                           if "success" not in data else {})}
        return web.Response(text=dotnet_json(data), content_type="application/json")

    def _call(self, endpoint: str, b: dict, token: str | None) -> dict:
        s = self.state
        if endpoint == "Auth/loginKey":
            if (self.faults.refuse_login or b.get("username") != USERNAME
                    or b.get("apikey") != API_KEY):
                raise Refused(3, "Invalid credentials.")
            return {"token": self._issue()}
        if endpoint == "Auth/validate":
            return {"newToken": self._issue()}
        if endpoint == "Account/search":
            only = b.get("onlyactiveaccounts", True)
            return {"accounts": [rest_view(a) for a in s.accounts.values()
                                 if not only or a["canTrade"] or a["isVisible"]]}
        if endpoint == "Contract/search":
            text = str(b.get("searchtext") or "").upper()
            return {"contracts": [rest_view(c) for c in s.contracts.values()
                                  if text in c["name"] or text in c["symbolId"]]}
        if endpoint == "Contract/searchById":
            c = s.contracts.get(b.get("contractid"))
            if c is None:
                raise Refused(1, "Contract not found.")
            return {"contract": rest_view(c)}
        if endpoint == "Position/searchOpen":
            s._account(b.get("accountid"))
            return {"positions": [rest_view(p) for p in s.open_positions(b["accountid"])]}
        if endpoint == "Order/searchOpen":
            s._account(b.get("accountid"))
            return {"orders": [rest_view(o) for o in s.open_orders(b["accountid"])]}
        if endpoint in ("Order/search", "Trade/search"):
            aid = b.get("accountid")
            s._account(aid)
            start, end = b.get("starttimestamp"), b.get("endtimestamp")
            items = s.orders.values() if endpoint == "Order/search" else s.trades
            key = "orders" if endpoint == "Order/search" else "trades"
            return {key: [rest_view(i) for i in items if i["accountId"] == aid
                          and _within(i["creationTimestamp"], start, end)]}
        if endpoint == "Order/place":
            oid = s.place(b.get("accountid"), b.get("contractid"), b.get("type"),
                          b.get("side"), b.get("size"), limit=b.get("limitprice"),
                          stop=b.get("stopprice"), tag=b.get("customtag"))
            return {"orderId": oid}
        if endpoint == "Order/cancel":
            s.cancel(b.get("accountid"), b.get("orderid"))
            return {}
        if endpoint == "Position/closeContract":
            s.close(b.get("accountid"), b.get("contractid"))
            return {}
        if endpoint == "Position/partialCloseContract":
            s.close(b.get("accountid"), b.get("contractid"), b.get("size"))
            return {}
        raise KeyError(endpoint)

    # ------------------------------------------------------------ hubs

    def _hub_name(self, request: web.Request) -> str:
        hub = request.match_info["hub"]
        if hub not in ("user", "market"):
            raise web.HTTPNotFound()
        return hub

    async def _negotiate(self, request: web.Request) -> web.Response:
        hub = self._hub_name(request)
        rec = Recorded("negotiate", request.path, hub=hub, query=dict(request.query))
        self.requests.append(rec)
        if time.monotonic() < self.faults.refuse_hubs_until:
            rec.status = 503
            return web.Response(status=503)
        if self._token_of(request) is None:
            rec.status = 401
            return self._unauthorized()
        conn_id = secrets.token_urlsafe(16)
        transports = [{"transport": "WebSockets", "transferFormats": ["Text", "Binary"]}]
        if request.query.get("negotiateVersion") == "1":
            token = secrets.token_urlsafe(16)
            self._negotiated[token] = False
            data = {"negotiateVersion": 1, "connectionId": conn_id, "connectionToken": token,
                    "availableTransports": transports}
        else:
            self._negotiated[conn_id] = False
            data = {"negotiateVersion": 0, "connectionId": conn_id,
                    "availableTransports": transports}
        rec.status = 200
        return web.json_response(data)

    async def _hub(self, request: web.Request) -> web.StreamResponse:
        hub = self._hub_name(request)
        query = {k: ("<token>" if k == "access_token" else v) for k, v in request.query.items()}
        rec = Recorded("ws", request.path, hub=hub, query=query)
        self.requests.append(rec)
        if time.monotonic() < self.faults.refuse_hubs_until:
            rec.status = 503
            return web.Response(status=503)
        if self._token_of(request) is None:
            rec.status = 401
            return self._unauthorized()
        ident = request.query.get("id")
        if ident is not None:
            if ident not in self._negotiated:
                rec.status = 404
                return web.Response(status=404, text="No Connection with that ID")
            if self._negotiated[ident]:
                rec.status = 409
                return web.Response(status=409)
            self._negotiated[ident] = True
        ws = web.WebSocketResponse(autoping=True, compress=False, heartbeat=None)
        await ws.prepare(request)
        rec.status = 101
        conn = _Conn(hub, ws)
        try:
            if not await self._handshake(ws):
                return ws
            self.hub_connects[hub] += 1
            self.conns.append(conn)
            writer = asyncio.create_task(self._writer(conn))
            pinger = asyncio.create_task(self._pinger(conn))
            try:
                await self._reader(conn)
            finally:
                pinger.cancel()
                conn.send(None)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(writer, 2)
        finally:
            if conn in self.conns:
                self.conns.remove(conn)
            await ws.close()
        return ws

    async def _handshake(self, ws: web.WebSocketResponse) -> bool:
        try:
            msg = await ws.receive(timeout=5)
        except TimeoutError:
            return False
        if msg.type != WSMsgType.TEXT or not msg.data.endswith(RS):
            return False
        try:
            req = json.loads(msg.data[:-1].split(RS)[0])
        except ValueError:
            req = None
        if not isinstance(req, dict) or req.get("protocol") != "json" or req.get("version") != 1:
            await ws.send_str(json.dumps({"error": "Requested protocol is not available."}) + RS)
            return False
        await ws.send_str("{}" + RS)
        return True

    async def _writer(self, conn: _Conn) -> None:
        while True:
            text = await conn.outbox.get()
            if text is None:
                await conn.ws.close()
                return
            while self.faults.mute_hubs:
                await asyncio.sleep(0.02)
            await conn.ws.send_str(text)

    async def _pinger(self, conn: _Conn) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            if not self.faults.mute_hubs:
                conn.send('{"type":6}' + RS)
            if time.monotonic() - conn.last_in > self.client_timeout:
                conn.send(None)  # ASP.NET closes a connection whose client went silent
                return

    async def _reader(self, conn: _Conn) -> None:
        buffer = ""
        async for msg in conn.ws:
            if msg.type != WSMsgType.TEXT:
                return
            conn.last_in = time.monotonic()
            buffer += msg.data
            *records, buffer = buffer.split(RS)
            for record in records:
                try:
                    m = json.loads(record)
                except ValueError:
                    return  # ASP.NET drops a connection that sends garbage
                if m.get("type") == 1:
                    self._invoke(conn, m)
                elif m.get("type") == 7:
                    return

    def _invoke(self, conn: _Conn, m: dict) -> None:
        target, args, inv_id = m.get("target"), m.get("arguments") or [], m.get("invocationId")
        self.requests.append(Recorded("invoke", str(target), args, hub=conn.hub))
        methods = USER_METHODS if conn.hub == "user" else MARKET_METHODS
        error = None
        if target not in methods:
            error = f"Failed to invoke '{target}' because it does not exist."
        elif len(args) != methods[target]:
            error = (f"Failed to invoke '{target}' due to an error on the server. "
                     f"InvalidDataException: Invocation provides {len(args)} argument(s) but "
                     f"target expects {methods[target]}.")
        elif args and not self._arg_ok(conn.hub, args[0]):
            error = (f"Failed to invoke '{target}' due to an error on the server. "
                     "InvalidDataException: Error binding arguments.")
        else:
            key = _sub_key(target, args)
            if target.startswith("Subscribe"):
                conn.subs.add(key)
            else:
                conn.subs.discard(key)
        if inv_id is not None:  # non-blocking: no answer, not even for an error
            out: dict[str, Any] = {"type": 3, "invocationId": inv_id}
            if error:
                out["error"] = error
            conn.send(json.dumps(out) + RS)
        if not error and target.startswith("Subscribe") and self.faults.snapshot_on_subscribe:
            for snap_target, snap_args in self.state.snapshot(_sub_key(target, args)):
                conn.send(json.dumps({"type": 1, "target": snap_target,
                                      "arguments": snap_args}) + RS)

    @staticmethod
    def _arg_ok(hub: str, arg: Any) -> bool:
        if hub == "user":
            return isinstance(arg, int) and not isinstance(arg, bool)
        return isinstance(arg, str)


def _sub_key(target: str, args: list) -> tuple:
    name = target.removeprefix("Unsubscribe").removeprefix("Subscribe")
    table: dict[str, Callable[[], tuple]] = {
        "Accounts": lambda: ("accounts",),
        "Orders": lambda: ("orders", args[0]),
        "Positions": lambda: ("positions", args[0]),
        "Trades": lambda: ("trades", args[0]),
        "ContractQuotes": lambda: ("quotes", args[0]),
        "ContractTrades": lambda: ("market_trades", args[0]),
        "ContractMarketDepth": lambda: ("depth", args[0]),
    }
    return table[name]()


def _within(stamp: str, start: Any, end: Any) -> bool:
    from riskterm.brokers.projectx.mapping import parse_ts

    t = parse_ts(stamp)
    try:
        if isinstance(start, str) and t < parse_ts(start):
            return False
        if isinstance(end, str) and t > parse_ts(end):
            return False
    except ValueError:
        return True
    return True
