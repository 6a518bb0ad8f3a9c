"""Job detail (enter on a job): header, portfolio before/after, the actions log, the summary as
Markdown, the graph state as a lazy JSON tree and the timeline, live while the job runs.
a approves the recommended actions of a finished job; enter on a row of the actions log or the
timeline opens it whole (TextScreen). Below 100 columns the panes stack and the screen scrolls."""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import DataTable, Markdown, Static

from riskterm.tui import formatting as fmt
from riskterm.tui.history import READ_ERRORS
from riskterm.tui.job_actions_table import JobActionsTable, action_rows, action_text
from riskterm.tui.job_source import ACTIVE, CANCELLABLE, RETRYABLE
from riskterm.tui.job_timeline import JobTimeline
from riskterm.tui.job_view import job_header, portfolio
from riskterm.tui.json_tree import JsonTree
from riskterm.tui.keys import DETAIL_KEYS, bindings
from riskterm.tui.live_table import LiveTable
from riskterm.tui.screens.base import Frame, LiveScreen
from riskterm.tui.screens.text_view import TextScreen

_UNSET = object()


class JobDetailScreen(LiveScreen):
    BINDINGS = bindings(DETAIL_KEYS)
    PALETTE_KEYS = DETAIL_KEYS

    def __init__(self, job_id: str) -> None:
        super().__init__(name=f"job-{job_id}")
        self.job_id = job_id
        self.job: dict[str, Any] | None = None
        self._polled_at = 0.0
        self._polling = self._again = False  # a read of the job is in flight / wanted again
        self._graph: Any = _UNSET
        self._summary: str | None = None
        self.polls = 0

    def compose_body(self) -> ComposeResult:
        with VerticalScroll(id="job-body"):
            yield from self._compose_panes()

    def _compose_panes(self) -> ComposeResult:
        with Horizontal(id="job-top"):
            yield Static("Loading…", id="job-header")
            yield Static("", id="job-portfolio")
        with Horizontal(id="job-main"):
            with Vertical(id="job-left"):
                actions = JobActionsTable(id="job-actions")
                actions.border_title = "Actions log"
                yield actions
                with VerticalScroll(id="job-summary-box") as box:
                    box.border_title = "Summary"
                    yield Markdown("", id="job-summary")
            with Vertical(id="job-right"):
                tree = JsonTree("graph_state", id="job-graph")
                tree.border_title = "Graph state"
                yield tree
                timeline = JobTimeline(self.rt.tz, id="job-timeline")
                timeline.border_title = "Timeline"
                yield timeline

    @property
    def tree(self) -> JsonTree:
        return self.query_one("#job-graph", JsonTree)

    def refresh_live(self, frame: Frame) -> None:
        running = self.job is None or self.job.get("status") in ACTIVE
        if running and time.monotonic() - self._polled_at >= self.rt.settings.jobs_poll_s:
            self.poll()

    def poll(self) -> None:
        """Read the job again, unless a read is in flight (restarting an exclusive worker
        cancels the read: on a loaded machine the view would never update)."""
        if self._polling:
            self._again = True  # read once more when this read ends (an approval, say)
            return
        self._polling = True
        self._poll()

    @work(exclusive=True, group="job-detail")
    async def _poll(self) -> None:
        try:
            while True:
                self._again = False
                await self._read()
                if not self._again:
                    break
        finally:
            self._polling = False

    async def _read(self) -> None:
        self._polled_at = time.monotonic()
        try:
            job = await self.rt.jobs.show_job(self.job_id)
        except READ_ERRORS:  # the next flush tries again
            return
        if job is None:
            self.query_one("#job-header", Static).update(
                Text(fmt.safe(f"Job {self.job_id} was not found.")))
            return
        self.show(job)
        self.polls += 1

    def show(self, job: dict[str, Any]) -> None:
        self.job = job
        self.query_one("#job-header", Static).update(job_header(job, self.rt.tz))
        self.query_one("#job-portfolio", Static).update(portfolio(job))
        self.query_one(JobActionsTable).sync(action_rows(job.get("actions_log") or []))
        summary = str(job.get("actions_summary") or "")
        if summary != self._summary:
            self._summary = summary
            # model text: control characters made visible before Markdown sees it
            self.query_one("#job-summary", Markdown).update(
                fmt.safe(summary, newlines=True) or "*No summary yet.*")
        graph = job.get("graph_state")
        if graph is None:
            graph = {}
        if self._graph is _UNSET or graph != self._graph:
            self._graph = graph
            self.tree.set_value(graph)
        self.query_one(JobTimeline).extend(list(job.get("events") or []))

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        log = (self.job or {}).get("actions_log") or []
        index = int(event.key)
        if 0 <= index < len(log):
            self.app.push_screen(TextScreen(f"Job {self.job_id} · action {index + 1} of "
                                            f"{len(log)}", action_text(log[index])))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        found = self.query_one(JobTimeline).full_text(event.cursor_row)
        if found is not None:
            self.app.push_screen(TextScreen(f"Job {self.job_id} · {found[0]}", found[1]))

    async def action_approve_job(self) -> None:
        job = self.job
        if job is None:
            return
        if job.get("status") != "completed":
            self.notify(f"Job {self.job_id} is {job.get('status')}: only a finished "
                        "(completed) job's recommendations can be approved.", severity="warning")
            return
        await self.rt.job_command("approve", self.job_id)
        self._polled_at = 0.0
        self.poll()

    async def action_cancel_job(self) -> None:
        status = (self.job or {}).get("status")
        if status not in CANCELLABLE:
            self.notify(f"Job {self.job_id} is {status}: only queued or running jobs can be "
                        "cancelled.", severity="warning")
            return
        await self.rt.job_command("cancel", self.job_id)
        self._polled_at = 0.0

    async def action_retry_job(self) -> None:
        status = (self.job or {}).get("status")
        if status not in RETRYABLE:
            self.notify(f"Job {self.job_id} is {status}: only failed, cancelled, timed-out or "
                        "interrupted jobs can be retried.", severity="warning")
            return
        await self.rt.job_command("retry", self.job_id)
        self._polled_at = 0.0
        if self.job is not None:
            self.job["status"] = "queued"  # poll again until it settles

    def selected_account(self) -> str | None:
        return None if self.job is None else str(self.job.get("account"))
