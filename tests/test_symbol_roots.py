"""Contract-month symbols (CONTRACT §1): every rules.yaml table that names a symbol matches the
symbol itself or, when it is not listed as it is, its root (riskterm.symbols decides the root)."""

from __future__ import annotations

import pytest

from riskterm import symbols
from riskterm.jobs import risk
from tests.helpers import fill, make_engine, records, ts

T0 = "2026-02-03T15:00:00Z"


@pytest.mark.parametrize(("symbol", "root"), [
    ("MNQH6", "MNQ"), ("MNQH26", "MNQ"), ("ESZ25", "ES"), ("ZQZ5", "ZQ"), ("6EM6", "6E"),
    ("MNQ", None), ("ES", None), ("MNQH", None), ("MNQH266", None), ("H6", None),
    ("mnqh6", None),  # month codes are capitals
])
def test_the_root_of_a_symbol(symbol: str, root: str | None) -> None:
    assert symbols.root(symbol) == root


def test_a_symbol_listed_as_it_is_wins_over_its_root() -> None:
    table = {"MNQ": 10, "MNQH6": 0}
    assert symbols.lookup(table, "MNQH6") == 0  # listed as it is, even with a falsy value
    assert symbols.lookup(table, "MNQM6") == 10
    assert symbols.lookup(table, "ESH6") is None
    assert symbols.match(["mnq*"], "MNQH6") == "mnq*"
    assert symbols.match(["MNQ"], "MNQH6") == "MNQ"  # by its root
    assert symbols.match(["MNQH6"], "MNQM6") is None


def _instruments(extra: str = "") -> str:
    return "instruments:\n  MNQ: {tick_size: 0.25, tick_value: 0.5}\n" + extra


def test_instruments_price_a_contract_month_by_its_root() -> None:
    engine = make_engine("rules: {}\n")
    engine.process(fill(T0, "buy", 1, 100.0, symbol="MNQH6"))
    engine.process({"type": "quote", "ts": ts(T0), "symbol": "MNQH6", "last": 110.0})
    snap = engine.account_snapshot("A1")
    assert snap is not None
    (pos,) = snap["positions"]
    assert (pos["point_value"], pos["tick_size"], pos["unrealized_pnl"]) == (2.0, 0.25, 20.0)
    assert not [r for r in records(engine) if r["rule"] == "unknown_instrument"]


def test_an_instrument_listed_as_it_is_wins_over_its_root() -> None:
    from riskterm.config import load_rules_text

    config = load_rules_text(_instruments("  MNQH6: {tick_size: 0.5, tick_value: 5.0}\n")
                             + "rules: {}\n")
    assert config.point_value("MNQH6") == 10.0
    assert config.point_value("MNQM6") == 2.0
    assert config.instrument("MNQM26") is config.instruments["MNQ"]


def test_max_contracts_per_instrument_limits_a_contract_month_by_its_root() -> None:
    engine = make_engine("rules:\n  max_contracts_per_instrument:\n"
                         "    limits: {MNQ: 10, ESH6: 1}\n    default_limit: 3\n")
    engine.process(fill(T0, "buy", 10, 100.0, symbol="MNQH6"))  # at MNQ's 10: allowed
    engine.process(fill(T0, "buy", 2, 100.0, symbol="ESH6"))  # ESH6 listed as it is: 1
    engine.process(fill(T0, "buy", 4, 100.0, symbol="ESM6"))  # ES not listed: default 3
    got = [(r["symbol"], r["value"], r["limit"]) for r in records(engine, ("violation",))]
    assert got == [("ESH6", 2, 1), ("ESM6", 4, 3)]
    engine.process(fill(T0, "buy", 1, 100.0, symbol="MNQH6"))
    (v,) = records(engine, ("violation",))
    assert (v["symbol"], v["value"], v["limit"]) == ("MNQH6", 11, 10)


def test_symbol_blocks_block_a_contract_month_by_its_root() -> None:
    engine = make_engine("rules: {symbol_blocks: {symbols: [MES, 'g?']}}\n")
    for n, sym in enumerate(["MESH6", "GCZ25", "MNQH6", "MES"]):
        engine.process({"type": "order_placed", "ts": ts(T0), "account": "A1", "symbol": sym,
                        "order_id": f"o{n}", "side": "buy", "qty": 1, "order_type": "market"})
    got = [(r["symbol"], r["limit"]) for r in records(engine, ("violation",))]
    assert got == [("MESH6", "MES"), ("GCZ25", "g?"), ("MES", "MES")]


def test_the_smart_risk_manager_finds_the_limit_by_root() -> None:
    limits = {"max_contracts_per_instrument": {"limits": {"MNQ": 10, "MNQH6": 2},
                                               "default_limit": 5}}
    assert risk.instrument_limit(limits, "MNQM6") == 10
    assert risk.instrument_limit(limits, "MNQH6") == 2
    assert risk.instrument_limit(limits, "ESH6") == 5
