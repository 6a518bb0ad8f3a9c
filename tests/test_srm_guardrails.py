"""Guardrails: proposals that must not run are rejected with a reason, and logged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from riskterm.jobs.guardrails import check
from riskterm.jobs.tools import ACTION_TOOLS
from tests.test_jobs_support import FakeEngine, config, db_rows, pos, snap, started_pool, stop

ALL = ACTION_TOOLS
S = snap("A1", positions=[pos("MNQ", 2, 20000.0, 20010.0),
                          pos("ES", -1, 6000.0, 5990.0, pv=50.0, stops=[stop("s1", 6020.0, 1)])],
         orders=[{"order_id": "s1", "symbol": "ES", "side": "buy", "qty": 1,
                  "order_type": "stop", "price": None, "stop_price": 6020.0},
                 {"order_id": "o9", "symbol": "MNQ", "side": "buy", "qty": 1,
                  "order_type": "limit", "price": 19900.0, "stop_price": None}])


def verdict(action: str, args: dict[str, Any], snapshot: dict[str, Any] = S, *,
            allow: tuple[str, ...] = ALL, accepted: list[dict[str, Any]] | None = None,
            known: tuple[str, ...] = ("A1",)) -> str | None:
    return check(action, args, snapshot, allow, known, accepted or [])


@pytest.mark.parametrize(("action", "args"), [
    ("close_position", {"symbol": "MNQ"}),
    ("reduce_position", {"symbol": "MNQ", "qty": 2}),
    ("set_stop_loss", {"symbol": "MNQ", "price": 19990.0}),
    ("set_stop_loss", {"symbol": "ES", "price": 6000.0}),
    ("set_take_profit", {"symbol": "MNQ", "price": 20050.0}),
    ("set_take_profit", {"symbol": "ES", "price": 5950.0}),
])
def test_sound_proposals_pass(action: str, args: dict[str, Any]) -> None:
    assert verdict(action, args) is None


@pytest.mark.parametrize(("action", "args", "kw", "reason"), [
    ("close_position", {"symbol": "MNQ"}, {"known": ("B2",)}, "unknown account A1"),
    ("close_position", {"symbol": "CL"}, {}, "unknown symbol CL for account A1"),
    ("set_stop_loss", {"symbol": "MNQ", "price": 1.0}, {"allow": ("close_position",)},
     "set_stop_loss is not allowed by smart_risk.allow"),
    ("buy_more", {"symbol": "MNQ"}, {}, "not an action the Smart Risk Manager may take"),
    ("reduce_position", {"symbol": "MNQ", "qty": 3}, {},
     "would reverse the 2-contract position (exposure would increase)"),
    ("set_stop_loss", {"symbol": "MNQ", "price": 20020.0}, {},
     "a protective stop for a long MNQ position must be below the market (20010)"),
    ("set_stop_loss", {"symbol": "ES", "price": 5980.0}, {},
     "a protective stop for a short ES position must be above the market (5990)"),
    ("set_take_profit", {"symbol": "MNQ", "price": 20000.0}, {},
     "a take-profit for a long MNQ position must be above the market"),
    ("cancel_orders", {}, {}, "would also cancel the protective stop of ES"),
])
def test_rejections(action: str, args: dict[str, Any], kw: dict[str, Any], reason: str) -> None:
    why = verdict(action, args, **kw)
    assert why is not None and reason in why


def test_no_position_in_a_known_symbol() -> None:
    s = snap("A1", positions=[], history={"NQ": [1.0]})
    assert verdict("close_position", {"symbol": "NQ"}, s) == "A1 has no open NQ position"


def test_halted_and_reducing_accounts() -> None:
    halted = {**S, "state": "halted"}
    assert "A1 is halted" in str(verdict("set_stop_loss", {"symbol": "MNQ", "price": 19990.0},
                                         halted))
    assert verdict("close_position", {"symbol": "MNQ"}, halted) is None
    reducing = {**S, "state": "reducing"}
    assert verdict("set_stop_loss", {"symbol": "MNQ", "price": 19990.0}, reducing) is None
    assert "reverse" in str(verdict("reduce_position", {"symbol": "ES", "qty": 2}, reducing))


def test_earlier_proposals_are_taken_into_account() -> None:
    close = {"action": "close_position", "arguments": {"symbol": "MNQ"}}
    reduce1 = {"action": "reduce_position", "arguments": {"symbol": "MNQ", "qty": 1}}
    stop_es = {"action": "set_stop_loss", "arguments": {"symbol": "ES", "price": 6001.0}}
    assert "already being closed" in str(verdict("reduce_position", {"symbol": "MNQ", "qty": 1},
                                                 accepted=[close]))
    assert verdict("reduce_position", {"symbol": "MNQ", "qty": 1}, accepted=[reduce1]) is None
    assert "reverse" in str(verdict("reduce_position", {"symbol": "MNQ", "qty": 2},
                                    accepted=[reduce1]))
    assert "duplicate" in str(verdict("set_stop_loss", {"symbol": "ES", "price": 6002.0},
                                      accepted=[stop_es]))
    # once the protected position is being closed, cancelling its stop is fine
    es_close = {"action": "close_position", "arguments": {"symbol": "ES"}}
    assert verdict("cancel_orders", {}, accepted=[es_close]) is None
    assert "no working orders" in str(verdict("cancel_orders", {}, snap("A1")))


async def test_rejected_proposals_are_logged_in_a_job(tmp_path: Path) -> None:
    db = tmp_path / "g.db"
    engine = FakeEngine({"A1": snap(positions=[pos("MNQ", 3, 20000.0)], limits={
        "max_contracts_per_instrument": {"limits": {"MNQ": 2}}})})
    pool = await started_pool(db, config(allow=["reduce_position"], execute=True), engine)
    await pool.enqueue("A1")
    await pool.drain()
    (log,) = db_rows(db, "SELECT actions_log FROM jobs")[0]
    results = [(e["action"], e["result"]) for e in json.loads(log)]
    assert results == [("reduce_position", "ok: reduce_position MNQ"),
                       ("set_stop_loss", "rejected: set_stop_loss is not allowed by "
                                         "smart_risk.allow")]
    assert [c["action"] for c in engine.calls] == ["reduce_position"]  # never the rejected one
    events = [d for (d,) in db_rows(db, "SELECT detail FROM job_events WHERE type = 'rejected'")]
    assert events == ["set_stop_loss MNQ @ 19900: set_stop_loss is not allowed by "
                      "smart_risk.allow"]
    await pool.stop()


async def test_approval_rechecks_against_the_account_as_it_is_now(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    engine = FakeEngine({"A1": snap(positions=[pos("MNQ", 1, 20000.0)])})
    pool = await started_pool(db, config(), engine)
    job_id, _ = await pool.enqueue("A1")
    await pool.drain()
    engine.snapshots["A1"] = snap()  # the position was closed meanwhile
    assert await pool.approve(job_id) == []
    assert engine.calls == []
    (log,) = db_rows(db, "SELECT actions_log FROM jobs")[0]
    # said as it is, not as "unknown symbol" (issue 16)
    assert json.loads(log)[0]["result"] == ("rejected at approval: A1 no longer holds a MNQ "
                                            "position: it was closed after the job looked at "
                                            "the account")
    await pool.stop()
