"""The openai planner against answers that never end: a huge answer is cut off at a size cap (the
job fails with that reason, memory stays bounded, the event loop keeps running) and an endless
slow one is ended by the job's timeout_seconds."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import HEADER
from tests.test_jobs_support import FakeEngine, config, db_rows, job_records, started_pool
from tests.test_srm_openai import ENGINE_SNAP, call, completion

ROOT = Path(__file__).resolve().parent.parent
MB = 1024 * 1024
HUGE = 200 * MB
SIZE_REASON = "the model's answer is larger than 4 MiB"
KEY = "sk-limits-" + "5e1f0c9b8a7d6e5f4a3b2c1d"
KEY_ENV = "RISKTERM_TEST_LIMITS_KEY"


class Endpoint(ThreadingHTTPServer):
    """A local chat-completions endpoint. mode "huge": a 200 MB answer as fast as the socket takes
    it; "slow": an answer that never ends, a byte every 20 ms; "small": a normal answer; "large":
    first a 3 MB answer (under the cap) that starts with the key, then a normal one."""

    daemon_threads = True

    def __init__(self, mode: str) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = mode
        self.requests = 0
        self.sent = 0
        self.closed = threading.Event()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def stop(self) -> None:
        self.closed.set()
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    server: Endpoint

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests += 1
        if self.server.mode in ("small", "large"):
            body = completion(call("c1", "finish", {"summary": "nothing to do"})).content
            if self.server.mode == "large" and self.server.requests == 1:
                # escapes everywhere: the slowest text to search for the key
                body = completion(content=KEY + "\\a" * MB).content
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        # no Content-Length: the answer's size is known only by reading it (HTTP/1.0, close)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        try:
            self._write(b'{"choices": [{"index": 0, "message": {"role": "assistant", '
                        b'"content": "')
            if self.server.mode == "huge":
                chunk = b"x" * MB
                for _ in range(HUGE // MB):
                    self._write(chunk)
                self._write(b'"}, "finish_reason": "stop"}]}')
            else:
                while not self.server.closed.wait(0.02):
                    self._write(b"x")
        except OSError:  # the client stopped reading and closed the connection
            pass

    def _write(self, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.server.sent += len(data)


def _peak_rss_mb(server: Endpoint, tmp_path: Path) -> tuple[float, list[dict[str, Any]]]:
    """Run `riskterm --no-ui` on a replay whose loss enqueues a review by `server`; returns the
    process's peak RSS (MB) and its job records."""
    tmp_path.mkdir()
    rules = tmp_path / "r.yaml"
    rules.write_text(HEADER + f"""\
rules:
  daily_realized_loss: {{limit: -100, action: smart_review, lockout: none}}
smart_risk: {{planner: openai, base_url: "{server.base_url}", model: m, max_iterations: 2,
             step_delay_seconds: 0, timeout_seconds: 120}}
""")
    events = tmp_path / "e.jsonl"
    events.write_text("".join(json.dumps(e) + "\n" for e in [
        {"type": "fill", "ts": "2026-02-03T15:00:00Z", "account": "A1", "symbol": "MNQ",
         "order_id": "1", "side": "buy", "qty": 2, "price": 20000.0},
        {"type": "fill", "ts": "2026-02-03T15:00:05Z", "account": "A1", "symbol": "MNQ",
         "order_id": "2", "side": "sell", "qty": 2, "price": 19900.0},
    ]))
    out, err = tmp_path / "out", tmp_path / "err"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{events}",
             "--rules", str(rules), "--db", str(tmp_path / "m.db")],
            stdout=stdout, stderr=stderr, cwd=ROOT, env={**os.environ, "OPENAI_API_KEY": ""})
        peak = _wait_for_peak_rss_mb(proc, timeout=120)
    assert proc.returncode == 0, err.read_text()
    records = [json.loads(line) for line in out.read_text().splitlines()]
    return peak, [r for r in records if r["kind"] == "job"]


def _wait_for_peak_rss_mb(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Reap the process with wait4, which reports its peak RSS (KiB on Linux)."""
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_maxrss / 1024
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise AssertionError(f"riskterm did not exit within {timeout} s")
        time.sleep(0.05)


def test_a_huge_answer_fails_the_job_at_once_in_bounded_memory(tmp_path: Path) -> None:
    small = Endpoint("small")
    try:
        baseline, jobs = _peak_rss_mb(small, tmp_path / "small")
    finally:
        small.stop()
    assert jobs[-1]["status"] == "completed"
    huge = Endpoint("huge")
    try:
        peak, jobs = _peak_rss_mb(huge, tmp_path / "huge")
    finally:
        huge.stop()
    final = jobs[-1]
    assert (final["status"], final["attempt"]) == ("failed", 1), final  # not retried
    assert final["error"].startswith(SIZE_REASON)
    assert huge.requests == 1
    assert huge.sent < HUGE // 2, "the answer was read to its end"
    assert peak - baseline < 50, f"peak RSS {peak:.0f} MB, {baseline:.0f} MB for a small answer"


async def _run_job(server: Endpoint, tmp_path: Path,
                   **cfg: Any) -> tuple[dict[str, Any], float]:
    """Run one openai job against `server` while a probe measures how late the event loop runs
    a 10 ms sleep; returns the job's last record and the worst lateness (seconds)."""
    worst = 0.0
    ticks = 0
    stop = asyncio.Event()

    async def probe() -> None:
        nonlocal worst, ticks
        while not stop.is_set():
            t0 = time.perf_counter()
            await asyncio.sleep(0.01)
            worst = max(worst, time.perf_counter() - t0 - 0.01)
            ticks += 1

    db = tmp_path / "l.db"
    pool = await started_pool(db, config(planner="openai", base_url=server.base_url,
                                         api_key_env=KEY_ENV, **cfg),
                              FakeEngine({"A1": ENGINE_SNAP}))
    task = asyncio.create_task(probe())
    try:
        job_id, _ = await pool.enqueue("A1")
        await asyncio.wait_for(pool.drain(), 60)
    finally:
        stop.set()
        await task
        await pool.stop()
    assert ticks >= 1, "the probe did not run while the job ran"
    return job_records(db, job_id)[-1], worst


async def test_the_event_loop_keeps_running_while_a_huge_answer_streams(tmp_path: Path) -> None:
    server = Endpoint("huge")
    try:
        final, worst_lag = await _run_job(server, tmp_path, timeout_seconds=60)
    finally:
        server.stop()
    assert (final["status"], final["attempt"]) == ("failed", 1), final
    assert final["error"].startswith(SIZE_REASON)
    assert worst_lag < 0.5, f"the event loop stalled for {worst_lag:.2f} s"


async def test_timeout_seconds_ends_an_endless_slow_answer(tmp_path: Path) -> None:
    server = Endpoint("slow")
    try:
        final, worst_lag = await _run_job(server, tmp_path, timeout_seconds=2)
    finally:
        server.stop()
    assert (final["status"], final["attempt"]) == ("timeout", 1), final
    assert final["error"] == "timed out after 2 s"
    assert 2 <= final["duration_s"] < 10  # ended by the timeout, not by the answer
    assert server.requests == 1
    assert worst_lag < 0.5


async def test_a_large_answer_under_the_cap_is_parsed_and_redacted_off_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    server = Endpoint("large")
    try:
        final, worst_lag = await _run_job(server, tmp_path, timeout_seconds=60)
    finally:
        server.stop()
    assert final["status"] == "completed", final
    assert server.requests == 2
    (state,) = db_rows(tmp_path / "l.db", "SELECT graph_state FROM jobs")
    content = json.loads(state[0])["research"][0]["content"]
    assert content.startswith("[redacted]\\a\\a") and KEY[3:] not in content
    assert worst_lag < 0.5, f"the event loop stalled for {worst_lag:.2f} s"


async def test_an_answer_declared_larger_than_the_cap_is_not_read(tmp_path: Path) -> None:
    from tests.test_srm_openai import Script, run_job

    body = httpx.ByteStream(b'{"choices": [')  # what is sent is never looked at
    declared = httpx.Response(200, headers={"Content-Length": str(2**30)}, stream=body)
    db, job_id, _ = await run_job(tmp_path, Script(declared))
    final = job_records(db, job_id)[-1]
    assert (final["status"], final["attempt"]) == ("failed", 1)
    assert final["error"].startswith(SIZE_REASON)
