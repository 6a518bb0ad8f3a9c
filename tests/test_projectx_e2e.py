"""riskterm end to end on `--source projectx`, in process: the real EngineHost (as the headless
mode runs it) with its settings from the environment, against the test gateway
(riskterm.testing.gateway) on 127.0.0.1, a real SQLite database and --record file. Every
request the engine sends is counted at the gateway."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from riskterm.brokers.projectx.mapping import parse_ts
from tests.gateway_fixtures import assert_no_secret
from tests.projectx_session import (
    ACCT,
    ACCT2,
    ES,
    MES,
    MNQ,
    Session,
    db_text,
    gateway,
    stop_open_sessions,
)


@pytest.fixture
async def gw():
    g = await gateway()
    yield g
    await stop_open_sessions()
    await g.stop()


@pytest.fixture(autouse=True)
def px_env(gw, monkeypatch):
    for key, value in gw.env().items():
        monkeypatch.setenv(key, value)


def last_reset(now: datetime) -> datetime:
    """The last 17:00 America/Chicago instant (the rules' daily_reset) before `now`."""
    local = now.astimezone(ZoneInfo("America/Chicago"))
    reset = local.replace(hour=17, minute=0, second=0, microsecond=0)
    if reset > local:
        reset -= timedelta(days=1)
    return reset.astimezone(UTC)


def net(trades: list[dict]) -> float:
    """What trades did to the balance: profitAndLoss - fees - commissions."""
    return round(sum((t["profitAndLoss"] or 0.0) - t["fees"] - t["commissions"]
                     for t in trades), 2)


def cancels(gw) -> list[int]:
    return [r.body["orderId"] for r in gw.requests_to("Order/cancel")]


# -- started in the middle of the day ----------------------------------------------------------


async def test_started_mid_day_reads_the_days_trades_and_judges_a_breach_before_start(
        gw, tmp_path, monkeypatch):
    s = gw.state
    real_clock = s._clock
    # two days ago, before the last daily reset: a big loss that is not today's
    monkeypatch.setattr(s, "_clock", lambda: real_clock() - 2 * 86400)
    s.place(101, MNQ, 2, 0, 4)
    gw.quote(MNQ, 20500.0)
    s.place(101, MNQ, 2, 1, 4)
    old = list(s.trades)
    monkeypatch.setattr(s, "_clock", real_clock)
    # today, before riskterm starts: a 600 loss on MNQ, an ES position and a working order
    gw.quote(MNQ, 21000.0)
    s.place(101, ES, 2, 0, 1)
    limit_id = s.place(101, MNQ, 1, 0, 1, limit=20000.0)
    s.place(101, MNQ, 2, 0, 2)
    gw.quote(MNQ, 20850.0)
    s.place(101, MNQ, 2, 1, 2)
    today = s.trades[len(old):]
    assert net(old) < -2000 and net(today) == -604.88

    run = await Session(tmp_path, """rules:
  daily_realized_loss: {limit: -500, action: flatten, lockout: until_reset}
""").start()
    await run.wait(lambda: run.of("lockout") and run.of("enforcement", action="flatten")
                   and not s.open_positions(101), "the flatten confirmed")
    await run.wait(lambda: not s.open_orders(101), "the working order cancelled")
    # trades read from the last daily reset on: today's, not the older ones
    searches = gw.requests_to("Trade/search")
    reset = last_reset(datetime.now(UTC))
    assert parse_ts(searches[0].body["startTimestamp"]) == reset.timestamp()
    violation, = run.of("violation", rule="daily_realized_loss")
    assert (violation["account"], violation["value"], violation["limit"]) == (ACCT, -604.88, -500)
    flatten, = run.of("enforcement", action="flatten")
    assert flatten["status"] == "ok" and flatten["rule"] == "daily_realized_loss"
    assert "ESH26" in flatten["detail"] and "broker: closed ESH26" in flatten["detail"]
    lockout, = run.of("lockout")
    assert (lockout["rule"], lockout["state"]) == ("daily_realized_loss", "halted")
    assert lockout["until"] == (reset + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    # §9's mapping: one Position/closeContract for the position, Order/cancel for the order
    closes = gw.requests_to("Position/closeContract")
    assert [c.body["contractId"] for c in closes] == [ES]
    assert not gw.requests_to("Position/partialCloseContract")
    assert set(cancels(gw)) == {limit_id}  # riskterm's own closing order is never cancelled
    assert not gw.requests_to("Order/place")
    await run.wait(lambda: run.engine.accounts[ACCT].balance == s.accounts[101]["balance"],
                   "the balance after the close")
    acct = run.engine.accounts[ACCT]
    assert round(acct.realized, 2) == net(s.trades[len(old):])  # the close's fees included
    assert not any(p.qty for p in acct.positions.values())
    summary = await run.stop()
    assert summary["violations"] == len(run.of("violation"))
    assert_no_secret(db_text(run.db))


# -- a breach live, and enforcement the broker refuses ------------------------------------------

LIMIT = "rules:\n  max_contracts_per_instrument: {limits: {MNQ: 2}}\n"


async def test_contract_month_symbol_limited_by_its_root_and_reduced_once(gw, tmp_path):
    run = await Session(tmp_path, LIMIT).start()
    gw.state.place(101, MNQ, 2, 0, 3)  # buys 3 MNQH26: one over `limits: {MNQ: 2}`
    await run.wait(lambda: run.of("enforcement"), "the reduce confirmed")
    violation, = run.of("violation")
    assert (violation["rule"], violation["symbol"], violation["value"], violation["limit"]) == \
        ("max_contracts_per_instrument", "MNQH26", 3, 2)
    enforcement, = run.of("enforcement")
    assert (enforcement["action"], enforcement["status"]) == ("reduce_position", "ok")
    assert enforcement["detail"] == "sell 1 MNQH26 to reach 2 (broker: reduced MNQH26 by 1)"
    partial, = gw.requests_to("Position/partialCloseContract")
    assert partial.body == {"accountId": 101, "contractId": MNQ, "size": 1}
    await run.wait(lambda: run.engine.accounts[ACCT].positions["MNQH26"].qty == 2, "at 2")
    assert gw.state.positions[(101, MNQ)]["qty"] == 2
    await run.stop()
    assert len(gw.requests_to("Position/partialCloseContract")) == 1  # one close, one breach
    assert not gw.requests_to("Position/closeContract") and not gw.requests_to("Order/cancel")


async def test_refused_reduce_fails_with_the_reason_and_is_retried_never_doubled(gw, tmp_path):
    run = await Session(tmp_path, LIMIT).start()
    gw.faults.reject_close = 1
    gw.state.place(101, MNQ, 2, 0, 4)
    await run.wait(lambda: run.of("enforcement", status="ok"), "the retry confirmed", 10)
    failed, ok = run.of("enforcement")
    assert failed["status"] == "failed"
    assert "OrderRejected (errorCode 6): Order rejected." in failed["detail"]
    assert "attempt 1, retrying in 1s" in failed["detail"]
    assert ok["detail"].startswith("sell 2 MNQH26 to reach 2")
    await run.wait(lambda: gw.state.positions[(101, MNQ)]["qty"] == 2, "reduced to 2")
    await run.stop()
    sent = gw.requests_to("Position/partialCloseContract")
    assert [r.body["size"] for r in sent] == [2, 2]  # the refused one, then one that worked
    assert len([t for t in gw.state.trades if t["side"] == 1]) == 1  # one closing trade


async def test_429_waited_out_and_5xx_retried(gw, tmp_path):
    run = await Session(tmp_path, LIMIT + """\
  daily_realized_loss: {limit: -100, action: flatten, lockout: until_reset}
""").start()
    gw.faults.rest_429, gw.faults.only = 1, {"Position/partialCloseContract"}
    gw.state.place(101, MNQ, 2, 0, 3)
    await run.wait(lambda: run.of("enforcement"), "the reduce")
    assert run.of("enforcement")[0]["status"] == "ok"
    assert [r.status for r in gw.requests_to("Position/partialCloseContract")] == [429, 200]
    # a loss breach: the flatten's close answered 503 once, sent again, closed once
    gw.faults.rest_5xx, gw.faults.only = 1, {"Position/closeContract"}
    gw.quote(MNQ, 20900.0)
    gw.state.place(101, MNQ, 2, 1, 1)  # realizes -200
    await run.wait(lambda: run.of("enforcement", action="flatten"), "the flatten")
    flatten, = run.of("enforcement", action="flatten")
    assert flatten["status"] == "ok" and "closed MNQH26" in flatten["detail"]
    assert [r.status for r in gw.requests_to("Position/closeContract")] == [503, 200]
    assert gw.state.open_positions(101) == []
    await run.stop()
    closing = [t for t in gw.state.trades if t["side"] == 1]
    assert [t["size"] for t in closing] == [1, 1, 1]  # the reduce, the loss, the flatten's close


async def test_flatten_with_a_rejected_close_finished_on_the_second_pass(gw, tmp_path):
    run = await Session(tmp_path, """rules:
  daily_realized_loss: {limit: -100, action: flatten, lockout: until_reset}
""").start()
    gw.state.place(101, ES, 2, 0, 1)
    gw.state.place(101, MNQ, 2, 0, 2)
    await run.wait(lambda: run.engine.accounts[ACCT].positions.get("MNQH26")
                   and run.engine.accounts[ACCT].positions["MNQH26"].qty == 2, "positions")
    gw.faults.reject_close = 1
    gw.quote(MNQ, 20900.0)
    gw.state.place(101, MNQ, 2, 1, 1)  # -200 realized
    await run.wait(lambda: run.of("enforcement", action="flatten"), "the flatten")
    flatten, = run.of("enforcement", action="flatten")
    assert flatten["status"] == "ok"
    assert "ESH26" in flatten["detail"] and "MNQH26" in flatten["detail"]
    assert gw.state.open_positions(101) == []
    closes = gw.requests_to("Position/closeContract")
    assert len(closes) == 3  # the rejected close, the other one, the first one once more
    await run.stop()


# -- the hubs: drops, refused reconnects, gaps, duplicates, garbage -----------------------------


async def test_hub_drop_and_refused_reconnects_gap_fills_applied_once(gw, tmp_path):
    record = tmp_path / "rec.jsonl"
    run = await Session(tmp_path, "rules:\n  auth_loss_guard: {}\n", record=record).start()
    await run.wait(lambda: len(gw.subscriptions("user")) == 7, "subscribed")
    gw.faults.gap = True  # the broker moves on, nothing is pushed
    gw.state.place(101, MNQ, 2, 0, 2)
    gw.state.place(101, ES, 2, 1, 1)
    gap_ids = {str(t["id"]) for t in gw.state.trades}
    gw.refuse_hubs(1.5)  # reconnects refused (503) for a while
    await gw.drop_hubs(error="Server restarting")
    await run.wait(lambda: run.of("violation", rule="auth_loss_guard"), "the drop")
    violation, = run.of("violation", rule="auth_loss_guard", account=ACCT)
    assert "Server restarting" in violation["message"]
    gw.faults.gap = False
    await run.wait(lambda: run.broker.connected and run.broker.user_hub.failed_attempts >= 1,
                   "reconnected after refusals", 10)
    assert [r.status for r in gw.requests if r.kind == "ws" and r.hub == "user"].count(503) >= 1
    acct = run.engine.accounts[ACCT]
    await run.wait(lambda: acct.positions.get("ESH26") and acct.positions["ESH26"].qty == -1,
                   "the gap's fills")
    assert acct.positions["MNQH26"].qty == 2 and gap_ids <= acct.trade_ids
    # pushed twice: applied once; a voided trade: not applied
    gw.faults.duplicate_trades = True
    gw.state.place(101, MNQ, 2, 1, 1)
    gw.faults.duplicate_trades = False
    voided = gw.state.push_voided_trade(101, MNQ, 21000.0, 5, 0)
    gw.state.place(101, ES, 2, 0, 1)
    await run.wait(lambda: not acct.positions["ESH26"].qty, "the last fill")
    assert acct.positions["MNQH26"].qty == 1
    assert str(voided["id"]) not in acct.trade_ids
    await run.stop()
    events = [json.loads(line) for line in record.read_text().splitlines()]
    links = [e for e in events if e["type"] == "connection"]
    assert [e["status"] for e in links] == ["connected", "disconnected", "connected"]
    assert "Server restarting" in links[1]["reason"]
    fills = [e["trade_id"] for e in events if e["type"] == "fill"]
    assert len(fills) == len(set(fills)) == len(gw.state.trades) - 1  # each once, not the void
    assert str(voided["id"]) not in fills


async def test_bad_hub_messages_reported_once_per_kind_never_a_crash(gw, tmp_path):
    run = await Session(tmp_path, LIMIT).start()
    await run.wait(lambda: len(gw.subscriptions("user")) == 7, "subscribed")
    odd_status = {"action": 1, "data": {"id": 5, "accountId": 101, "contractId": MNQ,
                                        "status": 77, "type": 1, "side": 0, "size": 1}}
    for _ in range(3):
        gw.send_raw("user", "not json at all\x1e")
        gw.send_raw("user", json.dumps({"type": 1, "target": "GatewayUserSomethingNew",
                                        "arguments": [{}]}) + "\x1e")
        gw.send_raw("user", json.dumps({"type": 1, "target": "GatewayUserOrder",
                                        "arguments": [odd_status]}) + "\x1e")
        gw.send_raw("market", "{broken\x1e")
    gw.state.place(101, MNQ, 2, 0, 3)  # still judged and enforced after the garbage
    await run.wait(lambda: run.of("enforcement", status="ok"), "the reduce")
    counts = run.broker.problems.counts
    assert counts["hub_not_json"] == 6 and counts["order_unknown_status"] == 3
    assert counts["hub_unknown_target:GatewayUserSomethingNew"] == 3
    said = [line for line in run.stderr if line.startswith("ProjectX:")]
    assert len(said) == 3, said  # one line per kind
    assert any("not JSON" in line for line in said)
    assert any("GatewayUserSomethingNew" in line for line in said)
    assert any("77" in line for line in said)
    assert 5 not in {int(o) for o in run.engine.accounts[ACCT].orders}
    await run.stop()


# -- restart on an old database -----------------------------------------------------------------


async def test_restart_on_an_old_database_drops_what_the_broker_does_not_report(gw, tmp_path):
    gw.state.place(101, MNQ, 2, 0, 2)
    working = gw.state.place(101, MNQ, 1, 0, 1, limit=20000.0)
    gw.state.place(102, ES, 2, 0, 1)
    rules = LIMIT + "  daily_unrealized_loss: {limit: -50, action: flatten}\n"
    first = await Session(tmp_path, rules).start()
    assert str(working) in first.engine.accounts[ACCT].orders
    assert first.engine.accounts[ACCT2].positions["ESH26"].qty == 1
    await first.stop()
    # while riskterm is down: the position gone without a trade (an expiry, a desk close),
    # the order cancelled, the other account no longer reported
    del gw.state.positions[(101, MNQ)]
    gw.state.cancel(101, working)
    gw.state.close(102, ES)
    del gw.state.accounts[102]
    gw.requests.clear()
    second = await Session(tmp_path, rules).start()
    acct, gone = second.engine.accounts[ACCT], second.engine.accounts[ACCT2]
    await second.wait(lambda: second.of("warning", rule="resync"), "the resync warning")
    assert not any(p.qty for p in acct.positions.values()) and acct.orders == {}
    warning, = second.of("warning", rule="resync")
    assert warning["account"] == ACCT and "MNQH26 +2" in warning["message"]
    assert str(working) in warning["message"]
    assert gone.reported is False  # kept, neither judged nor enforced
    assert any(ACCT2 in line and "not reported" in line for line in second.stderr)
    gw.quote(ES, 5000.0)  # would be a -12,500 loss on the stale ES position
    gw.quote(MNQ, 15000.0)
    await second.wait(lambda: second.engine.marks.get("ESH26") == 5000.0, "the quotes")
    await second.stop()
    assert not second.of("violation") and not second.of("enforcement")
    for endpoint in ("Position/closeContract", "Position/partialCloseContract",
                     "Order/cancel", "Order/place"):
        assert not gw.requests_to(endpoint)
    with contextlib.closing(sqlite3.connect(second.db)) as conn:
        names = {r[0] for r in conn.execute("SELECT account FROM accounts")}
    assert {ACCT, ACCT2} <= names


# -- instrument specs from the broker -----------------------------------------------------------


async def test_broker_tick_size_and_value_price_a_symbol_rules_do_not_list(gw, tmp_path):
    run = await Session(tmp_path, """rules:
  max_position_loss: {limit: -400, action: close_position}
""").start()
    gw.state.place(101, MES, 2, 0, 2)  # MESH26: no `instruments` entry in the rules
    acct = run.engine.accounts
    await run.wait(lambda: ACCT in acct and "MESH26" in acct[ACCT].positions, "the position")
    gw.quote(MES, 5970.0)  # -30 points x $5 x 2 = -$300: within the limit
    await run.wait(lambda: run.engine.marks.get("MESH26") == 5970.0, "the quote")
    assert acct[ACCT].positions["MESH26"].unrealized == pytest.approx(-300.0)
    assert not run.of("violation")
    gw.quote(MES, 5955.0)  # -$450
    await run.wait(lambda: run.of("enforcement"), "the close")
    violation, = run.of("violation")
    assert (violation["rule"], violation["symbol"], violation["value"]) == \
        ("max_position_loss", "MESH26", -450.0)
    assert run.of("enforcement")[0]["status"] == "ok"
    assert not run.of("warning", rule="unknown_instrument")
    await run.stop()


def test_an_order_whose_trades_a_resync_read_first_is_not_left_working():
    """A re-sync can read an order's trade before the hub's push of the order (status 6) is
    handled: the order is then finished, never placed in the book as working."""
    from riskterm.brokers.projectx.mapping import Mapper
    from riskterm.testing.gateway import CONTRACTS

    m = Mapper()
    m.learn_account({"id": 101, "name": ACCT, "balance": 50000.0, "canTrade": True})
    m.learn_contract(CONTRACTS[0])
    oid, stamp = 2934939764, "2026-12-04T15:00:00.0000001+00:00"
    order = {"id": oid, "accountId": 101, "contractId": MNQ, "creationTimestamp": stamp,
             "updateTimestamp": stamp, "status": 6, "type": 2, "side": 0, "size": 3,
             "fillVolume": 0}
    trade = {"id": 1661000001, "accountId": 101, "contractId": MNQ, "creationTimestamp": stamp,
             "price": 21000, "fees": 1.11, "commissions": 0.75, "side": 0, "size": 3,
             "voided": False, "orderId": oid}
    assert [e["type"] for e in m.trade(trade).events] == ["fill"]  # the re-sync's read
    for target, data in (("GatewayUserOrder", order), ("GatewayUserTrade", trade),
                         ("GatewayUserOrder", {**order, "status": 2, "fillVolume": 3})):
        assert m.user_event(target, [{"action": 1, "data": data}]).events == []
    assert oid not in m.working
    # an order with a part traded early is still working, for what it has left
    m2 = Mapper()
    m2.learn_account({"id": 101, "name": ACCT, "balance": 50000.0, "canTrade": True})
    m2.learn_contract(CONTRACTS[0])
    m2.trade({**trade, "size": 1})
    placed = m2.user_event("GatewayUserOrder", [{"action": 1, "data": {**order, "type": 1,
                                                  "status": 1, "limitPrice": 21000}}]).events
    assert [e["type"] for e in placed] == ["order_placed"]
