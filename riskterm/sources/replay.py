"""Replaying recorded events from a file or stdin: raw lines with their 1-based numbers.

Lines are read as bytes (the 64 KiB limit is in bytes, and invalid UTF-8 must reach the parser
to be rejected there). stdin is read on a thread so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from riskterm.events import MAX_LINE_BYTES, parse_line

BLOCK_BYTES = 1 << 18  # file input is read and split this much at a time


def file_chunks(stream: BinaryIO, block: int = BLOCK_BYTES) -> Iterator[list[bytes]]:
    """The lines of a file, a block at a time (one split per block, not a call per line).

    The one line splitter of every reader (a file, stdin, the parse-ahead child), so that the
    same bytes are the same lines however they arrive: a line comes out without its newline
    (a CR before it stays, for the parser to drop). A line longer than the limit is never held
    whole: past MAX_LINE_BYTES + 1 bytes only its head is kept, and it comes out as an
    _Oversized carrying its true length, its terminator (the newline, a CR before it) excluded.
    `stream.read` may return less than `block` (a pipe): lines come out as soon as they end.
    """
    limit = MAX_LINE_BYTES + 1
    pending = b""
    dropped = -1  # >= 0 while skipping the rest of an oversized line (bytes skipped so far)
    cr = False  # the last byte skipped of that line was a CR
    while True:
        data = stream.read(block)
        if not data:
            if dropped >= 0:
                yield [_Oversized(pending, len(pending) + dropped - cr)]
            elif pending:
                yield [pending]
            return
        if dropped >= 0:
            cut = data.find(b"\n")
            if cut < 0:
                dropped += len(data)
                cr = data.endswith(b"\r")
                continue
            if cut:
                cr = data[cut - 1] == 0x0D
            lines: list[bytes] = [_Oversized(pending, len(pending) + dropped + cut - cr)]
            pending, dropped, data = b"", -1, data[cut + 1:]
        else:
            lines = []
        parts = (pending + data).split(b"\n") if pending else data.split(b"\n")
        pending = parts.pop()  # the unfinished last line (b"" after a newline)
        for raw in parts:
            if len(raw) > limit:
                raw = _Oversized(raw[:limit], len(raw) - raw.endswith(b"\r"))
            lines.append(raw)
        if len(pending) > limit:
            dropped = len(pending) - limit
            cr = pending.endswith(b"\r")
            pending = pending[:limit]
        if lines:
            yield lines


class _Oversized(bytes):
    """A line over the limit, truncated in memory; `size` is its true length in bytes."""

    size: int

    def __new__(cls, head: bytes, size: int) -> _Oversized:
        obj = super().__new__(cls, head)
        obj.size = size
        return obj


class _Fd:
    """A raw file descriptor as a stream for file_chunks. os.read holds no Python buffer lock,
    so a thread blocked here cannot stall interpreter shutdown the way sys.stdin.buffer would,
    and it returns what has arrived, so a line is handed on as soon as it ends."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def read(self, size: int) -> bytes:
        return os.read(self.fd, size)


def _split_fd(fd: int) -> Iterator[bytes]:
    """Lines from a raw file descriptor (stdin), split exactly as a file's are."""
    for lines in file_chunks(_Fd(fd), 1 << 16):  # type: ignore[arg-type]
        yield from lines


STDIN_BACKLOG = 1000  # lines read from stdin ahead of the engine, at most


class _StdinFeed:
    """Hands lines from the stdin reader thread to the event loop.

    The thread never creates a coroutine and never waits on the loop: it appends to a list
    under a lock and wakes the loop with call_soon_threadsafe and a plain callback, at most one
    wake-up in flight. A callback still queued when the loop closes is dropped silently (a
    coroutine would be reported "never awaited"), and a closed loop raises RuntimeError, which
    ends the thread. One wake-up at a time also keeps the loop's self-pipe from filling up: it is
    the signal wake-up fd too, and a full one loses SIGINT/SIGTERM.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.cond = threading.Condition()
        self.lines: list[bytes] = []
        self.eof = False
        self.done = False  # the consumer stopped reading: the thread posts nothing more
        self.wake_pending = False
        self.ready = asyncio.Event()

    # -- reader thread --------------------------------------------------------------------------

    def run(self) -> None:
        try:
            for line in _split_fd(sys.stdin.fileno()):
                if not self._post(line):
                    return
            self._post(None)
        except (OSError, ValueError):  # stdin closed under us
            return

    def _post(self, line: bytes | None) -> bool:
        with self.cond:
            while line is not None and len(self.lines) >= STDIN_BACKLOG and not self.done:
                if self.loop.is_closed():
                    return False
                self.cond.wait(0.1)
            if self.done or self.loop.is_closed():
                return False
            if line is None:
                self.eof = True
            else:
                self.lines.append(line)
            if self.wake_pending:
                return True
            self.wake_pending = True
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop closed meanwhile
            return False
        return True

    # -- event loop -----------------------------------------------------------------------------

    def _wake(self) -> None:
        with self.cond:
            self.wake_pending = False
        self.ready.set()

    async def take(self) -> tuple[list[bytes], bool]:
        """The lines read so far (waiting for at least one, or the end) and whether stdin ended."""
        while True:
            self.ready.clear()
            with self.cond:
                lines, self.lines = self.lines, []
                eof = self.eof
                self.cond.notify_all()
            if lines or eof:
                return lines, eof
            await self.ready.wait()

    def stop(self) -> None:
        with self.cond:
            self.done = True
            self.cond.notify_all()


async def read_lines(path: str | None) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Yield chunks of (line number, raw line) from a file, or stdin when path is None."""
    line_no = 0
    if path is None:
        feed = _StdinFeed(asyncio.get_running_loop())
        threading.Thread(target=feed.run, daemon=True, name="riskterm-stdin").start()
        try:
            while True:
                lines, eof = await feed.take()
                for raw in lines:  # one line a chunk: the host takes no line it won't process
                    line_no += 1
                    yield [(line_no, raw)]
                if eof:
                    return
        finally:
            feed.stop()
    with Path(path).open("rb") as stream:
        for chunk in file_chunks(stream):
            numbered = list(enumerate(chunk, line_no + 1))
            line_no += len(chunk)
            yield numbered


async def parsed(chunks: AsyncIterator[list[tuple[int, bytes]]]
                 ) -> AsyncIterator[list[tuple[int, Any]]]:
    """The same chunks with each line parsed: (line number, event dict, rejection sentence or
    None for a blank line), as parse_ahead hands them over."""
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]
        async for chunk in chunks:
            yield [(line_no, parse_line(raw, line_no)) for line_no, raw in chunk]
