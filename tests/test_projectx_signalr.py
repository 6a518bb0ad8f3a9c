"""The SignalR hub client against the test gateway, over real WebSockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from riskterm.brokers.projectx.problems import ProblemLog
from riskterm.brokers.projectx.rest import ProjectXRest
from riskterm.brokers.projectx.settings import ProjectXSettings
from riskterm.brokers.projectx.signalr import (
    HubClient,
    HubInvocationError,
    HubNotConnected,
    http_url,
    ws_url,
)
from riskterm.testing.gateway import TestGateway
from tests.gateway_fixtures import assert_no_secret, wait_for

MNQ = "CON.F.US.MNQ.H26"
USER_TARGETS = ("GatewayUserAccount", "GatewayUserOrder", "GatewayUserPosition",
                "GatewayUserTrade")


class Harness:
    """A gateway, a REST session and a user hub that subscribes account 101 on every connect."""

    def __init__(self, gw: TestGateway, rest: ProjectXRest, **hub_kw) -> None:
        self.gw, self.rest = gw, rest
        self.got: list[tuple[str, list]] = []
        self.reported: list = []
        self.disconnects: list[str] = []
        hub_kw.setdefault("backoff_initial", 0.05)
        hub_kw.setdefault("backoff_max", 0.4)
        self.hub = HubClient(rest.settings.user_hub, rest.ensure_token, name="user",
                             on_unauthorized=rest.relogin, redact=rest.redact,
                             problems=ProblemLog(self.reported.append), **hub_kw)
        for t in USER_TARGETS:
            self.hub.on(t, lambda args, t=t: self.got.append((t, args)))
        self.hub.on_connected = self.subscribe
        self.hub.on_disconnected = self.disconnects.append

    async def subscribe(self) -> None:
        await self.hub.invoke("SubscribeAccounts")
        for method in ("SubscribeOrders", "SubscribePositions", "SubscribeTrades"):
            await self.hub.invoke(method, 101)

    def subscribed(self) -> bool:
        return len(self.gw.subscriptions("user")) == 4

    async def start(self) -> None:
        self.hub.start()
        await wait_for(self.subscribed, what="subscriptions")

    def targets(self) -> list[str]:
        return [t for t, _ in self.got]


@pytest.fixture
async def gw():
    g = await TestGateway().start()
    g.state.add_account(101, "TOPX-50K-1", 50000.0)
    yield g
    await g.stop()


@pytest.fixture
async def rest(gw):
    r = ProjectXRest(ProjectXSettings.from_env(gw.env()), backoff=0.01)
    yield r
    await r.aclose()


@pytest.fixture
async def h(gw, rest):
    harness = Harness(gw, rest)
    yield harness
    await harness.hub.stop()


def test_urls():
    assert ws_url("https://rtc.topstepx.com/hubs/user", access_token="t") == \
        "wss://rtc.topstepx.com/hubs/user?access_token=t"
    assert ws_url("http://h/hubs/m?x=1", id="a") == "ws://h/hubs/m?x=1&id=a"
    assert http_url("wss://h/hubs/user") == "https://h/hubs/user"


async def test_connect_subscribe_and_live_order_of_pushes(h, gw, rest):
    await h.start()
    ws = [r for r in gw.requests if r.kind == "ws"]
    assert len(ws) == 1 and ws[0].query == {"access_token": "<token>"}  # negotiation skipped
    await rest.place_order(101, MNQ, type=2, side=0, size=2)
    await wait_for(lambda: len(h.got) == 5, what="5 pushes")
    assert h.targets() == ["GatewayUserOrder", "GatewayUserTrade", "GatewayUserOrder",
                           "GatewayUserPosition", "GatewayUserAccount"]
    statuses = [a[0]["data"]["status"] for t, a in h.got if t == "GatewayUserOrder"]
    assert statuses == [6, 2]
    assert h.got[1][1][0]["action"] == 0 and h.got[3][1][0]["action"] == 1
    assert h.hub.connects == 1 and not h.reported


async def test_negotiate_then_connect_with_id_every_time(gw, rest):
    h = Harness(gw, rest, negotiate=True)
    try:
        await h.start()
        await gw.drop_hubs()
        await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), what="reconnect")
        neg = [r for r in gw.requests if r.kind == "negotiate"]
        ws = [r for r in gw.requests if r.kind == "ws"]
        assert len(neg) == 2 and all(r.query == {"negotiateVersion": "1"} for r in neg)
        assert [r.status for r in ws] == [101, 101]  # a fresh id each time: no 404 / 409
        assert ws[0].query["id"] != ws[1].query["id"]
    finally:
        await h.hub.stop()


async def test_unknown_negotiated_id_is_404(gw, rest):
    import websockets

    token = await rest.ensure_token()
    url = ws_url(f"{gw.url}/hubs/user", access_token=token, id="nope")
    with pytest.raises(websockets.exceptions.InvalidStatus) as exc:
        await websockets.connect(url)
    assert exc.value.response.status_code == 404


async def test_drop_with_close_message_reconnects_and_resubscribes(h, gw, rest):
    await h.start()
    assert await gw.drop_hubs(error="Server is restarting") == 1
    await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), what="resubscribed")
    assert h.disconnects and "Server is restarting" in h.disconnects[0]
    assert len([r for r in gw.invocations("user") if r.path == "SubscribeOrders"]) == 2
    await rest.place_order(101, MNQ, type=2, side=1, size=1)
    await wait_for(lambda: len(h.got) == 5, what="pushes after the reconnect")
    assert h.hub.delays[0] == 0.05


async def test_drop_without_close_message_and_disallowed_reconnect(h, gw):
    await h.start()
    await gw.drop_hubs(close_message=False)
    await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), what="reconnect")
    assert "connection lost" in h.disconnects[0]
    await gw.drop_hubs(allow_reconnect=False, error="Bye")
    await wait_for(lambda: h.hub.connects == 3 and h.subscribed(), what="reconnect anyway")
    assert "did not allow a reconnect" in h.disconnects[1]


async def test_refused_reconnects_back_off_then_succeed(h, gw, rest):
    await h.start()
    gw.refuse_hubs(1.0)
    t0 = time.monotonic()
    await gw.drop_hubs()
    await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), timeout=8, what="back")
    assert time.monotonic() - t0 >= 1.0
    assert h.hub.failed_attempts >= 2
    # backoff doubles from 0.05 and is capped at 0.4; reset after the good connect
    d = h.hub.delays
    assert d[:4] == [0.05, 0.1, 0.2, 0.4] and max(d) == 0.4
    refused = [r for r in gw.requests if r.kind == "ws" and r.status == 503]
    assert len(refused) == h.hub.failed_attempts
    assert "HTTP 503" in h.hub.last_reason or h.hub.last_reason == ""
    await gw.drop_hubs()
    await wait_for(lambda: h.hub.connects == 3, what="third connect")
    assert h.hub.delays[-1] == 0.05


async def test_server_timeout_detected(gw, rest):
    h = Harness(gw, rest, server_timeout=0.3)
    try:
        await h.start()
        gw.faults.mute_hubs = True
        await wait_for(lambda: h.disconnects, what="server timeout")
        assert "server timeout" in h.disconnects[0]
        gw.faults.mute_hubs = False
        await wait_for(lambda: h.hub.connects >= 2 and h.subscribed(), what="reconnect")
    finally:
        await h.hub.stop()


async def test_pings_keep_the_connection_and_silence_ends_it(rest):
    g = await TestGateway(ping_interval=0.05, client_timeout=0.4).start()
    g.state.add_account(101, "TOPX-50K-1")
    rest2 = ProjectXRest(ProjectXSettings.from_env(g.env()))
    pinging = Harness(g, rest2, ping_interval=0.1, server_timeout=0.3)
    try:
        await pinging.start()
        t0 = time.monotonic()
        await wait_for(lambda: time.monotonic() - t0 > 1.2, what="time")  # bounded wait
        assert pinging.hub.connects == 1 and not pinging.disconnects
        await pinging.hub.stop()
        silent = Harness(g, rest2, ping_interval=30)
        try:
            await silent.start()
            await wait_for(lambda: silent.disconnects, what="gateway closing a silent client")
        finally:
            await silent.hub.stop()
    finally:
        await rest2.aclose()
        await g.stop()


async def test_malformed_frames_reported_once_per_kind_without_crash(h, gw, rest):
    await h.start()
    bad = ["not json at all\x1e", "[1, 2]\x1e", '{"type": "1"}\x1e',
           '{"type":1,"target":"GatewayUserNope","arguments":[{}]}\x1e',
           '{"type":1,"target":"GatewayUserOrder","arguments":"x"}\x1e',
           '{"type":3,"invocationId":"999999"}\x1e', '{"type":2,"invocationId":"1"}\x1e']
    for text in bad * 2:
        gw.send_raw("user", text)
    gw.send_raw("user", json.dumps({"type": 1, "target": "GatewayUserAccount",
                                    "arguments": ["marker"]}) + "\x1e")
    await wait_for(lambda: ("GatewayUserAccount", ["marker"]) in h.got, what="marker")
    counts = h.hub.problems.counts
    assert counts == {"hub_not_json": 2, "hub_bad_message": 6,
                      "hub_unknown_target:GatewayUserNope": 2, "hub_stray_completion": 2,
                      "hub_unexpected_type": 2}
    assert len(h.reported) == 5  # once per kind
    assert h.hub.connects == 1 and h.hub.connected


async def test_records_split_and_joined_across_frames(h, gw):
    await h.start()
    one = json.dumps({"type": 1, "target": "GatewayUserAccount", "arguments": ["a"]}) + "\x1e"
    two = json.dumps({"type": 1, "target": "GatewayUserAccount", "arguments": ["b"]}) + "\x1e"
    gw.send_raw("user", one + two[:10])
    gw.send_raw("user", two[10:] + '{"type":6}\x1e')
    await wait_for(lambda: len(h.got) == 2, what="two records")
    assert h.got == [("GatewayUserAccount", ["a"]), ("GatewayUserAccount", ["b"])]
    assert not h.reported


async def test_invocation_errors_and_non_blocking_calls(h, gw):
    await h.start()
    with pytest.raises(HubInvocationError, match="does not exist"):
        await h.hub.invoke("SubscribeEverything")
    with pytest.raises(HubInvocationError, match="binding"):
        await h.hub.invoke("SubscribeOrders", "101")  # a string for an int
    await h.hub.send("UnsubscribeTrades", 101)
    await wait_for(lambda: ("trades", 101) not in gw.subscriptions("user"), what="unsub")
    await h.hub.send("NoSuchMethod")
    await wait_for(lambda: any(r.path == "NoSuchMethod" for r in gw.invocations()), what="sent")
    await h.hub.invoke("SubscribeTrades", 101)  # a round trip after the non-blocking calls
    assert not h.reported  # no completion came for the non-blocking calls


async def test_callback_fault_is_counted_not_fatal(h, gw):
    def boom(args):
        raise RuntimeError("bad handler")

    h.hub.on("GatewayUserAccount", boom)
    await h.start()
    gw.send_raw("user", json.dumps({"type": 1, "target": "GatewayUserAccount",
                                    "arguments": [1]}) + "\x1e")
    await wait_for(lambda: h.hub.problems.counts["hub_callback_error"] == 1, what="counted")
    assert h.hub.connected


async def test_expired_token_on_reconnect_logs_in_again(h, gw, rest, caplog):
    caplog.set_level(logging.DEBUG)
    await h.start()
    old = rest.token
    await gw.expire_tokens()
    await gw.drop_hubs()
    await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), what="reconnect")
    assert rest.token != old and rest.logins == 2
    assert any(r.kind == "ws" and r.status == 401 for r in gw.requests)
    texts = [caplog.text, *h.disconnects, h.hub.last_reason, *[p.sentence for p in h.reported]]
    for text in texts:
        assert_no_secret(text, old, rest.token)


async def test_invoke_when_disconnected_and_stop(gw, rest):
    h = Harness(gw, rest)
    with pytest.raises(HubNotConnected):
        await h.hub.invoke("SubscribeAccounts")
    await h.start()
    task = h.hub._task
    await h.hub.stop()
    assert task is not None and task.done() and h.hub.state == "disconnected"
    assert not h.disconnects  # a stop is not a lost link


async def test_subscription_failure_drops_and_retries(gw, rest):
    h = Harness(gw, rest)
    attempts = []

    async def flaky() -> None:
        attempts.append(1)
        if len(attempts) == 1:
            await h.hub.invoke("SubscribeOrders", "bad")
        await h.subscribe()

    h.hub.on_connected = flaky
    try:
        h.hub.start()
        await wait_for(h.subscribed, what="second try subscribed")
        assert h.hub.connects == 2 and h.hub.problems.counts["hub_resubscribe_failed"] == 1
    finally:
        await h.hub.stop()


async def test_market_hub_quotes(gw, rest):
    got: list = []
    hub = HubClient(rest.settings.market_hub, rest.ensure_token, name="market")
    hub.on("GatewayQuote", got.append)

    async def sub() -> None:
        await hub.invoke("SubscribeContractQuotes", MNQ)

    hub.on_connected = sub
    hub.start()
    try:
        await wait_for(lambda: ("quotes", MNQ) in gw.subscriptions("market"), what="sub")
        gw.quote(MNQ, 21001.25, bid=21001.0)
        gw.quote("CON.F.US.EP.H26", 6001.0)  # not subscribed: not pushed
        gw.quote(MNQ, 21001.5)
        await wait_for(lambda: len(got) == 2, what="quotes")
        assert got[0][0] == MNQ and got[0][1]["lastPrice"] == 21001.25
        assert got[0][1]["bestBid"] == 21001 and "bestAsk" not in got[0][1]
        assert "bestBid" not in got[1][1]
    finally:
        await hub.stop()


@pytest.mark.parametrize("run", range(10))
async def test_reconnect_timing_repeated(gw, rest, run):
    """The drop / refuse / reconnect cycle, run 10 times to show it is not flaky."""
    h = Harness(gw, rest, backoff_initial=0.02, backoff_max=0.1)
    try:
        await h.start()
        gw.refuse_hubs(0.2)
        await gw.drop_hubs()
        await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), what="back")
        await rest.place_order(101, MNQ, type=2, side=run % 2, size=1)
        await wait_for(lambda: len(h.got) == 5, what="pushes")
        assert h.targets()[1] == "GatewayUserTrade"
    finally:
        await h.hub.stop()
        await asyncio.sleep(0)


async def test_refused_login_during_reconnect_is_retried(h, gw, rest):
    await h.start()
    await gw.expire_tokens()
    gw.faults.refuse_login = True
    await gw.drop_hubs()
    await wait_for(lambda: h.hub.failed_attempts >= 2, what="failed attempts")
    assert "login refused" in h.hub.last_reason
    assert_no_secret(h.hub.last_reason, rest.token)
    gw.faults.refuse_login = False
    await wait_for(lambda: h.hub.connects == 2 and h.subscribed(), what="back after login")
