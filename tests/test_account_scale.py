"""Per-event work does not grow with the number of accounts (issue 12, item 13).

The engine's edge-trigger state (`engine.fired`) holds a key per standing violation, so it grows
with the accounts. A rule that scanned it per new account (max_contracts did) made a run
quadratic in the account count. Here the set counts how often it is iterated: a whole stream of
new accounts, each one breaching, may iterate it a bounded number of times however many
accounts there are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from riskterm.engine import Engine, RestoredState
from tests.helpers import fill, make_engine, ts

RULES = """\
rules:
  max_contracts: {limit: 2, lockout: none}
  max_contracts_per_instrument: {limits: {MNQ: 2}}
  daily_total_loss: {limit: -1000}
  max_position_loss: {limit: -500}
"""


class CountingSet(set):  # type: ignore[type-arg]
    """A set that counts the passes over it (membership tests are not passes)."""

    passes = 0

    def __iter__(self) -> Iterator[Any]:
        CountingSet.passes += 1
        return super().__iter__()


def _passes(n_accounts: int) -> tuple[int, Engine]:
    engine = make_engine(RULES)
    engine.process(fill("2026-02-03T15:00:00Z", "buy", 1, 100.0, account="FIRST"))
    engine.fired = CountingSet(engine.fired)
    CountingSet.passes = 0
    t = ts("2026-02-03T15:00:01Z")
    for i in range(n_accounts):
        name = f"ACC{i:05d}"
        engine.process({"type": "account", "ts": t, "account": name, "balance": 50_000.0})
        engine.process({**fill("2026-02-03T15:00:01Z", "buy", 3, 100.0, account=name,
                               order_id=f"o{i}"), "ts": t})
        if i % 50 == 0:
            engine.process({"type": "quote", "ts": t, "symbol": "MNQ", "last": 99.0 + i % 3})
    return CountingSet.passes, engine


@pytest.mark.parametrize("n_accounts", [100, 1000])
def test_new_accounts_never_scan_the_fired_set(n_accounts: int) -> None:
    passes, engine = _passes(n_accounts)
    # every account breached both size rules: the set grew with the accounts ...
    assert len(engine.fired) == 2 * n_accounts
    # ... and was walked at most once (max_contracts indexes what a restore brought, once)
    assert passes <= 1, passes


def test_max_contracts_indexes_each_restored_fired_set() -> None:
    """A standing violation restored from the database is not written again; the index follows
    the set a restore installs even when the rule already looked before."""
    first = make_engine(RULES)
    first.process(fill("2026-02-03T15:00:00Z", "buy", 3, 100.0))
    changes = first.take_changes()
    state = RestoredState(
        accounts={name: json.loads(data) for name, data in changes.accounts},
        positions=changes.positions, engine_state=json.loads(changes.engine_state or "{}"))
    engine = make_engine(RULES)
    engine.process(fill("2026-02-03T14:00:00Z", "buy", 1, 100.0, account="OTHER"))
    engine.restore(state)  # after max_contracts looked once (at OTHER's fill)
    engine.process(fill("2026-02-03T15:00:01Z", "buy", 1, 100.0))
    rules = [r["rule"] for r in engine.take_changes().records if r["kind"] == "violation"]
    assert "max_contracts" not in rules, rules


def test_a_commit_writes_the_edge_state_of_the_accounts_that_changed_only() -> None:
    """The keys of fired and warned are saved with their account's row: a commit after one
    more violation writes that account, not every key of every account (which made each
    commit's work grow with the accounts)."""
    _, engine = _passes(300)
    engine.take_changes()
    engine.process(fill("2026-02-03T15:00:02Z", "buy", 3, 100.0, account="NEW"))
    changes = engine.take_changes()
    assert [name for name, _ in changes.accounts] == ["NEW"]
    assert json.loads(changes.accounts[0][1])["fired"] == [
        ["max_contracts", "MNQ"], ["max_contracts_per_instrument", "MNQ"]]
    assert changes.engine_state is None or "ACC" not in changes.engine_state
    # and a restart from the rows restores every key
    state = RestoredState(accounts={name: json.loads(engine._account_json(name))
                                    for name in engine.accounts})
    again = make_engine(RULES)
    again.restore(state)
    assert again.fired == engine.fired and len(again.fired) == 2 * 300 + 2
