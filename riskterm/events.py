"""Broker events in: parse one JSON Lines line into an event dict or a rejection sentence.

The contract (CONTRACT.md section 1) is enforced by one strict pydantic ``TypeAdapter``: a union of
TypedDicts discriminated on ``type``. The happy path is one ``validate_json`` call plus the
conversion of an ISO ``ts`` string to float epoch seconds; error sentences are built only when
validation fails.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal, NamedTuple, Required

from pydantic import (
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    with_config,
)
from typing_extensions import TypedDict

__all__ = ["BOM", "CASH_REASONS", "EVENT_TYPES", "MAX_LINE_BYTES", "MAX_QTY", "BelowZero",
           "describe_type", "parse_line"]

MAX_LINE_BYTES = 65536
BOM = b"\xef\xbb\xbf"  # the UTF-8 byte order mark
MAX_QTY = 1_000_000
MAX_ID_CHARS = 64
EVENT_TYPES: tuple[str, ...] = (
    "account",
    "order_placed",
    "order_updated",
    "order_cancelled",
    "order_rejected",
    "fill",
    "position",
    "quote",
    "connection",
    "clock",
    "cash",
)
CASH_REASONS: tuple[str, ...] = ("deposit", "withdrawal", "payout", "fee", "adjustment")

# Epoch seconds the engine's calendar can work with in any time zone: 0002-01-01 .. 9999-01-01
# UTC (a day of margin each side of what datetime can represent).
_MIN_TS = -62104060800.0
_MAX_TS = 253370764800.0


def _iso_to_epoch(text: str) -> float:
    """ISO-8601 text with an offset -> epoch seconds; ValueError('no_offset' / 'not_instant')."""
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError("not_instant") from None
    if dt.tzinfo is None:
        raise ValueError("no_offset")
    try:
        ts = dt.timestamp()
    except (OverflowError, ValueError, OSError):
        raise ValueError("not_instant") from None
    if not _MIN_TS <= ts < _MAX_TS:
        raise ValueError("not_instant")
    return ts


# A ts string is converted after validation (in parse_line): cheaper than a validator callback.
Ts = str | Annotated[float, Field(allow_inf_nan=False, ge=_MIN_TS, lt=_MAX_TS)]
Id = Annotated[str, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)]
Money = Annotated[float, Field(allow_inf_nan=False)]
Qty = Annotated[int, Field(gt=0, le=MAX_QTY)]
SignedQty = Annotated[int, Field(ge=-MAX_QTY, le=MAX_QTY)]
Side = Literal["buy", "sell"]
OrderType = Literal["market", "limit", "stop", "stop_limit"]

_CONFIG = ConfigDict(strict=True, extra="ignore")


@with_config(_CONFIG)
class AccountEvent(TypedDict, total=False):
    type: Required[Literal["account"]]
    ts: Required[Ts]
    account: Required[Id]
    balance: Money
    equity: Money


@with_config(_CONFIG)
class OrderPlaced(TypedDict, total=False):
    type: Required[Literal["order_placed"]]
    ts: Required[Ts]
    account: Required[Id]
    symbol: Required[Id]
    order_id: Required[Id]
    side: Required[Side]
    qty: Required[Qty]
    order_type: Required[OrderType]
    price: Money
    stop_price: Money


@with_config(_CONFIG)
class OrderUpdated(TypedDict, total=False):
    type: Required[Literal["order_updated"]]
    ts: Required[Ts]
    account: Required[Id]
    order_id: Required[Id]
    qty: Qty
    price: Money
    stop_price: Money


@with_config(_CONFIG)
class OrderCancelled(TypedDict, total=False):
    type: Required[Literal["order_cancelled"]]
    ts: Required[Ts]
    account: Required[Id]
    order_id: Required[Id]


@with_config(_CONFIG)
class OrderRejected(TypedDict, total=False):
    type: Required[Literal["order_rejected"]]
    ts: Required[Ts]
    account: Required[Id]
    order_id: Required[Id]
    reason: str


@with_config(_CONFIG)
class Fill(TypedDict, total=False):
    type: Required[Literal["fill"]]
    ts: Required[Ts]
    account: Required[Id]
    symbol: Required[Id]
    order_id: Required[Id]
    side: Required[Side]
    qty: Required[Qty]
    price: Required[Money]
    fee: Money
    realized_pnl: Money
    # the broker's id of the execution: a second fill with the same id for the account is a
    # duplicate delivery (Engine._on_fill). A string like every identifier; a JSON integer is
    # rejected (as for order_id): an adapter for a broker with integer ids sends str(id)
    trade_id: Id


@with_config(_CONFIG)
class Position(TypedDict, total=False):
    type: Required[Literal["position"]]
    ts: Required[Ts]
    account: Required[Id]
    symbol: Required[Id]
    qty: Required[SignedQty]
    avg_price: Money


@with_config(_CONFIG)
class Quote(TypedDict, total=False):
    type: Required[Literal["quote"]]
    ts: Required[Ts]
    symbol: Required[Id]
    bid: Money
    ask: Money
    last: Money


@with_config(_CONFIG)
class Connection(TypedDict, total=False):
    type: Required[Literal["connection"]]
    ts: Required[Ts]
    status: Required[Literal["connected", "disconnected"]]
    account: Id
    reason: str


@with_config(_CONFIG)
class Clock(TypedDict, total=False):
    type: Required[Literal["clock"]]
    ts: Required[Ts]


@with_config(_CONFIG)
class Cash(TypedDict, total=False):
    """Money moved into or out of the account that is not trading P&L (CONTRACT section 5).
    An amount of 0 is accepted: it moves nothing, and rejecting it would only add noise."""

    type: Required[Literal["cash"]]
    ts: Required[Ts]
    account: Required[Id]
    amount: Required[Money]  # signed: + into the account, - out of it
    reason: Required[Literal["deposit", "withdrawal", "payout", "fee", "adjustment"]]


Event = Annotated[
    AccountEvent
    | OrderPlaced
    | OrderUpdated
    | OrderCancelled
    | OrderRejected
    | Fill
    | Position
    | Quote
    | Connection
    | Clock
    | Cash,
    Field(discriminator="type"),
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(Event)
# the core validator itself: TypeAdapter.validate_json only forwards to it (a call saved per line)
_validate_json = _ADAPTER.validator.validate_json
# recent ts strings -> epoch seconds: a feed repeats the same instant on many lines
_TS_CACHE: dict[str, float] = {}

_ID_FIELDS = ("account", "symbol", "order_id", "trade_id")
_ALLOWED = {
    "side": ("buy", "sell"),
    "order_type": ("market", "limit", "stop", "stop_limit"),
    "status": ("connected", "disconnected"),
}
# fields whose allowed set depends on the event type (`reason` is free text elsewhere)
_ALLOWED_BY_TYPE = {("cash", "reason"): CASH_REASONS}


def parse_line(raw: bytes, line_no: int) -> dict[str, Any] | str | BelowZero | None:
    """Parse one physical line. Its terminator (LF, CRLF or a lone CR at the end) may be there
    or not: it is not counted in the 64 KiB and does not move an error's column.

    A UTF-8 byte order mark at the start of line 1 (an editor's, on the first line of the input)
    is skipped. Returns the event as a plain dict (``ts`` as float epoch seconds, absent optional
    fields absent), a sentence explaining why the line is rejected, a BelowZero for the engine to
    judge (a quote below zero), or None for a blank line.
    """
    if line_no == 1 and raw[:3] == BOM:
        # the true length of a reader-truncated line (its `size`) loses the BOM too
        raw = _Trimmed(raw[3:], getattr(raw, "size", 0) - 3)
    if len(raw) > MAX_LINE_BYTES:
        # a reader that truncated a huge line passes its true length (terminator excluded)
        size = getattr(raw, "size", None) or len(raw) - _terminator(raw)
        if size > MAX_LINE_BYTES:
            return f"line {line_no} is longer than 64 KiB ({size} bytes)"
    try:
        event = _validate_json(raw)
    except ValidationError as exc:
        return _explain(raw, line_no, exc)
    ts = event["ts"]
    if ts.__class__ is str:
        epoch = _TS_CACHE.get(ts)
        if epoch is None:
            try:
                epoch = _iso_to_epoch(ts)
            except ValueError:
                return f"line {line_no}: {_ts_problem(ts)}"
            if len(_TS_CACHE) >= 4096:
                _TS_CACHE.clear()
            _TS_CACHE[ts] = epoch
        event["ts"] = epoch
    if event["type"] == "quote":
        return _judge_prices(event, line_no)
    return event


class BelowZero(NamedTuple):
    """A quote with a price below zero, which only its instrument can allow
    (``negative_prices: true``): the parser has no rules file, so it hands the event on with
    the sentence to reject it with, and the engine (Engine.reject, which gets every line that
    is not a plain event, with its number) decides on the rules in force when it gets there.
    """

    event: dict[str, Any]
    error: str


_PRICES = ("bid", "ask", "last")


def _judge_prices(event: dict[str, Any], line_no: int) -> dict[str, Any] | str | BelowZero:
    """A quote's prices are plausible: never zero, below zero only if its instrument says so.
    One tick at zero (a feed's placeholder) must not mark every position at a total loss."""
    below: tuple[str, float] | None = None
    for name in _PRICES:
        price = event.get(name)
        if price is not None and price <= 0:
            if price == 0:
                return (f"line {line_no}: field '{name}' of a quote for {event['symbol']} is 0, "
                        "not a price (a zero tick must not mark positions at a loss)")
            below = below or (name, price)
    if below is None:
        return event
    return BelowZero(event, (
        f"line {line_no}: field '{below[0]}' of a quote for {event['symbol']} is below zero "
        f"({below[1]:g}) and its instrument does not say negative_prices: true"))


class _Trimmed(bytes):
    """A line 1 without its BOM; `size` is the true length of a truncated line, else 0."""

    size: int

    def __new__(cls, data: bytes, size: int) -> _Trimmed:
        obj = super().__new__(cls, data)
        obj.size = max(size, 0)
        return obj


def _terminator(raw: bytes) -> int:
    """Bytes of the line terminator at the end of `raw`: 2 (CRLF), 1 (LF or CR) or 0."""
    if raw.endswith(b"\r\n"):
        return 2
    return 1 if raw.endswith((b"\n", b"\r")) else 0


def describe_type(value: object) -> str:
    """Name the JSON kind of a decoded value for a person: 'a string', 'a list', 'true', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return "a whole number"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _show(value: object) -> str:
    """Render a decoded JSON value briefly, JSON-style (true, null, 3.0, 'text')."""
    if value is None or isinstance(value, bool):
        return describe_type(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:40] + "…")
    return describe_type(value)


def _kind(event_type: str) -> str:
    if event_type in ("fill", "quote"):
        return f"a {event_type}"
    article = "an" if event_type[0] in "aeiou" else "a"
    return f"{article} {event_type} event"


# --- error sentences (slow path only) ---------------------------------------------------------

_POSITION = re.compile(r" at line \d+ column (\d+)$")
_LAST_STRING = re.compile(r'"((?:[^"\\]|\\.)*)"\s*$')
_JSON_TEXT = {
    "expected value": "expected a value",
    "expected ident": "expected true, false or null",
    "key must be a string": "expected a field name in double quotes",
    "trailing characters": "unexpected text after the end of the JSON value",
    "trailing comma": "a trailing comma is not allowed",
    "unexpected end of hex escape": "invalid \\u escape in a string",
    "lone leading surrogate in hex escape": "invalid \\u escape in a string",
    "control character (\\u0000-\\u001F) found while parsing a string": (
        "control character inside a string"
    ),
}


def _explain(raw: bytes, line_no: int, exc: ValidationError) -> str | None:
    if not raw.strip():
        return None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return f"line {line_no} is not valid UTF-8"
    errors = exc.errors(include_url=False)
    first = errors[0]
    if raw[:3] == BOM:  # line 1 had it removed: this is a later line
        return (f"line {line_no} starts with a UTF-8 byte order mark (allowed only at the "
                "start of the input)")
    if first["type"] == "json_invalid":
        return f"line {line_no} is not valid JSON: {_json_problem(raw, first)}"
    if not first["loc"] and first["type"] in ("model_attributes_type", "dict_type", "model_type"):
        return f"line {line_no} is not a JSON object (got {describe_type(first['input'])})"
    problems: list[str] = []
    seen: set[str] = set()
    for err in errors:
        message = _field_problem(err)
        if message not in seen:
            seen.add(message)
            problems.append(message)
        if len(problems) == 3:
            break
    return f"line {line_no}: " + "; ".join(problems)


def _json_problem(raw: bytes, err: Any) -> str:
    detail = str(err.get("ctx", {}).get("error", "")) or "malformed"
    match = _POSITION.search(detail)
    if match is None:
        return detail.replace("`", "'")
    what = detail[: match.start()]
    content = raw[: len(raw) - _terminator(raw)]
    if what.startswith("EOF while parsing "):
        # the end of the line, wherever the terminator put the parser's own position
        before = content.decode("utf-8", errors="replace")
    else:
        before = content[: max(int(match.group(1)) - 1, 0)].decode("utf-8", errors="replace")
    column = len(before) + 1
    if what == "expected `:`":
        key = _LAST_STRING.search(before)
        what = f"expected ':' after \"{key.group(1)}\"" if key else "expected ':'"
    elif what.startswith("EOF while parsing "):
        inside = what[len("EOF while parsing ") :]
        what = (
            "the line ends before a value"
            if inside == "a value"
            else f"the line ends inside {inside}"
        )
    else:
        what = _JSON_TEXT.get(what, what.replace("`", "'"))
    return f"{what} at column {column}"


def _field_problem(err: Any) -> str:
    loc = err["loc"]
    kind_tag = str(loc[0]) if loc else ""
    kind = _kind(kind_tag) if kind_tag in EVENT_TYPES else "the event"
    field = str(loc[1]) if len(loc) > 1 else ""
    etype = err["type"]
    value = err.get("input")

    if etype == "union_tag_not_found":
        return "the event has no 'type' field"
    if etype == "union_tag_invalid":
        tag = value.get("type") if isinstance(value, dict) else None
        return f"unknown event type {_show(tag)} (expected one of {', '.join(EVENT_TYPES)})"
    if not field:
        return f"{kind} could not be read"
    if etype == "missing":
        return f"{kind} is missing the required field '{field}'"
    if field == "ts":
        return _ts_problem(value)
    if field == "qty":
        return _qty_problem(kind_tag, kind, etype, value)
    allowed = _ALLOWED_BY_TYPE.get((kind_tag, field)) or _ALLOWED.get(field)
    if allowed is not None and etype in ("literal_error", "string_type"):
        options = ", ".join(f"'{a}'" for a in allowed[:-1]) + f" or '{allowed[-1]}'"
        return f"field '{field}' must be {options}, got {_show(value)}"
    if etype == "string_too_short":
        return f"field '{field}' of {kind} must not be empty"
    if etype == "string_too_long":
        n = len(value) if isinstance(value, str) else 0
        return f"field '{field}' of {kind} is longer than {MAX_ID_CHARS} characters ({n})"
    if etype == "string_type":
        if field in _ID_FIELDS and value.__class__ is int:
            return (f"field '{field}' of {kind} must be a string, got {_show(value)} "
                    f"(identifiers are strings: write \"{value}\")")
        return f"field '{field}' of {kind} must be a string, got {_show(value)}"
    if etype == "finite_number":
        return f"field '{field}' of {kind} must be a finite number, got {_show(value)}"
    if etype in ("float_type", "float_parsing", "bool_type"):
        return f"field '{field}' of {kind} must be a number, got {_show(value)}"
    return f"field '{field}' of {kind} has an invalid value {_show(value)}"


def _ts_problem(value: object) -> str:
    if isinstance(value, str):
        try:
            _iso_to_epoch(value)
        except ValueError as exc:
            if str(exc) == "no_offset":
                return f"field 'ts' has no UTC offset: {_show(value)}"
        return f"field 'ts' is not a real instant: {_show(value)}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"field 'ts' is not a real instant: {_show(value)}"
    return (
        "field 'ts' must be an ISO-8601 string with a UTC offset or epoch seconds, "
        f"got {_show(value)}"
    )


def _qty_problem(kind_tag: str, kind: str, etype: str, value: object) -> str:
    prefix = f"field 'qty' of {kind}"
    if etype in ("int_type", "int_from_float", "int_parsing", "bool_type"):
        return f"{prefix} must be a whole number of contracts, got {_show(value)}"
    if kind_tag == "position":
        return f"{prefix} must be within ±{MAX_QTY:,} contracts, got {_show(value)}"
    if isinstance(value, int) and value > MAX_QTY:
        return f"{prefix} must be at most {MAX_QTY:,} contracts, got {_show(value)}"
    return f"{prefix} must be at least 1 contract, got {_show(value)}"
