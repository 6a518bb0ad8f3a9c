"""The ProjectX REST client against the local test gateway, over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import logging
import time

import httpx
import pytest

from riskterm.brokers.projectx.errors import (
    AuthError,
    BusinessError,
    GatewayProtocolError,
    GatewayUnavailable,
    Redactor,
    code_name,
)
from riskterm.brokers.projectx.rest import (
    DEFAULT_TOKEN_LIFETIME,
    ProjectXRest,
    RateLimiter,
    jwt_exp,
    refresh_due,
)
from riskterm.brokers.projectx.settings import ProjectXSettings, SettingsError
from riskterm.testing.gateway import TestGateway
from riskterm.testing.gateway.server import API_KEY, USERNAME
from tests.gateway_fixtures import assert_no_secret

MNQ = "CON.F.US.MNQ.H26"


@pytest.fixture
async def gw():
    g = await TestGateway().start()
    g.state.add_account(101, "TOPX-50K-1", 50000.0)
    g.state.add_account(102, "TOPX-LOCKED", 48000.0, can_trade=False)
    yield g
    await g.stop()


def client(gw: TestGateway, **kw) -> ProjectXRest:
    kw.setdefault("backoff", 0.01)
    return ProjectXRest(ProjectXSettings.from_env(gw.env()), **kw)


# ---------------------------------------------------------------- settings


def test_settings_defaults_and_strip():
    s = ProjectXSettings.from_env({"PROJECTX_USERNAME": " me ", "PROJECTX_API_KEY": "  k3y-abc\n"})
    assert s.username == "me" and s.api_key == "k3y-abc"
    assert s.api_url == "https://api.topstepx.com"
    assert s.user_hub == "https://rtc.topstepx.com/hubs/user"
    assert s.market_hub == "https://rtc.topstepx.com/hubs/market"
    assert "k3y-abc" not in repr(s) and "k3y-abc" not in str(s) and "<hidden>" in repr(s)


@pytest.mark.parametrize("missing", ["PROJECTX_USERNAME", "PROJECTX_API_KEY"])
def test_settings_missing_variable(missing):
    env = {"PROJECTX_USERNAME": "me", "PROJECTX_API_KEY": "secret-key-1"}
    env[missing] = "   "
    with pytest.raises(SettingsError, match=missing):
        ProjectXSettings.from_env(env)
    del env[missing]
    with pytest.raises(SettingsError, match=missing):
        ProjectXSettings.from_env(env)


def test_settings_key_with_control_characters_refused_without_echo():
    with pytest.raises(SettingsError) as exc:
        ProjectXSettings.from_env({"PROJECTX_USERNAME": "me",
                                   "PROJECTX_API_KEY": "abc\x1b[2Jdef123"})
    assert "abc" not in str(exc.value) and "PROJECTX_API_KEY" in str(exc.value)


def test_settings_bad_url():
    with pytest.raises(SettingsError, match="PROJECTX_API_URL"):
        ProjectXSettings.from_env({"PROJECTX_USERNAME": "me", "PROJECTX_API_KEY": "k" * 10,
                                   "PROJECTX_API_URL": "ftp:/nowhere"})


# ---------------------------------------------------------------- tokens


def _jwt(claims: dict) -> str:
    b = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"eyJhbGciOiJIUzI1NiJ9.{b}.sig"


def test_jwt_exp_and_refresh_due():
    assert jwt_exp(_jwt({"exp": 1_800_000_000})) == 1_800_000_000.0
    assert jwt_exp(_jwt({"sub": "x"})) is None
    assert jwt_exp("not-a-jwt") is None
    assert jwt_exp("a.!!!.c") is None
    # 24 h token: an hour before expiry; a short one: halfway; none: 23 h after issue
    assert refresh_due(1000.0, 1000.0 + 86400) == 1000.0 + 86400 - 3600
    assert refresh_due(1000.0, 1010.0) == 1005.0
    assert refresh_due(1000.0, None) == 1000.0 + DEFAULT_TOKEN_LIFETIME


async def test_login_and_accounts_with_dotnet_decimals(gw):
    async with client(gw) as rest:
        accounts = await rest.search_accounts()
        assert [a["name"] for a in accounts] == ["TOPX-50K-1", "TOPX-LOCKED"]
        assert accounts[0]["balance"] == 50000.0
        login = gw.requests_to("Auth/loginKey")
        assert len(login) == 1 and login[0].body == {"userName": USERNAME, "apiKey": API_KEY}
        # the key travels only in the login body
        for r in gw.requests:
            if r.path != "Auth/loginKey":
                assert API_KEY not in json.dumps(r.body)


async def test_refresh_before_expiry_via_validate(gw):
    now = [time.time()]
    async with client(gw, wall=lambda: now[0]) as rest:
        await rest.search_accounts()
        first = rest.token
        exp = jwt_exp(first)
        assert exp is not None
        now[0] = exp - 3600 - 1  # not yet due
        await rest.search_accounts()
        assert rest.token == first and not gw.requests_to("Auth/validate")
        now[0] = exp - 3599  # due: an hour before expiry
        await rest.search_accounts()
        assert rest.token != first and len(gw.requests_to("Auth/validate")) == 1
        assert rest.refreshes == 1 and rest.logins == 1


async def test_refresh_failure_keeps_a_still_valid_token(gw):
    now = [time.time()]
    async with client(gw, wall=lambda: now[0], retries=1) as rest:
        await rest.login()
        first = rest.token
        now[0] = jwt_exp(first) - 60
        gw.faults.only = {"Auth/validate"}
        gw.faults.rest_5xx = 5
        assert await rest.search_accounts()
        assert rest.token == first  # kept; refreshed later
        gw.faults.rest_5xx = 0
        await rest.search_accounts()
        assert rest.token != first


async def test_401_answered_by_one_relogin(gw):
    async with client(gw) as rest:
        await rest.search_accounts()
        await gw.expire_tokens()
        accounts = await rest.search_accounts()
        assert len(accounts) == 2 and rest.logins == 2


async def test_401_after_relogin_is_a_clear_failure():
    g = await TestGateway(token_lifetime=-5).start()  # every token it issues is expired
    try:
        async with client(g) as rest:
            with pytest.raises(AuthError) as exc:
                await rest.search_accounts()
            assert "401" in str(exc.value) and "Account/search" in str(exc.value)
            assert len(g.requests_to("Account/search")) == 2 and rest.logins == 2
            assert_no_secret(str(exc.value), *g.tokens)
    finally:
        await g.stop()


async def test_refused_login(gw):
    gw.faults.refuse_login = True
    async with client(gw) as rest:
        with pytest.raises(AuthError) as exc:
            await rest.search_accounts()
    assert "InvalidCredentials" in str(exc.value) and "errorCode 3" in str(exc.value)
    assert_no_secret(str(exc.value))


async def test_429_waited_out_with_retry_after(gw):
    gw.faults.rest_429, gw.faults.retry_after = 2, "0.05"
    gw.faults.only = {"Account/search"}
    async with client(gw) as rest:
        t0 = time.monotonic()
        assert await rest.search_accounts()
        assert time.monotonic() - t0 >= 0.1
    assert [r.status for r in gw.requests_to("Account/search")] == [429, 429, 200]


async def test_429_without_retry_after_backs_off(gw):
    gw.faults.rest_429, gw.faults.retry_after = 3, None
    gw.faults.only = {"Account/search"}
    async with client(gw) as rest:
        assert await rest.search_accounts()
    assert [r.status for r in gw.requests_to("Account/search")] == [429, 429, 429, 200]


async def test_429_that_never_ends_fails_boundedly(gw):
    gw.faults.rest_429, gw.faults.retry_after = 100, "0"
    gw.faults.only = {"Account/search"}
    async with client(gw, max_429_waits=3) as rest:
        with pytest.raises(GatewayUnavailable, match="429"):
            await rest.search_accounts()
    assert len(gw.requests_to("Account/search")) == 4


async def test_client_rate_limit_keeps_the_gateway_limit(gw):
    gw.faults.rate_limit = (5, 0.5)
    async with client(gw, rate_limit=(5, 0.5)) as rest:
        await rest.login()
        t0 = time.monotonic()
        for _ in range(11):
            await rest.open_orders(101)
        elapsed = time.monotonic() - t0
    assert elapsed >= 0.95  # 11 calls at 5 per 0.5 s need two full windows
    assert all(r.status == 200 for r in gw.requests_to("Order/searchOpen"))


async def test_gateway_rate_limit_429_is_retried(gw):
    gw.faults.rate_limit = (3, 0.3)
    async with client(gw, backoff=0.1) as rest:
        await rest.login()
        for _ in range(6):
            assert await rest.open_orders(101) == []
    statuses = [r.status for r in gw.requests_to("Order/searchOpen")]
    assert 429 in statuses and statuses.count(200) == 6


async def test_rate_limiter_window():
    t = [0.0]
    lim = RateLimiter(2, 10.0, clock=lambda: t[0])
    await lim.acquire()
    await lim.acquire()
    assert len(lim._calls) == 2
    t[0] = 10.0
    await lim.acquire()  # the first two left the window
    assert len(lim._calls) == 1


async def test_5xx_retried_then_succeeds(gw):
    gw.faults.rest_5xx, gw.faults.only = 2, {"Account/search"}
    async with client(gw) as rest:
        assert await rest.search_accounts()
    assert [r.status for r in gw.requests_to("Account/search")] == [503, 503, 200]


async def test_5xx_beyond_the_retries_fails(gw):
    gw.faults.rest_5xx = 50
    async with client(gw, retries=2) as rest:
        with pytest.raises(GatewayUnavailable, match="HTTP 503 after 3 attempt"):
            await rest.search_accounts()


async def test_timeout_retried(gw):
    async with client(gw, timeout=0.3) as rest:
        await rest.login()
        gw.faults.rest_timeout, gw.faults.stall_seconds = 1, 2.0
        assert await rest.open_positions(101) == []
    assert len(gw.requests_to("Position/searchOpen")) == 2


async def test_timeout_on_untagged_order_is_not_resent(gw):
    async with client(gw, timeout=0.3) as rest:
        await rest.login()
        gw.faults.rest_timeout, gw.faults.stall_seconds = 1, 2.0
        with pytest.raises(GatewayUnavailable, match="timed out") as exc:
            await rest.place_order(101, MNQ, type=2, side=0, size=1)
        assert_no_secret(str(exc.value), rest.token)
    assert len(gw.requests_to("Order/place")) == 1


async def test_timeout_on_tagged_order_is_resent_and_tag_stays_unique(gw):
    async with client(gw, timeout=0.3) as rest:
        await rest.login()
        gw.faults.rest_timeout, gw.faults.stall_seconds = 1, 2.0
        oid = await rest.place_order(101, MNQ, type=2, side=0, size=1, custom_tag="rt-a1")
        assert gw.state.orders[oid]["customTag"] == "rt-a1"
        with pytest.raises(BusinessError) as exc:
            await rest.place_order(101, MNQ, type=2, side=0, size=1, custom_tag="rt-a1")
        assert exc.value.code_name == "OrderRejected"


async def test_connection_refused_is_unavailable():
    s = ProjectXSettings.from_env({"PROJECTX_USERNAME": "u", "PROJECTX_API_KEY": API_KEY,
                                   "PROJECTX_API_URL": "http://127.0.0.1:9"})
    async with ProjectXRest(s, retries=1, backoff=0.01) as rest:
        with pytest.raises(GatewayUnavailable) as exc:
            await rest.login()
    assert_no_secret(str(exc.value))


async def test_business_errors_are_typed(gw):
    async with client(gw) as rest:
        with pytest.raises(BusinessError) as exc:
            await rest.cancel_order(101, 42)
        assert (exc.value.error_code, exc.value.code_name) == (2, "OrderNotFound")
        assert exc.value.error_message == "Order not found."
        with pytest.raises(BusinessError) as exc:
            await rest.contract_by_id("CON.F.US.NOPE.Z99")
        assert exc.value.code_name == "ContractNotFound"
        with pytest.raises(BusinessError) as exc:
            await rest.open_orders(999)
        assert exc.value.code_name == "AccountNotFound"
        with pytest.raises(BusinessError) as exc:
            await rest.close_position(101, MNQ)
        assert exc.value.code_name == "PositionNotFound"


async def test_account_that_cannot_trade(gw):
    async with client(gw) as rest:
        with pytest.raises(BusinessError) as exc:
            await rest.place_order(102, MNQ, type=2, side=0, size=1)
    assert exc.value.code_name == "OrderRejected"
    assert "not allowed to trade" in str(exc.value)


async def test_every_endpoint_round_trip(gw):
    async with client(gw) as rest:
        contracts = await rest.search_contracts("MNQ")
        assert [c["name"] for c in contracts] == ["MNQH26"]
        c = await rest.contract_by_id(MNQ)
        assert (c["name"], c["tickSize"], c["tickValue"]) == ("MNQH26", 0.25, 0.5)
        lim = await rest.place_order(101, MNQ, type=1, side=0, size=1, limit_price=20000.0)
        mkt = await rest.place_order(101, MNQ, type=2, side=0, size=3, custom_tag="t1")
        assert mkt > 2**31  # ids exceed int32
        assert [o["id"] for o in await rest.open_orders(101)] == [lim]
        orders = await rest.search_orders(101, "2020-01-01T00:00:00Z")
        assert {o["id"] for o in orders} == {lim, mkt}
        positions = await rest.open_positions(101)
        assert [(p["type"], p["size"], p["averagePrice"]) for p in positions] == [(1, 3, 21000)]
        await rest.partial_close_position(101, MNQ, 1)
        assert (await rest.open_positions(101))[0]["size"] == 2
        await rest.close_position(101, MNQ)
        assert await rest.open_positions(101) == []
        await rest.cancel_order(101, lim)
        assert await rest.open_orders(101) == []
        trades = await rest.search_trades(101, "2020-01-01T00:00:00Z")
        assert [t["size"] for t in trades] == [3, 1, 2]
        assert trades[0]["profitAndLoss"] is None  # half-turn
        assert trades[1]["profitAndLoss"] == 0.0
        assert (await rest.search_trades(101, "2999-01-01T00:00:00Z")) == []
    bodies = [r.body for r in gw.requests_to("Order/place")]
    assert bodies[1] == {"accountId": 101, "contractId": MNQ, "type": 2, "side": 0, "size": 3,
                         "customTag": "t1"}


async def test_partial_close_invalid_size_and_rejected_close(gw):
    async with client(gw) as rest:
        await rest.place_order(101, MNQ, type=2, side=1, size=2)
        with pytest.raises(BusinessError) as exc:
            await rest.partial_close_position(101, MNQ, 5)
        assert exc.value.code_name == "InvalidCloseSize"
        gw.faults.reject_close = 1
        with pytest.raises(BusinessError) as exc:
            await rest.close_position(101, MNQ)
        assert exc.value.code_name == "OrderRejected"
        await rest.close_position(101, MNQ)
        assert await rest.open_positions(101) == []


async def test_protocol_errors_and_redaction():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("loginKey"):
            return httpx.Response(200, json={"token": "tok-" + "x" * 40, "success": True})
        if request.url.path.endswith("Account/search"):
            return httpx.Response(200, text="<html>oops</html>")
        if request.url.path.endswith("Order/searchOpen"):
            return httpx.Response(200, json=[1, 2])
        # a Gateway message that echoes a secret is redacted
        return httpx.Response(200, json={"success": False, "errorCode": 1,
                                         "errorMessage": f"bad key {API_KEY} tok-{'x' * 40}"})

    s = ProjectXSettings.from_env({"PROJECTX_USERNAME": "u", "PROJECTX_API_KEY": API_KEY})
    async with ProjectXRest(s, transport=httpx.MockTransport(handler)) as rest:
        with pytest.raises(GatewayProtocolError, match="not JSON"):
            await rest.search_accounts()
        with pytest.raises(GatewayProtocolError, match="not an object"):
            await rest.open_orders(1)
        with pytest.raises(BusinessError) as exc:
            await rest.open_positions(1)
        assert_no_secret(str(exc.value), rest.token)
        assert exc.value.code_name == "AccountNotFound"


def test_code_names_and_redactor():
    assert code_name("Order/place", 2) == "OrderRejected"
    assert code_name("Position/partialCloseContract", 5) == "InvalidCloseSize"
    assert code_name("Position/partialCloseContract", 6) == "OrderRejected"
    assert code_name("Position/closeContract", 5) == "OrderRejected"
    assert code_name("Auth/loginKey", 10) == "ApiKeyAuthenticationDisabled"
    assert code_name("Order/place", 99) == "code 99"
    r = Redactor(["supersecretkey"])
    assert r("x supersecretkey y") == "x <redacted> y"


async def test_key_never_logged(gw, caplog):
    caplog.set_level(logging.DEBUG)
    async with client(gw) as rest:
        await rest.search_accounts()
        await gw.expire_tokens()
        await rest.search_accounts()
        token = rest.token
    assert_no_secret(caplog.text, token)
