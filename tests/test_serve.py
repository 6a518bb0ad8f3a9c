"""`riskterm serve` (issue 17, item 4): the dashboard in headless Chromium through
textual-serve, and the mistakes serve refuses before it listens.

The page draws the terminal on a canvas (xterm.js), so its text is not in the DOM; the test reads
what the page's terminal was sent instead: an init script keeps the bytes of the page's
websocket, and the waits are on conditions over that text inside the page."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

from riskterm.cli import main
from tests.browser import launch, require_chromium
from tests.helpers import HEADER

RULES = HEADER + "rules:\n  max_contracts_per_instrument: {limits: {MNQ: 1, ES: 1}}\n"
# the terminal output the page received, without escape sequences, from `start` on
CAPTURE = """
(() => {
  const Native = window.WebSocket;
  const decoder = new TextDecoder();
  window.__rtText = "";
  window.__rtScreen = (start) => window.__rtText.slice(start || 0)
    .replace(/\\x1b\\[[0-9;?<=>]*[ -\\/]*[@-~]/g, "").replace(/\\x1b[^\\[]/g, "");
  function Capturing(url, protocols) {
    const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
    ws.addEventListener("message", (e) => {
      if (typeof e.data !== "string") {
        window.__rtText += decoder.decode(new Uint8Array(e.data), {stream: true});
      }
    });
    return ws;
  }
  Capturing.prototype = Native.prototype;
  for (const k of ["CONNECTING", "OPEN", "CLOSING", "CLOSED"]) Capturing[k] = Native[k];
  window.WebSocket = Capturing;
})();
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server accepts connections (it binds after printing its banner)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"serve did not listen within 30 s:\n{log.read_text()}")
        try:
            proc.wait(timeout=0.05)  # doubles as the pause between attempts
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"serve exited with {proc.returncode}:\n{log.read_text()}")


def test_the_dashboard_in_a_browser_takes_keys(tmp_path: Path) -> None:
    require_chromium()
    from playwright.sync_api import sync_playwright

    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    db = tmp_path / "serve.db"
    port = _free_port()
    log = tmp_path / "serve.log"
    env = dict(os.environ, RISKTERM_HOME=str(tmp_path / "home"))
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "riskterm", "serve", "--port", str(port), "--db", str(db),
             "--rules", str(rules), "--seed", "7"],
            stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        _wait_listening(port, proc, log)
        with sync_playwright() as p:
            browser = launch(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda e: errors.append(str(e)))
                # no network here: textual-serve's page asks a font service for its font
                # (a local monospace font is used without it); only this server is reached
                page.route("**/*", lambda route: route.continue_()
                           if urlparse(route.request.url).hostname == "127.0.0.1"
                           else route.abort())
                page.add_init_script(CAPTURE)
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_function(
                    "() => window.__rtScreen().includes('Accounts')"
                    " && window.__rtScreen().includes('Positions')", timeout=30_000)
                assert "Smart Risk Manager jobs" not in page.evaluate("window.__rtScreen()")
                page.screenshot(path=str(tmp_path / "serve-dashboard.png"))
                before = page.locator("#terminal").screenshot()
                start = page.evaluate("window.__rtText.length")
                page.focus(".xterm-helper-textarea")
                page.keyboard.press("j")
                page.wait_for_function(
                    "start => window.__rtScreen(start).includes('Smart Risk Manager jobs')",
                    arg=start, timeout=15_000)
                page.screenshot(path=str(tmp_path / "serve-jobs.png"))
                assert page.locator("#terminal").screenshot() != before
                assert errors == []
            finally:
                browser.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert code == 0, log.read_text()
    assert "Traceback" not in log.read_text()
    assert db.is_file()  # the session ran the engine on the --db passed through


def test_serve_refuses_what_cannot_work(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
        assert f"port {port} on 127.0.0.1 is in use" in capsys.readouterr().err
    assert main(["serve", "--port", "70000"]) == 2
    assert "--port must be from 1 to 65535" in capsys.readouterr().err
    assert main(["serve", "--source", "-"]) == 2
    assert "cannot read events from stdin" in capsys.readouterr().err
    assert main(["serve", "--source", "nosuchbroker"]) == 2
    assert "--source nosuchbroker: no broker of that name" in capsys.readouterr().err
    assert main(["serve", "--source", f"replay:{tmp_path / 'none.jsonl'}"]) == 2
    assert "replay file not found" in capsys.readouterr().err
    from riskterm.db import EngineLock

    held = tmp_path / "held.db"
    held.touch()
    lock = EngineLock.acquire(held)  # an engine runs on it: every session would be refused
    try:
        assert main(["serve", "--db", str(held)]) == 2
        assert "is in use by another riskterm engine" in capsys.readouterr().err
    finally:
        lock.release()
    bad = tmp_path / "bad.yaml"
    bad.write_text("timezone: Mars/Olympus\n")
    assert main(["serve", "--rules", str(bad)]) == 2
    assert f"{bad}:1:" in capsys.readouterr().err
    assert main(["serve", "--host", "192.0.2.1"]) == 2  # TEST-NET-1: no address of this machine
    assert "cannot listen on 192.0.2.1:8000" in capsys.readouterr().err


def test_serve_passes_the_dashboard_options_through(tmp_path: Path) -> None:
    from riskterm.cli import parse_args
    from riskterm.serve import session_command

    replay = tmp_path / "e.jsonl"
    args = parse_args(["serve", "--source", f"replay:{replay}", "--rules", "r.yaml",
                       "--db", "x.db", "--seed", "3", "--speed", "2", "--accounts", "PA-*"])
    cwd = Path.cwd()
    assert session_command(args) == [
        sys.executable, "-m", "riskterm", "--source", f"replay:{replay}",
        "--rules", str(cwd / "r.yaml"), "--db", str(cwd / "x.db"), "--seed", "3",
        "--speed", "2.0", "--accounts", "PA-*"]
