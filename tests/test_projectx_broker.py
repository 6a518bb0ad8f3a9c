"""ProjectXBroker end to end against the test gateway: events, re-sync, faults, actions."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest

from riskterm.brokers.base import BrokerError, BrokerStartError, OrderNotWorking, Snapshot
from riskterm.brokers.projectx.broker import ProjectXBroker
from riskterm.brokers.projectx.problems import Problem
from riskterm.brokers.projectx.rest import ProjectXRest
from riskterm.brokers.projectx.settings import ProjectXSettings
from riskterm.events import parse_line
from riskterm.testing.gateway import TestGateway
from tests.gateway_fixtures import assert_no_secret, wait_for

MNQ, ES = "CON.F.US.MNQ.H26", "CON.F.US.EP.H26"
HUB = {"backoff_initial": 0.05, "backoff_max": 0.2}


class Run:
    def __init__(self, gw: TestGateway, **kw) -> None:
        self.gw = gw
        self.settings = ProjectXSettings.from_env(gw.env())
        self.reported: list[Problem] = []
        kw.setdefault("instruments", ["MNQ", "ES", "ZZZ"])
        kw.setdefault("day_start", lambda: time.time() - 3600)
        self.broker = ProjectXBroker(
            self.settings, on_problem=self.reported.append, hub_options=HUB,
            rest=ProjectXRest(self.settings, backoff=0.01), **kw)
        self.events: list[dict] = []
        self.snapshots: list[Snapshot] = []
        self._drain: asyncio.Task | None = None

    async def start(self) -> None:
        await self.broker.start()
        self._drain = asyncio.create_task(self._collect())
        await wait_for(lambda: self.kinds().count("connection") >= 1, what="connected")

    async def _collect(self) -> None:
        async for ev in self.broker.events():
            if isinstance(ev, Snapshot):  # as the engine applies it (Engine.resync)
                self.snapshots.append(ev)
                self.events += [{"type": "account", "ts": ev.ts, **a} for a in ev.accounts]
                self.events += [{"type": "position", "ts": ev.ts, **p} for p in ev.positions]
                known = {e["order_id"] for e in self.events if e["type"] == "order_placed"}
                self.events += [{"type": "order_placed", "ts": ev.ts, **o} for o in ev.orders
                                if o["order_id"] not in known]
            else:
                self.events.append(ev)

    async def stop(self) -> None:
        if self._drain:
            self._drain.cancel()
        await self.broker.close()

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[dict]:
        return [e for e in self.events if e["type"] == kind]


@pytest.fixture
async def gw():
    g = await TestGateway().start()
    g.state.add_account(101, "TOPX-50K-1", 50000.0)
    g.state.add_account(102, "TOPX-LOCKED", 48000.0, can_trade=False)
    yield g
    await g.stop()


@pytest.fixture
async def run(gw):
    r = Run(gw)
    yield r
    await r.stop()


def valid(ev: dict) -> None:
    parsed = parse_line(json.dumps(ev).encode(), 1)
    assert isinstance(parsed, dict), (parsed, ev)


async def test_start_resync_and_live_order_of_events(gw, run):
    # a trade before riskterm starts: read on the first connect
    gw.state.place(101, ES, 2, 1, 1)
    gw.state.place(101, MNQ, 1, 0, 1, limit=20000.0)
    await run.start()
    assert run.broker.account_ids == {"TOPX-50K-1": 101, "TOPX-LOCKED": 102}
    assert {MNQ, ES} <= run.broker.quote_contracts
    assert [p.kind for p in run.reported] == ["instrument_unresolved"]  # ZZZ
    assert run.broker.instrument_specs()["ESH26"] == {"tick_size": 0.25, "tick_value": 12.5}
    first = run.kinds()
    assert first[-1] == "connection" and run.events[-1]["status"] == "connected"
    # the gap's fills, then the snapshot (accounts, positions, working orders), then connected
    assert first == ["fill", "account", "account", "position", "order_placed", "connection"]
    assert len(run.snapshots) == 1
    fill = run.of("fill")[0]
    assert (fill["symbol"], fill["side"], fill["qty"]) == ("ESH26", "sell", 1)
    assert run.of("position")[0]["qty"] == -1
    assert run.of("order_placed")[0]["price"] == 20000.0
    run.events.clear()
    await wait_for(lambda: ("quotes", MNQ) in gw.subscriptions("market"), what="quotes")
    await wait_for(lambda: len(gw.subscriptions("user")) == 7, what="user subs")
    oid = await run.broker.place_order("TOPX-50K-1", "MNQH26", "buy", 2, tag="rt-test-1")
    await wait_for(lambda: "account" in run.kinds(), what="live events")
    assert run.kinds() == ["order_placed", "fill", "position", "account"]
    assert run.events[0]["order_id"] == oid and run.events[1]["order_id"] == oid
    assert gw.requests_to("Order/place")[-1].body["customTag"] == "rt-test-1"
    gw.quote(MNQ, 19999.75, bid=19999.5, ask=19999.75)  # crosses the resting buy limit
    await wait_for(lambda: len(run.of("fill")) == 2, what="limit fill")
    assert run.kinds()[4] == "quote"
    assert run.of("quote")[0] == {**run.of("quote")[0], "symbol": "MNQH26", "last": 19999.75,
                                  "bid": 19999.5, "ask": 19999.75}
    for ev in run.events:
        valid(ev)


async def test_trade_pushed_twice_and_voided(gw, run):
    await run.start()
    run.events.clear()
    gw.faults.duplicate_trades = True
    await run.broker.place_order("TOPX-50K-1", "MNQH26", "sell", 1, tag="t1")
    await wait_for(lambda: "account" in run.kinds(), what="events")
    assert len(run.of("fill")) == 1
    gw.faults.duplicate_trades = False
    gw.state.push_voided_trade(101, MNQ, 21000.0, 1, 0)
    gw.state.void_trade(gw.state.trades[0]["id"])
    await wait_for(lambda: run.broker.problems.counts["trade_voided_after_fill"] == 1,
                   what="voided after fill")
    assert len(run.of("fill")) == 1


async def test_gap_found_by_resync_after_reconnect(gw, run):
    await run.start()
    await wait_for(lambda: len(gw.subscriptions("user")) == 7, what="subs")
    run.events.clear()
    gw.faults.gap = True
    gw.state.place(101, MNQ, 2, 0, 3)
    lim = gw.state.place(101, MNQ, 1, 1, 1, limit=22000.0)
    gw.state.cancel(101, lim)
    assert run.events == []  # nothing was pushed
    gw.refuse_hubs(0.3)
    await gw.drop_hubs()
    gw.faults.gap = False
    await wait_for(lambda: run.kinds().count("connection") == 2, timeout=8, what="reconnected")
    conn = run.of("connection")
    assert conn[0]["status"] == "disconnected" and "Connection reset" in conn[0]["reason"]
    assert conn[1]["status"] == "connected"
    fills = run.of("fill")
    assert [(f["qty"], f["side"]) for f in fills] == [(3, "buy")]
    assert run.of("position")[-1]["qty"] == 3
    # a second drop re-reads again but applies nothing twice
    n = len(run.events)
    await gw.drop_hubs()
    await wait_for(lambda: run.kinds().count("connection") == 4, timeout=8, what="again")
    assert len(run.of("fill")) == 1
    assert set(run.kinds()[n:]) <= {"connection", "account", "position"}


async def test_orders_gone_during_a_gap(gw, run):
    lim = gw.state.place(101, MNQ, 1, 0, 1, limit=20000.0)
    lim2 = gw.state.place(101, MNQ, 1, 0, 1, limit=19000.0)
    await run.start()
    assert {e["order_id"] for e in run.of("order_placed")} == {str(lim), str(lim2)}
    await wait_for(lambda: len(gw.subscriptions("user")) == 7, what="subs")
    gw.faults.gap = True
    gw.state.cancel(101, lim)
    gw.quote(MNQ, 18999.0)  # lim2 fills
    await gw.drop_hubs()
    gw.faults.gap = False
    await wait_for(lambda: run.kinds().count("connection") == 3, timeout=8, what="back")
    assert [e["order_id"] for e in run.of("order_cancelled")] == [str(lim)]  # lim2 filled
    assert [f["order_id"] for f in run.of("fill")] == [str(lim2)]


async def test_flatten_with_a_rejected_close_retries_once(gw, run):
    await run.start()
    gw.state.place(101, MNQ, 2, 0, 2)
    gw.state.place(101, ES, 2, 1, 1)
    lim = gw.state.place(101, MNQ, 1, 0, 1, limit=20000.0)
    gw.faults.reject_close = 1
    result = await run.broker.flatten("TOPX-50K-1")
    assert result.status == "ok"
    assert "MNQH26" in result.detail and "ESH26" in result.detail and str(lim) in result.detail
    assert gw.state.open_positions(101) == [] and gw.state.open_orders(101) == []
    closes = gw.requests_to("Position/closeContract")
    assert len(closes) == 3 and [c.status for c in closes] == [200, 200, 200]
    assert (await run.broker.flatten("TOPX-50K-1")).status == "skipped"


async def test_flatten_rejected_twice_fails_with_the_reason(gw, run):
    await run.start()
    gw.state.place(101, MNQ, 2, 0, 2)
    gw.faults.reject_close = 2
    with pytest.raises(BrokerError, match="OrderRejected"):
        await run.broker.flatten("TOPX-50K-1")
    assert len(gw.requests_to("Position/closeContract")) == 2  # closed once more, not forever


async def test_actions(gw, run):
    await run.start()
    with pytest.raises(OrderNotWorking):
        await run.broker.cancel_order("TOPX-50K-1", "12345")
    with pytest.raises(BrokerError, match="not watched"):
        await run.broker.cancel_order("NOPE", "1")
    with pytest.raises(BrokerError, match="no contract named"):
        await run.broker.close_position("TOPX-50K-1", "ZZZH26")
    assert (await run.broker.close_position("TOPX-50K-1", "MNQH26")).status == "skipped"
    assert (await run.broker.cancel_orders("TOPX-50K-1")).status == "skipped"
    gw.state.place(101, MNQ, 2, 1, 3)
    r = await run.broker.reduce_position("TOPX-50K-1", "MNQH26", 1)
    assert r.status == "ok" and gw.state.positions[(101, MNQ)]["qty"] == -2
    lim = gw.state.place(101, MNQ, 1, 0, 1, limit=20000.0)
    stp = gw.state.place(101, ES, 4, 1, 1, stop=5000.0)
    r = await run.broker.cancel_orders("TOPX-50K-1", "MNQH26")
    assert r.detail == f"cancelled {lim}" and gw.state.orders[stp]["status"] == 1
    assert (await run.broker.cancel_order("TOPX-50K-1", str(stp))).status == "ok"
    assert (await run.broker.close_position("TOPX-50K-1", "MNQH26")).status == "ok"
    with pytest.raises(BrokerError, match="not allowed to trade"):
        await run.broker.place_order("TOPX-LOCKED", "MNQH26", "buy", 1, tag="x1")
    await run.broker.place_order("TOPX-50K-1", "ESH26", "buy", 1, order_type="limit",
                                 price=5000.0, tag="x2")
    with pytest.raises(BrokerError, match="OrderRejected"):  # the same tag never twice
        await run.broker.place_order("TOPX-50K-1", "ESH26", "buy", 1, order_type="limit",
                                     price=5000.0, tag="x2")


async def test_bad_pushes_are_reported_once_and_never_crash(gw, run):
    await run.start()
    await wait_for(lambda: len(gw.subscriptions("user")) == 7, what="subs")
    bad_order = {"action": 1, "data": {"id": 1, "accountId": 101, "contractId": MNQ,
                                       "status": 77, "type": 1, "side": 0, "size": 1}}
    for _ in range(3):
        gw.send_raw("user", json.dumps({"type": 1, "target": "GatewayUserOrder",
                                        "arguments": [bad_order]}) + "\x1e")
        gw.send_raw("user", "}{\x1e")
    unknown = {"action": 1, "data": {"id": 9, "accountId": 101, "contractId": "CON.F.US.X.Z9",
                                     "status": 1, "type": 1, "side": 0, "size": 1}}
    gw.send_raw("user", json.dumps({"type": 1, "target": "GatewayUserOrder",
                                    "arguments": [unknown]}) + "\x1e")
    await run.broker.place_order("TOPX-50K-1", "MNQH26", "buy", 1, tag="after")
    await wait_for(lambda: "fill" in run.kinds(), what="events after the garbage")
    counts = run.broker.problems.counts
    assert counts["order_unknown_status"] == 3 and counts["hub_not_json"] == 3
    assert counts["contract_unresolved"] == 1 and counts["order_unknown_contract"] == 1
    kinds = [p.kind for p in run.reported]
    assert len(kinds) == len(set(kinds))  # each kind reported once


async def test_refused_login_and_unknown_accounts(gw):
    gw.faults.refuse_login = True
    r = Run(gw)
    with pytest.raises(BrokerStartError, match=r"refused the login.*InvalidCredentials"):
        await r.broker.start()
    await r.broker.close()
    gw.faults.refuse_login = False
    r = Run(gw, accounts=["NOT-THERE"])
    with pytest.raises(BrokerStartError, match="NOT-THERE"):
        await r.broker.start()
    await r.broker.close()


async def test_only_watched_accounts(gw):
    r = Run(gw, accounts=["TOPX-LOCKED"])
    try:
        await r.start()
        assert r.broker.account_ids == {"TOPX-LOCKED": 102}
        assert {e["account"] for e in r.of("account")} == {"TOPX-LOCKED"}
        assert r.of("account")[0]["can_trade"] is False
        gw.state.place(101, MNQ, 2, 0, 1)  # pushes the unwatched account's balance
        gw.state._push_account(102)  # then the watched one's
        await wait_for(lambda: len(r.of("account")) == 2, what="watched push")
        assert {e.get("account") for e in r.events} == {"TOPX-LOCKED", None}
    finally:
        await r.stop()


async def test_resync_failure_drops_and_retries(gw, run):
    await run.start()
    gw.faults.rest_5xx, gw.faults.only = 100, {"Position/searchOpen"}
    await gw.drop_hubs()
    await wait_for(lambda: run.broker.problems.counts["resync_failed"] >= 1, what="failed")
    gw.faults.rest_5xx = 0
    await wait_for(lambda: run.kinds().count("connection") == 3 and run.broker.connected,
                   timeout=8, what="recovered")


async def test_api_key_and_token_never_leak(gw, caplog):
    caplog.set_level(logging.DEBUG)
    r = Run(gw)
    try:
        await r.start()
        await gw.expire_tokens()
        await gw.drop_hubs()
        await wait_for(lambda: r.kinds().count("connection") == 3, timeout=8, what="back")
        await r.broker.place_order("TOPX-50K-1", "MNQH26", "buy", 1, tag="k")
        with pytest.raises(BrokerError) as exc:
            await r.broker.place_order("TOPX-LOCKED", "MNQH26", "buy", 1, tag="k2")
        tokens = list(gw.tokens)
        texts = [caplog.text, str(exc.value), json.dumps(r.events), repr(r.broker.settings),
                 *[p.sentence for p in r.reported], r.broker.user_hub.last_reason]
        for text in texts:
            assert_no_secret(text, *tokens)
    finally:
        await r.stop()


async def test_market_order_rejected_after_acceptance(gw, run):
    await run.start()
    run.events.clear()
    gw.faults.reject_async = 1
    oid = await run.broker.place_order("TOPX-50K-1", "MNQH26", "buy", 1, tag="r1")
    await wait_for(lambda: "order_rejected" in run.kinds(), what="6 -> 5")
    assert run.kinds() == ["order_placed", "order_rejected"]
    assert run.events[1]["order_id"] == oid and not gw.state.positions


async def test_snapshots_echoes_and_hubs_closed_on_token_expiry(gw):
    gw.faults.snapshot_on_subscribe = gw.faults.account_echo = True
    gw.state.place(101, MNQ, 2, 0, 2)
    lim = gw.state.place(101, MNQ, 1, 0, 1, limit=20000.0)
    r = Run(gw)
    try:
        await r.start()
        oid = await r.broker.place_order("TOPX-50K-1", "MNQH26", "buy", 1, tag="s1")
        await wait_for(lambda: len(r.of("fill")) == 2, what="second fill")
        # snapshot pushes and the re-sync overlap: each order placed once, each trade once
        assert sorted(e["order_id"] for e in r.of("order_placed")) == sorted([str(lim), oid])
        await gw.expire_tokens(close_hubs=True)
        await wait_for(lambda: r.kinds().count("connection") == 3 and r.broker.connected,
                       timeout=8, what="reconnected with a fresh login")
        assert "access token expired" in r.of("connection")[1]["reason"]
        assert len(r.of("fill")) == 2 and len(r.of("order_placed")) == 2
        assert r.broker.rest.logins == 2
    finally:
        await r.stop()
