"""Replaying recorded events from a file or stdin: raw lines with their 1-based numbers.

Lines are read as bytes (the 64 KiB limit is in bytes, and invalid UTF-8 must reach the parser
to be rejected there). stdin is read on a thread so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import BinaryIO

from riskterm.events import MAX_LINE_BYTES

CHUNK_LINES = 2000


def _read_chunk(stream: BinaryIO, n: int) -> list[bytes]:
    out = []
    for _ in range(n):
        # readline with a cap: a huge line is cut into pieces we can recognise as oversized
        line = stream.readline(MAX_LINE_BYTES + 2)
        if not line:
            break
        if len(line) > MAX_LINE_BYTES + 1 and not line.endswith(b"\n"):
            # swallow the rest of the oversized line, keep a marker of its length
            extra = 0
            while True:
                more = stream.readline(1 << 20)
                extra += len(more)
                if not more or more.endswith(b"\n"):
                    break
            line = _Oversized(line, len(line) + extra - 1)
        out.append(line)
    return out


class _Oversized(bytes):
    """A line over the limit, truncated in memory; `size` is its true length in bytes."""

    size: int

    def __new__(cls, head: bytes, size: int) -> _Oversized:
        obj = super().__new__(cls, head)
        obj.size = size
        return obj


def _split_fd(fd: int) -> Iterator[bytes]:
    """Lines from a raw file descriptor. os.read holds no Python buffer lock, so a thread
    blocked here cannot stall interpreter shutdown the way sys.stdin.buffer would."""
    pending = b""
    dropped = 0  # bytes of an oversized line beyond what we keep
    while True:
        data = os.read(fd, 1 << 16)
        if not data:
            if pending or dropped:
                yield _Oversized(pending, len(pending) + dropped) if dropped else pending
            return
        pending += data
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                if len(pending) > MAX_LINE_BYTES + 1:
                    dropped += len(pending) - (MAX_LINE_BYTES + 1)
                    pending = pending[: MAX_LINE_BYTES + 1]
                break
            line, pending = pending[: cut + 1], pending[cut + 1 :]
            if dropped:
                yield _Oversized(line, len(line) - 1 + dropped)
                dropped = 0
            else:
                yield line


def _stdin_reader(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[list[bytes]]) -> None:
    """Runs on a daemon thread, feeding the event loop."""
    try:
        for line in _split_fd(sys.stdin.fileno()):
            asyncio.run_coroutine_threadsafe(queue.put([line]), loop).result()
        asyncio.run_coroutine_threadsafe(queue.put([]), loop).result()
    except (RuntimeError, OSError, ValueError):  # loop closed, or stdin closed under us
        return


async def read_lines(path: str | None) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Yield chunks of (line number, raw line) from a file, or stdin when path is None."""
    line_no = 0
    if path is None:
        queue: asyncio.Queue[list[bytes]] = asyncio.Queue(maxsize=1000)
        threading.Thread(target=_stdin_reader, args=(asyncio.get_running_loop(), queue),
                         daemon=True, name="riskterm-stdin").start()
        while True:
            chunk = await queue.get()
            if not chunk:
                return
            for raw in chunk:
                line_no += 1
                yield [(line_no, raw)]
    with Path(path).open("rb") as stream:
        while True:
            chunk = _read_chunk(stream, CHUNK_LINES)
            if not chunk:
                return
            numbered = []
            for raw in chunk:
                line_no += 1
                numbered.append((line_no, raw))
            yield numbered
