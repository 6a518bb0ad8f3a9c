"""A SignalR client (JSON hub protocol over WebSocket) for the ProjectX user and market hubs.

Why a small client of our own on `websockets` and not pysignalr (what project-x-py uses) or
signalrcore: the choice was made on reconnect behaviour and control, read in pysignalr 1.3.3's
`transport/websocket.py` and `client.py`:

- pysignalr negotiates once, then reconnects with `async for conn in websockets.connect(url)`
  on the URL of that first negotiation: the `id` in it is stale after a drop (the server
  answers 404 for an unknown id) and the token in it is never renewed. The delays are
  websockets' own, not the 1 s doubling to 30 s riskterm promises, and nothing tells the
  caller when a retry happens.
- Failed negotiations count down a retry budget (10), after which `run()` raises: riskterm
  must retry for as long as it runs.
- A frame that is not JSON raises out of the decoder, and a close message with an error raises
  `ServerError`: both end `run()` instead of being counted and survived.
- There is no SignalR server timeout (no message for 30 s → reconnect): only websockets' own
  ping, which notices a dead TCP peer but not a hub that stopped sending.
- It pins `websockets<17` and pulls in aiohttp for the one negotiate POST.

This client is ~300 lines with exactly the behaviour riskterm needs: its own reconnect loop
(1 s doubling to 30 s, reset after a good connect, forever until `stop()`), a fresh token
and a fresh negotiation (optional: ProjectX's docs skip it) on every attempt, the token as the
`access_token` query parameter, the handshake, `\\x1e` record framing, a ping every 15 s and a
30 s server timeout, close messages (`error`, `allowReconnect`), completions matched by
`invocationId`, non-blocking invocations, one callback per target called in arrival order,
and an `on_connected` hook (re-subscribe) after every connect. Malformed input is a `Problem`
(counted per kind, reported once), never an exception out of the loop. No error text holds
the token.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from riskterm.brokers.projectx.problems import Problem, ProblemLog

RS = "\x1e"  # the record separator that ends every SignalR JSON message
HANDSHAKE = '{"protocol":"json","version":1}' + RS
PING = '{"type":6}' + RS
MAX_BUFFER = 1 << 22  # an unterminated record longer than this is dropped

# websockets logs the request line (with the access_token query) at DEBUG: never enable it
_WS_LOG = logging.getLogger("riskterm.brokers.projectx.websockets")
_WS_LOG.setLevel(logging.WARNING)

Callback = Callable[[list[Any]], None]


class HubError(Exception):
    """A hub call failed; the text never holds the token."""


class HubNotConnected(HubError):
    pass


class HubInvocationError(HubError):
    """The server answered an invocation with an error, or not in time."""


class _SessionEnd(Exception):
    """Ends one connection with a reason (internal)."""


def http_url(url: str) -> str:
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, ""))


def ws_url(url: str, **query: str) -> str:
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    q = "&".join(p for p in (parts.query, urlencode(query)) if p)
    return urlunsplit((scheme, parts.netloc, parts.path, q, ""))


class HubClient:
    """One hub connection, kept up for as long as `run()` runs."""

    def __init__(
        self,
        url: str,
        token_factory: Callable[[], Awaitable[str]],
        *,
        name: str = "hub",
        negotiate: bool = False,
        on_unauthorized: Callable[[str], Awaitable[object]] | None = None,
        ping_interval: float = 15.0,
        server_timeout: float = 30.0,
        open_timeout: float = 10.0,
        invoke_timeout: float = 15.0,
        backoff_initial: float = 1.0,
        backoff_max: float = 30.0,
        problems: ProblemLog | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self.url, self.name = url, name
        self._token_factory = token_factory
        self._on_unauthorized = on_unauthorized
        self._negotiate = negotiate
        self.ping_interval, self.server_timeout = ping_interval, server_timeout
        self.open_timeout, self.invoke_timeout = open_timeout, invoke_timeout
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.problems = problems if problems is not None else ProblemLog()
        self._redact = redact or (lambda text: text)
        self._token: str | None = None
        self._callbacks: dict[str, Callback] = {}
        self.on_connected: Callable[[], Awaitable[None]] | None = None
        self.on_disconnected: Callable[[str], None] | None = None
        self.state = "disconnected"  # connecting / connected / disconnected
        self.connects = 0  # successful handshakes
        self.failed_attempts = 0  # attempts that never reached a handshake
        self.last_reason = ""
        self.delays: list[float] = []  # each wait before a retry, for the record
        self._connected = asyncio.Event()
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._ids = itertools.count()
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------ public API

    def on(self, target: str, callback: Callback) -> None:
        """Call `callback(arguments)` for every invocation of `target`, in arrival order."""
        self._callbacks[target] = callback

    @property
    def connected(self) -> bool:
        return self.state == "connected"

    async def wait_connected(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    def start(self) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._stopping.clear()
            self._task = asyncio.create_task(self.run(), name=f"projectx-{self.name}-hub")
        return self._task

    async def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def invoke(self, method: str, *args: Any, timeout: float | None = None) -> Any:
        """An invocation that waits for its completion; answers its result (None for void)."""
        ws = self._ws
        if ws is None or not self.connected:
            raise HubNotConnected(f"{self.name} hub is not connected")
        inv_id = str(next(self._ids))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[inv_id] = fut
        msg = {"type": 1, "invocationId": inv_id, "target": method, "arguments": list(args)}
        try:
            await ws.send(orjson.dumps(msg).decode() + RS)
            return await asyncio.wait_for(fut, timeout or self.invoke_timeout)
        except TimeoutError:
            raise HubInvocationError(f"{method} on the {self.name} hub got no answer") from None
        except ConnectionClosed:
            raise HubNotConnected(f"{self.name} hub closed during {method}") from None
        finally:
            self._pending.pop(inv_id, None)

    async def send(self, method: str, *args: Any) -> None:
        """A non-blocking invocation: no invocationId, no answer."""
        ws = self._ws
        if ws is None or not self.connected:
            raise HubNotConnected(f"{self.name} hub is not connected")
        msg = {"type": 1, "target": method, "arguments": list(args)}
        try:
            await ws.send(orjson.dumps(msg).decode() + RS)
        except ConnectionClosed:
            raise HubNotConnected(f"{self.name} hub closed during {method}") from None

    # ------------------------------------------------------------ the loop

    async def run(self) -> None:
        delay = self.backoff_initial
        while not self._stopping.is_set():
            was_connected = False
            try:
                was_connected = await self._session()
                reason = self.last_reason
            except _SessionEnd as end:
                reason = str(end)
            except (OSError, TimeoutError, WebSocketException, httpx.HTTPError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:  # e.g. no token to be had right now: retry all the same
                reason = f"{self.name} hub could not connect: {type(exc).__name__}: {exc}"
            reason = self._clean(reason)
            self.last_reason = reason
            if was_connected:
                delay = self.backoff_initial
                if self.on_disconnected is not None and not self._stopping.is_set():
                    try:
                        self.on_disconnected(reason)
                    except Exception as exc:  # a callback's fault never ends the loop
                        self._problem("hub_callback_error",
                                      f"on_disconnected failed: {type(exc).__name__}")
            else:
                self.failed_attempts += 1
            if self._stopping.is_set():
                break
            self.delays.append(delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)
            delay = min(delay * 2, self.backoff_max)
        self.state = "disconnected"

    def _clean(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, "<redacted>")
        return self._redact(text)[:300]

    async def _session(self) -> bool:
        """One connection from connect to close; answers whether it got connected."""
        self.state = "connecting"
        self._token = token = await self._token_factory()
        query = {"access_token": token}
        if self._negotiate:
            query["id"] = await self._negotiate_id(token)
        try:
            ws = await connect(
                ws_url(self.url, **query), open_timeout=self.open_timeout, ping_interval=None,
                close_timeout=2, max_size=MAX_BUFFER, compression=None, logger=_WS_LOG,
            )
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status == 401 and self._on_unauthorized is not None:
                await self._on_unauthorized(token)
            raise _SessionEnd(f"{self.name} hub refused the connection: HTTP {status}") from None
        try:
            leftover = await self._handshake(ws)
            self._ws = ws
            self.state = "connected"
            self.connects += 1
            self._connected.set()
            self.last_reason = ""
            await self._serve(ws, leftover)
            return True
        finally:
            self._ws = None
            self._connected.clear()
            self.state = "disconnected"
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(HubNotConnected(f"{self.name} hub disconnected"))
            with contextlib.suppress(Exception):
                await ws.close()

    async def _negotiate_id(self, token: str) -> str:
        url = http_url(self.url).rstrip("/") + "/negotiate?negotiateVersion=1"
        async with httpx.AsyncClient(timeout=self.open_timeout) as http:
            resp = await http.post(url, headers={"Authorization": f"Bearer {token}"})
        if resp.status_code == 401 and self._on_unauthorized is not None:
            await self._on_unauthorized(token)
        if resp.status_code != 200:
            raise _SessionEnd(f"{self.name} hub negotiate answered HTTP {resp.status_code}")
        try:
            data = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            raise _SessionEnd(f"{self.name} hub negotiate answered text that is not JSON") from None
        if isinstance(data, dict) and data.get("error"):
            raise _SessionEnd(f"{self.name} hub negotiate refused: {data['error']}")
        ident = None
        if isinstance(data, dict):
            ident = data.get("connectionToken") or data.get("connectionId")
        if not isinstance(ident, str) or not ident:
            raise _SessionEnd(f"{self.name} hub negotiate answered no connection id")
        return ident

    async def _handshake(self, ws: ClientConnection) -> str:
        await ws.send(HANDSHAKE)
        buffer = ""
        while RS not in buffer:
            try:
                frame = await asyncio.wait_for(ws.recv(), self.open_timeout)
            except TimeoutError:
                raise _SessionEnd(f"{self.name} hub sent no handshake answer") from None
            except ConnectionClosed as exc:
                raise _SessionEnd(f"{self.name} hub closed during the handshake "
                                  f"({_close_text(exc)})") from None
            buffer += frame if isinstance(frame, str) else frame.decode("utf-8", "replace")
            if len(buffer) > MAX_BUFFER:
                raise _SessionEnd(f"{self.name} hub sent an oversized handshake answer")
        first, _, rest = buffer.partition(RS)
        try:
            answer = orjson.loads(first)
        except orjson.JSONDecodeError:
            raise _SessionEnd(f"{self.name} hub answered the handshake with text that is "
                              "not JSON") from None
        if not isinstance(answer, dict):
            raise _SessionEnd(f"{self.name} hub answered the handshake with JSON that is not "
                              "an object")
        if answer.get("error"):
            raise _SessionEnd(f"{self.name} hub refused the handshake: {answer['error']}")
        return rest

    async def _serve(self, ws: ClientConnection, leftover: str) -> None:
        pinger = asyncio.create_task(self._ping(ws))
        hook = asyncio.create_task(self._hook(ws))
        try:
            buffer = self._records(leftover)
            if buffer is None:
                return
            while True:
                try:
                    frame = await asyncio.wait_for(ws.recv(), self.server_timeout)
                except TimeoutError:
                    self.last_reason = (f"{self.name} hub sent nothing for "
                                        f"{self.server_timeout:g} s (server timeout)")
                    return
                except ConnectionClosed as exc:
                    if not self.last_reason:
                        self.last_reason = f"{self.name} hub connection lost ({_close_text(exc)})"
                    return
                if isinstance(frame, bytes):
                    try:
                        frame = frame.decode("utf-8")
                    except UnicodeDecodeError:
                        self._problem("hub_not_utf8", f"{self.name} hub sent a binary frame "
                                                      "that is not UTF-8; it was skipped")
                        continue
                buffer = self._records(buffer + frame)
                if buffer is None:
                    return
        finally:
            for task in (pinger, hook):
                task.cancel()
            for task in (pinger, hook):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    def _records(self, text: str) -> str | None:
        """Dispatches each complete record; answers the unterminated rest, None on close."""
        *records, rest = text.split(RS)
        for record in records:
            if record and self._dispatch(record):
                return None
        if len(rest) > MAX_BUFFER:
            self._problem("hub_oversized", f"{self.name} hub sent an unterminated record "
                                           f"over {MAX_BUFFER} characters; it was dropped")
            rest = ""
        return rest

    def _dispatch(self, record: str) -> bool:
        """Handles one message; True when it is a close message."""
        try:
            msg = orjson.loads(record)
        except orjson.JSONDecodeError:
            self._problem("hub_not_json", f"{self.name} hub sent a message that is not JSON; "
                                          "it was skipped")
            return False
        mtype = msg.get("type") if isinstance(msg, dict) else None
        if not isinstance(mtype, int) or isinstance(mtype, bool):
            self._problem("hub_bad_message", f"{self.name} hub sent JSON that is not a SignalR "
                                             "message (no numeric type); it was skipped")
            return False
        if mtype == 6:
            return False
        if mtype == 1:
            self._invocation(msg)
            return False
        if mtype == 3:
            self._completion(msg)
            return False
        if mtype == 7:
            error = msg.get("error")
            allow = msg.get("allowReconnect") is True
            text = f"{self.name} hub closed the connection"
            if error:
                text += f": {error}"
            if not allow:
                # riskterm keeps retrying (§9) even when the server says not to
                text += " (the server did not allow a reconnect)"
            self.last_reason = text
            return True
        self._problem("hub_unexpected_type", f"{self.name} hub sent a message of type {mtype}, "
                                             "which this client does not use; it was skipped")
        return False

    def _invocation(self, msg: dict) -> None:
        target, args = msg.get("target"), msg.get("arguments")
        if not isinstance(target, str) or not isinstance(args, list):
            self._problem("hub_bad_message", f"{self.name} hub sent an invocation without a "
                                             "target or arguments; it was skipped")
            return
        if msg.get("invocationId") is not None:
            # the server wants a result: this client provides none (as SignalR's clients do)
            err = {"type": 3, "invocationId": str(msg["invocationId"]),
                   "error": "Client didn't provide a result."}
            if self._ws is not None:
                asyncio.get_running_loop().create_task(
                    _quiet_send(self._ws, orjson.dumps(err).decode() + RS))
        callback = self._callbacks.get(target)
        if callback is None:
            self._problem(f"hub_unknown_target:{target[:40]}",
                          f"{self.name} hub sent {target[:40]!r}, which riskterm does not use; "
                          "skipped")
            return
        try:
            callback(args)
        except Exception as exc:  # a callback's fault never ends the connection
            self._problem("hub_callback_error",
                          f"handling {target} failed: {type(exc).__name__}: {exc}")

    def _completion(self, msg: dict) -> None:
        inv_id = msg.get("invocationId")
        fut = self._pending.get(inv_id) if isinstance(inv_id, str) else None
        if fut is None:
            self._problem("hub_stray_completion", f"{self.name} hub completed an invocation "
                                                  "this client did not make; skipped")
            return
        if fut.done():
            return
        if msg.get("error") is not None:
            fut.set_exception(HubInvocationError(f"{self.name} hub: {msg['error']}"))
        else:
            fut.set_result(msg.get("result"))

    async def _ping(self, ws: ClientConnection) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await ws.send(PING)

    async def _hook(self, ws: ClientConnection) -> None:
        if self.on_connected is None:
            return
        try:
            await self.on_connected()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # a link without its subscriptions is useless: drop it and let the loop retry
            text = self._clean(f"{type(exc).__name__}: {exc}")
            self._problem("hub_resubscribe_failed",
                          f"subscribing on the {self.name} hub failed: {text}")
            self.last_reason = f"{self.name} hub subscriptions failed: {text}"
            await ws.close()

    def _problem(self, kind: str, sentence: str) -> None:
        self.problems.add(Problem(kind, self._clean(sentence)))


def _close_text(exc: ConnectionClosed) -> str:
    rcvd = exc.rcvd
    if rcvd is None:
        return "no close frame"
    return f"code {rcvd.code}" + (f", {rcvd.reason}" if rcvd.reason else "")


async def _quiet_send(ws: ClientConnection, text: str) -> None:
    with contextlib.suppress(Exception):
        await ws.send(text)
