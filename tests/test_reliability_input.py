"""Bad input never stops riskterm: every bad line is one `rejected` record and changes nothing else;
every bad rules file is a list of `PATH:LINE:COL: message` issues (exit 2), never a traceback.

Property-based (hypothesis) over the parser, the whole replay path (reader -> parser -> engine ->
recorder -> SQLite) and the rules loader, plus subprocess runs of `riskterm --no-ui --source -`
and `riskterm check-rules`.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from riskterm.bench.workload import events as workload_events
from riskterm.bench.workload import to_line
from riskterm.brokers.replay import DryRunBroker
from riskterm.cli import main as cli_main
from riskterm.config import RulesConfig, RulesError, load_rules_text
from riskterm.engine import Engine
from riskterm.events import (
    BOM,
    MAX_ID_CHARS,
    MAX_LINE_BYTES,
    MAX_QTY,
    BelowZero,
    parse_line,
)
from riskterm.host import EngineHost, RunOptions

ROOT = Path(__file__).resolve().parent.parent
RULES_PATH = ROOT / "rules.yaml"
RULES_TEXT = RULES_PATH.read_text()
CONFIG = load_rules_text(RULES_TEXT, str(RULES_PATH))

# Tight limits, so that a few hundred simulator events fire most rule kinds.
TIGHT_RULES = """\
timezone: America/Chicago
daily_reset: "17:00"
session: {start: "08:30", end: "15:00", days: [mon, tue, wed, thu, fri]}
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
  ES: {tick_size: 0.25, tick_value: 12.5}
  NQ: {tick_size: 0.25, tick_value: 5.0}
  CL: {tick_size: 0.01, tick_value: 10.0}
rules:
  daily_realized_loss: {limit: -50, action: flatten, lockout: 30m, warn_at: 0.5}
  daily_total_loss: {limit: -80, warn_at: 0.5, lockout: 20m}
  max_contracts_per_instrument: {default_limit: 1}
  max_position_loss: {limit: -20, warn_at: 0.5}
  max_unrealized_profit: {target: 30}
  no_stop_loss_grace: {grace_seconds: 5}
  order_rate_limit: {max_orders: 2, per_seconds: 1}
  trade_frequency_limit: {per_minute: 3}
  max_order_size: {max_qty: 2}
  consecutive_losses: {max_losses: 2, lockout: 10m}
  symbol_blocks: {symbols: ["BTC", "MBT"]}
  auth_loss_guard: {}
"""
TIGHT = load_rules_text(TIGHT_RULES, "tight.yaml")

# A real, rule-firing stream (the simulator's traders break rules) as JSON Lines.
CLEAN: list[bytes] = [to_line(ev).encode() for ev in workload_events(500, seed=7, accounts=6)]


class _Big(bytes):
    """A 1 MB line that hypothesis reports by name instead of printing a megabyte."""

    def __repr__(self) -> str:
        return "ONE_MB_LINE"


ONE_MB_LINE = _Big(b'{"type": "clock", "ts": 1770130800, "pad": "' + b"x" * (1 << 20) + b'"}')



def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


def starts_with_line(error: str, n: int) -> bool:
    return re.match(rf"line {n}[ :]", error) is not None


# --- strategies -------------------------------------------------------------------------------

VALID_EVENTS: list[dict[str, Any]] = [
    {"type": "account", "ts": "2026-02-03T15:00:00Z", "account": "A1", "balance": 50000.0,
     "equity": 50010.0},
    {"type": "order_placed", "ts": "2026-02-03T15:00:01Z", "account": "A1", "symbol": "MNQ",
     "order_id": "o1", "side": "buy", "qty": 2, "order_type": "limit", "price": 20000.0},
    {"type": "order_updated", "ts": "2026-02-03T15:00:02Z", "account": "A1", "order_id": "o1",
     "qty": 1, "price": 20001.0},
    {"type": "order_cancelled", "ts": "2026-02-03T15:00:03Z", "account": "A1", "order_id": "o1"},
    {"type": "order_rejected", "ts": "2026-02-03T15:00:03Z", "account": "A1", "order_id": "o2",
     "reason": "margin"},
    {"type": "fill", "ts": 1770130804.5, "account": "A1", "symbol": "MNQ", "order_id": "o3",
     "side": "sell", "qty": 1, "price": 20002.25, "fee": 0.52},
    {"type": "position", "ts": "2026-02-03T09:00:05-06:00", "account": "A1", "symbol": "MNQ",
     "qty": -1, "avg_price": 20002.25},
    {"type": "quote", "ts": "2026-02-03T15:00:06Z", "symbol": "MNQ", "bid": 20001.0,
     "ask": 20001.5},
    {"type": "connection", "ts": "2026-02-03T15:00:07Z", "status": "disconnected",
     "reason": "heartbeat timeout"},
    {"type": "clock", "ts": "2026-02-03T15:00:08Z"},
]
REQUIRED = {
    "account": ("account",),
    "order_placed": ("account", "symbol", "order_id", "side", "qty", "order_type"),
    "order_updated": ("account", "order_id"),
    "order_cancelled": ("account", "order_id"),
    "order_rejected": ("account", "order_id"),
    "fill": ("account", "symbol", "order_id", "side", "qty", "price"),
    "position": ("account", "symbol", "qty"),
    "quote": ("symbol",),
    "connection": ("status",),
    "clock": (),
}
MONEY = {"account": ("balance", "equity"), "order_placed": ("price",), "fill": ("price", "fee"),
         "quote": ("bid", "ask"), "position": ("avg_price",)}

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=30),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                  max_size=4),
    max_leaves=10,
)
unicode_junk = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
    min_size=1, max_size=80)


def _dumps(obj: Any) -> bytes:
    # json.dumps writes NaN / Infinity tokens, which is what a broken broker might send too
    return json.dumps(obj, ensure_ascii=False).encode()


@st.composite
def mutated_events(draw: st.DrawFn) -> bytes:
    """A valid event with one field replaced by junk, removed, or the whole thing truncated."""
    ev = dict(draw(st.sampled_from(VALID_EVENTS)))
    how = draw(st.sampled_from(["replace", "remove", "truncate", "retype", "nonobject"]))
    if how == "replace":
        ev[draw(st.sampled_from(sorted(ev)))] = draw(json_values)
    elif how == "remove" and len(ev) > 1:
        del ev[draw(st.sampled_from(sorted(ev)))]
    elif how == "retype":
        ev["type"] = draw(st.text(max_size=15) | json_scalars)
    elif how == "nonobject":
        return _dumps(draw(st.lists(json_values, max_size=3) | json_scalars))
    raw = _dumps(ev)
    if how == "truncate":
        raw = raw[: draw(st.integers(0, len(raw) - 1))]
    return raw


junk_lines = st.one_of(
    st.binary(max_size=300).map(lambda b: b.replace(b"\n", b"\x00")),
    unicode_junk.map(lambda s: s.encode()),
    mutated_events(),
    st.just(ONE_MB_LINE),
    st.just(b"\xff\xfe\x00\x01\x80garbage\xc3\x28"),
    st.just(b""),
    st.just(b"  \t "),
    st.sampled_from([  # implausible quotes (CONTRACT section 1): rejected, never a mark
        b'{"type": "quote", "ts": 1770130800, "symbol": "MNQ", "bid": 0, "ask": 0}',
        b'{"type": "quote", "ts": "2026-02-03T15:00:00Z", "symbol": "CL", "last": -37.63}',
        b'{"type": "quote", "ts": 1770130800, "symbol": "ES", "bid": -0.0, "ask": 5000.0}',
    ]),
).filter(lambda raw: not isinstance(parse_line(raw, 1), dict))


# --- the parser alone ---------------------------------------------------------------------------


@fuzz(400)
@given(raw=st.binary(max_size=2000) | junk_lines, n=st.integers(1, 10**9))
def test_parse_line_never_raises_and_every_rejection_names_its_line(raw: bytes, n: int) -> None:
    result = parse_line(raw, n)
    if result is None:  # only blank lines are skipped silently (after line 1's BOM)
        assert not (raw[3:] if n == 1 and raw.startswith(BOM) else raw).strip()
    elif isinstance(result, str):
        assert starts_with_line(result, n), result
        assert len(result) < 1000  # a sentence, not a dump of the input
    elif isinstance(result, BelowZero):  # the engine judges it by its instrument
        assert result.event["type"] == "quote" and starts_with_line(result.error, n)
    else:
        assert isinstance(result, dict) and isinstance(result["ts"], float)


def _line(ev: dict[str, Any]) -> bytes:
    return _dumps(ev)


bad_money = st.sampled_from([math.nan, math.inf, -math.inf]).map(float) | st.sampled_from(
    ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"])


@fuzz(150)
@given(ev=st.sampled_from([e for e in VALID_EVENTS if e["type"] in MONEY]), data=st.data())
def test_non_finite_money_is_rejected(ev: dict[str, Any], data: st.DataObject) -> None:
    field = data.draw(st.sampled_from(MONEY[ev["type"]]))
    bad = data.draw(bad_money)
    if isinstance(bad, str):  # a literal that json.dumps cannot write: splice it in
        raw = _line({**ev, field: 0.0}).replace(f'"{field}": 0.0'.encode(), f'"{field}": {bad}'
                                                .encode())
    else:
        raw = _line({**ev, field: bad})
    result = parse_line(raw, 7)
    assert isinstance(result, str) and starts_with_line(result, 7), (raw, result)


@fuzz(150)
@given(ev=st.sampled_from([e for e in VALID_EVENTS if "qty" in REQUIRED[e["type"]]]),
       qty=st.one_of(st.integers(max_value=0), st.integers(min_value=MAX_QTY + 1),
                     st.floats(allow_nan=False), st.booleans(), st.text(max_size=5),
                     st.just(10**400)))
def test_bad_quantities_are_rejected(ev: dict[str, Any], qty: Any) -> None:
    if ev["type"] == "position" and isinstance(qty, int) and not isinstance(qty, bool) \
            and -MAX_QTY <= qty <= 0:
        return  # a flat or short position is a valid position event
    result = parse_line(_line({**ev, "qty": qty}), 3)
    assert isinstance(result, str) and starts_with_line(result, 3), (qty, result)
    assert "qty" in result or "JSON" in result


@fuzz(150)
@given(ev=st.sampled_from(VALID_EVENTS), data=st.data())
def test_missing_fields_wrong_types_and_bad_ids_are_rejected(ev: dict[str, Any],
                                                             data: st.DataObject) -> None:
    kind = data.draw(st.sampled_from(["missing", "type", "id", "ts"]))
    ev = dict(ev)
    if kind == "missing":
        field = data.draw(st.sampled_from(["type", "ts", *REQUIRED[ev["type"]]]))
        del ev[field]
    elif kind == "type":
        ev["type"] = data.draw(st.text(max_size=20).filter(
            lambda t: t not in REQUIRED) | json_values)
    elif kind == "id":
        ids = [f for f in ("account", "symbol", "order_id") if f in REQUIRED[ev["type"]]]
        if not ids:
            return
        ev[data.draw(st.sampled_from(ids))] = data.draw(
            st.just("") | st.text(min_size=MAX_ID_CHARS + 1, max_size=200)
            | st.integers() | st.none() | st.lists(st.text(), max_size=2))
    else:
        ev["ts"] = data.draw(st.sampled_from([
            "2026-02-03T15:00:00", "2026-02-30T15:00:00Z", "yesterday", "", None, True,
            [1770130800], 1e400, "2026-02-03T15:00:00+25:00", "+10000-01-01T00:00:00Z"]))
    result = parse_line(_line(ev), 12)
    assert isinstance(result, str) and starts_with_line(result, 12), (ev, result)


def test_oversized_lines_are_rejected_by_their_byte_length() -> None:
    at_limit = b'{"type":"clock","ts":1770130800,"pad":"' + b"x" * MAX_LINE_BYTES + b'"}'
    assert parse_line(ONE_MB_LINE, 5) == f"line 5 is longer than 64 KiB ({len(ONE_MB_LINE)} bytes)"
    assert parse_line(at_limit, 6).startswith("line 6 is longer than 64 KiB")


# --- the engine, through the real replay path --------------------------------------------------


async def _replay(lines: list[bytes], tmp: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Replay the lines as a file through EngineHost (parser, engine, recorder, SQLite)."""
    path = tmp / "events.jsonl"
    path.write_bytes(b"".join(raw + b"\n" for raw in lines))
    seen: list[dict[str, Any]] = []

    def sink(batch: list[tuple[dict[str, Any], str]]) -> None:
        for rec, body in batch:
            assert json.loads(body) == rec
            seen.append(rec)

    host = EngineHost(RunOptions(source=f"replay:{path}", db_path=tmp / "r.db"), TIGHT,
                      sinks=[sink], with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
        summary = await host.finish(wait_for_jobs=False)
    finally:
        await host.close()
    return seen, summary


CLEAN_RUN: dict[str, Any] = {}


def _clean_run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    if not CLEAN_RUN:
        with tempfile.TemporaryDirectory() as tmp:
            CLEAN_RUN["records"], CLEAN_RUN["summary"] = asyncio.run(_replay(CLEAN, Path(tmp)))
        # the clean stream really fires rules: violations, enforcements, warnings, lockouts
        kinds = {r["kind"] for r in CLEAN_RUN["records"]}
        assert len(CLEAN_RUN["records"]) > 100 and {"violation", "enforcement", "warning",
                                                    "lockout"} <= kinds
    return CLEAN_RUN["records"], CLEAN_RUN["summary"]


def _comparable(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in summary.items() if k not in ("elapsed_s", "rejected")}


@fuzz(30)
@given(junk=st.lists(st.tuples(st.integers(0, len(CLEAN)), junk_lines), min_size=1, max_size=8))
@example(junk=[(0, ONE_MB_LINE), (5, b"\x00\xff\xfe binary \x80\x81"), (len(CLEAN), b"{")])
def test_junk_interleaved_with_a_real_stream_changes_nothing_else(
        junk: list[tuple[int, bytes]]) -> None:
    clean_records, clean_summary = _clean_run()
    tagged: list[tuple[bytes, bool]] = [(raw, False) for raw in CLEAN]
    for pos, raw in sorted(junk, key=lambda j: j[0], reverse=True):
        tagged.insert(pos, (raw, True))
    lines = [raw for raw, _ in tagged]
    bad_lines = {n for n, (raw, is_junk) in enumerate(tagged, 1) if is_junk and raw.strip()}
    with tempfile.TemporaryDirectory() as tmp:
        records, summary = asyncio.run(_replay(lines, Path(tmp)))
    rejected = [r for r in records if r["kind"] == "rejected"]
    assert {r["line"] for r in rejected} == bad_lines
    assert len(rejected) == len(bad_lines) == summary["rejected"]
    for r in rejected:
        assert starts_with_line(r["error"], r["line"]), r
    assert [r for r in records if r["kind"] not in ("rejected", "summary")] == [
        r for r in clean_records if r["kind"] != "summary"]
    assert _comparable(summary) == _comparable(clean_summary)


# Every line the parser accepts must be processed without an exception.
# (within a month: the engine walks every daily reset between two timestamps, see the report)
T0 = 1770130800.0  # 2026-02-03T15:00:00Z
ts_values = st.one_of(
    st.floats(min_value=T0 - 86400, max_value=T0 + 30 * 86400),
    st.sampled_from([T0, T0 + 0.25, T0 + 7 * 3600, T0 + 8 * 3600]),  # around the daily reset
    st.sampled_from(["2026-02-03T15:00:00Z", "2026-02-03T16:59:59.999-06:00",
                     "2026-03-08T08:00:00Z"]),  # ISO, incl. the DST change
)
ids = st.sampled_from(["A1", "B2", "x'); DROP TABLE records;--", "Ω≈ç√", "a" * MAX_ID_CHARS])
syms = st.sampled_from(["MNQ", "ES", "MNQH6", "ZZ", "BTC"])
money = st.floats(allow_nan=False, allow_infinity=False)
prices = st.floats(min_value=0.0, exclude_min=True, allow_infinity=False)


@st.composite
def accepted_events(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(sorted(REQUIRED)))
    ev: dict[str, Any] = {"type": kind, "ts": draw(ts_values)}
    for field in REQUIRED[kind]:
        ev[field] = draw({
            "account": ids, "symbol": syms, "order_id": st.sampled_from(["o1", "o2", "o3"]),
            "side": st.sampled_from(["buy", "sell"]),
            "qty": st.integers(-MAX_QTY, MAX_QTY) if kind == "position"
            else st.integers(1, MAX_QTY),
            "order_type": st.sampled_from(["market", "limit", "stop", "stop_limit"]),
            "price": money, "status": st.sampled_from(["connected", "disconnected"]),
        }[field])
    for field in MONEY.get(kind, ()):
        if field not in ev and draw(st.booleans()):
            # a quote's prices are above zero (zero or below is rejected: CONTRACT section 1)
            ev[field] = draw(prices if kind == "quote" else money)
    return ev


def _process_all(events: list[dict[str, Any]], config: RulesConfig = TIGHT
                 ) -> list[dict[str, Any]]:
    engine = Engine(config, DryRunBroker())
    for n, ev in enumerate(events, 1):
        parsed = parse_line(_line(ev), n)
        assert isinstance(parsed, dict), parsed
        engine.process(parsed)
    return engine.take_changes().records


@fuzz(150)
@given(events=st.lists(accepted_events(), min_size=1, max_size=25))
def test_any_accepted_event_sequence_is_processed_without_an_exception(
        events: list[dict[str, Any]]) -> None:
    for config in (TIGHT, CONFIG):  # unsorted on purpose: old events must not move the clock
        for rec in _process_all(events, config):
            assert rec["kind"] in ("violation", "warning", "enforcement", "lockout", "unlock")


@pytest.mark.parametrize("ts", [-62135596800.0, 253402300799.0, "0001-01-01T00:00:00Z",
                                "9999-12-31T23:00:00Z"])
def test_extreme_but_accepted_timestamps_do_not_crash_the_engine(ts: Any) -> None:
    ev = {"type": "fill", "ts": ts, "account": "A1", "symbol": "MNQ", "order_id": "o1",
          "side": "buy", "qty": 1, "price": 20000.0}
    parsed = parse_line(_line(ev), 1)
    # the parser keeps timestamps to what the calendar can handle in any time zone
    assert isinstance(parsed, str) and "not a real instant" in parsed


def test_money_that_overflows_to_infinity_still_writes_valid_json(tmp_path: Path) -> None:
    """Finite but enormous prices make P&L overflow to inf inside the engine; every record on
    stdout and in the database must still be strict JSON (no NaN / Infinity tokens)."""
    lines = [_line(ev) for ev in (
        {"type": "fill", "ts": 1770130800, "account": "A1", "symbol": "MNQ", "order_id": "1",
         "side": "buy", "qty": MAX_QTY, "price": 1.7e308},
        {"type": "quote", "ts": 1770130801, "symbol": "MNQ", "last": -1.7e308},
        {"type": "fill", "ts": 1770130802, "account": "A1", "symbol": "MNQ", "order_id": "2",
         "side": "sell", "qty": MAX_QTY, "price": -1.7e308},
    )]
    records, _ = asyncio.run(_replay(lines, tmp_path))
    assert records
    import sqlite3

    with sqlite3.connect(tmp_path / "r.db") as conn:
        bodies = [b for (b,) in conn.execute("SELECT body FROM records")]
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    for body in bodies:
        json.loads(body, parse_constant=refuse)


# --- the whole program on stdin ----------------------------------------------------------------


def _riskterm(args: list[str], stdin: bytes, timeout: float = 60
              ) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "riskterm", *args], input=stdin,
                          capture_output=True, timeout=timeout, cwd=ROOT)


def test_stdin_with_a_1mb_line_and_binary_garbage(tmp_path: Path) -> None:
    garbage = os.urandom(4096).replace(b"\n", b"\x00")
    junk = [ONE_MB_LINE, garbage, b"\xff" * 70_000, b'{"type": "fill", "qty": NaN}',
            b"\x00\x00\x00", "ünïcødé ✓ \u202e junk".encode()]
    lines = list(CLEAN[:150])
    where = [0, 10, 40, 80, 120, 150]
    for pos, raw in sorted(zip(where, junk, strict=True), reverse=True):
        lines.insert(pos, raw)
    bad = sorted(n for n, raw in enumerate(lines, 1) if any(raw is j for j in junk))
    rules = tmp_path / "tight.yaml"
    rules.write_text(TIGHT_RULES)
    args = ["--no-ui", "--source", "-", "--rules", str(rules)]
    clean = _riskterm([*args, "--db", str(tmp_path / "c.db")],
                      b"".join(raw + b"\n" for raw in CLEAN[:150]))
    dirty = _riskterm([*args, "--db", str(tmp_path / "d.db")],
                      b"".join(raw + b"\n" for raw in lines))
    for res in (clean, dirty):
        assert res.returncode == 0, res.stderr.decode(errors="replace")
        assert b"Traceback" not in res.stderr
    clean_recs = [json.loads(x) for x in clean.stdout.splitlines()]
    dirty_recs = [json.loads(x) for x in dirty.stdout.splitlines()]
    rejected = [r for r in dirty_recs if r["kind"] == "rejected"]
    assert [r["line"] for r in rejected] == bad
    assert all(starts_with_line(r["error"], r["line"]) for r in rejected)
    assert rejected[0]["error"] == f"line 1 is longer than 64 KiB ({len(ONE_MB_LINE)} bytes)"
    assert "is not valid UTF-8" in rejected[1]["error"]

    def body(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in recs if r["kind"] not in ("rejected", "summary")]

    assert body(dirty_recs) == body(clean_recs)
    assert dirty_recs[-1]["rejected"] == len(bad)
    assert _comparable(dirty_recs[-1]) == _comparable(clean_recs[-1])


# --- rules.yaml --------------------------------------------------------------------------------


def _check_issues(text: str, err: RulesError) -> None:
    n_lines = text.count("\n") + 1
    assert err.issues
    for issue in err.issues:
        assert 1 <= issue.line <= n_lines + 1, (issue, text)
        assert issue.col >= 1 and issue.message.strip()
        assert re.fullmatch(r"[^:\n]+:\d+:\d+: .+", str(issue).split("\n")[0]), str(issue)


def _load(text: str) -> RulesConfig | None:
    try:
        return load_rules_text(text, "r.yaml")
    except RulesError as err:
        _check_issues(text, err)
        return None


yaml_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["17:00", "25:99", "-500", "1e400", "until_reset", "forever", "90s", "0x1F",
                     "2026-02-30", "America/Nowhere", "mon", "~"]),
)
yaml_value = st.recursive(
    yaml_scalar,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.text(max_size=12) | st.sampled_from(["limit", "action", "lockout", "warn_at",
                                                "enabled", "limits", "tiers", "target"]),
        inner, max_size=4),
    max_leaves=12,
)
RULE_IDS = ["daily_realized_loss", "max_contracts_per_instrument", "trade_frequency_limit",
            "cooldown_after_loss", "session_block_outside", "no_stop_loss_grace", "bogus_rule"]
TOP = ["timezone", "daily_reset", "session", "instruments", "accounts", "rules", "smart_risk",
       "unknown_top"]


@fuzz(200)
@given(text=st.text(max_size=400))
def test_arbitrary_text_as_rules_is_a_list_of_positioned_issues(text: str) -> None:
    _load(text)


@fuzz(200)
@given(data=st.data())
def test_mutated_default_rules_file(data: st.DataObject) -> None:
    text = RULES_TEXT
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text)))
        how = data.draw(st.sampled_from(["delete", "insert", "replace"]))
        char = data.draw(st.sampled_from(list(":{}[]&*!|>'\"\t-#%@`,?\x00\x85\ufeff")) |
                         st.characters(blacklist_categories=("Cs",)))
        if how == "delete":
            text = text[:pos] + text[pos + 5:]
        elif how == "insert":
            text = text[:pos] + char + text[pos:]
        else:
            text = text[:pos] + char + text[pos + 1:]
    _load(text)


@fuzz(200)
@given(top=st.dictionaries(st.sampled_from(TOP), yaml_value, max_size=4),
       rules=st.dictionaries(st.sampled_from(RULE_IDS), yaml_value, max_size=3),
       smart=st.dictionaries(st.sampled_from(["planner", "workers", "allow", "timeout_seconds",
                                              "every", "api_key_env", "base_url"]),
                             yaml_value, max_size=3))
def test_malformed_rules_structures(top: dict[str, Any], rules: dict[str, Any],
                                    smart: dict[str, Any]) -> None:
    doc = {**top, "rules": rules, "smart_risk": smart}
    for flow in (False, True):
        _load(yaml.safe_dump(doc, default_flow_style=flow, allow_unicode=True))


@pytest.mark.parametrize(("text", "line", "col"), [
    ("rules: !!python/object/apply:os.system ['touch /tmp/riskterm-pwned']\n", 1, 8),
    ("timezone: UTC\nsmart_risk:\n  model: !!python/name:os.system\n", 3, 10),
    ("rules:\n  daily_realized_loss: !!python/object:builtins.dict {limit: -5}\n", 2, 24),
    ("rules: {daily_realized_loss: {limit: !!binary aGVsbG8=}}\n", 1, 38),
])
def test_unsafe_or_unsupported_yaml_tags_are_issues_with_positions(text: str, line: int,
                                                                   col: int) -> None:
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "t.yaml")
    _check_issues(text, info.value)
    assert (info.value.issues[0].line, info.value.issues[0].col) == (line, col), info.value
    assert not Path("/tmp/riskterm-pwned").exists()


@pytest.mark.parametrize("text", ["[" * 5000, "a: " + "{b: " * 3000, "- " * 3000 + "x"])
def test_deeply_nested_yaml_is_an_issue_not_a_recursion_error(text: str) -> None:
    with pytest.raises(RulesError) as info:
        load_rules_text(text, "deep.yaml")
    _check_issues(text, info.value)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.text(max_size=200) | st.binary(max_size=200).map(
    lambda b: b.decode("latin-1")))
def test_check_rules_in_process_prints_only_positioned_issues(
        text: str, capfd: pytest.CaptureFixture[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        capfd.readouterr()
        code = cli_main(["check-rules", str(path)])
        err = capfd.readouterr().err
        if code == 0:
            assert err == ""
        else:
            assert code == 2
            lines = err.splitlines()
            assert lines and all(re.fullmatch(rf"{re.escape(str(path))}:\d+:\d+: .+", x)
                                 for x in lines), lines


LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n"
    for i in range(8)) + "rules: *i\n"  # 10^9 leaves


def _check_rules_quickly(tmp_path: Path, name: str, text: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    res = subprocess.run([sys.executable, "-m", "riskterm", "check-rules", str(path)],
                         capture_output=True, text=True, timeout=5, cwd=ROOT)
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert re.match(rf"{re.escape(str(path))}:\d+:\d+: ", res.stderr)


def test_billion_laughs_is_refused_quickly(tmp_path: Path) -> None:
    _check_rules_quickly(tmp_path, "laughs.yaml", LAUGHS)


def test_recursive_alias_is_refused_quickly(tmp_path: Path) -> None:
    _check_rules_quickly(tmp_path, "recursive.yaml", "rules: &a [*a, *a]\n")


def test_chained_merge_keys_are_expanded_quickly(tmp_path: Path) -> None:
    # each mapping merges the previous one 10 times: 10^19 merges if each were expanded again
    text = "m0: &m0 {x: 1}\n" + "".join(
        f"m{i}: &m{i} {{<<: [{', '.join([f'*m{i - 1}'] * 10)}]}}\n" for i in range(1, 20))
    _check_rules_quickly(tmp_path, "merges.yaml", text + "rules: *m19\n")


BAD_FILES: dict[str, bytes] = {
    "syntax.yaml": b"rules:\n  daily_realized_loss: {limit: -500\n",
    "types.yaml": b"rules:\n  daily_realized_loss: {limit: '-500', lockout: forever}\n"
                  b"  max_contracts: {limit: 2.5}\nsmart_risk: {workers: 0, planner: gpt}\n",
    "tag.yaml": b"rules: !!python/object/apply:os.system ['touch /tmp/riskterm-pwned']\n",
    "binary.yaml": b"rules:\n  \x00\x01\x02: {}\n",
    "notutf8.yaml": b"timezone: \xff\xfe America/Chicago\n",
    "list.yaml": b"- rules\n- daily_realized_loss\n",
    "huge_int.yaml": b"rules:\n  max_contracts: {limit: " + b"9" * 5000 + b"}\n",
    "deep.yaml": b"rules: " + b"[" * 5000,  # RecursionError in the YAML composer
    "directory.yaml/": b"",
}


def test_check_rules_command_on_bad_files(tmp_path: Path) -> None:
    for name, content in BAD_FILES.items():
        path = tmp_path / name
        if name.endswith("/"):
            path.mkdir()
        else:
            path.write_bytes(content)
        res = _riskterm(["check-rules", str(path)], b"")
        stderr = res.stderr.decode()
        assert res.returncode == 2, (name, stderr)
        assert "Traceback" not in stderr, stderr
        lines = stderr.splitlines()
        assert lines and all(re.fullmatch(rf"{re.escape(str(path))}:\d+:\d+: .+", x)
                             for x in lines), (name, lines)
    assert not Path("/tmp/riskterm-pwned").exists()
    # the engine refuses the same files the same way, before touching any database
    res = _riskterm(["--no-ui", "--source", "-", "--rules", str(tmp_path / "types.yaml"),
                     "--db", str(tmp_path / "never.db")], b"")
    assert res.returncode == 2 and b"Traceback" not in res.stderr
    assert res.stderr.decode().startswith(f"{tmp_path / 'types.yaml'}:2:")
    assert not (tmp_path / "never.db").exists()
