"""The registry of job kinds: kind -> (priority, handler, one-active-job-per-account)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from riskterm.jobs.context import JobContext

Handler = Callable[["JobContext"], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class JobKind:
    name: str
    priority: int  # lower runs first
    handler: Handler
    dedup: bool = False  # at most one queued-or-running job of this kind per account
    snapshot: bool = False  # in a replay, capture the account snapshot when the job is enqueued


KINDS: dict[str, JobKind] = {}


def register_kind(name: str, priority: int, handler: Handler, *, dedup: bool = False,
                  snapshot: bool = False) -> JobKind:
    kind = JobKind(name, priority, handler, dedup, snapshot)
    KINDS[name] = kind
    return kind


def get_kind(name: str) -> JobKind | None:
    return KINDS.get(name)


async def _noop(ctx: JobContext) -> None:
    """Does nothing: the job pool's own overhead (benchmarks, health checks)."""


async def _smart_risk(ctx: JobContext) -> None:
    from riskterm.jobs.graph import run_smart_risk

    await run_smart_risk(ctx)


register_kind("smart_risk", -10, _smart_risk, dedup=True, snapshot=True)
register_kind("noop", 0, _noop)
