"""Tests of the broker-event parser (CONTRACT.md section 1)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from riskterm.events import EVENT_TYPES, MAX_LINE_BYTES, describe_type, parse_line

TS = "2026-03-02T14:30:00.250Z"
TS_EPOCH = datetime(2026, 3, 2, 14, 30, 0, 250000, tzinfo=UTC).timestamp()

# Required fields only, per type (ts included).
REQUIRED: dict[str, dict[str, Any]] = {
    "account": {"account": "PA-1"},
    "order_placed": {
        "account": "PA-1",
        "symbol": "MNQ",
        "order_id": "o1",
        "side": "buy",
        "qty": 2,
        "order_type": "limit",
    },
    "order_updated": {"account": "PA-1", "order_id": "o1"},
    "order_cancelled": {"account": "PA-1", "order_id": "o1"},
    "order_rejected": {"account": "PA-1", "order_id": "o1"},
    "fill": {
        "account": "PA-1",
        "symbol": "MNQ",
        "order_id": "o1",
        "side": "sell",
        "qty": 1,
        "price": 20000.25,
    },
    "position": {"account": "PA-1", "symbol": "MNQ", "qty": 3},
    "quote": {"symbol": "MNQ"},
    "connection": {"status": "connected"},
    "clock": {},
    "cash": {"account": "PA-1", "amount": -250.0, "reason": "withdrawal"},
}

OPTIONAL: dict[str, dict[str, Any]] = {
    "account": {"balance": 50000.0, "equity": 49875.5},
    "order_placed": {"price": 20000.5, "stop_price": 19990.0},
    "order_updated": {"qty": 4, "price": 20001.0, "stop_price": 19995.25},
    "order_cancelled": {},
    "order_rejected": {"reason": "insufficient margin"},
    "fill": {"fee": 0.62, "realized_pnl": -12.5},
    "position": {"avg_price": 20000.0},
    "quote": {"bid": 20000.0, "ask": 20000.25, "last": 20000.25},
    "connection": {"account": "PA-1", "reason": "heartbeat lost"},
    "clock": {},
    "cash": {},
}


def line(event_type: str, ts: Any = TS, **fields: Any) -> bytes:
    """A JSON line of the given type: required fields, overridden/extended by `fields`.

    A field given as ... is removed.
    """
    obj: dict[str, Any] = {"type": event_type, "ts": ts, **REQUIRED[event_type], **fields}
    obj = {k: v for k, v in obj.items() if v is not ...}
    return (json.dumps(obj) + "\n").encode()


def rejected(raw: bytes, line_no: int = 7) -> str:
    result = parse_line(raw, line_no)
    assert isinstance(result, str), f"expected a rejection, got {result!r}"
    assert result.startswith(f"line {line_no}"), result
    assert "pydantic" not in result and "http" not in result, result
    return result


# --- valid events ------------------------------------------------------------------------------


def test_event_types_are_the_contracts_eleven() -> None:
    assert tuple(REQUIRED) == EVENT_TYPES
    assert MAX_LINE_BYTES == 65536


@pytest.mark.parametrize("event_type", list(REQUIRED))
def test_required_fields_only(event_type: str) -> None:
    event = parse_line(line(event_type), 1)
    assert event == {"type": event_type, "ts": TS_EPOCH, **REQUIRED[event_type]}
    assert isinstance(event, dict)
    assert type(event["ts"]) is float
    # absent optional fields are absent, not None
    for name in OPTIONAL[event_type]:
        assert name not in event


@pytest.mark.parametrize("event_type", list(REQUIRED))
def test_with_optional_fields(event_type: str) -> None:
    event = parse_line(line(event_type, **OPTIONAL[event_type]), 1)
    assert event == {
        "type": event_type,
        "ts": TS_EPOCH,
        **REQUIRED[event_type],
        **OPTIONAL[event_type],
    }


def test_types_of_values() -> None:
    event = parse_line(line("fill", price=20000, fee=1), 1)
    assert isinstance(event, dict)
    assert type(event["qty"]) is int
    assert event["price"] == 20000 and isinstance(event["price"], float)
    assert event["fee"] == 1.0


def test_unknown_fields_are_dropped() -> None:
    raw = line("quote", bid=1.5, venue="CME", extra={"nested": [1, 2]}, flag=True)
    assert parse_line(raw, 1) == {"type": "quote", "ts": TS_EPOCH, "symbol": "MNQ", "bid": 1.5}


def test_position_qty_signed() -> None:
    for qty in (-3, 0, 1_000_000, -1_000_000):
        event = parse_line(line("position", qty=qty), 1)
        assert isinstance(event, dict) and event["qty"] == qty


def test_boundary_values_accepted() -> None:
    assert isinstance(parse_line(line("fill", qty=1_000_000), 1), dict)
    assert isinstance(parse_line(line("order_placed", qty=1), 1), dict)
    assert isinstance(parse_line(line("fill", order_id="x" * 64, account="é" * 64), 1), dict)
    assert isinstance(parse_line(line("fill", price=-37.63, realized_pnl=-1e6), 1), dict)


def test_line_without_newline_and_with_crlf() -> None:
    raw = line("clock")
    assert parse_line(raw.rstrip(b"\n"), 1) == {"type": "clock", "ts": TS_EPOCH}
    assert parse_line(raw.rstrip(b"\n") + b"\r\n", 1) == {"type": "clock", "ts": TS_EPOCH}


# --- timestamps --------------------------------------------------------------------------------


def test_ts_forms() -> None:
    z = parse_line(line("clock", ts="2026-02-03T15:00:00Z"), 1)
    plus = parse_line(line("clock", ts="2026-02-03T16:00:00+01:00"), 1)
    minus = parse_line(line("clock", ts="2026-02-03T09:00:00-06:00"), 1)
    utc = datetime(2026, 2, 3, 15, tzinfo=UTC).timestamp()
    assert z == plus == minus == {"type": "clock", "ts": utc}
    assert parse_line(line("clock", ts=1770130800), 1) == {"type": "clock", "ts": 1770130800.0}
    assert parse_line(line("clock", ts=1770130800.5), 1) == {"type": "clock", "ts": 1770130800.5}
    event = parse_line(line("clock", ts=1770130800), 1)
    assert isinstance(event, dict) and type(event["ts"]) is float


def test_ts_fraction_kept() -> None:
    event = parse_line(line("clock", ts="2026-03-02T14:30:00.250Z"), 1)
    assert isinstance(event, dict)
    assert event["ts"] == pytest.approx(TS_EPOCH) and event["ts"] % 1 == pytest.approx(0.25)


def test_ts_not_a_real_instant() -> None:
    msg = rejected(line("clock", ts="2026-02-30T10:00:00Z"), 5)
    assert msg == "line 5: field 'ts' is not a real instant: '2026-02-30T10:00:00Z'"
    assert "not a real instant" in rejected(line("clock", ts="yesterday"))
    assert "not a real instant" in rejected(line("clock", ts="2026-03-02T25:00:00Z"))
    assert "not a real instant" in rejected(line("clock", ts=1e30))


def test_ts_without_offset() -> None:
    msg = rejected(line("fill", ts="2026-02-03T15:00:00"), 8)
    assert msg == "line 8: field 'ts' has no UTC offset: '2026-02-03T15:00:00'"


def test_ts_wrong_type() -> None:
    for value, shown in ((True, "true"), (None, "null"), ([1], "a list")):
        msg = rejected(line("clock", ts=value), 3)
        assert msg.startswith("line 3: field 'ts' must be"), msg
        assert msg.endswith(f"got {shown}"), msg


def test_ts_missing() -> None:
    msg = rejected(line("quote", ts=...), 2)
    assert msg == "line 2: a quote is missing the required field 'ts'"


# --- rejections: framing -----------------------------------------------------------------------


def test_blank_lines_return_none() -> None:
    for raw in (b"", b"\n", b"   \n", b"\t \r\n"):
        assert parse_line(raw, 1) is None


def test_broken_json_contract_example() -> None:
    raw = (
        b'{"type": "fill", "ts": "2026-02-03T15:00:09Z", "account": "X1", "symbol": "MNQ", '
        b'"order_id": "3", "side": "buy", "qty", 1}\n'
    )
    msg = rejected(raw, 4)
    assert msg.startswith("line 4 is not valid JSON:")
    assert "column" in msg
    assert msg == "line 4 is not valid JSON: expected ':' after \"qty\" at column 119"


@pytest.mark.parametrize(
    ("raw", "column"),
    [
        (b"hello", 1),
        (b'{"a": 1,}', 9),
        (b"{a: 1}", 2),
        (b'{"a": 1} x', 10),
        (b'{"type": "clock"', None),
        (b'{"\xc3\xa9": "\xc3\xbc" x}', 11),  # character column, not byte column
    ],
)
def test_invalid_json(raw: bytes, column: int | None) -> None:
    msg = rejected(raw, 6)
    assert msg.startswith("line 6 is not valid JSON: "), msg
    assert "`" not in msg
    if column is not None:
        assert msg.endswith(f" at column {column}"), msg


def test_invalid_utf8() -> None:
    assert rejected(b'{"type": "clock", "ts": 1, "x": "\xff"}', 5) == "line 5 is not valid UTF-8"
    assert rejected(b"\xc3\x28", 5) == "line 5 is not valid UTF-8"


def test_64_kib_boundary() -> None:
    def padded(total: int) -> bytes:
        head = b'{"type": "clock", "ts": 1, "pad": "'
        tail = b'"}'
        return head + b"x" * (total - len(head) - len(tail)) + tail

    exact = padded(MAX_LINE_BYTES)
    assert len(exact) == 65536
    assert parse_line(exact, 1) == {"type": "clock", "ts": 1.0}
    assert parse_line(exact + b"\n", 1) == {"type": "clock", "ts": 1.0}
    over = padded(MAX_LINE_BYTES + 1)
    assert rejected(over + b"\n", 3) == "line 3 is longer than 64 KiB (65537 bytes)"
    assert rejected(b"x" * 70000, 3) == "line 3 is longer than 64 KiB (70000 bytes)"


def test_truncated_oversized_line_reports_its_true_size() -> None:
    class Truncated(bytes):
        size: int

    raw = Truncated(b"x" * (MAX_LINE_BYTES + 2))
    raw.size = 1_000_000
    assert rejected(raw, 2) == "line 2 is longer than 64 KiB (1000000 bytes)"


def test_limit_counts_bytes_not_characters() -> None:
    # two-byte characters: the limit applies to the encoded size
    fits = b'{"type": "clock", "ts": 1, "p": "' + "é".encode() * 32000 + b'"}'
    assert len(fits) <= MAX_LINE_BYTES
    assert isinstance(parse_line(fits, 1), dict)
    too_long = b'{"type": "clock", "ts": 1, "p": "' + "é".encode() * 33000 + b'"}'
    assert "longer than 64 KiB" in rejected(too_long)


@pytest.mark.parametrize(
    ("raw", "got"),
    [(b"[1, 2]", "a list"), (b"5", "a whole number"), (b'"clock"', "a string"), (b"null", "null")],
)
def test_not_an_object(raw: bytes, got: str) -> None:
    assert rejected(raw, 2) == f"line 2 is not a JSON object (got {got})"


def test_unknown_type() -> None:
    msg = rejected(b'{"type": "foo", "ts": 1}', 9)
    assert msg.startswith("line 9: unknown event type 'foo' (expected one of account, order_placed")
    assert "clock, cash)" in msg


def test_missing_type() -> None:
    assert "'type'" in rejected(b'{"ts": 1, "symbol": "MNQ"}', 9)
    assert "unknown event type" in rejected(b'{"type": 3, "ts": 1}', 9)


# --- rejections: fields ------------------------------------------------------------------------


def test_missing_required_field() -> None:
    msg = rejected(line("fill", price=...), 12)
    assert msg == "line 12: a fill is missing the required field 'price'"
    msg = rejected(line("order_placed", order_type=...), 12)
    assert msg == "line 12: an order_placed event is missing the required field 'order_type'"


@pytest.mark.parametrize("value", [3.0, 2.5, True, "3", None])
def test_qty_must_be_a_json_integer(value: Any) -> None:
    msg = rejected(line("fill", qty=value), 7)
    assert msg.startswith("line 7: field 'qty' of a fill must be a whole number of contracts, got ")


def test_qty_float_message_exact() -> None:
    msg = rejected(line("fill", qty=3.0), 7)
    assert msg == "line 7: field 'qty' of a fill must be a whole number of contracts, got 3.0"
    assert rejected(line("position", qty=True), 7).endswith("got true")


@pytest.mark.parametrize("event_type", ["fill", "order_placed", "order_updated"])
@pytest.mark.parametrize("qty", [0, -1])
def test_qty_zero_or_negative_on_orders_and_fills(event_type: str, qty: int) -> None:
    msg = rejected(line(event_type, qty=qty), 4)
    assert "field 'qty'" in msg and f"got {qty}" in msg and "at least 1" in msg


@pytest.mark.parametrize("event_type", ["fill", "order_placed", "order_updated", "position"])
def test_qty_over_a_million(event_type: str) -> None:
    msg = rejected(line(event_type, qty=1_000_001), 4)
    assert "field 'qty'" in msg and "1,000,000" in msg and "got 1000001" in msg
    msg = rejected(line(event_type, qty=10**30), 4)
    assert "field 'qty'" in msg


def test_position_qty_under_minus_a_million() -> None:
    msg = rejected(line("position", qty=-1_000_001), 4)
    assert msg == (
        "line 4: field 'qty' of a position event must be within ±1,000,000 contracts, got -1000001"
    )


@pytest.mark.parametrize(
    ("field", "value", "shown"),
    [("price", True, "true"), ("price", "20000", "'20000'"), ("price", None, "null")],
)
def test_price_must_be_a_number(field: str, value: Any, shown: str) -> None:
    msg = rejected(line("fill", **{field: value}), 11)
    assert msg == f"line 11: field '{field}' of a fill must be a number, got {shown}"


@pytest.mark.parametrize("field", ["bid", "ask", "last"])
def test_money_bool_rejected_on_quote(field: str) -> None:
    assert f"field '{field}'" in rejected(line("quote", **{field: False}))


@pytest.mark.parametrize(
    ("text", "shown"),
    [("NaN", "NaN"), ("Infinity", "Infinity"), ("-Infinity", "-Infinity"), ("1e400", "Infinity")],
)
def test_non_finite_numbers(text: str, shown: str) -> None:
    raw = b'{"type": "quote", "ts": 1, "symbol": "MNQ", "bid": ' + text.encode() + b"}"
    msg = rejected(raw, 10)
    assert msg == f"line 10: field 'bid' of a quote must be a finite number, got {shown}"
    raw = b'{"type": "account", "ts": 1, "account": "A", "balance": ' + text.encode() + b"}"
    assert "field 'balance'" in rejected(raw, 10)
    raw = b'{"type": "clock", "ts": ' + text.encode() + b"}"
    assert "field 'ts'" in rejected(raw, 10)


def test_qty_non_finite() -> None:
    raw = line("fill").replace(b'"qty": 1', b'"qty": 1e400')
    assert "field 'qty'" in rejected(raw)


def test_side_outside_allowed_set() -> None:
    msg = rejected(line("fill", side="sideways"), 6)
    assert msg == "line 6: field 'side' must be 'buy' or 'sell', got 'sideways'"
    assert "'buy' or 'sell'" in rejected(line("order_placed", side="BUY"))


def test_order_type_and_status_outside_allowed_set() -> None:
    msg = rejected(line("order_placed", order_type="fok"), 6)
    assert msg == (
        "line 6: field 'order_type' must be 'market', 'limit', 'stop' or 'stop_limit', got 'fok'"
    )
    msg = rejected(line("connection", status="up"), 6)
    assert msg == "line 6: field 'status' must be 'connected' or 'disconnected', got 'up'"


@pytest.mark.parametrize("field", ["account", "symbol", "order_id", "trade_id"])
def test_identifier_empty_or_too_long(field: str) -> None:
    msg = rejected(line("fill", **{field: ""}), 13)
    assert msg == f"line 13: field '{field}' of a fill must not be empty"
    msg = rejected(line("fill", **{field: "x" * 65}), 13)
    assert msg == f"line 13: field '{field}' of a fill is longer than 64 characters (65)"


def test_identifier_limits_on_other_types() -> None:
    assert "field 'symbol'" in rejected(line("quote", symbol=""))
    assert "field 'account'" in rejected(line("connection", account="a" * 65))
    assert "field 'order_id'" in rejected(line("order_cancelled", order_id="x" * 65))


def test_identifier_must_be_a_string() -> None:
    msg = rejected(line("order_cancelled", order_id=5), 2)
    assert msg == ("line 2: field 'order_id' of an order_cancelled event must be a string, "
                   'got 5 (identifiers are strings: write "5")')
    assert rejected(line("order_cancelled", order_id=True), 2) == (
        "line 2: field 'order_id' of an order_cancelled event must be a string, got true")


def test_several_problems_are_joined() -> None:
    msg = rejected(line("fill", side="sideways", qty=True, price="x"), 7)
    assert msg.startswith("line 7: ")
    assert msg.count("; ") == 2
    assert "'side'" in msg and "'qty'" in msg and "'price'" in msg


def test_describe_type() -> None:
    assert describe_type(None) == "null"
    assert describe_type(True) == "true"
    assert describe_type(3) == "a whole number"
    assert describe_type(3.0) == "a number"
    assert describe_type("x") == "a string"
    assert describe_type([]) == "a list"
    assert describe_type({}) == "an object"
