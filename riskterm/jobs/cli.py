"""`riskterm jobs list|show|enqueue|cancel|retry|approve` against the database.

Works with no engine running and while one runs on the same database. Enqueue and retry write a
queued job that no pool owns; a running engine's pool claims it within its poll interval
(0.25 s). Cancel and approve of a job that a live pool holds are sent to that pool as requests
(job_requests) and the command waits briefly for the answer; a job whose pool is gone is
cancelled directly.

Every string shown comes from outside (an account from a broker, model text, job errors): the text
forms show it with control characters made visible (riskterm.safetext), so an escape sequence
in an account name is read, not obeyed; the JSON forms escape them.

Approve needs a running engine to execute anything. Without one nothing is executed: the
command says so, lists the recommendations, notes the attempt in the job's timeline and exits 1
(an approval is not kept for later: the market will have moved by the time an engine starts).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import aiosqlite

from riskterm.db import DatabaseError, open_db
from riskterm.jobs import ops
from riskterm.jobs.actions import RECOMMENDED, describe
from riskterm.jobs.errors import JobError
from riskterm.jobs.kinds import KINDS, get_kind
from riskterm.jobs.model import CANCELLED, FINAL, QUEUED, Job, job_detail, job_summary
from riskterm.jobs.pool import STALE_AFTER
from riskterm.jobs.store import (
    Txn,
    active_job_for,
    immediate,
    live_owners,
    load_events,
    load_job,
    new_block,
    save_job,
    write_txn_parts,
)
from riskterm.safetext import visible
from riskterm.strictjson import strict_dumps
from riskterm.timefmt import iso

EXIT_OK, EXIT_RUNTIME, EXIT_USAGE = 0, 1, 2
CANCEL_WAIT = 3.0  # seconds to wait for a live pool to stop a job (its hard deadline is 2 s)
APPROVE_WAIT = 10.0
_POLL = 0.05
ACTIONS = ("list", "show", "enqueue", "cancel", "retry", "approve")


async def run_jobs_command(action: str, db_path: Path, *, job_id: str | None = None,
                           account: str | None = None, kind: str = "smart_risk",
                           instructions: str | None = None, as_json: bool = False,
                           config: Any = None, out: TextIO = sys.stdout,
                           err: TextIO = sys.stderr) -> int:
    if action not in ACTIONS:
        print(f"unknown jobs command {action!r}; use one of {', '.join(ACTIONS)}", file=err)
        return EXIT_USAGE
    if action in ("show", "cancel", "retry", "approve") and not job_id:
        print(f"jobs {action} needs a job id", file=err)
        return EXIT_USAGE
    if action == "enqueue":
        if not account:
            print("jobs enqueue needs --account", file=err)
            return EXIT_USAGE
        if get_kind(kind) is None:
            print(f"unknown job kind {kind!r}; known kinds: {', '.join(sorted(KINDS))}",
                  file=err)
            return EXIT_USAGE
    db_path = Path(db_path)
    if action != "enqueue" and not db_path.exists():
        if action == "list":
            print("[]" if as_json else f"no jobs (no database at {db_path})", file=out)
            return EXIT_OK
        print(f"unknown job id {job_id} (no database at {db_path})", file=err)
        return EXIT_USAGE
    try:
        conn = await open_db(db_path)
    except DatabaseError as exc:
        print(str(exc), file=err)
        return EXIT_RUNTIME
    cli = _Cli(conn, out, err, as_json)
    try:
        if action == "list":
            return await cli.list()
        if action == "show":
            return await cli.show(str(job_id))
        if action == "enqueue":
            return await cli.enqueue(str(account), kind, instructions)
        if action == "cancel":
            return await cli.cancel(str(job_id))
        if action == "retry":
            return await cli.retry(str(job_id))
        return await cli.approve(str(job_id))
    except JobError as exc:  # it may quote a job id or account from outside
        print(visible(str(exc), newlines=True), file=err)
        return EXIT_USAGE
    except aiosqlite.Error as exc:
        print(f"cannot use database {db_path}: {exc}", file=err)
        return EXIT_RUNTIME
    finally:
        await conn.close()


def _when(value: float | None) -> str:
    return iso(value) if value is not None else "-"


class _Cli:
    def __init__(self, conn: aiosqlite.Connection, out: TextIO, err: TextIO,
                 as_json: bool) -> None:
        self.conn, self.out, self.err, self.as_json = conn, out, err, as_json

    def say(self, text: str) -> None:
        print(visible(text, newlines=True), file=self.out)

    def warn(self, text: str) -> None:
        print(visible(text, newlines=True), file=self.err)

    async def _txn(self, body: Any) -> Any:
        txn = Txn()
        async with immediate(self.conn):
            result = await body(self.conn, txn)
            await write_txn_parts(self.conn, txn)
        return result

    async def _job(self, job_id: str) -> Job:
        job = await load_job(self.conn, job_id)
        if job is None:
            raise JobError(f"unknown job id {job_id}")
        return job

    # -- reading -------------------------------------------------------------------------------

    async def list(self) -> int:
        cols = "id, kind, account, status, priority, progress, step, created_at, duration_s"
        async with self.conn.execute(f"SELECT {cols} FROM jobs ORDER BY rowid DESC") as cur:
            rows = await cur.fetchall()
        jobs = [job_summary(Job(id=r[0], kind=r[1], account=r[2], status=r[3], priority=r[4],
                                progress=r[5], step=r[6], created_at=r[7], duration_s=r[8]))
                for r in rows]
        if self.as_json:
            self.say(strict_dumps(jobs))
            return EXIT_OK
        if not jobs:
            self.say("no jobs")
            return EXIT_OK
        head = ("ID", "KIND", "ACCOUNT", "STATUS", "PRI", "PROGRESS", "STEP", "CREATED",
                "DURATION")
        table = [head] + [tuple(visible(cell) for cell in (
            j["id"], j["kind"], j["account"], j["status"], str(j["priority"]),
            f"{j['progress']:.0%}", j["step"] or "-", j["created_at"] or "-",
            f"{j['duration_s']:.2f}s" if j["duration_s"] is not None else "-"))
            for j in jobs]
        widths = [max(len(row[i]) for row in table) for i in range(len(head))]
        for row in table:
            self.say("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        return EXIT_OK

    async def show(self, job_id: str) -> int:
        job = await self._job(job_id)
        detail = job_detail(job, await load_events(self.conn, job_id))
        if self.as_json:
            self.say(strict_dumps(detail))
            return EXIT_OK
        d = detail
        lines = [
            f"job {d['id']}  {d['kind']}  account {d['account']}",
            f"status      {d['status']} (attempt {d['attempts']}), progress {d['progress']:.0%}"
            + (f", step {d['step']}" if d["step"] else ""),
            f"priority    {d['priority']}   origin {job.origin or '-'}",
            f"created     {d['created_at']}   started {d['started_at'] or '-'}   "
            f"finished {d['finished_at'] or '-'}",
            f"duration    {d['duration_s'] if d['duration_s'] is not None else '-'} s",
        ]
        if d["model_used"]:
            lines.append(f"model       {d['model_used']}   iterations {d['iteration_count']}")
        if d["user_instructions"]:
            lines.append(f"instructions {d['user_instructions']}")
        if d["initial_equity"] is not None or d["initial_balance"] is not None:
            lines.append(f"equity      {d['initial_equity']} -> {d['final_equity']}   "
                         f"balance {d['initial_balance']} -> {d['final_balance']}")
        lines.append(f"actions     {d['actions_taken']} taken; {d['actions_summary'] or '-'}")
        if d["error"]:
            lines.append(f"error       {d['error']}")
        if d["actions_log"]:
            lines.append("actions log:")
            for i, e in enumerate(d["actions_log"], 1):
                conf = e.get("confidence")
                conf_text = f"  confidence {conf:.2f}" if isinstance(conf, int | float) else ""
                lines.append(f"  {i}. [{e.get('step')}] {describe(e)}{conf_text}")
                lines.append(f"       reason: {e.get('reason')}")
                lines.append(f"       result: {e.get('result')}")
        if d["events"]:
            lines.append("timeline:")
            lines += [f"  {ev['ts']}  {ev['type']:<9} {ev['detail']}" for ev in d["events"]]
        # one line per field: a newline inside a value is shown as \x0a, not a new line
        self.say("\n".join(visible(line) for line in lines))
        return EXIT_OK

    # -- changing ------------------------------------------------------------------------------

    async def enqueue(self, account: str, kind: str, instructions: str | None) -> int:
        spec = get_kind(kind)
        assert spec is not None

        async def body(conn: aiosqlite.Connection, txn: Txn) -> tuple[str, bool]:
            if spec.dedup and (other := await active_job_for(conn, kind, account)):
                return other, True
            now = time.time()
            block = await new_block(conn, "cli", now, keep=False)
            job = Job(id=f"j{block}-1", kind=kind, account=account, priority=spec.priority,
                      origin="cli", created_at=now, user_instructions=instructions)
            await save_job(conn, job)
            txn.transition(job, now, "enqueued by cli")
            return job.id, False

        job_id, dup = await self._txn(body)
        self.say(job_id)
        if dup:
            self.warn(f"duplicate of a job already queued/running for {account}: {job_id}")
        return EXIT_OK

    async def cancel(self, job_id: str) -> int:
        status = await self._txn(lambda conn, txn: ops.cancel_in_db(
            conn, txn, job_id, time.time(), STALE_AFTER, by="cli"))
        if status == CANCELLED:
            self.say(f"{job_id} cancelled")
            return EXIT_OK
        deadline = time.monotonic() + CANCEL_WAIT
        answer = await self._wait_answer(job_id, "cancel", CANCEL_WAIT)
        job = await self._job(job_id)
        while answer is not None and job.status not in FINAL and time.monotonic() < deadline:
            await asyncio.sleep(_POLL)  # a running job stops at its next step
            job = await self._job(job_id)
        if answer is None:
            self.say(f"{job_id} cancel requested; the engine will stop it ({job.status})")
        else:
            self.say(f"{job_id} {job.status}")
        return EXIT_OK

    async def retry(self, job_id: str) -> int:
        job = await self._txn(lambda conn, txn: ops.retry_in_db(
            conn, txn, job_id, time.time(), None, by="cli"))
        assert job.status == QUEUED
        self.say(f"{job_id} queued (attempt {job.attempts})")
        return EXIT_OK

    async def approve(self, job_id: str) -> int:
        job = await self._job(job_id)
        pending = [e for e in job.actions_log if e.get("result") == RECOMMENDED]
        if job.status in ("queued", "running", "cancelling"):
            raise JobError(f"job {job_id} is {job.status}; approve it when it has finished")
        if not pending:
            raise JobError(f"job {job_id} has no recommended actions awaiting approval")
        if not await live_owners(self.conn, time.time(), STALE_AFTER):
            return await self._approve_offline(job, pending)

        async def body(conn: aiosqlite.Connection, txn: Txn) -> None:
            await conn.execute("INSERT INTO job_requests (job_id, action, created_at) "
                               "VALUES (?, 'approve', ?)", (job_id, time.time()))

        await self._txn(body)
        answer = await self._wait_answer(job_id, "approve", APPROVE_WAIT)
        if answer is None:
            self.warn(f"approval of {job_id} requested, but the engine has not answered yet; "
                      f"check `riskterm jobs show {job_id}`")
            return EXIT_RUNTIME
        if "error" in answer:
            raise JobError(answer["error"])
        records = answer.get("records") or []
        for rec in records:
            self.say(f"{rec.get('action')} {rec.get('symbol') or ''} {rec.get('status')}: "
                     f"{rec.get('detail') or ''}".replace("  ", " "))
        job = await self._job(job_id)
        rejected = [e for e in job.actions_log if str(e.get("result")).startswith(
            "rejected at approval")]
        for e in rejected:
            self.warn(f"{describe(e)}: {e['result']}")
        self.say(f"{job_id} approved: {len(records)} enforcement(s), {len(rejected)} rejected")
        return EXIT_OK

    async def _approve_offline(self, job: Job, pending: list[dict[str, Any]]) -> int:
        async def body(conn: aiosqlite.Connection, txn: Txn) -> None:
            txn.events.append((job.id, iso(time.time()), "approve",
                               "approval asked with no engine running; nothing was executed"))

        await self._txn(body)
        self.warn(f"no riskterm engine is running on this database, so nothing was executed; "
                  f"the {len(pending)} recommendation(s) of {job.id} stay pending:")
        for e in pending:
            self.warn(visible(f"  {describe(e)}: {e.get('reason')}"))  # one line each
        return EXIT_RUNTIME

    async def _wait_answer(self, job_id: str, action: str, timeout: float
                           ) -> dict[str, Any] | None:
        """Wait for a live pool to answer the latest such request; None on time-out."""
        async with self.conn.execute(
            "SELECT MAX(id) FROM job_requests WHERE job_id = ? AND action = ?",
            (job_id, action)) as cur:
            row = await cur.fetchone()
        rid = row[0] if row else None
        deadline = time.monotonic() + timeout
        while rid is not None and time.monotonic() < deadline:
            async with self.conn.execute(
                "SELECT result FROM job_requests WHERE id = ? AND done = 1", (rid,)) as cur:
                row = await cur.fetchone()
            if row is not None:
                await self.conn.execute("DELETE FROM job_requests WHERE id = ?", (rid,))
                return json.loads(row[0]) if row[0] else {}
            await asyncio.sleep(_POLL)
        return None
