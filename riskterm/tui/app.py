"""RiskTermApp: the dashboard, and `create_app`, the one factory the CLI and the tests share.

The engine host runs in a worker on the app's event loop. It never touches a widget: its sink
posts `RecordsCommitted`, and the app folds what arrives (records into a bounded buffer, job and
history changes into version counters). A timer flushes to the screen on top a few times a
second inside `App.batch_update()`, reading accounts and positions straight from the engine —
the latest value per row — and tables update only the cells that changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from rich.text import Text
from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.worker import Worker

from riskterm.brokers import registry
from riskterm.brokers.base import BrokerStartError
from riskterm.config import RulesConfig
from riskterm.db import DatabaseError, DatabaseInUse
from riskterm.enforcement import PENDING
from riskterm.host import EngineHost, RunOptions, SourceError
from riskterm.recorder import StorageError
from riskterm.tui import formatting as fmt
from riskterm.tui.accounts_table import AccountsTable
from riskterm.tui.attention_desk import AttentionDesk
from riskterm.tui.commands import RiskTermCommands
from riskterm.tui.filter_bar import cycle_sort, open_filter, sort_by, target_table
from riskterm.tui.history import open_reader
from riskterm.tui.job_source import JobError, JobSource, NoJobSource, job_source_for
from riskterm.tui.keys import APP_KEYS, bindings
from riskterm.tui.live_table import LiveTable
from riskterm.tui.messages import EngineStarted, RecordsCommitted, SourceEnded
from riskterm.tui.pnl_history import PnlHistory
from riskterm.tui.screens.account import AccountScreen
from riskterm.tui.screens.base import Frame, LiveScreen
from riskterm.tui.screens.confirm import ConfirmScreen
from riskterm.tui.screens.dashboard import DashboardScreen
from riskterm.tui.screens.help import HelpScreen
from riskterm.tui.screens.jobs import JobsScreen
from riskterm.tui.screens.notifications import NotificationsScreen
from riskterm.tui.screens.rules import RulesScreen
from riskterm.tui.screens.violations import ViolationsScreen
from riskterm.tui.settings import AppSettings
from riskterm.tui.settings_file import load_settings
from riskterm.tui.status_bar import LinkInfo, StatusInfo
from riskterm.tui.view import account_rows, severity

if TYPE_CHECKING:
    import aiosqlite

    from riskterm.engine import Engine

DASHBOARD_SPEED = 1.0  # a replay in the dashboard plays in real time unless --speed says otherwise
STOP_GRACE_SECONDS = 0.5  # a quiet live stream is cancelled after this at quit (as headless)


def broker_label(opts: RunOptions, broker: Any) -> str:
    """How the status bar names a live broker: its title when that is a name ("ProjectX"),
    else its short name ("the simulator" is a phrase for sentences: "sim")."""
    title = str(getattr(broker, "title", "") or "")
    name = str(getattr(broker, "name", "") or registry.split(opts.source)[0])
    return title if title and not title.lower().startswith("the ") else name


def source_label(opts: RunOptions, broker: Any = None) -> str:
    if opts.replay_path:
        return f"replay {Path(opts.replay_path).name}"
    if not opts.is_live:
        return "stdin"
    label = broker_label(opts, broker)
    return f"{label} (seed {opts.seed})" if label == "sim" else label


class RiskTermApp(App[int]):
    CSS_PATH = "app.tcss"
    TITLE = "riskterm"
    MODES = {
        "dashboard": DashboardScreen,
        "violations": ViolationsScreen,
        "jobs": JobsScreen,
        "rules": RulesScreen,
        "account": AccountScreen,
    }
    DEFAULT_MODE = "dashboard"
    BINDINGS = bindings(APP_KEYS)
    COMMANDS = App.COMMANDS | {RiskTermCommands}

    def __init__(self, opts: RunOptions, config: RulesConfig, settings: AppSettings) -> None:
        super().__init__()
        self.opts = opts
        self.config = config
        self.settings = settings
        # clocks on screen: the settings' display zone, else the rules' (load_settings checked it)
        self.tz = ZoneInfo(settings.time_zone) if settings.time_zone else config.tz
        self.host = EngineHost(opts, config, sinks=[self._sink], diagnostics=self._diagnostic,
                               default_speed=DASHBOARD_SPEED)
        self.pnl = PnlHistory(settings.pnl_step_s)
        self.jobs: JobSource = NoJobSource()
        self.reader: aiosqlite.Connection | None = None
        self.engine_state = "starting"
        self.exit_code = 0
        self.failure: str | None = None
        self.paused = False
        # folded updates
        self.recent: deque[tuple[int, dict[str, Any]]] = deque(maxlen=settings.feed_size)
        self.record_seq = 0
        self.jobs_version = 0
        self.history_version = 0
        self.rejected = 0  # input lines rejected in this run (records of kind `rejected`)
        self.rejected_version = 0
        self.flushes = 0
        self.selected_account: str | None = None
        self.account_target: str | None = None  # the account screen's account
        self.account_from = self.DEFAULT_MODE  # the mode the account screen goes back to
        self.rules_error: str | None = None
        self._rate: deque[tuple[float, int]] = deque(maxlen=64)
        self._engine_worker: Worker[None] | None = None
        self._engine_closed = False
        self._visited_modes: set[str] = {self.DEFAULT_MODE}
        self._built_switch = False
        if settings.deterministic:
            self.animation_level = "none"
        if settings.theme:
            self.theme = settings.theme
        if settings.keymap:  # before the screens mount, so their footers show the keys as moved
            self.set_keymap(settings.keymap)
        self.attention = AttentionDesk(self)  # halts, lockouts, failed enforcements

    # -- life cycle ----------------------------------------------------------------------------

    @property
    def engine(self) -> Engine | None:
        """The engine once the host is open, else None."""
        return None if self.engine_state == "starting" else getattr(self.host, "engine", None)

    def on_mount(self) -> None:
        if self.settings.problems:  # a bad settings file: which key, and why
            self.notify("\n".join(self.settings.problems), severity="warning", timeout=60,
                        title=f"Settings file {self.settings.settings_file}")
        self._engine_worker = self.run_worker(self._run_engine(), name="engine", group="engine")
        self.set_interval(1 / self.settings.refresh_hz, self.refresh_now, name="flush")

    async def _run_engine(self) -> None:
        host = self.host
        try:
            await host.open()
        except (BrokerStartError, DatabaseInUse) as exc:
            # a broker that cannot start (a missing setting, a refused login) or another engine
            # on this database: a usage error, as without the dashboard — exit 2, reason on
            # stderr (run_dashboard prints app.failure once the terminal is back)
            await self._abandon_open()
            self.engine_state = "failed"
            self.failure = str(exc)
            self.exit_code = 2
            self.exit(2, return_code=2)
            return
        except Exception as exc:  # a database or job pool that cannot start: say why, stay up
            await self._abandon_open()
            self._fail(f"the engine could not start: {exc}")
            return
        self.pnl.attach(host.engine)
        assert self.opts.db_path is not None
        try:
            self.reader = await open_reader(self.opts.db_path)
        except Exception as exc:  # the history and job screens stay empty; the engine runs on
            self._diagnostic(f"cannot open the database for reading: {exc}")
        self.jobs = job_source_for(host.pool, self.reader)
        # everything built so far (Textual, the widgets, the rules, the engine) lives as long as
        # the app: kept out of the collector's generations, a full collection under a fast feed
        # scans only what came since and stays short enough not to stall a key press
        gc.freeze()
        self.engine_state = "live"
        self.post_message(EngineStarted())
        error = None
        try:
            await host.run_source()
        except (StorageError, DatabaseError, SourceError) as exc:
            error = str(exc)
        if host.failure is not None:
            error = str(host.failure)
        self.post_message(SourceEnded(error))

    async def wait_for_source(self) -> None:
        """Wait until the source has ended (a replay's last line is processed and committed)."""
        if self._engine_worker is not None:
            await self.workers.wait_for_complete([self._engine_worker])

    def on_source_ended(self, message: SourceEnded) -> None:
        if message.error is not None:
            self._fail(message.error)
        elif self.engine_state == "live":
            self.engine_state = "ended"  # the status bar says so; the last state stays on screen
        self.refresh_now()

    def on_engine_started(self, message: EngineStarted) -> None:
        self.jobs_version += 1
        self.history_version += 1
        self.refresh_now()

    async def _abandon_open(self) -> None:
        """After a failed host.open(): close what it opened (the database connection, the
        lock), so shutdown does not try to finish an engine that never started."""
        host = self.host
        conn = getattr(host, "conn", None)
        if conn is not None:
            host.conn = None
            with contextlib.suppress(Exception):
                await conn.close()
        host.close_recording()
        host.release_lock()

    def _fail(self, error: str) -> None:
        self.engine_state = "failed"
        self.failure = error
        self.exit_code = 1
        self.notify(error, title="The engine stopped", severity="error", timeout=3600)

    async def shutdown_engine(self) -> None:
        """Clean shutdown: stop the source, commit what is pending, close the database."""
        if self._engine_closed:
            return
        self._engine_closed = True
        host = self.host
        host.request_stop()
        worker = self._engine_worker
        if worker is not None:
            # the source loop notices the stop at its next event; a live broker with nothing
            # to say for a while is cancelled instead
            wait = asyncio.ensure_future(worker.wait())
            done, _ = await asyncio.wait({wait}, timeout=STOP_GRACE_SECONDS)
            if not done:
                worker.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await wait
        if getattr(host, "conn", None) is not None:
            try:
                await host.finish(wait_for_jobs=False)
            except (StorageError, DatabaseError) as exc:
                self.exit_code = 1
                self._diagnostic(f"stopping: {exc}")
            await host.close()
        reader, self.reader = self.reader, None
        self.jobs = NoJobSource()
        for worker in list(self.workers):  # reads in flight would find the reader closed
            if worker is not self._engine_worker:
                worker.cancel()
        if reader is not None:
            with contextlib.suppress(Exception):
                await reader.close()

    async def on_unmount(self) -> None:
        await self.shutdown_engine()

    async def action_quit(self) -> None:
        self.engine_state = "stopping"
        self.refresh_now()
        await self.shutdown_engine()
        code = self.exit_code or self.host.stop_code or 0
        self.exit(code, return_code=code)

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Every notification (the app's and its screens') as plain text: messages name
        accounts, jobs and errors from outside, never parsed as markup (`A[/]`), control
        characters made visible. `markup` is accepted for Textual's signature and ignored."""
        super().notify(fmt.safe(message, newlines=True), title=fmt.safe(title),
                       severity=severity, timeout=timeout, markup=False)

    # -- what the engine side sends ------------------------------------------------------------

    def _sink(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        self.post_message(RecordsCommitted(batch))

    def _diagnostic(self, text: str) -> None:
        self.notify(text, severity="warning", timeout=10)

    def on_records_committed(self, message: RecordsCommitted) -> None:
        recent = self.recent
        for rec in message.records:
            kind = rec.get("kind")
            if kind == "job":
                self.jobs_version += 1
            elif kind in ("violation", "warning"):
                self.history_version += 1
            elif kind == "rejected":
                self.rejected += 1
                self.rejected_version += 1
            elif kind in ("lockout", "enforcement"):
                self.attention.offer(rec)
            if severity(rec) is not None:
                self.record_seq += 1
                recent.append((self.record_seq, rec))

    # -- flushing to the screen ----------------------------------------------------------------

    def live_screen(self) -> LiveScreen | None:
        """The main screen being looked at (under a dialog, if one is open)."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, LiveScreen):
                return screen
        return None

    def status_info(self) -> StatusInfo:
        host = self.host
        events = host.events_in
        rate = None
        if not self.settings.deterministic:
            now = time.monotonic()
            self._rate.append((now, events))
            while len(self._rate) > 2 and now - self._rate[1][0] >= 1.0:
                self._rate.popleft()
            t0, e0 = self._rate[0]
            rate = (events - e0) / (now - t0) if now - t0 > 0.05 else 0.0
        engine = self.engine
        metrics = self.jobs.metrics() if engine is not None else None
        return StatusInfo(
            source=source_label(self.opts, host.broker), events=events, rate=rate,
            clock=engine.now() if engine is not None and engine.started else None,
            queued=None if metrics is None else metrics[0],
            running=None if metrics is None else metrics[1],
            paused=self.paused, state=self.engine_state, link=self.link_info(),
            rejected=self.rejected,
        )

    def link_info(self) -> LinkInfo | None:
        """The live broker's connection, polled at each flush (reading `link` is cheap);
        None for a replay, which has none."""
        broker = self.host.broker
        link = getattr(broker, "link", None)
        if broker is None or link is None or link.state == "offline":
            return None
        return LinkInfo(broker_label(self.opts, broker), str(link.state), int(link.attempt),
                        float(link.since), str(link.reason or ""))

    def refresh_now(self) -> None:
        """Flush the folded state to the screen on top."""
        if not self.is_running:  # shutting down: the screens are being taken apart
            return
        screen = self.live_screen()
        if screen is None or not screen.ready:
            return
        engine = self.engine
        with self.batch_update():
            info = self.status_info()
            screen.status_bar.show(info)
            screen.key_bar.sync()  # Pause / Resume
            # a lost connection shows even while paused: what is on screen may be stale
            screen.link_banner.show(info.link if self.engine_state == "live" else None)
            # paused, a screen never filled yet (the rules first opened while paused) gets one
            # frame, so it shows what is frozen instead of nothing
            if engine is None or (self.paused and screen.filled):
                return
            now = engine.now()
            frame = Frame(engine, now, account_rows(engine))
            screen.banner.show(list(frame.accounts.values()), now)
            screen.refresh_live(frame)
            screen.filled = True
        self.flushes += 1

    # -- actions -------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # while a dialog is open only its own keys (and quit) act
        return not (isinstance(self.screen, ModalScreen) and action not in ("quit", "help"))

    def action_show(self, mode: str) -> None:
        if self.current_mode != mode:
            self._built_switch = mode in self._visited_modes
            self._visited_modes.add(mode)
            try:
                self.switch_mode(mode)
            finally:
                self._built_switch = False
        else:  # e.g. j on a job's detail: back to the queue
            while len(self.screen_stack) > 1:
                self.pop_screen()

    def delay_update(self, delay: float = 0.05) -> None:
        # Textual holds painting for 50 ms on a mode switch, to hide a screen that builds as it
        # appears. A screen seen before is built and gets its data in its resume handler, before
        # the first paint: the pause would only add 50 ms to every key press.
        if not self._built_switch:
            super().delay_update(delay)

    def action_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()
        elif self.current_mode == "account":  # back to the screen it was opened from
            self.action_show(self.account_from)
        elif self.current_mode != "dashboard":
            self.switch_mode("dashboard")

    # -- filter, sort, the account screen (riskterm/tui/filter_bar.py, screens/account.py) --

    def action_filter(self) -> None:
        if open_filter(self.screen) is None:
            self.notify("No table to filter on this screen.", severity="warning")

    def action_sort(self, reverse: bool = False) -> None:
        table = target_table(self.screen)
        if table is None:
            self.notify("No table to sort on this screen.", severity="warning")
            return
        cycle_sort(table, reverse=reverse)

    def on_live_table_header_clicked(self, event: LiveTable.HeaderClicked) -> None:
        sort_by(event.table, event.column)

    def on_live_table_row_selected(self, event: LiveTable.RowSelected) -> None:
        # enter on an account row opens the account (the jobs screen handles its own rows)
        if isinstance(event.table, AccountsTable):
            self.open_account(event.key)

    def action_account(self) -> None:
        target = self._need_account()
        if target is not None:
            self.open_account(target[1])

    def open_account(self, account: str) -> None:
        self.account_target = account
        if self.current_mode != "account":
            self.account_from = self.current_mode
            while len(self.screen_stack) > 1:  # a job's detail over the jobs screen
                self.pop_screen()
            self.action_show("account")
        elif isinstance(self.screen, AccountScreen):
            self.screen.show_account(account)
            self.refresh_now()

    def target_account(self) -> str | None:
        screen = self.live_screen()
        account = screen.selected_account() if screen is not None else None
        return account or self.selected_account

    def _need_account(self) -> tuple[Engine, str] | None:
        engine = self.engine
        if engine is None:
            self.notify("The engine is not running.", severity="warning")
            return None
        account = self.target_account()
        if account is None or account not in engine.accounts:
            self.notify("Select an account first (on the dashboard).", severity="warning")
            return None
        return engine, account

    def action_flatten(self) -> None:
        target = self._need_account()
        if target is None:
            return
        engine, account = target
        acct = engine.accounts[account]
        positions = [f"{p.qty:+d} {s}" for s, p in sorted(acct.positions.items()) if p.qty]
        name = fmt.safe(account)  # a broker's string: shown, never interpreted
        body = Text()
        body.append(f"Flatten {name}?\n\n", style="bold")
        body.append("Close positions: " + (fmt.safe(", ".join(positions)) or "none") + "\n")
        body.append(f"Cancel working orders: {len(acct.orders)}\n\n")
        body.append("Sent as market orders with rule “manual”.", style="dim")

        def done(yes: bool | None) -> None:
            if yes:
                self.flatten(account)

        self.push_screen(ConfirmScreen(f"Flatten {account}", body, "Flatten"), done)

    def flatten(self, account: str) -> dict[str, Any] | None:
        """Flatten now (after the confirmation): one enforcement record with rule manual. A
        live broker answers later (the record is PENDING): say it is sent, and the broker's
        `ok` or `failed` once it comes, from a worker — the screen never waits for it."""
        engine = self.host.engine
        records = engine.execute_action(account, "flatten", rule="manual")
        rec = records[0] if records else None
        if rec is None:
            self.notify(f"{account}: nothing was sent.", severity="warning")
        elif rec["status"] == PENDING:
            self.notify(f"sent, waiting for the broker: {rec['detail']}",
                        title=f"Flatten {account}")
            self.run_worker(self._flatten_confirmed(account, rec), group="confirm")
        else:
            self._flatten_result(account, rec)
        self.refresh_now()
        return rec

    async def _flatten_confirmed(self, account: str, rec: dict[str, Any]) -> None:
        await self.host.engine.confirmations.settled([rec])
        if rec["status"] == PENDING:  # nothing left to wait on: shutdown abandoned it
            self.notify(f"no answer from the broker: {rec['detail']}",
                        title=f"Flatten {account}", severity="warning")
        else:
            self._flatten_result(account, rec, confirmed=True)
        self.refresh_now()

    def _flatten_result(self, account: str, rec: dict[str, Any], *,
                        confirmed: bool = False) -> None:
        status = rec["status"]
        said = status
        if confirmed and status == "ok":
            said = f"ok, confirmed by {broker_label(self.opts, self.host.broker)}"
        self.notify(f"{said}: {rec['detail']}", title=f"Flatten {account}",
                    severity="error" if status == "failed" else "information",
                    timeout=15 if status == "failed" else None)

    def action_unlock(self) -> None:
        target = self._need_account()
        if target is None:
            return
        engine, account = target
        locks = engine.lockouts.active(account)
        if not locks:
            self.notify(f"{account} has no active lockout.", severity="warning")
            return
        body = Text()
        body.append(f"Lift every lockout of {fmt.safe(account)}?\n\n", style="bold")
        for lk in locks:
            body.append(fmt.safe(f"  {lk.rule}: {lk.state}, {lk.kind}") + "\n")
        body.append("\nAn unlock record with reason “manual” is written.", style="dim")

        def done(yes: bool | None) -> None:
            if yes:
                self.unlock(account)

        self.push_screen(ConfirmScreen(f"Unlock {account}", body, "Unlock"), done)

    def unlock(self, account: str) -> int:
        count = self.host.engine.unlock(account)
        self.notify(f"{account}: {count} lockout{'s' if count != 1 else ''} lifted.",
                    title="Unlocked")
        self.refresh_now()
        return count

    async def action_enqueue(self) -> None:
        target = self._need_account()
        if target is None:
            return
        _, account = target
        try:
            job_id, duplicate = await self.jobs.enqueue(account)
        except JobError as exc:
            self.notify(str(exc), title="Review not queued", severity="error")
            return
        if duplicate:
            self.notify(f"Job {job_id} is already queued or running for {account}.",
                        title="Already queued", severity="warning")
        else:
            self.notify(f"Queued Smart Risk Manager job {job_id} for {account}.",
                        title="Review queued")
        self.jobs_version += 1

    async def job_command(self, command: str, job_id: str) -> bool:
        """cancel / retry / approve a job, saying what happened."""
        try:
            if command == "cancel":
                await self.jobs.cancel(job_id)
                text = f"Cancelling job {job_id}."
            elif command == "retry":
                await self.jobs.retry(job_id)
                text = f"Job {job_id} is queued again."
            else:
                text = await self.jobs.approve(job_id)
        except JobError as exc:
            self.notify(str(exc), title=f"Job {job_id}: {command} refused", severity="error")
            return False
        self.notify(text, title=f"Job {job_id}")
        self.jobs_version += 1
        self.refresh_now()
        return True

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.opts.is_live:
            self.host.paused = self.paused  # a replay is a playback: pause the playback too
        self.refresh_now()

    def action_reload_rules(self) -> None:
        if self.engine is None:
            self.notify("The engine is still starting.", severity="warning")
            return
        error = self.host.reload_rules()
        if error is not None:
            self.rules_error = error
            self.notify(error, title="Rules not reloaded: the old rules stay", severity="error",
                        timeout=15)
        else:
            self.rules_error = None
            self.config = self.host.config
            self.notify(f"Rules reloaded from {self.config.path}.", title="Rules reloaded")
        self.refresh_now()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.settings.keymap))

    def action_notifications(self) -> None:
        if not isinstance(self.screen, NotificationsScreen):
            self.push_screen(NotificationsScreen())

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        # Textual's own Quit and Keys would stand beside ours (RiskTermCommands) in the palette
        ours = {key.description for key in APP_KEYS}
        for command in super().get_system_commands(screen):
            if command.title not in ours:
                yield command



def create_app(opts: RunOptions, config: RulesConfig,
               settings: AppSettings | None = None) -> RiskTermApp:
    """The one way to build the dashboard, for the command line and for the tests: without
    `settings`, those of the user's settings file (riskterm/tui/settings_file.py)."""
    return RiskTermApp(opts, config, settings if settings is not None else load_settings())


async def _run_app(app: RiskTermApp) -> int | None:
    """Run the app (as App.run does) and, however it ended, shut the engine down on this loop.

    An exception in a widget ends the app without unmounting it: the job pool, its running jobs
    and three database connections stayed open, and their non-daemon threads kept the process
    alive after the traceback, with a job left `running`."""
    try:
        return await app.run_async()
    finally:
        await app.shutdown_engine()


def run_dashboard(opts: RunOptions, config: RulesConfig) -> int:
    if opts.source == "-":
        print("riskterm: the dashboard reads the keyboard from the terminal, so it cannot read "
              "events from stdin; use --no-ui, or --source replay:PATH", file=sys.stderr)
        return 2
    app = create_app(opts, config)
    code = asyncio.run(_run_app(app))
    if app.failure is not None:
        print(f"riskterm: {fmt.safe(app.failure, newlines=True)}", file=sys.stderr)
    return int(code or app.exit_code or app.return_code or 0)  # a crash is 1

