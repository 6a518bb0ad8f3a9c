"""Alerts end to end: `riskterm --no-ui` replays a file (a subprocess, a real SQLite file) while
webhook receivers on 127.0.0.1 take what it sends; `riskterm alerts test` per target. The secret
of a URL reaches the receiver and nothing else: not stdout, stderr or the database file."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from tests.alert_receiver import Receiver, refused_port
from tests.helpers import HEADER
from tests.test_alerts_delivery import losing_day

SECRET = "pw-9f8e7d6c5b4a"


async def riskterm(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RT_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "riskterm", *args, env={**clean, **(env or {})},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_replay_alerts_the_desk_and_a_failing_target_becomes_a_warning(tmp_path):
    desk, broken = await Receiver().start(), await Receiver("fail").start()
    try:
        rules = tmp_path / "rules.yaml"
        rules.write_text(HEADER + f"""rules:
  daily_realized_loss: {{limit: -100, action: [flatten, smart_review], lockout: until_reset}}
smart_risk: {{step_delay_seconds: 0}}
alerts:
  - url: "json://desk:${{RT_ALERT_PW}}@127.0.0.1:{desk.port}/hook"
    name: desk
  - url: "json://desk:${{RT_ALERT_PW}}@127.0.0.1:{broken.port}/hook"
    retries: 0
""")
        events = tmp_path / "events.jsonl"
        events.write_text(losing_day(2))
        db = tmp_path / "run.db"
        code, out, err = await riskterm("--no-ui", "--source", f"replay:{events}", "--rules",
                                        str(rules), "--db", str(db),
                                        env={"RT_ALERT_PW": SECRET})
    finally:
        await desk.stop()
        await broken.stop()
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert records[-1]["kind"] == "summary"
    titles = sorted(p["title"] for p in desk.posts)
    assert titles == [
        "riskterm: A0 locked out (daily_realized_loss)",
        "riskterm: A1 locked out (daily_realized_loss)",
        "riskterm: Smart Risk Manager job completed for A0",
        "riskterm: Smart Risk Manager job completed for A1",
    ]
    auth = "Basic " + base64.b64encode(f"desk:{SECRET}".encode()).decode()
    assert all(f" {auth} " in raw for raw in desk.raw)  # the variable was expanded
    failed = [r for r in records if r["kind"] == "warning" and r["rule"] == "alert_failed"]
    assert len(failed) == broken.requests == 4
    label = f"json://desk:${{RT_ALERT_PW}}@127.0.0.1:{broken.port}/hook"
    assert all(r["message"].startswith(f"alert to {label} failed after 1 attempt")
               for r in failed)
    assert records[-1]["warnings"] == 4
    # the secret went to the receivers only
    assert SECRET not in out and SECRET not in err
    for path in tmp_path.iterdir():
        if path.name.startswith("run.db"):
            assert SECRET.encode() not in path.read_bytes(), path


async def test_alerts_test_says_per_target_whether_it_got_through(tmp_path):
    desk = await Receiver().start()
    sock, port = refused_port()
    rules = tmp_path / "rules.yaml"
    try:
        rules.write_text(HEADER + f"rules: {{}}\nalerts:\n"
                         f"  - url: json://127.0.0.1:{desk.port}/hook\n    name: desk\n"
                         f"  - url: \"json://u:${{RT_ALERT_PW}}@127.0.0.1:{port}/x\"\n")
        code, out, err = await riskterm("alerts", "test", "--rules", str(rules),
                                        env={"RT_ALERT_PW": SECRET})
        assert code == 1
        assert out.splitlines() == [
            "ok      desk",
            f"FAILED  json://u:${{RT_ALERT_PW}}@127.0.0.1:{port}/x: A Connection error "
            "occurred sending JSON notification to 127.0.0.1.",
        ]
        assert err == "riskterm: 1 of 2 alert target(s) did not take the test message\n"
        assert SECRET not in out + err
        (post,) = desk.posts
        assert post["title"] == "riskterm: test alert"
        assert str(rules) in post["message"]

        rules.write_text(HEADER + f"rules: {{}}\nalerts:\n"
                         f"  - url: json://127.0.0.1:{desk.port}/hook\n")
        code, out, err = await riskterm("--rules", str(rules), "alerts", "test")
        assert (code, out, err) == (0, f"ok      json://127.0.0.1:{desk.port}/hook\n", "")
        assert len(desk.posts) == 2
    finally:
        sock.close()
        await desk.stop()


async def test_alerts_test_with_a_bad_or_empty_block_is_exit_2(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text(HEADER + "rules: {}\nalerts:\n  - url: \"json://h/${RT_UNSET}\"\n")
    code, out, err = await riskterm("alerts", "test", "--rules", str(rules))
    assert (code, out) == (2, "")
    assert err == (f"{rules}:9:20: alerts[0].url: environment variable RT_UNSET is not set "
                   "(the URL refers to it as ${RT_UNSET})\n")
    rules.write_text(HEADER + "rules: {}\n")
    code, out, err = await riskterm("alerts", "test", "--rules", str(Path(rules)))
    assert (code, out) == (2, "")
    assert err == (f"riskterm: {rules} has no alert targets: add an alerts: block (see README, "
                   "Alerts)\n")


async def _until(stream: asyncio.StreamReader, pred: Callable[[str], bool]) -> str:
    while True:
        line = (await asyncio.wait_for(stream.readline(), 60)).decode()
        assert line, "the stream ended first"
        if pred(line):
            return line


async def test_sighup_hands_the_reloaded_alerts_block_to_its_targets(tmp_path):
    first, second = await Receiver().start(), await Receiver().start()
    rules = tmp_path / "rules.yaml"
    block = HEADER + ("rules:\n  daily_realized_loss: {limit: -100, action: flatten, "
                      "lockout: until_reset}\nalerts:\n  - url: json://127.0.0.1:{port}/hook\n")
    rules.write_text(block.replace("{port}", str(first.port)))
    lines = losing_day(2).splitlines(keepends=True)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "riskterm", "--no-ui", "--source", "-", "--rules", str(rules),
        "--db", str(tmp_path / "hup.db"), stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    assert proc.stdin and proc.stdout and proc.stderr
    try:
        proc.stdin.write("".join(lines[:2]).encode())
        await proc.stdin.drain()
        await _until(proc.stdout, lambda s: '"kind":"lockout"' in s and '"A0"' in s)
        await first.arrived(posts=1)
        rules.write_text(block.replace("{port}", str(second.port)))
        proc.send_signal(signal.SIGHUP)
        await _until(proc.stderr, lambda s: "rules reloaded" in s)
        proc.stdin.write("".join(lines[2:]).encode())
        await proc.stdin.drain()
        await _until(proc.stdout, lambda s: '"kind":"lockout"' in s and '"A1"' in s)
        await second.arrived(posts=1)
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await first.stop()
        await second.stop()
    assert [p["title"] for p in first.posts] == ["riskterm: A0 locked out (daily_realized_loss)"]
    assert [p["title"] for p in second.posts] == ["riskterm: A1 locked out (daily_realized_loss)"]
