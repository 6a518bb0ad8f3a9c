"""Mapping of Gateway payloads onto section-1 events, including the live captures verbatim."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from riskterm.brokers.projectx.mapping import Mapper, MapResult, parse_ts
from riskterm.brokers.projectx.problems import Problem, ProblemLog
from riskterm.events import parse_line

ACCT, OID, TID, PID = 7001, 2934939764, 1661000001, 470000001
NOW = 1_778_074_600.0

# [CAP] live wire examples of 2026-05-06 (pysignalr's view of `arguments`), ids filled in
CAP_ORDER = [{'action': 1, 'data': {'id': OID, 'accountId': ACCT, 'contractId': 'CON.F.US.MYM.M26', 'symbolId': 'F.US.MYM',  # noqa: E501
              'creationTimestamp': '2026-05-06T13:36:03.6112156+00:00', 'updateTimestamp': '2026-05-06T13:36:03.6112156+00:00',  # noqa: E501
              'status': 6, 'type': 2, 'side': 0, 'size': 15, 'fillVolume': 0}}]
CAP_TRADE = [{'action': 0, 'data': {'id': TID, 'accountId': ACCT, 'contractId': 'CON.F.US.MYM.M26',
              'creationTimestamp': '2026-05-06T13:36:03.6185676+00:00', 'price': 49909, 'fees': 5.55, 'commissions': 3.75,  # noqa: E501
              'side': 0, 'size': 15, 'voided': False, 'orderId': OID}}]
CAP_POSITION = [{'action': 1, 'data': {'id': PID, 'accountId': ACCT, 'contractId': 'CON.F.US.MYM.M26', 'contractDisplayName': 'MYMM26',  # noqa: E501
                 'creationTimestamp': '2026-05-06T13:36:03.6247335+00:00', 'type': 1, 'size': 15, 'averagePrice': 49909}}]  # noqa: E501
CAP_ACCOUNT = [{'action': 1, 'data': {'id': ACCT, 'name': 'TOPX-150K-1', 'balance': 150175.38, 'canTrade': True, 'isVisible': True,  # noqa: E501
                'simulated': True}}]
CAP_QUOTE = ['CON.F.US.MNQ.Z25', {'lastPrice': 25139.25, 'bestBid': 25138.75, 'bestAsk': 25139.25, 'volume': 246796}]  # noqa: E501
CAP_STOP_2025 = {'action': 1, 'data': {'id': 6917010625, 'accountId': ACCT, 'contractId': 'CON.F.US.MNQ.U25',  # noqa: E501
                 'status': 1, 'type': 4, 'side': 1, 'size': 1, 'stopPrice': 22305.25, 'fillVolume': 0}}  # noqa: E501


def valid(ev: dict) -> dict:
    """The event passes riskterm's own section-1 validation (answered as mapped: the parser
    may drop fields it does not know yet, such as `trade_id` and `can_trade`)."""
    parsed = parse_line(orjson.dumps(ev), 1)
    assert isinstance(parsed, dict), parsed
    for key, value in parsed.items():
        assert ev[key] == value
    return ev


def mapper() -> tuple[Mapper, list[Problem]]:
    reported: list[Problem] = []
    m = Mapper(now=lambda: NOW, problems=ProblemLog(reported.append))
    assert m.learn_account({"id": ACCT, "name": "TOPX-150K-1"}) is None
    for cid, name, ts, tv in (("CON.F.US.MYM.M26", "MYMM26", 1.0, 0.5),
                              ("CON.F.US.MNQ.Z25", "MNQZ25", 0.25, 0.5),
                              ("CON.F.US.MNQ.U25", "MNQU25", 0.25, 0.5),
                              ("CON.F.US.EP.H26", "ESH26", 0.25, 12.5)):
        assert m.learn_contract({"id": cid, "name": name, "tickSize": ts, "tickValue": tv}) is None
    return m, reported


def only(result: MapResult) -> dict:
    assert not result.problems, result.problems
    assert len(result.events) == 1, result.events
    return valid(result.events[0])


# ---------------------------------------------------------------- timestamps


def test_dotnet_timestamps_parsed_exactly():
    assert parse_ts("2026-05-06T13:36:03.4962794+00:00") == 1778074563 + 0.4962794
    assert parse_ts("2025-04-21T19:52:32.175721+00:00") == 1745265152 + 0.175721
    assert parse_ts("2026-05-06T13:36:03Z") == 1778074563.0
    assert parse_ts("2026-05-06T09:36:03.5-04:00") == 1778074563.5
    assert parse_ts("2026-05-06T15:06:03+0130") == 1778074563.0
    for bad in ("2026-05-06T13:36:03", "2026-02-30T00:00:00Z", "yesterday",
                "2026-05-06T13:36:03+25:00", "2026-05-06T13:36:03.1234567890Z"):
        with pytest.raises(ValueError):
            parse_ts(bad)


# ---------------------------------------------------------------- live captures


def test_live_capture_sequence_maps_onto_section_1():
    m, reported = mapper()
    order = only(m.user_event("GatewayUserOrder", CAP_ORDER))
    assert order == {"type": "order_placed", "ts": 1778074563.6112156, "account": "TOPX-150K-1",
                     "symbol": "MYMM26", "order_id": str(OID), "side": "buy", "qty": 15,
                     "order_type": "market"}
    fill = only(m.user_event("GatewayUserTrade", CAP_TRADE))
    assert fill["type"] == "fill" and fill["price"] == 49909 and fill["qty"] == 15
    assert fill["fee"] == pytest.approx(9.30) and "realized_pnl" not in fill  # opening trade
    assert fill["trade_id"] == str(TID) and fill["order_id"] == str(OID)
    assert fill["ts"] == 1778074563.6185676
    filled = {**CAP_ORDER[0]["data"], "status": 2, "fillVolume": 15, "filledPrice": 49909}
    assert m.user_event("GatewayUserOrder", [{"action": 1, "data": filled}]) == MapResult()
    pos = only(m.user_event("GatewayUserPosition", CAP_POSITION))
    assert pos == {"type": "position", "ts": NOW, "account": "TOPX-150K-1", "symbol": "MYMM26",
                   "qty": 15, "avg_price": 49909}
    acct = only(m.user_event("GatewayUserAccount", CAP_ACCOUNT))
    assert acct["account"] == "TOPX-150K-1" and acct["balance"] == 150175.38
    quote = only(m.market_event("GatewayQuote", CAP_QUOTE))
    assert quote == {"type": "quote", "ts": NOW, "symbol": "MNQZ25", "bid": 25138.75,
                     "ask": 25139.25, "last": 25139.25}
    stop = only(m.user_event("GatewayUserOrder", [CAP_STOP_2025]))
    assert (stop["order_type"], stop["side"], stop["stop_price"]) == ("stop", "sell", 22305.25)
    assert stop["ts"] == NOW  # no timestamps in that payload
    assert not reported


def test_bare_entity_form_is_accepted():
    m, _ = mapper()
    ev = only(m.user_event("GatewayUserPosition", [CAP_POSITION[0]["data"]]))
    assert ev["qty"] == 15


# ---------------------------------------------------------------- orders


def order(status: int, **kw) -> dict:
    base = {"id": 99, "accountId": ACCT, "contractId": "CON.F.US.EP.H26", "status": status,
            "type": 1, "side": 1, "size": 2, "limitPrice": 6010.5,
            "updateTimestamp": "2026-05-06T13:36:03.0000001+00:00"}
    return {**base, **kw}


def test_order_status_machine():
    m, reported = mapper()
    placed = only(m.order(order(1)))
    assert (placed["order_type"], placed["price"], placed["side"]) == ("limit", 6010.5, "sell")
    assert m.order(order(1)).events == []  # the same order pushed again
    assert m.order(order(7)).events == []  # PendingCancellation: still working
    upd = only(m.order(order(1, limitPrice=6011.0, size=3)))
    assert upd == {"type": "order_updated", "ts": upd["ts"], "account": "TOPX-150K-1",
                   "order_id": "99", "qty": 3, "price": 6011.0}
    assert only(m.order(order(3)))["type"] == "order_cancelled"
    assert m.order(order(3)).events == []  # re-push of a finished order
    assert m.order(order(1)).events == []  # and nothing revives it
    assert only(m.order(order(4, id=100)))["type"] == "order_cancelled"  # Expired
    rej = only(m.order(order(5, id=101)))
    assert rej["type"] == "order_rejected" and rej["reason"]
    # a market order 6 -> 2: placed once, the fill comes from the trade
    assert only(m.order(order(6, id=102, type=2)))["order_type"] == "market"
    assert m.order(order(2, id=102, type=2)).events == []
    assert 102 not in m.working
    # a rejected market order: 6 -> 5
    assert only(m.order(order(6, id=103, type=2)))["type"] == "order_placed"
    assert only(m.order(order(5, id=103, type=2)))["type"] == "order_rejected"
    # suspended bracket legs are not working orders yet
    assert m.order(order(8, id=104)).events == []
    stop_limit = only(m.order(order(1, id=105, type=3, stopPrice=6000.0)))
    assert (stop_limit["order_type"], stop_limit["stop_price"]) == ("stop_limit", 6000.0)
    trail = only(m.order(order(1, id=106, type=5, limitPrice=None, trailPrice=5990.0)))
    assert (trail["order_type"], trail["stop_price"]) == ("stop", 5990.0)
    assert not reported


@pytest.mark.parametrize("status", [0, 9, 42, -1])
def test_unknown_status_reported_not_applied(status):
    m, reported = mapper()
    r = m.order(order(status))
    assert r.events == [] and r.problems[0].kind == "order_unknown_status"
    assert 99 not in m.working
    assert only(m.order(order(1)))["type"] == "order_placed"  # a good push still applies
    assert len(reported) == 1


@pytest.mark.parametrize(("change", "kind"), [
    ({"type": 0}, "order_unknown_type"), ({"type": 99}, "order_unknown_type"),
    ({"side": 2}, "order_unknown_side"), ({"size": 0}, "order_bad_field"),
    ({"id": None}, "order_missing_field"), ({"id": "99"}, "order_bad_field"),
    ({"id": True}, "order_bad_field"), ({"limitPrice": "6010.5"}, "order_bad_field"),
    ({"accountId": 1}, "order_unknown_account"),
    ({"contractId": "CON.F.US.ZZ.H26"}, "order_unknown_contract"),
    ({"updateTimestamp": "2026-05-06 13:36"}, "order_bad_field"),
])
def test_bad_orders_are_problems(change, kind):
    m, _ = mapper()
    r = m.order(order(1, **change))
    assert r.events == [] and [p.kind for p in r.problems] == [kind]
    assert m.working == {}


# ---------------------------------------------------------------- trades


def trade(**kw) -> dict:
    base = {"id": 5, "accountId": ACCT, "contractId": "CON.F.US.EP.H26", "price": 6000.25,
            "profitAndLoss": -125.0, "fees": 1.4, "commissions": 1.0, "side": 1, "size": 1,
            "voided": False, "orderId": 77, "creationTimestamp": "2026-05-06T13:36:03.5+00:00"}
    return {**base, **kw}


def test_trades_once_per_id_voided_skipped():
    m, reported = mapper()
    fill = only(m.trade(trade()))
    assert fill["realized_pnl"] == -125.0 and fill["fee"] == pytest.approx(2.4)
    assert fill["side"] == "sell"
    assert m.trade(trade()).events == []  # pushed twice
    assert m.trade(trade(id=6, voided=True)).events == []
    assert m.trade(trade(id=6)).events == []  # a voided trade never applies
    r = m.trade(trade(voided=True))  # voided after it was applied
    assert r.events == [] and r.problems[0].kind == "trade_voided_after_fill"
    assert m.last_trade_ts[ACCT] == parse_ts("2026-05-06T13:36:03.5+00:00")
    m.learn_account({"id": ACCT + 1, "name": "OTHER"})
    assert only(m.trade(trade(accountId=ACCT + 1)))["account"] == "OTHER"  # ids per account
    assert len(reported) == 1


def test_half_turn_and_missing_costs():
    m, _ = mapper()
    fill = only(m.trade(trade(profitAndLoss=None, fees=None, commissions=None)))
    assert "realized_pnl" not in fill and fill["fee"] == 0.0


def test_bad_trade_is_not_half_applied():
    m, _ = mapper()
    r = m.trade(trade(price="6000.25"))
    assert r.problems[0].kind == "trade_bad_field"
    r = m.trade(trade(price=None))
    assert r.problems[0].kind == "trade_missing_field"
    assert m.trade(trade(price=math.inf)).problems[0].kind == "trade_bad_field"
    assert m.trade(trade(size=0)).problems[0].kind == "trade_bad_field"
    assert m.trade(trade(voided="no")).problems[0].kind == "trade_bad_field"
    assert only(m.trade(trade()))["type"] == "fill"  # the id was not marked seen


# ---------------------------------------------------------------- positions and accounts


def position(**kw) -> dict:
    base = {"id": 1, "accountId": ACCT, "contractId": "CON.F.US.EP.H26", "type": 2, "size": 3,
            "averagePrice": 6000.5, "creationTimestamp": "2026-05-06T13:36:03.5+00:00"}
    return {**base, **kw}


def test_positions_signed_and_flat():
    m, reported = mapper()
    assert only(m.position(position()))["qty"] == -3
    assert m.positions == {(ACCT, "CON.F.US.EP.H26"): -3}
    flat = only(m.position(position(size=0)))
    assert flat["qty"] == 0 and "avg_price" not in flat
    assert m.positions == {}
    assert only(m.position(position(size=0, type=0)))["qty"] == 0
    assert m.position(position(type=0)).problems[0].kind == "position_unknown_type"
    assert m.position(position(type=7)).problems[0].kind == "position_unknown_type"
    assert m.position(position(size=-1)).problems[0].kind == "position_bad_field"
    assert m.position(position(accountId=5)).problems[0].kind == "position_unknown_account"
    assert m.positions == {}
    new = only(m.position(position(contractId="CON.F.US.CLE.F26", contractDisplayName="CLF26")))
    assert new["symbol"] == "CLF26" and m.contract_name("CON.F.US.CLE.F26") == "CLF26"
    assert len(reported) == 3


def test_accounts():
    m, _ = mapper()
    ev = only(m.account({"id": 8, "name": "NEW-ACCT", "balance": 1.5, "canTrade": False}))
    assert ev["account"] == "NEW-ACCT" and ev["can_trade"] is False and m.accounts[8]
    assert m.account({"id": 8, "name": ""}).problems[0].kind == "account_bad_field"
    assert m.account({"id": 8, "name": "x" * 65}).problems[0].kind == "account_bad_field"
    assert m.account({"name": "x"}).problems[0].kind == "account_missing_field"
    assert m.account([1]).problems[0].kind == "account_bad_shape"


def test_contract_specs():
    m, _ = mapper()
    assert m.instrument_specs()["ESH26"] == {"tick_size": 0.25, "tick_value": 12.5}
    assert m.learn_contract({"id": "X", "name": "BAD", "tickSize": 0}).kind == \
        "contract_bad_field"
    assert m.learn_contract({"id": "X"}).kind == "contract_missing_field"
    assert m.unknown_contracts([trade(contractId="CON.F.US.NEW.H26"), trade(),
                                position(contractId="CON.F.US.P.H26",
                                         contractDisplayName="PH26"), "junk"]) == \
        {"CON.F.US.NEW.H26"}


# ---------------------------------------------------------------- quotes


def test_partial_quotes_merged():
    m, _ = mapper()
    cid = "CON.F.US.EP.H26"
    q1 = only(m.quote(cid, {"symbol": "F.US.EP", "lastPrice": 6000.25,
                            "timestamp": "2026-05-06T13:36:03.1234567+00:00"}))
    assert q1 == {"type": "quote", "ts": 1778074563.1234567, "symbol": "ESH26", "last": 6000.25}
    q2 = only(m.quote(cid, {"bestBid": 6000.0, "bestAsk": 6000.25}))
    assert (q2["bid"], q2["ask"], q2["last"]) == (6000.0, 6000.25, 6000.25)
    assert m.quote(cid, {"volume": 10}).events == []  # nothing to mark with changed
    assert m.quote(cid, {"lastPrice": 6000.25}).events == []
    q3 = only(m.quote(cid, {"bestBid": 0}))  # no bid any more
    assert "bid" not in q3 and q3["ask"] == 6000.25
    bad = m.quote(cid, {"lastPrice": 6001.0, "bestAsk": "6001.25"})
    assert bad.problems[0].kind == "quote_bad_field"
    assert m.quotes[cid]["last"] == 6000.25  # not half-applied
    assert m.quote("CON.F.US.NOPE.Z1", {"lastPrice": 1.0}).problems[0].kind == \
        "quote_unknown_contract"
    assert m.market_event("GatewayQuote", [cid]).problems[0].kind == "quote_bad_shape"
    assert m.market_event("GatewayQuote", "x").problems[0].kind == "quote_bad_shape"
    assert m.market_event("GatewayTrade", [cid, [{"price": 1}]]) == MapResult()
    assert m.market_event("GatewayDepth", [cid, []]) == MapResult()
    assert m.market_event("GatewayOther", []).problems[0].kind.startswith("hub_unknown_target")


def test_negative_prices_pass_through():
    m, _ = mapper()
    ev = m.quote("CON.F.US.EP.H26", {"lastPrice": -37.63}).events[0]
    assert ev["last"] == -37.63


# ---------------------------------------------------------------- envelopes and problems


@pytest.mark.parametrize(("args", "kind"), [
    ("not a list", "hub_bad_envelope"), ([], "hub_bad_envelope"), ([[1]], "hub_bad_envelope"),
    ([{"foo": 1}], "hub_bad_envelope"), ([{"action": 1, "data": [1]}], "hub_bad_envelope"),
    ([{"action": 9, "data": {"id": 1}}], "hub_unknown_action"),
    ([{"action": True, "data": {"id": 1}}], "hub_unknown_action"),
])
def test_other_envelopes_are_problems(args, kind):
    m, _ = mapper()
    r = m.user_event("GatewayUserOrder", args)
    assert r.events == [] and [p.kind for p in r.problems] == [kind]


def test_unknown_user_target():
    m, _ = mapper()
    r = m.user_event("GatewayUserSomethingNew", CAP_ORDER)
    assert r.problems[0].kind == "hub_unknown_target:GatewayUserSomethingNew"


def test_problems_reported_once_per_kind_counted_always():
    m, reported = mapper()
    for _ in range(3):
        m.order(order(42))
        m.trade(trade(price=None))
    assert m.problems.counts == {"order_unknown_status": 3, "trade_missing_field": 3}
    assert [p.kind for p in reported] == ["order_unknown_status", "trade_missing_field"]
    assert m.problems.total() == 6


def test_rest_shapes_with_dotnet_decimals():
    m, _ = mapper()
    rest_trade = orjson.loads(b'{"id": 8, "accountId": 7001, "contractId": "CON.F.US.EP.H26",'
                              b'"creationTimestamp": "2025-04-21T19:52:32.175721+00:00",'
                              b'"price": 6065.250000000, "profitAndLoss": null,'
                              b'"fees": 1.4000, "commissions": 1.0000, "side": 0, "size": 1,'
                              b'"voided": false, "orderId": 9}')
    fill = only(m.trade(rest_trade))
    assert fill["price"] == 6065.25 and fill["fee"] == 2.4 and "realized_pnl" not in fill
    assert fill["ts"] == 1745265152.175721


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=True)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["id", "accountId", "contractId", "status", "type", "side", "size",
                         "price", "data", "action", "name", "balance", "voided", "orderId",
                         "lastPrice", "bestBid", "creationTimestamp", "limitPrice"]),
        inner, max_size=8),
    max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from([*Mapper.USER_TARGETS, "GatewayQuote", "Other"]),
       args=json_values)
def test_never_raises_and_events_are_valid(target, args):
    m, _ = mapper()
    r = m.market_event(target, args) if target == "GatewayQuote" else m.user_event(target, args)
    for ev in r.events:
        valid(ev)
