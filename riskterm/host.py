"""The engine host: wires a source, the engine, the recorder and the job pool on one event loop.

Both the headless mode and the dashboard run the engine through this class, so they behave the
same. Nothing here imports Textual.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from riskterm.alerts.dispatch import start_alerts
from riskterm.brokers import registry
from riskterm.brokers.base import Broker, BrokerContext, BrokerStartError, Snapshot
from riskterm.brokers.replay import ReplayBroker
from riskterm.config import RulesConfig, RulesError, load_rules
from riskterm.confirmations import CONFIRM_SECONDS
from riskterm.db import EngineLock, open_db
from riskterm.engine import Engine
from riskterm.events import parse_line
from riskterm.recorder import Recorder, Sink, load_clock, load_cursor, load_state
from riskterm.recording import AccountFilter, LiveWall, Recording, tap
from riskterm.sources import parse_ahead
from riskterm.strictjson import strict_dumps
from riskterm.timefmt import iso

FLUSH_INTERVAL = 0.02  # seconds between group commits while events flow
MAX_PENDING = 5000  # records waiting for a commit before the flusher commits at once
HARD_PENDING = 4 * MAX_PENDING  # ... and before ingest waits for the database (backpressure)
SLICE_SECONDS = 0.01  # longest stretch of full-speed ingest between two turns of the loop
GC_YOUNG = 20_000  # allocations between collections of the young generation (CPython: 700)


def broker_title(broker: Any) -> str:
    """How messages name a broker: its `title` ("the simulator", "ProjectX"), else its name."""
    return str(getattr(broker, "title", None) or getattr(broker, "name", None) or "the broker")


class SourceError(Exception):
    """The input could not be read any further (the message says why)."""


CURSOR_HEAD = 64 * 1024  # bytes of a replay file that name it for its resume point


def replay_cursor_key(path: str) -> str:
    """The engine_state key of a replay file's resume point: its size and a hash of its first
    64 KiB, never its name, so a new recording saved under yesterday's file name starts at its
    first line while the same file, replayed again after a kill -9, resumes."""
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            head = fh.read(CURSOR_HEAD)
    except OSError:  # unreadable: the replay itself says why
        return f"cursor:{Path(path).resolve()}"
    return f"cursor:{size}:{hashlib.sha256(head).hexdigest()[:32]}"


def _read_error(source: str, exc: OSError) -> str:
    if isinstance(exc, parse_ahead.ParseError):
        return str(exc)
    return f"cannot read {source}: {exc.strerror or exc}"


@dataclass
class RunOptions:
    source: str = "sim"  # "sim", "replay:PATH", "-" (stdin), "projectx", a plugin's NAME[:ARG]
    rules_path: Path | None = None
    db_path: Path | None = None
    seed: int = 0
    speed: float | None = None
    max_events: int | None = None
    accounts: tuple[str, ...] = ()  # --accounts: fnmatch patterns of the accounts watched
    record_path: Path | None = None  # --record: append every event taken to this file

    @property
    def is_live(self) -> bool:
        """A live broker (wall-time clock, enforcement executed), not a replay or stdin."""
        return registry.split(self.source)[0] not in registry.REPLAYS

    @property
    def replay_path(self) -> str | None:
        return self.source.split(":", 1)[1] if self.source.startswith("replay:") else None


class EngineHost:
    def __init__(self, opts: RunOptions, config: RulesConfig, *, sinks: list[Sink] | None = None,
                 diagnostics: Callable[[str], None] | None = None, default_speed: float = 0.0,
                 with_jobs: bool = True) -> None:
        self.opts = opts
        self.config = config
        self.sinks = sinks or []
        self.say = diagnostics or (lambda text: print(text, file=sys.stderr, flush=True))
        self.speed = opts.speed if opts.speed is not None else default_speed
        self.with_jobs = with_jobs
        self.stop_code: int | None = None
        self._stop = asyncio.Event()
        self.started_wall = time.monotonic()
        self.sim: Any = None  # the Simulator, when the broker is the built-in one
        self.broker: Broker | None = None
        self.live = opts.is_live  # the broker's own say once it is made (_open)
        self.pool: Any = None
        self.paused = False
        self.events_in = 0
        self._pace: tuple[float, float] | None = None  # (first event ts, loop time) at --speed
        self._tasks: list[asyncio.Task[Any]] = []
        self._closing = False
        self._flush_now = asyncio.Event()
        self._gc_threshold: tuple[int, ...] | None = None
        self.failure: BaseException | None = None
        self.engine_lock: EngineLock | None = None
        self.db_clock: tuple[str, float] | None = None
        self.recording: Recording | None = None

    # -- life cycle ----------------------------------------------------------------------------

    async def open(self) -> None:
        assert self.opts.db_path is not None
        conn = await open_db(self.opts.db_path)
        # one engine per database, for its whole life: a second one would number lockouts and
        # judge accounts from a state the first one keeps changing (DatabaseInUse names it)
        try:
            self.engine_lock = EngineLock.acquire(self.opts.db_path)
        except BaseException:
            await conn.close()
            raise
        self.conn = conn
        try:
            await self._open()
        except BaseException:
            self.release_lock()
            raise

    async def _open(self) -> None:
        state = await load_state(self.conn)
        # before its first event the engine has no clock of its own; the database's (the event
        # time a replay left in it) is the one its stored jobs and lockouts were written in
        self.db_clock = await load_clock(self.conn)
        watch = AccountFilter(self.opts.accounts) if self.opts.accounts else None
        if watch is not None:
            watch.restrict(state)  # unwatched accounts stay in the database, out of the engine
        broker = self._make_broker(watch)
        self.broker = broker
        # wall-time clock for a live broker; a plugin may replay history on event time instead
        self.live = bool(getattr(broker, "live", self.opts.is_live))
        wall = LiveWall() if self.opts.record_path is not None and self.live else None
        self.engine = Engine(self.config, broker, live=self.live,
                             **({"wall": wall} if wall is not None else {}))
        self.engine.restore(state)
        self.engine.confirmations.when_settled(self._flush_now.set)  # commit what was held
        await self._start_broker(broker)
        if self.opts.record_path is not None:
            self.recording = Recording(self.opts.record_path, self.say,
                                       parsed=not self.live)
        tap(self.engine, recording=self.recording, watch=watch, wall=wall)
        if self.db_clock is not None and self.db_clock[0] == "event":
            self.engine.restored_clock = self.db_clock[1]  # judges a replay's first event
        self.resume_after = 0
        cursor_key = None
        if self.opts.replay_path is not None:
            # a replay interrupted (kill -9) and started again on the same database resumes
            # after the last line it committed, so nothing is enforced or recorded twice
            cursor_key = replay_cursor_key(self.opts.replay_path)
            self.resume_after = await load_cursor(self.conn, cursor_key)
            if self.resume_after:
                self.say(f"resuming {self.opts.source} after line {self.resume_after}, "
                         "already processed into this database")
        self.recorder = Recorder(self.conn, self.engine, self.sinks, cursor_key)
        self.alerts = start_alerts(self)  # riskterm.alerts: its own tasks, fed by the sinks
        if self.with_jobs:
            await self._start_pool()
        self._flush_task = asyncio.create_task(self._flusher())
        # what start-up built (modules, rules, restored state) lives as long as the engine:
        # keep it out of the collector's full passes, which a fast replay triggers repeatedly
        # (close() gives it back). The engine's own garbage is acyclic (events, records: freed
        # by reference counting); a young generation of 700 objects made the collector scan
        # every parsed chunk, alive by design, a few times over.
        gc.freeze()
        self._gc_threshold = gc.get_threshold()
        gc.set_threshold(max(self._gc_threshold[0], GC_YOUNG), *self._gc_threshold[1:])
        self._tasks.append(asyncio.create_task(self._watch_unlocks()))
        if self.live:
            self._tasks.append(asyncio.create_task(self._ticker()))

    def _make_broker(self, watch: AccountFilter | None) -> Broker:
        """The broker --source names (registry): a replay, the simulator, ProjectX, a plugin."""
        name, arg = registry.split(self.opts.source)
        if name in registry.REPLAYS:
            return ReplayBroker(self.opts.replay_path, fast=self.speed == 0)
        try:
            make = registry.factory(name)
        except registry.UnknownSource as exc:
            raise BrokerStartError(str(exc)) from None
        except Exception as exc:  # a plugin that cannot be imported
            raise BrokerStartError(f"--source {name}: the broker plugin cannot be loaded: "
                                   f"{type(exc).__name__}: {exc}") from None
        instruments = {s: (i.tick_size, i.tick_value)
                       for s, i in self.config.instruments.items()}
        ctx = BrokerContext(
            arg=arg, accounts=watch, account_patterns=self.opts.accounts,
            instruments=tuple(self.config.instruments), instrument_specs=instruments,
            day_start=self._day_start, say=self.say, seed=self.opts.seed, speed=self.speed)
        try:
            broker = make(ctx)
        except BrokerStartError:
            raise
        except Exception as exc:
            raise BrokerStartError(f"--source {name}: the broker could not be set up: "
                                   f"{type(exc).__name__}: {exc}") from None
        self.sim = getattr(broker, "sim", None)
        return broker

    async def _start_broker(self, broker: Broker) -> None:
        try:
            await broker.start()
        except BrokerStartError:
            with contextlib.suppress(Exception):
                await broker.close()
            raise
        except Exception as exc:
            with contextlib.suppress(Exception):
                await broker.close()
            raise BrokerStartError(f"{broker.name}: could not start: "
                                   f"{type(exc).__name__}: {exc}") from None

    def _day_start(self) -> float:
        """The last daily reset before now: where a live broker's first re-sync reads trades
        from (CONTRACT section 9)."""
        return self.engine.calendar.trading_day_bounds(self.engine.wall())[0]

    async def _start_pool(self) -> None:
        try:
            from riskterm.jobs.pool import JobPool
        except ImportError:  # the job pool is optional while it is being built
            return

        def on_record(rec: dict[str, Any]) -> None:
            body = strict_dumps(rec)  # as the job store wrote it
            for sink in self.sinks:
                sink([(rec, body)])

        assert self.opts.db_path is not None
        # the pool shares this connection and the recorder's transactions (jobs.store.JobStore)
        self.pool = JobPool(self.opts.db_path, self.config.smart_risk, self.engine,
                            on_record=on_record, clock=self.job_clock, conn=self.conn,
                            attach=self.recorder.attach_jobs)
        await self.pool.start()
        self.engine.enqueue_job = self.pool.enqueue_nowait

    def job_clock(self) -> float:
        """The engine clock, and before the first event the clock the database was written
        in: a replay's jobs are stamped, and purged after retention_days, in event time."""
        engine = self.engine
        if not engine.started and self.db_clock is not None:
            kind, ts = self.db_clock
            if kind == "event" and engine.is_replay:
                return ts
        return engine.now()

    def release_lock(self) -> None:
        lock = getattr(self, "engine_lock", None)
        if lock is not None:
            lock.release()

    def request_stop(self, code: int | None = None) -> None:
        if self.stop_code is None:
            self.stop_code = code
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    async def run_source(self) -> None:
        """Feed events until the source ends, --max-events is reached or a stop is requested."""
        if self.opts.is_live:
            await self._run_live()
        else:
            await self._run_replay(self.opts.replay_path)
            # rejected lines still waiting for a first event: stamped in the database's clock
            db_clock = getattr(self, "db_clock", None)
            self.engine.end_of_input(self.job_clock() if db_clock is not None else None)
        await self.recorder.flush()

    async def settle_enforcements(self) -> None:
        """Wait (bounded) for the broker to confirm what was sent; what it never answers is
        recorded failed, so nothing stays unstated at shutdown."""
        engine = getattr(self, "engine", None)
        if engine is None or not engine.unconfirmed:
            return
        if not await engine.confirmations.wait_idle(CONFIRM_SECONDS):
            n = engine.abandon_unconfirmed("no confirmation from the broker before shutdown")
            self.say(f"{n} enforcement(s) were not confirmed by the broker before shutdown; "
                     "recorded failed")

    async def finish(self, *, wait_for_jobs: bool) -> dict[str, Any]:
        """Drain jobs (after a replay), commit everything and write the summary."""
        if self.pool is not None and wait_for_jobs:
            await self.pool.drain()
        await self.settle_enforcements()
        if self.engine.started:
            self.engine.sample_equity()  # where each account stands at the end
        await self._stop_flusher()
        await self.recorder.flush()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.pool is not None:
            await self.pool.stop()
        await self.recorder.flush()
        await self.alerts.drain()  # bounded; a failed alert is a warning, committed next
        await self.recorder.flush()
        summary = self.summary()
        await self.recorder.write_record(summary)
        return summary

    async def _stop_flusher(self) -> None:
        """Stop the flusher between commits: a cancel landing inside a transaction would leave
        it open and lose the batch being written."""
        self._closing = True
        task = getattr(self, "_flush_task", None)
        if task is not None and not task.done():
            with contextlib.suppress(Exception):
                await task

    async def close(self) -> None:
        if getattr(self, "alerts", None) is not None:
            self.alerts.close()
        if self.broker is not None:
            with contextlib.suppress(Exception):
                await self.broker.close()
        if self._gc_threshold is not None:  # this engine can be collected once dropped
            gc.set_threshold(*self._gc_threshold)
            gc.unfreeze()
            self._gc_threshold = None
        await self._stop_flusher()
        for task in self._tasks:
            task.cancel()
        self.close_recording()
        with contextlib.suppress(Exception):
            await self.conn.close()
        self.release_lock()

    def close_recording(self) -> None:
        """Write what --record still buffers and close its file (after a storage failure too)."""
        if self.recording is not None:
            self.recording.close()

    def summary(self) -> dict[str, Any]:
        e = self.engine
        return {
            "kind": "summary", "ts": iso(e.now()), "events": e.n_events,
            "rejected": e.n_rejected, "violations": e.n_violations, "warnings": e.n_warnings,
            "enforcements": e.n_enforcements,
            "jobs": self.pool.jobs_this_run() if self.pool is not None else 0,
            "elapsed_s": round(time.monotonic() - self.started_wall, 3),
        }

    # -- sources -------------------------------------------------------------------------------

    def _limit_reached(self) -> bool:
        return self.opts.max_events is not None and self.events_in >= self.opts.max_events

    async def _backpressure(self) -> None:
        pending = len(self.engine._records)
        if pending >= HARD_PENDING and self.engine.unconfirmed:
            # commits wait for the broker's confirmation: so does ingest, for a while
            await self.engine.confirmations.wait_idle(1.0)
        if pending >= HARD_PENDING:  # the database is far behind: wait for it
            await self.recorder.flush()
            return
        if pending >= MAX_PENDING:
            # commit now, on the database thread, while ingest goes on: waiting here would
            # leave this core idle for the length of a commit
            self._flush_now.set()
        await asyncio.sleep(0)

    async def _run_replay(self, path: str | None) -> None:
        skip = self.resume_after
        if self._limit_reached():  # --max-events 0: take nothing from the source
            return
        # a big file at full speed is parsed on the other core (sources.parse_ahead)
        assert isinstance(self.broker, ReplayBroker)
        chunks = self.broker.chunks()
        async with contextlib.aclosing(chunks):  # stopping early ends the reader (or child) now
            while True:
                try:
                    chunk = await anext(chunks)
                except StopAsyncIteration:
                    return
                except OSError as exc:  # the input broke off (a read error)
                    if self._stop.is_set():  # ... because the stop ended it: not a failure
                        return
                    raise SourceError(_read_error(self.opts.source, exc)) from exc
                if self._stop.is_set():
                    return
                if self.speed > 0 or self.paused:
                    if not await self._paced(chunk, skip):
                        return
                    await self._backpressure()
                    continue
                start = 0
                while start < len(chunk):
                    start = self._chunk(chunk, skip, start)
                    if start < 0:  # --max-events reached
                        return
                    await self._backpressure()
                    if self._stop.is_set():
                        return
                    if self.paused and start < len(chunk):
                        if not await self._paced(chunk[start:], skip):
                            return
                        break

    def _chunk(self, chunk: list[tuple[int, Any]], skip: int, start: int = 0) -> int:
        """Process chunk[start:] at full speed for up to SLICE_SECONDS; returns the index to go
        on from (len(chunk) when done), or -1 once --max-events is reached.

        Nothing else runs until this returns (no await inside), so stop and pause requests,
        commits and the job pool's database round trips fall between slices, and the cursor
        moves once per slice. The slice is bounded in time, not in lines: where events are
        slow (thousands of accounts, a rule with a scan) a whole chunk could hold the loop for
        a second, and every await of the job pool (a claim takes several) would wait that long.
        `chunk` holds (line number, what parse_line made of the line).
        """
        engine = self.engine
        process, reject = engine.process, engine.reject
        max_events = self.opts.max_events
        room = -1 if max_events is None else max_events - self.events_in
        taken = 0
        deadline = time.perf_counter() + SLICE_SECONDS
        end = len(chunk)
        for i in range(start, end):
            line_no, event = chunk[i]
            if line_no <= skip:
                continue
            if event.__class__ is dict:
                process(event, line_no)  # type: ignore[arg-type]
                taken += 1
                if taken == room:  # stop before taking a line it would not process
                    engine.cursor = line_no
                    self.events_in += taken
                    return -1
            elif event is not None:
                reject(line_no, event)  # type: ignore[arg-type]
            if not taken & 127 and taken and time.perf_counter() > deadline:
                end = i + 1
                break
        last = chunk[end - 1][0]
        if last > skip:
            engine.cursor = last
        self.events_in += taken
        return end

    async def _paced(self, chunk: list[tuple[int, Any]], skip: int) -> bool:
        """Process a chunk at --speed pace (or while paused); False to stop."""
        engine = self.engine
        loop = asyncio.get_running_loop()
        for line_no, event in chunk:
            if self._stop.is_set():
                return False
            if line_no <= skip:
                continue
            if isinstance(event, dict):
                # a line the engine rejects as too far ahead neither waits nor anchors pacing
                if self.speed > 0 and not engine.beyond_jump(event["ts"]):
                    if self._pace is None:
                        self._pace = (event["ts"], loop.time())
                    first_ts, t0 = self._pace
                    delay = (event["ts"] - first_ts) / self.speed - (loop.time() - t0)
                    if delay > 0:
                        await self._sleep(delay)
                        if self._stop.is_set():
                            return False
                while self.paused and not self._stop.is_set():
                    await self._sleep(0.1)
                if self._stop.is_set():
                    return False
                engine.process(event, line_no)
                self.events_in += 1
            elif event is not None:
                engine.reject(line_no, event)
            # after the line is done: a commit during the next wait must not skip a line
            engine.cursor = line_no
            if self._limit_reached():
                return False
        return True

    async def _run_live(self) -> None:
        """A live broker's stream: events, and on every (re)connect its Snapshot — the broker's
        view, taken before live events are trusted again (CONTRACT section 9): what the
        database has and it has not is dropped, accounts it does not report are kept but
        neither judged nor enforced."""
        engine = self.engine
        broker = self.broker
        assert broker is not None
        checked = registry.split(self.opts.source)[0] not in registry.BUILTIN
        n = 0
        if self._limit_reached():
            return
        async with contextlib.aclosing(broker.events()) as stream:  # type: ignore[type-var]
            while True:
                try:
                    item = await anext(stream)
                except StopAsyncIteration:
                    return
                except Exception as exc:  # a broker's own fault (a plugin's bug): say which
                    if self._stop.is_set():  # ... or its end, cut short by the stop
                        return
                    raise SourceError(f"{broker_title(broker)}: the event stream failed: "
                                      f"{type(exc).__name__}: {exc}") from exc
                if self._stop.is_set():
                    return
                while self.paused and not self._stop.is_set():
                    await self._sleep(0.1)
                if isinstance(item, Snapshot):
                    self._resync(self._checked_snapshot(item) if checked else item)
                    continue
                if checked:  # a plugin's event is held to section 1 like a line of a file
                    item = self._checked(item)
                    if item is None:
                        continue
                engine.process(item)
                self.events_in += 1
                if self._limit_reached():
                    return
                n += 1
                if n % 500 == 0 or engine.unconfirmed:
                    await self._backpressure()

    def _resync(self, snap: Snapshot) -> None:
        unreported = self.engine.resync(snap)
        if unreported:
            self.say(f"{len(unreported)} account(s) in the database are not reported by "
                     f"{broker_title(self.broker)}; kept, neither judged "
                     "nor enforced: " + ", ".join(unreported))

    def _checked_snapshot(self, snap: Snapshot) -> Snapshot:
        """A plugin's Snapshot, each entry held to section 1 as the event it stands for (an
        account, a position, an order_placed): a bad one is a `rejected` record and is left
        out, as if the broker had not listed it — nothing is ever enforced on a misread."""
        ts = snap.ts
        if ts.__class__ not in (int, float) or not math.isfinite(ts):
            self.engine.reject(None, f"snapshot: ts must be epoch seconds, got {ts!r}; "
                                     "taken at the wall clock")
            ts = time.time()
        lists: dict[str, list[dict[str, Any]]] = {}
        for name, kind in (("accounts", "account"), ("positions", "position"),
                           ("orders", "order_placed")):
            entries = getattr(snap, name)
            if not isinstance(entries, list | tuple):
                self.engine.reject(None, f"snapshot: {name} must be a list, "
                                         f"got {type(entries).__name__}")
                entries = ()
            lists[name] = [event for entry in entries if (event := self._checked(
                {**entry, "type": kind, "ts": ts} if isinstance(entry, dict) else entry,
                f"snapshot {kind}: ")) is not None]
        return Snapshot(ts, **lists)

    def _checked(self, item: Any, what: str = "") -> dict[str, Any] | None:
        """A plugin's event, validated exactly as a line of a file is (events.parse_line):
        a bad one is a `rejected` record (line null) and changes nothing else."""
        try:
            raw = strict_dumps(item).encode()
        except (TypeError, ValueError) as exc:
            self.engine.reject(None, f"{what}{self.broker.name if self.broker else 'broker'} "
                                     f"event is not JSON-serialisable: {exc}")
            return None
        result = parse_line(raw, 0)
        if isinstance(result, dict):
            return result
        if result is None:
            return None
        if isinstance(result, str):
            result = what + result.replace("line 0: ", "", 1)
        self.engine.reject(None, result)
        return None

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    # -- background tasks ----------------------------------------------------------------------

    async def _flusher(self) -> None:
        try:
            while not self._closing:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._flush_now.wait(), FLUSH_INTERVAL)
                self._flush_now.clear()
                if self.recording is not None:  # the events before the records they caused
                    self.recording.flush()
                await self.recorder.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # storage failure: stop the engine and say why
            self.failure = exc
            self.request_stop(1)

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            self.engine.advance(self.engine.wall())

    async def _watch_unlocks(self) -> None:
        """Pick up lockouts lifted by `riskterm unlock` in another process."""
        while True:
            await asyncio.sleep(1.0)
            active = {lk.id for lk in self.engine.lockouts.all()}
            if not active:
                continue
            marks = ",".join("?" * len(active))
            async with self.conn.execute(
                f"SELECT id FROM lockouts WHERE active = 0 AND id IN ({marks})", tuple(active)
            ) as cur:
                lifted = {row[0] async for row in cur}
            if lifted:
                self.engine.lifted_elsewhere(lifted)

    # -- commands from the dashboard or a signal ----------------------------------------------

    def reload_rules(self) -> str | None:
        """Reload the rules file; returns None on success or the error text (old rules kept)."""
        path = self.opts.rules_path or Path(self.config.path)
        try:
            config = load_rules(path)
        except RulesError as exc:
            return str(exc)
        except OSError as exc:
            return f"{path}: cannot read the rules file: {exc}"
        self.config = config
        self.engine.set_config(config)
        if self.pool is not None and hasattr(self.pool, "set_config"):
            self.pool.set_config(config.smart_risk)
        self.alerts.set_targets(config.alerts)
        return None
