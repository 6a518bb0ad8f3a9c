"""The heuristic planner's decisions on crafted portfolios, and whole SRM jobs through the pool."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from riskterm.jobs.planners.heuristic import plan
from tests.test_jobs_support import (
    FakeEngine,
    config,
    db_rows,
    job_records,
    pos,
    snap,
    started_pool,
    stop,
)

MCPI = {"max_contracts_per_instrument": {"limits": {"MNQ": 2}, "default_limit": 3}}


def actions(s: dict[str, Any]) -> list[tuple[str, str, Any]]:
    return [(a, args["symbol"], args.get("qty", args.get("price")))
            for a, args in plan(s)[0]]


def test_stop_for_unprotected_long_uses_range_on_tick_grid() -> None:
    s = snap(positions=[pos("MNQ", 1, 20000.0, 20010.0)],
             history={"MNQ": [20000.0, 20003.25, 20010.0, 20006.0]})
    # 1.5 x range 10 = 15 points below the mark 20010
    assert actions(s) == [("set_stop_loss", "MNQ", 19995.0)]


def test_stop_for_short_is_above_and_rounded_toward_the_mark() -> None:
    s = snap(positions=[pos("ES", -2, 6000.0, 6001.0, pv=50.0)],
             history={"ES": [6000.0, 6001.1, 6000.5]})
    # range 1.1 -> 1.65 points -> 6002.65, rounded down onto the 0.25 grid
    assert actions(s) == [("set_stop_loss", "ES", 6002.5)]


def test_stop_sized_by_daily_loss_room_when_tighter() -> None:
    s = snap(positions=[pos("MNQ", 2, 20000.0, 19990.0)], realized=-300.0,
             limits={"daily_realized_loss": {"limit": -500.0}},
             history={"MNQ": [19900.0, 20000.0]})
    # P&L -340, room 160; half of it over 2 contracts x 2 $/pt = 20 points (range: 150)
    assert actions(s) == [("set_stop_loss", "MNQ", 19970.0)]
    assert "risks half of the 160.00 left" in plan(s)[0][0][1]["reason"]


def test_stop_without_range_or_limit_and_without_tick_size() -> None:
    s = snap(positions=[pos("XYZ", 1, 101.37, tick=None)])
    assert actions(s) == [("set_stop_loss", "XYZ", 100.87)]  # 0.5 %, rounded to cents


def test_protected_position_gets_no_stop() -> None:
    s = snap(positions=[pos("MNQ", 1, 20000.0, stops=[stop("s1", 19950.0, 1)])])
    proposals, summary = plan(s)
    assert proposals == [] and summary.startswith("no action needed")


def test_over_instrument_limit_is_reduced_and_zero_limit_closed() -> None:
    s = snap(positions=[pos("MNQ", 3, 20000.0, stops=[stop("s", 19900.0, 3)]),
                        pos("ES", -4, 6000.0, pv=50.0, stops=[stop("t", 6050.0, 4)]),
                        pos("CL", 1, 70.0, pv=1000.0, stops=[stop("u", 69.0, 1)])],
             limits={"max_contracts_per_instrument": {"limits": {"MNQ": 2, "CL": 0},
                                                      "default_limit": 3}})
    assert actions(s) == [("close_position", "CL", None), ("reduce_position", "ES", 1),
                          ("reduce_position", "MNQ", 1)]


def test_contract_month_falls_back_to_root_limit() -> None:
    s = snap(positions=[pos("MNQH6", 4, 20000.0, stops=[stop("s", 19900.0, 4)])], limits=MCPI)
    assert actions(s) == [("reduce_position", "MNQH6", 2)]


def test_account_max_contracts_net_and_gross() -> None:
    positions = [pos("MNQ", 3, 20000.0, stops=[stop("a", 19900.0, 3)]),
                 pos("ES", 2, 6000.0, pv=50.0, stops=[stop("b", 5950.0, 2)]),
                 pos("NQ", -1, 21000.0, pv=20.0, stops=[stop("c", 21100.0, 1)])]
    net = snap(positions=positions, limits={"max_contracts": {"limit": 2, "count": "net"}})
    assert actions(net) == [("reduce_position", "MNQ", 2)]  # net 4: the largest long is cut
    gross = snap(positions=positions, limits={"max_contracts": {"limit": 3, "count": "gross"}})
    assert actions(gross) == [("close_position", "MNQ", None)]


def test_close_worst_loser_near_daily_loss_limit() -> None:
    s = snap(positions=[pos("MNQ", 1, 20000.0, 19950.0, stops=[stop("a", 19900.0, 1)]),
                        pos("ES", 1, 6000.0, 5998.0, pv=50.0, stops=[stop("b", 5990.0, 1)])],
             realized=-300.0, limits={"daily_realized_loss": {"limit": -500.0, "warn_at": 0.8}})
    # P&L -300 - 100 - 100 = -500 <= 0.8 x -500; both lose 100: the tie goes to the symbol
    assert actions(s) == [("close_position", "ES", None)]
    calm = snap(positions=s["positions"], realized=-100.0, limits=s["limits"])
    assert actions(calm) == []


def test_total_loss_pct_limit_and_no_loser() -> None:
    s = snap(positions=[pos("MNQ", 1, 20000.0, 20100.0, stops=[stop("a", 19900.0, 1)])],
             realized=-700.0, balance=50_000.0, limits={"daily_total_loss": {"limit_pct": 0.01}})
    proposals, summary = plan(s)
    assert proposals == [] and "no open position is losing" in summary


def test_halted_account_gets_no_new_stop() -> None:
    s = snap(positions=[pos("MNQ", 1, 20000.0)], state="halted")
    proposals, summary = plan(s)
    assert proposals == [] and "halted" in summary


def test_plan_is_deterministic_and_serialisable() -> None:
    s = snap(positions=[pos("MNQ", 3, 20000.0, 19990.0), pos("ES", -1, 6000.0, pv=50.0)],
             limits=MCPI, history={"MNQ": [19980.0, 20000.0]})
    assert plan(s) == plan(json.loads(json.dumps(s)))


async def test_heuristic_job_recommends_and_records_everything(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    engine = FakeEngine({"A1": snap(positions=[pos("MNQ", 3, 20000.0, 19990.0)], limits=MCPI,
                                    history={"MNQ": [19980.0, 20000.0]})})
    pool = await started_pool(db, config(step_delay_seconds=0.02), engine)
    t0 = time.monotonic()
    job_id, _ = await pool.enqueue("A1", instructions="be careful", origin="cli")
    await pool.drain()
    assert time.monotonic() - t0 >= 7 * 0.02  # six steps and a second iteration, each waits
    assert engine.calls == []  # execute: false -> recommendations only
    rec = job_records(db, job_id)[-1]
    assert (rec["status"], rec["actions_taken"], rec["error"]) == ("completed", 0, None)
    (row,) = db_rows(db, "SELECT model_used, user_instructions, iteration_count, actions_log, "
                         "actions_summary, initial_equity, final_equity, graph_state, progress, "
                         "step FROM jobs")
    model, instr, iters, log, summary, eq0, eq1, state, progress, step = row
    assert (model, instr, iters, progress, step) == ("heuristic", "be careful", 2, 1.0,
                                                     "finalize")
    log = json.loads(log)
    assert [(e["action"], e["result"]) for e in log] == [("reduce_position", "recommended"),
                                                         ("set_stop_loss", "recommended")]
    assert set(log[0]) == {"step", "action", "arguments", "reason", "confidence", "result"}
    assert log[0]["arguments"] == {"symbol": "MNQ", "qty": 1}
    assert summary.startswith("2 recommended")
    assert eq0 == eq1 == 50_000.0 - 60.0
    state = json.loads(state)
    assert state["completed_steps"] == ["snapshot", "assess", "research", "decide", "act",
                                        "finalize"]
    assert state["assessment"]["over_instrument_limit"] == ["MNQ"]
    types = [t for (t,) in db_rows(db, "SELECT type FROM job_events WHERE job_id = ?",
                                   (job_id,))]
    assert {"status", "step", "snapshot", "assess", "tool", "recommend", "finish"} <= set(types)
    # approval executes the recommendations through the engine, once
    recs = await pool.approve(job_id)
    assert [c["action"] for c in engine.calls] == ["reduce_position", "set_stop_loss"]
    assert engine.calls[0]["qty"] == 1 and engine.calls[0]["job_id"] == job_id
    assert [r["status"] for r in recs] == ["ok", "ok"]
    (taken,) = db_rows(db, "SELECT actions_taken FROM jobs")[0]
    assert taken == 2
    import pytest

    from riskterm.jobs.errors import JobError

    with pytest.raises(JobError, match="no recommended actions"):
        await pool.approve(job_id)
    await pool.stop()


async def test_heuristic_job_executes_when_configured(tmp_path: Path) -> None:
    db = tmp_path / "x.db"
    engine = FakeEngine({"A1": snap(positions=[pos("MNQ", 1, 20000.0)])}, status="dry_run")
    pool = await started_pool(db, config(execute=True), engine)
    job_id, _ = await pool.enqueue("A1")
    await pool.drain()
    assert [(c["action"], c["symbol"]) for c in engine.calls] == [("set_stop_loss", "MNQ")]
    rec = job_records(db, job_id)[-1]
    assert rec["actions_taken"] == 1
    (log,) = db_rows(db, "SELECT actions_log FROM jobs")[0]
    assert json.loads(log)[0]["result"] == "dry_run: set_stop_loss MNQ"
    await pool.stop()


async def test_smart_risk_job_fails_for_unknown_account_or_without_engine(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    pool = await started_pool(db, engine=FakeEngine())
    job_id, _ = await pool.enqueue("NOPE")
    await pool.drain()
    rec = job_records(db, job_id)[-1]
    assert (rec["status"], rec["attempt"], rec["error"]) == ("failed", 1, "unknown account NOPE")
    await pool.stop()
    bare = await started_pool(tmp_path / "g.db")
    job_id, _ = await bare.enqueue("A1")
    await bare.drain()
    assert "needs a running riskterm engine" in job_records(tmp_path / "g.db")[-1]["error"]
    await bare.stop()
