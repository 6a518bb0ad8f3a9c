"""Shared fakes for the job pool and Smart Risk Manager tests (no tests here).

FakeEngine implements riskterm.jobs.engine_view.EngineView over crafted snapshots. A few test
job kinds are registered for pool behaviour that the real kinds do not exercise.
"""

from __future__ import annotations

import asyncio
import copy
import json
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskterm.config import SmartRiskConfig
from riskterm.jobs.context import JobContext
from riskterm.jobs.errors import PermanentError, TransientError
from riskterm.jobs.kinds import KINDS, register_kind
from riskterm.jobs.pool import JobPool

T0 = 1_770_130_800.0  # 2026-02-03T15:00:00Z


def config(**kw: Any) -> SmartRiskConfig:
    base: dict[str, Any] = {"step_delay_seconds": 0.0, "timeout_seconds": 5.0, "workers": 2}
    base.update(kw)
    return SmartRiskConfig(**base)


def pos(symbol: str, qty: int, avg: float, mark: float | None = None, *, pv: float = 2.0,
        stops: list[dict[str, Any]] | None = None, tick: float | None = 0.25) -> dict[str, Any]:
    mark = avg if mark is None else mark
    p: dict[str, Any] = {
        "symbol": symbol, "qty": qty, "avg_price": avg, "mark": mark,
        "unrealized_pnl": round((mark - avg) * qty * pv, 2), "point_value": pv,
        "stops": stops or [], "opened_ts": T0 - 600,
    }
    if tick is not None:
        p["tick_size"] = tick
    return p


def stop(order_id: str, price: float, qty: int) -> dict[str, Any]:
    return {"order_id": order_id, "stop_price": price, "qty": qty}


def snap(account: str = "A1", *, positions: list[dict[str, Any]] | None = None,
         orders: list[dict[str, Any]] | None = None, limits: dict[str, Any] | None = None,
         realized: float = 0.0, state: str = "active", balance: float = 50_000.0,
         history: dict[str, list[float]] | None = None) -> dict[str, Any]:
    positions = positions or []
    unrealized = round(sum(p["unrealized_pnl"] for p in positions), 2)
    return {
        "account": account, "ts": T0, "state": state, "balance": balance,
        "equity": balance + unrealized, "start_balance": balance, "realized_pnl": realized,
        "unrealized_pnl": unrealized, "positions": positions, "working_orders": orders or [],
        "limits": limits or {}, "lockouts": [], "recent_violations": [],
        "price_history": history or {},
    }


class FakeEngine:
    def __init__(self, snapshots: dict[str, dict[str, Any]] | None = None, *,
                 is_replay: bool = False, status: str = "ok") -> None:
        self.snapshots = snapshots if snapshots is not None else {"A1": snap()}
        self.is_replay = is_replay
        self.status = status
        self.t = T0
        self.calls: list[dict[str, Any]] = []

    def known_accounts(self) -> list[str]:
        return sorted(self.snapshots)

    def account_snapshot(self, account: str) -> dict | None:
        s = self.snapshots.get(account)
        return copy.deepcopy(s) if s is not None else None

    def execute_action(self, account: str, action: str, *, symbol: str | None = None,
                       qty: int | None = None, price: float | None = None,
                       job_id: str | None = None, reason: str = "") -> list[dict]:
        self.calls.append({"account": account, "action": action, "symbol": symbol, "qty": qty,
                           "price": price, "job_id": job_id})
        return [{"kind": "enforcement", "ts": "2026-02-03T15:00:00Z", "action": action,
                 "account": account, "symbol": symbol, "rule": "smart_risk", "order_id": None,
                 "status": self.status, "detail": f"{action} {symbol or ''}".strip()}]

    def now(self) -> float:
        return self.t


async def wait_until(pred: Callable[[], Any], timeout: float = 5.0, what: str = "") -> Any:
    """Poll a condition every few ms (no fixed sleeps in tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or pred}")
        await asyncio.sleep(0.005)


def db_rows(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def job_status(path: Path, job_id: str) -> str | None:
    rows = db_rows(path, "SELECT status FROM jobs WHERE id = ?", (job_id,))
    return rows[0][0] if rows else None


def job_records(path: Path, job_id: str | None = None) -> list[dict[str, Any]]:
    recs = [json.loads(b) for (b,) in db_rows(path, "SELECT body FROM records WHERE kind = 'job' "
                                                    "ORDER BY id")]
    return [r for r in recs if job_id is None or r["job_id"] == job_id]


async def started_pool(path: Path, cfg: SmartRiskConfig | None = None, engine: Any = None,
                       **kw: Any) -> JobPool:
    kw.setdefault("poll_interval", 0.02)
    kw.setdefault("backoff_base", 0.02)
    kw.setdefault("cancel_grace", 0.2)
    pool = JobPool(path, cfg or config(), engine, **kw)
    await pool.start()
    return pool


# -- test job kinds ----------------------------------------------------------------------------

ORDER: list[str] = []  # job ids in the order test_order* jobs ran
GATES: dict[str, asyncio.Event] = {}  # account -> gate a test_gate job waits on
# pytest also imports this file as a test module under another name: share the first copy's
# state and handlers instead of registering a second set.
_FIRST = KINDS["test_gate"].handler.__globals__ if "test_gate" in KINDS else None
if _FIRST is not None:
    ORDER, GATES = _FIRST["ORDER"], _FIRST["GATES"]


def gate(account: str) -> asyncio.Event:
    """A fresh gate (in the running loop) for test_gate jobs of an account."""
    GATES[account] = asyncio.Event()
    return GATES[account]


async def _order(ctx: JobContext) -> None:
    ORDER.append(ctx.job.id)


async def _gate(ctx: JobContext) -> None:
    """Cooperative: waits for its gate, checking for cancellation."""
    gate = GATES.setdefault(ctx.job.account, asyncio.Event())
    while not gate.is_set():
        await ctx.sleep(0.01)


async def _stubborn(ctx: JobContext) -> None:
    """Ignores cooperative cancellation and timeouts until cancelled hard."""
    await asyncio.sleep(30)


async def _flaky(ctx: JobContext) -> None:
    """Transient failure until the attempt named in the instructions (default: always)."""
    succeed_at = int(ctx.job.user_instructions or 99)
    ctx.event("attempt", f"attempt {ctx.job.attempts} at {time.monotonic():.6f}")
    if ctx.job.attempts < succeed_at:
        raise TransientError(f"HTTP 503 on attempt {ctx.job.attempts}")


async def _broken(ctx: JobContext) -> None:
    raise PermanentError("HTTP 401: bad credentials")


async def _hang_in_child(ctx: JobContext) -> None:
    """Hangs when RISKTERM_TEST_HANG is set (a process that is then killed), else completes."""
    if os.environ.get("RISKTERM_TEST_HANG"):
        await asyncio.sleep(3600)


if _FIRST is None:
    register_kind("test_order", 0, _order)
    register_kind("test_order_hi", -10, _order)
    register_kind("test_gate", 0, _gate, dedup=True)
    register_kind("test_stubborn", 0, _stubborn)
    register_kind("test_flaky", 0, _flaky)
    register_kind("test_broken", 0, _broken)
    register_kind("test_hang", -10, _hang_in_child)


def test_job_rows_hold_strict_json_even_for_overflowed_figures() -> None:
    """A P&L that overflowed to inf/nan is stored as null: JSON has no Infinity or NaN."""
    from riskterm.jobs.model import COLUMNS, Job, job_to_row

    job = Job(id="j1", kind="smart_risk", account="A")
    job.graph_state = {"equity": float("inf"), "nested": [{"pnl": float("-inf")}]}
    job.snapshot = {"unrealized_pnl": float("nan"), "positions": []}
    job.actions_log = [{"step": 1, "result": float("inf")}]
    row = dict(zip(COLUMNS, job_to_row(job), strict=True))

    def refuse(token: str) -> None:
        raise ValueError(f"non-standard JSON token {token}")

    assert json.loads(row["graph_state"], parse_constant=refuse) == {
        "equity": None, "nested": [{"pnl": None}]}
    assert json.loads(row["snapshot"], parse_constant=refuse)["unrealized_pnl"] is None
    assert json.loads(row["actions_log"], parse_constant=refuse) == [{"step": 1, "result": None}]
