"""The job as held in memory and in the `jobs` table, and the `job` record of CONTRACT §2."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from riskterm.strictjson import strict_dumps
from riskterm.timefmt import iso

QUEUED, RUNNING, CANCELLING = "queued", "running", "cancelling"
COMPLETED, FAILED, CANCELLED, TIMEOUT, INTERRUPTED = (
    "completed", "failed", "cancelled", "timeout", "interrupted")
ACTIVE = (QUEUED, RUNNING, CANCELLING)
FINAL = (COMPLETED, FAILED, CANCELLED, TIMEOUT, INTERRUPTED)
RETRYABLE = (FAILED, CANCELLED, TIMEOUT, INTERRUPTED)
MAX_ATTEMPTS = 3


@dataclass(slots=True, eq=False)
class Job:
    id: str
    kind: str
    account: str
    status: str = QUEUED
    priority: int = 0
    origin: str | None = None
    owner: str | None = None
    attempts: int = 1
    requeues: int = 0
    created_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    not_before: float | None = None
    duration_s: float | None = None
    progress: float = 0.0
    step: str | None = None
    model_used: str | None = None
    user_instructions: str | None = None
    iteration_count: int = 0
    actions_taken: int = 0
    actions_summary: str | None = None
    actions_log: list[dict[str, Any]] = field(default_factory=list)
    initial_equity: float | None = None
    final_equity: float | None = None
    initial_balance: float | None = None
    final_balance: float | None = None
    error: str | None = None
    graph_state: dict[str, Any] = field(default_factory=dict)
    snapshot: dict[str, Any] | None = None
    recover: int = 0

    def reset_for_attempt(self) -> None:
        """Clear what one attempt produced before the next one (same id)."""
        self.started_at = self.finished_at = self.duration_s = self.not_before = None
        self.progress, self.step, self.error = 0.0, None, None
        self.iteration_count = self.actions_taken = 0
        self.actions_summary, self.actions_log, self.graph_state = None, [], {}
        self.final_equity = self.final_balance = None


COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Job))
_JSON = {"actions_log", "graph_state", "snapshot"}
_JSON_INDEXES = [i for i, c in enumerate(COLUMNS) if c in _JSON]
# A pool saves whole rows: a job is owned (and written) by one pool at a time.
UPSERT_SQL = (
    f"INSERT INTO jobs ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))}) "
    "ON CONFLICT(id) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in COLUMNS if c != "id")
)
SELECT_SQL = f"SELECT {', '.join(COLUMNS)} FROM jobs"


def _dump(value: Any) -> str | None:
    if value is None:
        return None
    if not value:
        return "[]" if isinstance(value, list) else "{}"
    return strict_dumps(value, separators=(",", ":"))


def job_to_row(job: Job) -> tuple[Any, ...]:
    row = [getattr(job, c) for c in COLUMNS]
    for i in _JSON_INDEXES:
        row[i] = _dump(row[i])
    return tuple(row)


def job_from_row(row: Any) -> Job:
    values = list(row)
    for i in _JSON_INDEXES:
        values[i] = json.loads(values[i]) if values[i] is not None else None
    job = Job(**dict(zip(COLUMNS, values, strict=True)))
    if job.actions_log is None:
        job.actions_log = []
    if job.graph_state is None:
        job.graph_state = {}
    return job


def job_record(job: Job, ts: float) -> dict[str, Any]:
    """The `job` record of a transition (CONTRACT §2)."""
    rec: dict[str, Any] = {
        "kind": "job", "ts": iso(ts), "job_id": job.id, "job_kind": job.kind,
        "account": job.account, "status": job.status, "attempt": job.attempts,
    }
    if job.status in FINAL:
        rec["duration_s"] = job.duration_s
        rec["actions_taken"] = job.actions_taken
        rec["error"] = job.error
    return rec


def _ts(value: float | None) -> str | None:
    return iso(value) if value is not None else None


def job_summary(job: Job) -> dict[str, Any]:
    """The object of `jobs list --json` (CONTRACT §3)."""
    return {
        "id": job.id, "kind": job.kind, "account": job.account, "status": job.status,
        "priority": job.priority, "progress": round(job.progress, 4), "step": job.step,
        "created_at": _ts(job.created_at), "duration_s": job.duration_s,
    }


def job_detail(job: Job, events: list[dict[str, Any]]) -> dict[str, Any]:
    """The object of `jobs show --json` (CONTRACT §3)."""
    out = job_summary(job)
    out.update({
        "origin": job.origin, "owner": job.owner,
        "started_at": _ts(job.started_at), "finished_at": _ts(job.finished_at),
        "attempts": job.attempts, "model_used": job.model_used,
        "user_instructions": job.user_instructions, "iteration_count": job.iteration_count,
        "actions_taken": job.actions_taken, "actions_summary": job.actions_summary,
        "actions_log": job.actions_log, "initial_equity": job.initial_equity,
        "final_equity": job.final_equity, "initial_balance": job.initial_balance,
        "final_balance": job.final_balance, "error": job.error, "graph_state": job.graph_state,
        "events": events,
    })
    return out
