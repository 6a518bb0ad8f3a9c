"""Parse-ahead: a big replay file is parsed in a forked child, with the same outcome.

The child must hand over exactly what the in-process parser makes of every line (events,
rejection sentences, blank lines, line numbers), the engine must write the same records either
way, and the child must never outlive the engine: not when the engine stops early, not when it
is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from riskterm.bench.workload import events, to_line, write_file
from riskterm.config import load_rules
from riskterm.events import parse_line
from riskterm.host import EngineHost, RunOptions
from riskterm.sources import parse_ahead
from riskterm.sources.replay import read_lines

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="parse-ahead forks (Linux)")

ROOT = Path(__file__).resolve().parent.parent
BAD = [
    b"",
    b"{not json",
    b'{"type": "quote", "ts": "2026-03-03T14:00:00", "symbol": "ES", "last": 1.0}',
    b'{"type": "fill", "ts": 1772546400, "account": "A", "symbol": "ES", "order_id": "1",'
    b' "side": "buy", "qty": 3.0, "price": 1.0}',
    b"\xff\xfe not utf-8",
    b'{"type": "clock", "ts": "2026-03-03T14:00:01Z", "pad": "' + b"x" * 70_000 + b'"}',
    b"   ",
    b'{"type": "quote", "ts": "2026-03-03T14:00:02Z", "symbol": "ES", "last": 1e400}\r',
]


def _mixed_file(path: Path, n: int) -> Path:
    lines = [to_line(ev).encode() for ev in events(n, seed=5, accounts=20)]
    for i, bad in enumerate(BAD):
        lines.insert(37 * (i + 1), bad)
    path.write_bytes(b"\n".join(lines))  # no newline after the last line
    return path


async def _in_process(path: Path) -> list[tuple[int, Any]]:
    return [(n, parse_line(raw, n)) async for chunk in read_lines(str(path)) for n, raw in chunk]


async def _ahead(path: Path) -> list[tuple[int, Any]]:
    return [item async for chunk in parse_ahead.parsed_chunks(str(path)) for item in chunk]


def _no_children() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


async def test_the_child_parses_every_line_as_the_engine_process_would(tmp_path: Path) -> None:
    path = _mixed_file(tmp_path / "mixed.jsonl", 6_000)
    ahead = await _ahead(path)
    assert ahead == await _in_process(path)
    kinds = {type(result).__name__ for _, result in ahead}
    assert kinds == {"dict", "str", "NoneType"}  # events, rejections and blank lines
    assert ahead[-1][0] == 6_000 + len(BAD)
    assert _no_children()


async def test_a_consumer_that_stops_early_leaves_no_child_behind(tmp_path: Path) -> None:
    path = write_file(tmp_path / "big.jsonl", 40_000)
    chunks = parse_ahead.parsed_chunks(str(path))
    first = await anext(chunks)
    assert first[0][0] == 1
    await chunks.aclose()
    assert _no_children()


async def _replay_records(path: Path, db: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    host = EngineHost(RunOptions(source=f"replay:{path}", db_path=db),
                      load_rules(ROOT / "rules.yaml"),
                      sinks=[lambda batch: out.extend(rec for rec, _ in batch)],
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
    finally:
        await host.close()
    return out


async def test_the_engine_writes_the_same_records_either_way(tmp_path: Path, monkeypatch) -> None:
    path = _mixed_file(tmp_path / "mixed.jsonl", 20_000)
    monkeypatch.setattr(parse_ahead, "MIN_BYTES", 1 << 40)
    assert not parse_ahead.usable(str(path))
    in_process = await _replay_records(path, tmp_path / "a.db")
    monkeypatch.setattr(parse_ahead, "MIN_BYTES", 0)
    assert parse_ahead.usable(str(path))
    ahead = await _replay_records(path, tmp_path / "b.db")
    assert ahead == in_process
    assert sum(r["kind"] == "rejected" for r in ahead) == len(BAD) - 2  # two blank lines
    assert sum(r["kind"] == "violation" for r in ahead) > 50


def _parsers_of(db: Path) -> list[int]:
    """Processes whose command line names this database: the engine and its parser child."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(db).encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_kill_9_of_the_engine_ends_its_parser_too(tmp_path: Path) -> None:
    path = write_file(tmp_path / "big.jsonl", 120_000)
    assert parse_ahead.usable(str(path))
    db = tmp_path / "k.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{path}",
         "--rules", str(ROOT / "rules.yaml"), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())  # it is running
    assert len(_parsers_of(db)) == 2, "the engine and its parser"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _parsers_of(db) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _parsers_of(db) == [], "the parser outlived the engine"


async def test_a_replay_stopped_by_max_events_ends_its_parser_at_once(tmp_path: Path) -> None:
    path = write_file(tmp_path / "big.jsonl", 40_000)
    assert parse_ahead.usable(str(path))
    host = EngineHost(RunOptions(source=f"replay:{path}", db_path=tmp_path / "m.db",
                                 max_events=10), load_rules(ROOT / "rules.yaml"),
                      with_jobs=False, diagnostics=lambda _: None)
    await host.open()
    try:
        await host.run_source()
        assert host.events_in == 10
        assert _no_children(), "the parser child is still running"
    finally:
        await host.close()


async def test_an_input_that_breaks_off_stops_with_exit_1_and_keeps_what_was_done(
        tmp_path: Path, monkeypatch, capsys) -> None:
    from riskterm.cli import run_headless

    path = write_file(tmp_path / "big.jsonl", 40_000)

    async def breaks_off(name: str):
        async for chunk in read_lines(name):
            yield [(n, parse_line(raw, n)) for n, raw in chunk]
            raise parse_ahead.ParseError(f"cannot read {name}: Input/output error")

    monkeypatch.setattr(parse_ahead, "parsed_chunks", breaks_off)
    opts = RunOptions(source=f"replay:{path}", db_path=tmp_path / "e.db")
    code = await run_headless(opts, load_rules(ROOT / "rules.yaml"))
    out, err = capsys.readouterr()
    assert code == 1
    assert "stopping: cannot read" in err and "Input/output error" in err
    assert "Traceback" not in err
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1]["kind"] == "summary"
    assert 0 < records[-1]["events"] < 40_000


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_to_the_process_group_stops_cleanly_and_ends_the_parser(
        tmp_path: Path, sig: signal.Signals, code: int) -> None:
    """Ctrl-C in a terminal, `timeout` or a service manager signal the whole process group, the
    parser child included: the child ignores it, the engine stops cleanly (summary, exit 130 or
    143, as without parse-ahead) and ends the child."""
    path = write_file(tmp_path / "big.jsonl", 120_000)
    db = tmp_path / "c.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "riskterm", "--no-ui", "--source", f"replay:{path}",
         "--rules", str(ROOT / "rules.yaml"), "--db", str(db)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    json.loads(proc.stdout.readline())
    os.killpg(proc.pid, sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err.decode()
    assert json.loads(out.splitlines()[-1])["kind"] == "summary"
    assert b"Traceback" not in err
    assert _parsers_of(db) == []


async def test_without_a_process_to_spare_it_parses_in_process(tmp_path: Path,
                                                               monkeypatch) -> None:
    path = _mixed_file(tmp_path / "mixed.jsonl", 3_000)

    def no_fork() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", no_fork)
    assert await _ahead(path) == await _in_process(path)
