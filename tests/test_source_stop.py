"""Stopping a source: --max-events takes exactly N events, and stdin shuts down quietly.

The stdin reader runs on a daemon thread. It must never leave a coroutine behind on a loop that is
closing ("coroutine ... was never awaited" on stderr), and the host must stop pulling from the
source as soon as it has its N events (with stdin still open it used to wait for one more line).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from riskterm.config import load_rules_text
from riskterm.host import EngineHost, RunOptions
from riskterm.sources import replay
from tests.helpers import HEADER

CLOCK = '{"type": "clock", "ts": "2026-01-05T15:00:%02dZ"}\n'
LINE = (CLOCK % 0).encode()


def _cmd(db: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--db", str(db), *extra]

def _wait_or_fail(proc: subprocess.Popen[Any], message: str) -> None:
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail(message)


def _reap(proc: subprocess.Popen[Any]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait()
    if proc.stdin is not None:
        proc.stdin.close()


def _lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def _counts(summary: dict[str, Any]) -> dict[str, Any]:
    return {k: summary[k] for k in ("events", "rejected", "violations", "warnings",
                                    "enforcements", "jobs")}


# -- --max-events -----------------------------------------------------------------------------


def test_max_events_on_open_stdin_stops_without_waiting_for_another_line(tmp_path: Path) -> None:
    """N lines written, stdin left open: the run ends by itself after the N-th event."""
    proc = subprocess.Popen(_cmd(tmp_path / "s.db", "--max-events", "3"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None
    try:
        proc.stdin.write("".join(CLOCK % i for i in range(1, 4)))
        proc.stdin.flush()
        _wait_or_fail(proc, "--max-events 3 waited for a 4th line on stdin")  # stdin open
    finally:
        _reap(proc)
    assert proc.stdout is not None and proc.stderr is not None
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, err
    assert err == ""
    recs = _lines(out)
    assert [r["kind"] for r in recs] == ["summary"]
    assert _counts(recs[0]) == {"events": 3, "rejected": 0, "violations": 0, "warnings": 0,
                                "enforcements": 0, "jobs": 0}
    assert recs[0]["ts"] == "2026-01-05T15:00:03Z"


def test_max_events_on_stdin_processes_nothing_past_the_nth_event(tmp_path: Path) -> None:
    # a bad line and more events follow the 3rd event: none of them is touched
    text = "".join(CLOCK % i for i in range(1, 4)) + "not json\n" + CLOCK % 5
    res = subprocess.run(_cmd(tmp_path / "s.db", "--max-events", "3"), input=text,
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    recs = _lines(res.stdout)
    assert [r["kind"] for r in recs] == ["summary"]
    assert _counts(recs[0])["events"] == 3 and recs[0]["rejected"] == 0


def test_max_events_zero_reads_nothing_from_open_stdin(tmp_path: Path) -> None:
    proc = subprocess.Popen(_cmd(tmp_path / "z.db", "--max-events", "0"), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        _wait_or_fail(proc, "--max-events 0 waited for input")  # stdin open and empty
    finally:
        _reap(proc)
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert proc.returncode == 0, err
    assert err == ""
    assert [(r["kind"], r["events"]) for r in _lines(out)] == [("summary", 0)]


def test_max_events_replay_resumes_at_the_next_line(tmp_path: Path) -> None:
    """10 lines, --max-events 3, the same database each time: 1-3, then 4-7, 8-10, nothing."""
    events = tmp_path / "ten.jsonl"
    lines = [CLOCK % i for i in range(1, 11)]
    lines[3] = "not json\n"  # line 4: rejected, but only by the run that gets to it
    events.write_text("".join(lines))
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{events}",
           "--db", str(db), "--max-events", "3"]

    def once() -> tuple[list[dict[str, Any]], str]:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, res.stderr
        return _lines(res.stdout), res.stderr

    recs, err = once()
    assert "resuming" not in err
    assert [r["kind"] for r in recs] == ["summary"]
    assert (recs[0]["events"], recs[0]["rejected"], recs[0]["ts"]) == (3, 0, "2026-01-05T15:00:03Z")

    recs, err = once()
    assert "after line 3," in err
    assert [(r["kind"], r.get("line")) for r in recs] == [("rejected", 4), ("summary", None)]
    assert (recs[-1]["events"], recs[-1]["rejected"], recs[-1]["ts"]) == (
        3, 1, "2026-01-05T15:00:07Z")

    recs, err = once()
    assert "after line 7," in err
    assert (recs[-1]["events"], recs[-1]["rejected"], recs[-1]["ts"]) == (
        3, 0, "2026-01-05T15:00:10Z")

    recs, err = once()
    assert "after line 10," in err
    assert [(r["kind"], r["events"]) for r in recs] == [("summary", 0)]


async def test_host_pulls_exactly_max_events_from_the_source(tmp_path: Path, monkeypatch) -> None:
    """In process: count what the host takes from the source, one line per chunk (like stdin)."""
    pulled: list[int] = []

    async def counting(path: str | None) -> AsyncIterator[list[tuple[int, bytes]]]:
        for n in range(1, 11):
            pulled.append(n)
            yield [(n, (CLOCK % n).encode())]

    monkeypatch.setattr("riskterm.brokers.replay.read_lines", counting)
    config = load_rules_text(HEADER + "rules: {}\n")
    host = EngineHost(RunOptions(source="-", db_path=tmp_path / "h.db", max_events=3), config,
                      with_jobs=False, diagnostics=lambda text: None)
    await host.open()
    try:
        await host.run_source()
        assert host.events_in == 3
        assert pulled == [1, 2, 3]
    finally:
        await host.close()


# -- quiet shutdown of the stdin reader ------------------------------------------------------


class _FakeStdin:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


def test_stdin_reader_stops_quietly_when_the_consumer_and_loop_go_away(monkeypatch) -> None:
    """Lines keep arriving after the consumer stopped and the loop closed: the reader thread
    must neither leave an un-awaited coroutine behind nor die with an exception, and it ends."""
    r, w = os.pipe()
    monkeypatch.setattr(sys, "stdin", _FakeStdin(r))
    thread_errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: thread_errors.append(args.exc_value))
    stop = threading.Event()

    def flood() -> None:
        try:
            while not stop.is_set():
                os.write(w, LINE * 200)
        except OSError:
            pass

    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()

    async def take(n: int) -> int:
        got = 0
        async for chunk in replay.read_lines(None):
            got += len(chunk)
            if got >= n:
                break
        await asyncio.sleep(0.05)  # the reader keeps posting while the loop still runs
        return got

    before = {t for t in threading.enumerate() if t.name == "riskterm-stdin"}
    reader: list[threading.Thread] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert asyncio.run(take(50)) == 50
            reader = [t for t in threading.enumerate()
                      if t.name == "riskterm-stdin" and t not in before]
            for t in reader:
                t.join(timeout=3)
            time.sleep(0.2)
            gc.collect()
        assert not [t for t in reader if t.is_alive()], "the stdin reader thread did not end"
        noise = [str(c.message) for c in caught
                 if "never awaited" in str(c.message) or issubclass(c.category, RuntimeWarning)]
        assert noise == []
        assert thread_errors == []
    finally:
        stop.set()
        if not any(t.is_alive() for t in reader):  # never close an fd a live thread reads
            os.close(r)
            flooder.join(timeout=5)
            os.close(w)


def _read_line(fd: int, timeout: float) -> bytes:
    """One line from a pipe, or what came before the timeout or the end."""
    got = b""
    deadline = time.monotonic() + timeout
    while not got.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        got += chunk
    return got


@pytest.mark.parametrize("how", ["sigint", "sigterm", "max_events", "eof"])
def test_stdin_shutdown_leaves_stderr_clean(tmp_path: Path, how: str) -> None:
    """End to end, with stdin flooding (or ended): the exit code per contract and no noise."""
    extra = ["--max-events", "2000"] if how == "max_events" else []
    expected = {"sigint": 130, "sigterm": 143, "max_events": 0, "eof": 0}[how]
    for attempt in range(2 if how.startswith("sig") else 1):
        proc = subprocess.Popen(_cmd(tmp_path / f"{how}{attempt}.db", *extra),
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        stop = threading.Event()
        try:
            if how.startswith("sig"):
                # a bad first line: its `rejected` record shows the engine is reading stdin
                # (so the signal handlers are in place) before the flood and the signal; it
                # is written once the first event starts the clock (it carries event time)
                proc.stdin.write(b"not json\n" + LINE)
                proc.stdin.flush()
                first = _read_line(proc.stdout.fileno(), 60)
                assert b'"rejected"' in first, first

            def feed(stdin: Any = proc.stdin, stop: threading.Event = stop) -> None:
                try:
                    for _ in range(20 if how == "eof" else 1_000_000):
                        if stop.is_set():
                            break
                        stdin.write(LINE * 1000)
                        stdin.flush()
                    if how == "eof":
                        stdin.close()
                except (OSError, ValueError):
                    pass

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            if how.startswith("sig"):
                time.sleep(0.5)
                proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
            try:
                proc.wait(timeout=60)  # stdout and stderr hold a few lines at most
            except subprocess.TimeoutExpired:
                pytest.fail(f"riskterm did not stop ({how})")
        finally:
            stop.set()
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            with contextlib.suppress(OSError):
                proc.stdin.close()
        err = proc.stderr.read().decode()
        out = proc.stdout.read().decode()
        proc.stderr.close()
        proc.stdout.close()
        assert proc.returncode == expected, err
        assert err == "", err
        assert _lines(out)[-1]["kind"] == "summary"
