"""Jobs (j): the Smart Risk Manager queue. e enqueues a review of the selected account, c cancels
the selected job, R retries it, enter opens its detail; status changes appear as they happen."""

from __future__ import annotations

import time

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.widgets import Static

from riskterm.tui import formatting as fmt
from riskterm.tui.history import READ_ERRORS
from riskterm.tui.job_queue_table import JobQueueTable, job_row
from riskterm.tui.job_source import ACTIVE, CANCELLABLE, RETRYABLE
from riskterm.tui.keys import JOBS_KEYS, bindings
from riskterm.tui.live_table import LiveTable
from riskterm.tui.screens.base import Frame, LiveScreen


class JobsScreen(LiveScreen):
    BINDINGS = bindings(JOBS_KEYS)
    PALETTE_KEYS = JOBS_KEYS

    def __init__(self) -> None:
        super().__init__(name="jobs")
        self._polled_version = -1
        self._polled_at = 0.0
        self._active = False
        self._polling = False  # a read of the jobs is in flight
        self.polls = 0  # completed reads, for tests

    def compose_body(self) -> ComposeResult:
        table = JobQueueTable(self.rt.tz, id="jobs-table")
        table.border_title = "Smart Risk Manager jobs · newest first"
        yield table
        yield Static("", id="jobs-hint")

    @property
    def table(self) -> JobQueueTable:
        return self.query_one("#jobs-table", JobQueueTable)

    def refresh_live(self, frame: Frame) -> None:
        if self._polling:
            # never restart a read in flight: an exclusive worker started on every frame while
            # the version moves cancels each read before it ends, and on a loaded machine (a
            # read longer than a frame) the table then never updates; a change during this read
            # is picked up by the next one
            return
        due = time.monotonic() - self._polled_at >= self.rt.settings.jobs_poll_s
        if self.rt.jobs_version != self._polled_version or (self._active and due):
            self._polling = True
            self.poll()

    @work(exclusive=True, group="jobs-poll")
    async def poll(self) -> None:
        try:
            await self._poll()
        finally:
            self._polling = False

    async def _poll(self) -> None:
        version = self.rt.jobs_version
        self._polled_at = time.monotonic()
        try:
            jobs = await self.rt.jobs.list_jobs()
        except READ_ERRORS as exc:  # the next flush tries again
            self.query_one("#jobs-hint", Static).update(
                Text(fmt.safe(f"cannot read the jobs: {exc}")))
            return
        rows = {}
        for job in jobs:
            row = job_row(job)
            rows[row.id] = tuple(row)
        self.table.sync(rows)
        self._active = any(job.get("status") in ACTIVE for job in jobs)
        self._polled_version = version
        self.polls += 1
        hint = self.query_one("#jobs-hint", Static)
        if not self.rt.jobs.available:
            hint.update("The job pool is not running: reviews cannot be queued.")
        elif not jobs:
            hint.update("No jobs yet. Select an account on the dashboard and press e to review it.")
        else:
            hint.update("Priority: high runs before normal, normal before low (the number: "
                        "lower runs first).")

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        event.stop()
        self.action_open_job()

    def action_open_job(self) -> None:
        job = self.table.selected_job()
        if job is None:
            self.notify("No job selected.", severity="warning")
            return
        from riskterm.tui.screens.job_detail import JobDetailScreen

        self.app.push_screen(JobDetailScreen(job.id))

    async def action_cancel_job(self) -> None:
        job = self.table.selected_job()
        if job is None:
            self.notify("No job selected.", severity="warning")
        elif job.status not in CANCELLABLE:
            self.notify(f"Job {job.id} is {job.status}: only queued or running jobs can be "
                        "cancelled.", severity="warning")
        else:
            await self.rt.job_command("cancel", job.id)

    async def action_retry_job(self) -> None:
        job = self.table.selected_job()
        if job is None:
            self.notify("No job selected.", severity="warning")
        elif job.status not in RETRYABLE:
            self.notify(f"Job {job.id} is {job.status}: only failed, cancelled, timed-out or "
                        "interrupted jobs can be retried.", severity="warning")
        else:
            await self.rt.job_command("retry", job.id)

    def selected_account(self) -> str | None:
        job = self.table.selected_job()
        return job.account if job is not None else None
