"""`riskterm serve [--host 127.0.0.1] [--port 8000]`: the dashboard in a web browser.

textual-serve runs a web server whose page is a terminal (xterm.js); each browser connection
starts the command below as a subprocess under Textual's web driver. That command is the same
`riskterm` dashboard with the same options (--source, --rules, --db, --seed ...), so the app and
its keys are the same. Each connection runs its own engine: two tabs on one database find it in
use (one engine per database), as two terminals would.
"""

from __future__ import annotations

import argparse
import errno
import shlex
import socket
import sys
from pathlib import Path
from typing import Any

EXIT_USAGE = 2
# options of the dashboard passed through to each session: (attribute, flag, is a path)
PASSED = (("source", "--source", False), ("rules", "--rules", True), ("db", "--db", True),
          ("seed", "--seed", False), ("speed", "--speed", False),
          ("max_events", "--max-events", False), ("accounts", "--accounts", False),
          ("record", "--record", True))


def _err(text: str) -> None:
    print(f"riskterm: {text}", file=sys.stderr, flush=True)


def session_command(args: argparse.Namespace) -> list[str]:
    """The dashboard command each browser session runs. Paths are made absolute, so a session
    finds them whatever its working directory."""
    argv = [sys.executable, "-m", "riskterm"]
    for attr, flag, is_path in PASSED:
        value = getattr(args, attr, None)
        if value is None:
            continue
        if is_path:
            value = str(Path(value).expanduser().absolute())
        elif attr == "source" and str(value).startswith("replay:"):
            value = "replay:" + str(Path(str(value)[7:]).expanduser().absolute())
        argv += [flag, str(value)]
    return argv


def _check(args: argparse.Namespace) -> str | None:
    """Why the dashboard could not start with these options (said now, not in every browser
    session), else None. Rules errors come as check-rules prints them (PATH:LINE:COL: ...)."""
    from riskterm.brokers import registry
    from riskterm.config import load_rules_for_command, resolve_rules_path
    from riskterm.db import DatabaseError, DatabaseInUse, EngineLock

    if not 1 <= args.port <= 65535:
        return f"riskterm: --port must be from 1 to 65535, got {args.port}"
    if args.no_ui:
        return "riskterm: serve runs the dashboard; --no-ui does not apply"
    source = str(args.source)
    if source == "-":  # a session's stdin is the browser's terminal
        return "riskterm: serve cannot read events from stdin (--source -): use a replay file"
    try:
        registry.check(source)  # the dashboard's own check of the source's name
    except registry.UnknownSource as exc:
        return f"riskterm: {exc}"
    if source.startswith("replay:") and not Path(source[7:]).is_file():
        return f"riskterm: replay file not found: {source[7:]}"
    rules_path = resolve_rules_path(args.rules)
    problem = load_rules_for_command(rules_path)
    if isinstance(problem, str):
        return problem
    if args.db is not None and Path(args.db).is_file():
        try:  # every session would find the database held by that engine
            EngineLock.acquire(args.db).release()
        except DatabaseInUse as exc:
            return f"riskterm: {exc}"
        except DatabaseError:  # the session's own start says what is wrong with the file
            pass
    try:  # a port in use is said here, before the server's own start fails with a traceback
        family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((args.host, args.port))
    except socket.gaierror:
        return f"riskterm: --host {args.host!r} cannot be resolved to an address"
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"riskterm: port {args.port} on {args.host} is in use: give another --port"
        return f"riskterm: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
    return None


def _quiet_closed_loop(default: Any) -> Any:
    """At Ctrl-C, textual-serve stops each tab's session and aiohttp closes the event loop;
    a session's subprocess transport that is collected after that says "Event loop is closed"
    from its __del__ (the child has already been told to quit and exits on its own). That
    one message is noise at shutdown, never a fault the user can act on; anything else still
    reaches the default hook."""

    def hook(unraisable: Any) -> None:
        exc = unraisable.exc_value
        if (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed"
                and str(getattr(unraisable.object, "__module__", "")).startswith("asyncio")):
            return
        default(unraisable)

    return hook


def serve_main(args: argparse.Namespace) -> int:
    problem = _check(args)
    if problem is not None:
        print(problem, file=sys.stderr, flush=True)
        return EXIT_USAGE
    from textual_serve.server import Server

    command = shlex.join(session_command(args))
    server = Server(command, host=args.host, port=args.port, title="riskterm")
    sys.unraisablehook = _quiet_closed_loop(sys.unraisablehook)
    try:
        server.serve()
    except OSError as exc:  # lost a race for the port since the check
        _err(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return 1
    return 0
