"""JobQueueTable: the Smart Risk Manager job queue, one row per job, updated in place.

Narrower than its cells, the step and the account narrow to 10 cells (cut with an ellipsis), then
columns drop in this order: actions, kind, attempts, created, duration, priority, progress. Job,
account, status and step stay."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.job_source import CANCELLABLE, RETRYABLE
from riskterm.tui.live_table import LiveTable

STATUS_STYLE = {
    "queued": "bold blue",
    "running": "bold cyan",
    "cancelling": "bold yellow",
    "completed": "bold green",
    "failed": "bold red",
    "cancelled": "dim",
    "timeout": "bold red",
    "interrupted": "bold magenta",
}


class JobRow(NamedTuple):
    id: str
    kind: str
    account: str
    status: str
    priority: int | None
    progress: float
    step: str
    attempts: int | None
    created: float | None
    duration: float | None


def job_row(job: dict[str, Any]) -> JobRow:
    """A table row from a `jobs list --json` object."""
    created = job.get("created_at")
    if isinstance(created, str):
        created = fmt.parse_ts(created)
    return JobRow(
        str(job["id"]), str(job.get("kind") or ""), str(job.get("account") or ""),
        str(job.get("status") or ""), job.get("priority"),
        float(job.get("progress") or 0.0), str(job.get("step") or ""),
        job.get("attempts"), created,
        None if job.get("duration_s") is None else round(float(job["duration_s"]), 1),
    )


def progress_bar(fraction: float, status: str, width: int = 10) -> Text:
    fraction = min(1.0, max(0.0, fraction))
    filled = round(fraction * width)
    style = {"completed": "green", "failed": "red", "timeout": "red"}.get(status, "cyan")
    text = Text()
    text.append("█" * filled, style=style)
    text.append("░" * (width - filled), style="grey37")
    text.append(f" {fraction * 100:3.0f}%")
    return text


def priority_text(priority: int | None) -> str:
    """A job's priority in words, its number after: lower runs first (riskterm.jobs.pool)."""
    if priority is None:
        return fmt.DASH
    word = "high" if priority < 0 else "low" if priority > 0 else "normal"
    return f"{word} ({priority})"


def available_actions(status: str) -> str:
    actions = ["⏎ detail"]
    if status in CANCELLABLE:
        actions.append("c cancel")
    if status in RETRYABLE:
        actions.append("R retry")
    return " · ".join(actions)


class JobQueueTable(LiveTable):
    SIZE_STEP = 16
    COLUMNS = (
        ("id", "Job", 10),
        ("kind", "Kind", 10),
        ("account", "Account", 15),
        ("status", "Status", 11),
        ("priority", "Priority", 10),
        ("progress", "Progress", 15),
        ("step", "Step", 22),
        ("attempts", "Att", 3),
        ("created", "Created", 8),
        ("duration", "Duration", 8),
        ("actions", "Actions", 28),
    )
    NARROW = {"step": 10, "account": 10}
    DROP = ("actions", "kind", "attempts", "created", "duration", "priority", "progress")

    def __init__(self, tz: ZoneInfo, **kw: Any) -> None:
        super().__init__(**kw)
        self.tz = tz

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        row = JobRow(*raw)
        return [
            Text(row.id, style="bold"),
            Text(row.kind),
            Text(fmt.safe(row.account)),
            Text(row.status, style=STATUS_STYLE.get(row.status, "")),
            Text(priority_text(row.priority)),
            progress_bar(row.progress, row.status),
            Text(fmt.safe(row.step), no_wrap=True, overflow="ellipsis"),
            fmt.right(fmt.DASH if row.attempts is None else str(row.attempts)),
            Text(fmt.clock(row.created, self.tz)),
            fmt.right(fmt.duration(row.duration) if row.duration is not None else fmt.DASH),
            Text(available_actions(row.status), style="dim"),
        ]

    def selected_job(self) -> JobRow | None:
        key = self.selected_key()
        raw = None if key is None else self.raw(key)
        return None if raw is None else JobRow(*raw)
