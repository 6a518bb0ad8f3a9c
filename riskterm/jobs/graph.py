"""The Smart Risk Manager as an explicit state graph:

    snapshot -> assess -> research (tool-call loop, up to max_iterations) -> decide -> act
             -> finalize

The graph state is a JSON document (job.graph_state) saved after every step. Each step first
waits the planner's step delay (cancellable). A retried attempt starts again from snapshot.
"""

from __future__ import annotations

import json
from typing import Any

from riskterm.jobs import guardrails, risk
from riskterm.jobs.actions import RECOMMENDED, describe, execute_entry, summarize
from riskterm.jobs.context import JobContext
from riskterm.jobs.errors import PermanentError
from riskterm.jobs.planners import Planner, make_planner
from riskterm.jobs.tools import ToolBox

STEPS: tuple[tuple[str, float], ...] = (
    ("snapshot", 0.0), ("assess", 0.1), ("research", 0.2), ("decide", 0.8), ("act", 0.85),
    ("finalize", 0.95),
)


async def run_smart_risk(ctx: JobContext) -> None:
    planner = make_planner(ctx.config, transport=ctx.pool.http_transport)
    try:
        await Graph(ctx, planner).run()
    finally:
        await planner.aclose()


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class Graph:
    def __init__(self, ctx: JobContext, planner: Planner) -> None:
        self.ctx, self.planner, self.job = ctx, planner, ctx.job
        self.config = ctx.config
        self.engine = ctx.engine
        self.state: dict[str, Any] = {
            "account": self.job.account, "planner": planner.name, "model": planner.model_used,
            "instructions": self.job.user_instructions, "execute": bool(self.config.execute),
            "attempt": self.job.attempts, "step": None, "completed_steps": [],
        }
        self.job.graph_state = self.state
        self.job.model_used = planner.model_used
        self.snap: dict[str, Any] = {}
        self.box: ToolBox | None = None
        self.accepted: list[dict[str, Any]] = []

    async def run(self) -> None:
        for name, progress in STEPS:
            await self.ctx.sleep(self.planner.step_delay)
            self.state["step"] = name
            self.ctx.progress(progress, name)
            await getattr(self, name)()
            self.state["completed_steps"].append(name)
            self.ctx.save()

    async def snapshot(self) -> None:
        if self.engine is None:
            raise PermanentError("no engine is attached to this job pool; a Smart Risk Manager "
                                 "job needs a running riskterm engine")
        job = self.job
        if self.engine.is_replay and job.snapshot is not None:
            snap, source = job.snapshot, "as of enqueue (replay)"
        else:
            snap, source = self.engine.account_snapshot(job.account), "at job start"
        if snap is None:
            raise PermanentError(f"unknown account {job.account}")
        self.snap = snap
        self.state["snapshot"], self.state["snapshot_source"] = snap, source
        job.initial_equity, job.initial_balance = snap.get("equity"), snap.get("balance")
        n_pos = sum(1 for p in snap.get("positions") or [] if p.get("qty"))
        self.ctx.event("snapshot", f"{job.account} {source}: {snap.get('state')}, {n_pos} open "
                       f"position(s), {len(snap.get('working_orders') or [])} working order(s)")

    async def assess(self) -> None:
        snap = self.snap
        positions = [p for p in snap.get("positions") or [] if p.get("qty")]
        limits = snap.get("limits") or {}
        over = []
        for p in positions:
            lim = risk.instrument_limit(limits, p["symbol"])
            if lim is not None and abs(p["qty"]) > lim:
                over.append(p["symbol"])
        loss = risk.daily_loss_limit(snap)
        assessment: dict[str, Any] = {
            "state": snap.get("state"), "open_positions": len(positions),
            "unprotected": sorted(p["symbol"] for p in positions if not p.get("stops")),
            "over_instrument_limit": sorted(over), "day_pnl": round(risk.daily_pnl(snap), 2),
            "loss_limit": None,
        }
        if loss is not None:
            assessment["loss_limit"] = {"rule": loss[1], "limit": loss[0],
                                        "used": round(assessment["day_pnl"] / loss[0], 4)}
        self.state["assessment"] = assessment
        self.ctx.event("assess", _short(assessment, 300))

    async def research(self) -> None:
        max_iterations = int(self.config.max_iterations)
        box = self.box = ToolBox(self.snap)
        log: list[dict[str, Any]] = []
        self.state["research"] = log
        self.planner.begin(self.state, max_iterations)
        for it in range(1, max_iterations + 1):
            if it > 1:
                await self.ctx.sleep(self.planner.step_delay)
            self.ctx.check_cancel()
            self.job.iteration_count = it
            turn = await self.planner.next_turn(it)
            results = []
            for call in turn.calls:
                ok, text = box.call(call.name, call.arguments, it)
                results.append((ok, text))
                log.append({"iteration": it, "tool": call.name, "arguments": call.arguments,
                            "ok": ok, "result": _short(text, 500)})
                self.ctx.event("tool", f"{call.name}({_short(call.arguments, 120)}) -> "
                               + ("ok" if ok else _short(text, 200)))
            if not turn.calls:
                log.append({"iteration": it, "content": _short(turn.content or "", 1000),
                            "ok": False, "result": "no tool call"})
                self.ctx.event("tool", "answer without a tool call; asked again")
            self.planner.observe(turn, results)
            self.ctx.progress(0.2 + 0.6 * it / max_iterations, "research", f"iteration {it}")
            if box.finished:
                break
        self.state["finished"], self.state["summary"] = box.finished, box.summary
        if not box.finished:
            if not box.proposals:
                raise PermanentError(f"the planner used all {max_iterations} iterations without "
                                     "proposing an action or finishing")
            self.ctx.event("research", f"out of iterations; going on with "
                           f"{len(box.proposals)} proposal(s)")

    async def decide(self) -> None:
        assert self.box is not None
        known = self.engine.known_accounts()
        for entry in self.box.proposals:
            why = guardrails.check(entry["action"], entry["arguments"], self.snap,
                                   self.config.allow, known, self.accepted)
            if why is None:
                self.accepted.append(entry)
            else:
                entry["result"] = f"rejected: {why}"
                self.ctx.event("rejected", f"{describe(entry)}: {why}")
        self.job.actions_log = self.box.proposals
        self.state["proposals"] = self.box.proposals

    async def act(self) -> None:
        job, engine = self.job, self.engine
        # the pool's config as it is now: a reload to `execute: false` or a narrower `allow`
        # while this job planned holds for its actions too
        live = self.ctx.config
        if not live.execute:
            for entry in self.accepted:
                entry["result"] = RECOMMENDED
                self.ctx.event("recommend", f"{describe(entry)} (awaiting approval)")
            return
        fresh = self.snap if engine.is_replay else engine.account_snapshot(job.account)
        done: list[dict[str, Any]] = []
        for entry in self.accepted:
            self.ctx.check_cancel()
            why = guardrails.check(entry["action"], entry["arguments"], fresh or self.snap,
                                   live.allow, engine.known_accounts(), done)
            if why is not None:  # the account changed while the planner worked
                entry["result"] = f"rejected: {why}"
                self.ctx.event("rejected", f"{describe(entry)}: {why}")
                continue
            _, executed = await execute_entry(engine, job.account, job.id, entry)
            done.append(entry)
            job.actions_taken += int(executed)
            self.ctx.event("action", f"{describe(entry)}: {entry['result']}")
            self.ctx.save()

    async def finalize(self) -> None:
        job = self.job
        final = self.snap if self.engine.is_replay else (
            self.engine.account_snapshot(job.account) or self.snap)
        job.final_equity, job.final_balance = final.get("equity"), final.get("balance")
        job.actions_summary = summarize(job.actions_log)
        if not self.state.get("summary"):
            self.state["summary"] = job.actions_summary
        self.ctx.event("finish", _short(f"{self.state['summary']} — {job.actions_summary}", 500))
