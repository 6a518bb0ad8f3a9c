"""Async REST client of the ProjectX Gateway over httpx.

Every call is a JSON POST to `{api_url}/api/{endpoint}` with a Bearer token. The client logs in
with the API key (Auth/loginKey), refreshes the token well before it expires (Auth/validate,
falling back to a fresh login), answers one 401 with one fresh login and then fails clearly,
keeps the Gateway's rate limits on its side (200 calls / 60 s, History 50 / 30 s), waits out a
429 (Retry-After when given, else backoff), retries 5xx, timeouts and connection errors a
bounded number of times, and raises `BusinessError` for `success: false`. No error text holds
the API key or a token.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import deque
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import orjson

from riskterm.brokers.projectx.errors import (
    AuthError,
    BusinessError,
    GatewayProtocolError,
    GatewayUnavailable,
    ProjectXError,
    Redactor,
    code_name,
)
from riskterm.brokers.projectx.settings import ProjectXSettings

DEFAULT_TOKEN_LIFETIME = 23 * 3600.0  # when a token carries no readable exp claim
MAX_RETRY_AFTER = 120.0


class RateLimiter:
    """A sliding window: at most `limit` calls in any `window` seconds. A call's slot is
    stamped again when its answer arrives (`done`), so the client's window never starts
    before the server's: the server counted the call somewhere between send and answer."""

    def __init__(self, limit: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.limit, self.window, self._clock = limit, window, clock
        self._calls: deque[list[float]] = deque()
        self._lock = asyncio.Lock()

    async def acquire(self) -> list[float]:
        async with self._lock:
            while True:
                now = self._clock()
                while self._calls and self._calls[0][0] <= now - self.window:
                    self._calls.popleft()
                if len(self._calls) < self.limit:
                    slot = [now]
                    self._calls.append(slot)
                    return slot
                await asyncio.sleep(max(self._calls[0][0] + self.window - now, 0.001))

    def done(self, slot: list[float]) -> None:
        slot[0] = max(slot[0], self._clock())


def jwt_exp(token: str) -> float | None:
    """The `exp` claim (epoch seconds) of a JWT, read without verifying; None when absent."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, orjson.JSONDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    if isinstance(exp, int | float) and not isinstance(exp, bool) and exp > 0:
        return float(exp)
    return None


def refresh_due(issued: float, exp: float | None) -> float:
    """When to refresh a token issued at `issued`: halfway through a short life, an hour
    before the end of a long one; 23 h after issue when the token has no exp."""
    if exp is None:
        return issued + DEFAULT_TOKEN_LIFETIME
    life = max(0.0, exp - issued)
    return exp - min(3600.0, life / 2)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


class ProjectXRest:
    """One logged-in session of the Gateway's REST API."""

    def __init__(
        self,
        settings: ProjectXSettings,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_429_waits: int = 8,
        rate_limit: tuple[int, float] = (200, 60.0),
        history_rate_limit: tuple[int, float] = (50, 30.0),
        wall: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.redact = Redactor([settings.api_key])
        self._retries, self._backoff, self._max_429 = retries, backoff, max_429_waits
        self._wall = wall
        self._limiter = RateLimiter(*rate_limit)
        self._history_limiter = RateLimiter(*history_rate_limit)
        self._http = httpx.AsyncClient(
            base_url=settings.api_url + "/api/",
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Accept": "application/json"},
            transport=transport,
        )
        self._token: str | None = None
        self._refresh_at = 0.0
        self._expires_at: float | None = None
        self._auth_lock = asyncio.Lock()
        self.logins = 0  # for the record and the tests: fresh logins done
        self.refreshes = 0

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> ProjectXRest:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ---------------------------------------------------------------- auth

    @property
    def token(self) -> str | None:
        return self._token

    def _set_token(self, token: str) -> None:
        self._token = token
        self.redact.add(token)
        self._expires_at = jwt_exp(token)
        self._refresh_at = refresh_due(self._wall(), self._expires_at)

    async def login(self) -> str:
        """Auth/loginKey; AuthError when the Gateway refuses the key."""
        async with self._auth_lock:
            return await self._login()

    async def _login(self) -> str:
        body = {"userName": self.settings.username, "apiKey": self.settings.api_key}
        try:
            data = await self._send("Auth/loginKey", body, token=None)
        except BusinessError as exc:
            raise AuthError(f"ProjectX login refused: {exc.code_name} "
                            f"(errorCode {exc.error_code})"
                            + (f": {exc.error_message}" if exc.error_message else "")) from None
        except _Unauthorized:
            raise AuthError("ProjectX login refused: HTTP 401") from None
        token = data.get("token")
        if not isinstance(token, str) or not token:
            raise GatewayProtocolError("Auth/loginKey answered success without a token")
        self._set_token(token)
        self.logins += 1
        return token

    async def ensure_token(self) -> str:
        """A token that is not near its expiry: logs in first, refreshes when due."""
        async with self._auth_lock:
            if self._token is None:
                return await self._login()
            if self._wall() >= self._refresh_at:
                return await self._refresh()
            return self._token

    async def _refresh(self) -> str:
        try:
            data = await self._send("Auth/validate", {}, token=self._token)
            new = data.get("newToken")
            if isinstance(new, str) and new:
                self._set_token(new)
                self.refreshes += 1
                return new
        except (BusinessError, _Unauthorized):
            pass  # the session is gone: log in afresh
        except GatewayUnavailable:
            # the token is still good: keep it and try the refresh again on the next call
            if self._token and self._expires_at is not None and self._wall() < self._expires_at:
                return self._token
            raise
        return await self._login()

    async def relogin(self, stale: str | None) -> str:
        """A fresh login because `stale` was refused (401); none when another caller has
        already replaced that token."""
        async with self._auth_lock:
            if self._token is not None and self._token != stale:
                return self._token  # another call already logged in again
            return await self._login()

    # ---------------------------------------------------------------- calls

    async def call(self, endpoint: str, body: dict[str, Any], *, retry: bool = True) -> dict:
        """POST one endpoint with auth; answers the response object (success checked).
        `retry=False` sends a request at most once when the outcome may be unknown
        (a timeout after sending): for order placement without a unique customTag."""
        token = await self.ensure_token()
        try:
            return await self._send(endpoint, body, token=token, retry=retry)
        except _Unauthorized:
            token = await self.relogin(token)
        try:
            return await self._send(endpoint, body, token=token, retry=retry)
        except _Unauthorized:
            raise AuthError(f"{endpoint} answered HTTP 401 again after a fresh login: "
                            "the API key no longer grants access") from None

    async def _send(
        self, endpoint: str, body: dict[str, Any], *, token: str | None, retry: bool = True
    ) -> dict:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        limiter = self._history_limiter if endpoint.startswith("History/") else self._limiter
        failures = waits = 0
        while True:
            slot = await limiter.acquire()
            try:
                resp = await self._http.post(
                    endpoint, content=orjson.dumps(body),
                    headers={**headers, "Content-Type": "application/json"},
                )
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                limiter.done(slot)
                sent = not isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                failures += 1
                what = "timed out" if isinstance(exc, httpx.TimeoutException) else "failed"
                if failures > self._retries or (sent and not retry):
                    raise GatewayUnavailable(self.redact(
                        f"{endpoint} {what} ({type(exc).__name__}) "
                        f"after {failures} attempt(s)")) from None
                await asyncio.sleep(self._backoff * 2 ** (failures - 1))
                continue
            limiter.done(slot)
            status = resp.status_code
            if status == 401:
                raise _Unauthorized
            if status == 429:
                waits += 1
                if waits > self._max_429:
                    raise GatewayUnavailable(f"{endpoint} still rate-limited (HTTP 429) "
                                             f"after {waits - 1} waits")
                wait = _retry_after(resp.headers.get("Retry-After"))
                if wait is None:
                    wait = self._backoff * 2 ** (waits - 1)
                await asyncio.sleep(min(wait, MAX_RETRY_AFTER))
                continue
            if status >= 500:
                failures += 1
                if failures > self._retries or not retry:
                    raise GatewayUnavailable(f"{endpoint} answered HTTP {status} "
                                             f"after {failures} attempt(s)")
                await asyncio.sleep(self._backoff * 2 ** (failures - 1))
                continue
            if status != 200:
                raise GatewayProtocolError(f"{endpoint} answered HTTP {status}")
            return self._decode(endpoint, resp.content)

    def _decode(self, endpoint: str, content: bytes) -> dict:
        try:
            data = orjson.loads(content)
        except orjson.JSONDecodeError:
            raise GatewayProtocolError(f"{endpoint} answered text that is not JSON") from None
        if not isinstance(data, dict):
            raise GatewayProtocolError(f"{endpoint} answered JSON that is not an object")
        if data.get("success") is not True:
            code = data.get("errorCode")
            code = code if isinstance(code, int) and not isinstance(code, bool) else -1
            msg = data.get("errorMessage")
            msg = self.redact(str(msg))[:300] if msg is not None else None
            raise BusinessError(endpoint, code, msg)
        return data

    # ---------------------------------------------------------------- endpoints

    async def search_accounts(self, only_active: bool = True) -> list[dict]:
        data = await self.call("Account/search", {"onlyActiveAccounts": only_active})
        return _list(data, "accounts", "Account/search")

    async def search_contracts(self, text: str, live: bool = False) -> list[dict]:
        data = await self.call("Contract/search", {"searchText": text, "live": live})
        return _list(data, "contracts", "Contract/search")

    async def contract_by_id(self, contract_id: str) -> dict:
        data = await self.call("Contract/searchById", {"contractId": contract_id})
        contract = data.get("contract")
        if isinstance(contract, dict):
            return contract
        # the 2025 shape: a one-element list
        contracts = data.get("contracts")
        if isinstance(contracts, list) and contracts and isinstance(contracts[0], dict):
            return contracts[0]
        raise GatewayProtocolError("Contract/searchById answered no contract")

    async def open_positions(self, account_id: int) -> list[dict]:
        data = await self.call("Position/searchOpen", {"accountId": account_id})
        return _list(data, "positions", "Position/searchOpen")

    async def open_orders(self, account_id: int) -> list[dict]:
        data = await self.call("Order/searchOpen", {"accountId": account_id})
        return _list(data, "orders", "Order/searchOpen")

    async def search_orders(
        self, account_id: int, start: str, end: str | None = None
    ) -> list[dict]:
        body: dict[str, Any] = {"accountId": account_id, "startTimestamp": start}
        if end is not None:
            body["endTimestamp"] = end
        data = await self.call("Order/search", body)
        return _list(data, "orders", "Order/search")

    async def search_trades(
        self, account_id: int, start: str, end: str | None = None
    ) -> list[dict]:
        body: dict[str, Any] = {"accountId": account_id, "startTimestamp": start}
        if end is not None:
            body["endTimestamp"] = end
        data = await self.call("Trade/search", body)
        return _list(data, "trades", "Trade/search")

    async def place_order(
        self,
        account_id: int,
        contract_id: str,
        *,
        type: int,
        side: int,
        size: int,
        limit_price: float | None = None,
        stop_price: float | None = None,
        custom_tag: str | None = None,
    ) -> int:
        """Order/place; answers the order id. Retried after a lost answer only with a
        customTag (the Gateway refuses a second order with the same tag)."""
        body: dict[str, Any] = {"accountId": account_id, "contractId": contract_id,
                                "type": type, "side": side, "size": size}
        if limit_price is not None:
            body["limitPrice"] = limit_price
        if stop_price is not None:
            body["stopPrice"] = stop_price
        if custom_tag is not None:
            body["customTag"] = custom_tag
        data = await self.call("Order/place", body, retry=custom_tag is not None)
        oid = data.get("orderId")
        if not isinstance(oid, int) or isinstance(oid, bool):
            raise GatewayProtocolError("Order/place answered success without an orderId")
        return oid

    async def cancel_order(self, account_id: int, order_id: int) -> None:
        await self.call("Order/cancel", {"accountId": account_id, "orderId": order_id})

    async def close_position(self, account_id: int, contract_id: str) -> None:
        await self.call("Position/closeContract",
                        {"accountId": account_id, "contractId": contract_id})

    async def partial_close_position(self, account_id: int, contract_id: str, size: int) -> None:
        # never sent again after a lost answer: a second partial close would take more off
        await self.call("Position/partialCloseContract",
                        {"accountId": account_id, "contractId": contract_id, "size": size},
                        retry=False)


class _Unauthorized(Exception):
    """HTTP 401 (internal: turned into a re-login or an AuthError)."""


def _list(data: dict, key: str, endpoint: str) -> list[dict]:
    items = data.get(key)
    if items is None:
        return []
    if not isinstance(items, list):
        raise GatewayProtocolError(f"{endpoint} answered {key} that is not a list")
    return [item for item in items if isinstance(item, dict)]


__all__ = [
    "AuthError", "BusinessError", "GatewayProtocolError", "GatewayUnavailable",
    "ProjectXError", "ProjectXRest", "RateLimiter", "code_name", "jwt_exp", "refresh_due",
]
