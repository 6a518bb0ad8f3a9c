"""riskterm on `--source projectx` against the test gateway: in process (EngineHost, as the
headless mode runs it) and as a `riskterm` subprocess on the test's event loop. Waits are
bounded polls of what the session wrote (tests.gateway_fixtures.wait_for), never sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from riskterm.config import load_rules
from riskterm.host import EngineHost, RunOptions
from riskterm.testing.gateway import TestGateway
from tests.gateway_fixtures import wait_for

MNQ, ES, MES = "CON.F.US.MNQ.H26", "CON.F.US.EP.H26", "CON.F.US.MES.H26"
ACCT, ACCT2 = "TOPX-50K-1", "TOPX-50K-2"

HEADER = """\
timezone: America/Chicago
daily_reset: "17:00"
instruments:
  MNQ: {tick_size: 0.25, tick_value: 0.5}
  ES: {tick_size: 0.25, tick_value: 12.5}
"""


def rules_file(tmp_path: Path, rules: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + rules)
    return path


async def gateway() -> TestGateway:
    """The test gateway with two funded accounts."""
    g = await TestGateway().start()
    g.state.add_account(101, ACCT, 50000.0)
    g.state.add_account(102, ACCT2, 50000.0)
    return g


OPEN: list[Session] = []  # sessions a failing test left running, stopped at its teardown


async def stop_open_sessions() -> None:
    while OPEN:
        run = OPEN.pop()
        if run.host is not None and run._task is not None and not run.stopped:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(run.stop(), 10)


class Session:
    """One riskterm engine on `--source projectx`, in this process."""

    def __init__(self, tmp_path: Path, rules: str, *, db: Path | None = None,
                 accounts: tuple[str, ...] = (), record: Path | None = None) -> None:
        self.rules_path = rules_file(tmp_path, rules)
        self.db = db or tmp_path / "px.db"
        self.opts = RunOptions(source="projectx", rules_path=self.rules_path, db_path=self.db,
                               accounts=accounts, record_path=record)
        self.records: list[dict[str, Any]] = []
        self.stderr: list[str] = []
        self.host: EngineHost | None = None
        self._task: asyncio.Task[None] | None = None
        self.stopped = False
        OPEN.append(self)

    async def start(self, *, connected: bool = True) -> Session:
        self.host = EngineHost(self.opts, load_rules(self.rules_path),
                               sinks=[self._sink], diagnostics=self.stderr.append,
                               default_speed=1.0, with_jobs=False)
        await self.host.open()
        self._task = asyncio.create_task(self.host.run_source())
        if connected:
            await wait_for(lambda: self.broker.connected, 8, "the first re-sync")
        return self

    def _sink(self, batch: list[tuple[dict[str, Any], str]]) -> None:
        self.records += [rec for rec, _ in batch]

    @property
    def broker(self) -> Any:
        assert self.host is not None
        return self.host.broker

    @property
    def engine(self) -> Any:
        assert self.host is not None
        return self.host.engine

    async def stop(self) -> dict[str, Any]:
        """As run_headless stops: the source loop ends, pending work is committed."""
        host = self.host
        assert host is not None and self._task is not None
        self.stopped = True
        host.request_stop(0)
        done, _ = await asyncio.wait({self._task}, timeout=0.5)
        if not done:  # waiting for the broker's next event
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        else:
            self._task.result()
        summary = await host.finish(wait_for_jobs=False)
        await host.close()
        return summary

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind
                and all(r.get(k) == v for k, v in match.items())]

    async def wait(self, cond: Callable[[], object], what: str, timeout: float = 8.0) -> None:
        await wait_for(cond, timeout, what)


def rest_calls(gw: TestGateway, endpoint: str) -> list[Any]:
    return gw.requests_to(endpoint)


def db_text(db: Path) -> str:
    """Every value of every table, and the raw bytes of the file and its WAL, as text."""
    parts = []
    for path in (db, Path(f"{db}-wal")):
        if path.exists():
            parts.append(path.read_bytes().decode("latin-1"))
    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        assert tables
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                parts.append(json.dumps(row, default=repr))
    return "\n".join(parts)


# -- the subprocess ------------------------------------------------------------------------------


class Child:
    """`riskterm --no-ui --source projectx ...` with the gateway's settings in its environment,
    its stdout read line by line as records while the test drives the gateway."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.args, self.env, self.cwd = args, env, cwd
        self.records: list[dict[str, Any]] = []
        self.stdout = ""
        self.stderr = ""
        self.proc: asyncio.subprocess.Process | None = None
        self._readers: list[asyncio.Task[None]] = []

    async def start(self) -> Child:
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "riskterm", *self.args, cwd=self.cwd, env=self.env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        self._readers = [asyncio.create_task(self._out()), asyncio.create_task(self._err())]
        return self

    async def _out(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        async for line in self.proc.stdout:
            text = line.decode()
            self.stdout += text
            self.records.append(json.loads(text))

    async def _err(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        async for line in self.proc.stderr:
            self.stderr += line.decode()

    def of(self, kind: str, **match: Any) -> list[dict[str, Any]]:
        return [r for r in self.records if r["kind"] == kind
                and all(r.get(k) == v for k, v in match.items())]

    async def wait(self, cond: Callable[[], object], what: str, timeout: float = 15.0) -> None:
        def check() -> object:
            if self.proc is not None and self.proc.returncode is not None:
                raise AssertionError(f"riskterm ended ({self.proc.returncode}) while waiting "
                                     f"for {what}: {self.stderr}")
            return cond()
        await wait_for(check, timeout, what)

    async def finish(self, sig: int | None = signal.SIGINT, timeout: float = 30.0) -> int:
        assert self.proc is not None
        if sig is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), timeout)
        await asyncio.wait_for(asyncio.gather(*self._readers), timeout)
        return code


def child_env(tmp_path: Path, px: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The test's environment without any PROJECTX_* of its own, plus `px` and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROJECTX_")}
    env["RISKTERM_HOME"] = str(tmp_path / "home")
    return {**env, **(px or {}), **extra}
