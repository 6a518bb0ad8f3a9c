"""Parsing a large replay file on the second core, ahead of the engine.

Parsing and validating a line costs about a third of what the engine spends on it, and pydantic
holds the GIL while it validates, so a thread would not help. For a file replayed at full speed,
a forked child reads and parses the lines and sends each chunk over a pipe as one pickle of
(line number, event dict / rejection sentence / events.BelowZero / None) pairs; unpickling is
a fifth of parsing.
The child runs the same `parse_line` as the engine process would, so the engine sees the same
events and the same rejection sentences either way.

The child only reads the file, parses and writes to the pipe: it ignores SIGINT, SIGTERM and
SIGHUP (a terminal, `timeout` or a service manager signals the whole process group, and the
engine process owns the shutdown: it kills the child when it stops), and it ends on its own when
the pipe closes (the engine was killed). How far it can run ahead is bounded by the pipe. It is
forked while other threads run (aiosqlite's); it touches nothing they hold: no database, no
import, no lock of theirs.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import os
import pickle
import signal
import sys
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from riskterm.events import parse_line
from riskterm.sources.replay import file_chunks, parsed, read_lines

MIN_BYTES = 4 << 20  # a smaller file parses in-process: the fork would cost more than it saves
PIPE_BYTES = 1 << 20  # Linux's default ceiling for an unprivileged pipe
READ_AHEAD_BYTES = 1 << 18
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_HEADER = 8  # frame: length (little-endian) then a pickle of ("lines", chunk) or ("error", text)


def usable(path: str) -> bool:
    """Whether to parse `path` in a child: a big regular file, on a system with fork."""
    if sys.platform != "linux" or not hasattr(os, "fork"):
        return False
    try:
        return Path(path).stat().st_size >= MIN_BYTES
    except OSError:
        return False  # the in-process reader reports it


class ParseError(OSError):
    """The child could not read the file (the message says why)."""


async def parsed_chunks(path: str) -> AsyncIterator[list[tuple[int, Any]]]:
    """Chunks of (line number, parse_line result) for every line of the file, in order."""
    loop = asyncio.get_running_loop()
    read_fd, write_fd = os.pipe()
    with contextlib.suppress(OSError):  # room for several chunks, so the child runs ahead
        fcntl.fcntl(write_fd, F_SETPIPE_SZ, PIPE_BYTES)
    try:
        with warnings.catch_warnings():
            # Python 3.12+ warns about fork in a process with threads (aiosqlite's): the child
            # only reads, parses and writes to its pipe, and touches nothing those threads hold
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    except OSError:  # no process to spare (EAGAIN, ENOMEM): parse here, as for a small file
        os.close(read_fd)
        os.close(write_fd)
        chunks = parsed(read_lines(path))
        async with contextlib.aclosing(chunks):
            async for chunk in chunks:
                yield chunk
        return
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        os.close(read_fd)
        _child(path, write_fd)
    os.close(write_fd)
    transport: asyncio.BaseTransport | None = None
    try:
        # reading pauses once this much waits unread (frames are ~100 KiB; a larger one is
        # still read whole): the pipe and this buffer bound how far the child runs ahead
        reader = asyncio.StreamReader(limit=READ_AHEAD_BYTES)
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(read_fd, "rb", buffering=0))
        while True:
            size = int.from_bytes(await reader.readexactly(_HEADER), "little")
            if not size:
                return
            body = await reader.readexactly(size)
            collecting = gc.isenabled()
            gc.disable()  # thousands of new objects at once: one collection after, not dozens
            try:
                kind, payload = pickle.loads(body)
            finally:
                if collecting:
                    gc.enable()
            if kind == "error":
                raise ParseError(payload)
            yield payload
    except asyncio.IncompleteReadError:
        raise ParseError(f"the parser of {path} stopped unexpectedly") from None
    finally:
        if transport is not None:
            transport.close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)


def _child(path: str, fd: int) -> None:  # pragma: no cover - runs in the forked child
    code = 0
    try:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the engine process stops the child
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # a closed pipe ends the child quietly
        signal.set_wakeup_fd(-1)  # the parent's event loop owns that pipe
        line_no = 0
        try:
            with open(path, "rb") as stream:
                for chunk in file_chunks(stream):
                    parsed = []
                    for raw in chunk:
                        line_no += 1
                        parsed.append((line_no, parse_line(raw, line_no)))
                    _send(fd, ("lines", parsed))
        except OSError as exc:
            _send(fd, ("error", f"cannot read {path}: {exc.strerror or exc}"))
        os.write(fd, bytes(_HEADER))  # the end
    except BaseException:
        code = 1
    finally:
        os._exit(code)


def _send(fd: int, frame: tuple[str, Any]) -> None:  # pragma: no cover - in the child
    body = pickle.dumps(frame, pickle.HIGHEST_PROTOCOL)
    data = memoryview(len(body).to_bytes(_HEADER, "little") + body)
    while data:
        data = data[os.write(fd, data):]
