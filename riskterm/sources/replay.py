"""Replaying recorded events from a file or stdin: raw lines with their 1-based numbers.

Lines are read as bytes (the 64 KiB limit is in bytes, and invalid UTF-8 must reach the parser
to be rejected there). stdin is read on a thread so the event loop never blocks on it.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
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


async def read_lines(path: str | None) -> AsyncIterator[list[tuple[int, bytes]]]:
    """Yield chunks of (line number, raw line) from a file, or stdin when path is None."""
    loop = asyncio.get_running_loop()
    stream: BinaryIO
    if path is None:
        stream = sys.stdin.buffer
        threaded = True
    else:
        stream = Path(path).open("rb")  # noqa: SIM115 - closed below
        threaded = False
    line_no = 0
    try:
        while True:
            if threaded:
                chunk = await loop.run_in_executor(None, _read_chunk, stream, 1)
            else:
                chunk = _read_chunk(stream, CHUNK_LINES)
            if not chunk:
                return
            numbered = []
            for raw in chunk:
                line_no += 1
                numbered.append((line_no, raw))
            yield numbered
    finally:
        if not threaded:
            stream.close()
