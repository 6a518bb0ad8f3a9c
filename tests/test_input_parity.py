"""The same bytes give the same `rejected` records from a file, from stdin and from the forked
parse-ahead reader: one line splitter, one parser, one rule for what ends a line.

Real `riskterm --no-ui` subprocesses read the same input three ways; the rejected lines and their
sentences must be identical, and match what the contract promises (the 64 KiB limit in bytes, a
CR before the newline is part of the terminator, a UTF-8 byte order mark is skipped on line 1).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from riskterm.events import MAX_LINE_BYTES, parse_line
from riskterm.sources import parse_ahead

ROOT = Path(__file__).resolve().parent.parent
BOM = b"\xef\xbb\xbf"
CLOCK = b'{"type": "clock", "ts": "2026-02-03T15:00:00Z"}'


def _padded(content_bytes: int) -> bytes:
    head, tail = b'{"type": "clock", "ts": "2026-02-03T15:00:01Z", "pad": "', b'"}'
    return head + b"x" * (content_bytes - len(head) - len(tail)) + tail


# (physical line, what the contract says about it: None = accepted or blank)
LINES: list[tuple[bytes, str | None]] = [
    (BOM + CLOCK + b"\r\n", None),  # a BOM at the start of the input is skipped
    (b'{"type": "clock", "ts":\n', "line 2 is not valid JSON: the line ends before a value "
                                   "at column 24"),
    (b'{"type": "clock", "ts":\r\n', "line 3 is not valid JSON: the line ends before a value "
                                     "at column 24"),
    (b'{"type": "clock"\n', "line 4 is not valid JSON: the line ends inside an object at "
                            "column 17"),
    (_padded(MAX_LINE_BYTES) + b"\r\n", None),  # 64 KiB exactly: the CR does not count
    (_padded(MAX_LINE_BYTES + 1) + b"\r\n", "line 6 is longer than 64 KiB (65537 bytes)"),
    (_padded(MAX_LINE_BYTES + 1) + b"\n", "line 7 is longer than 64 KiB (65537 bytes)"),
    (_padded(200_000) + b"\r\n", "line 8 is longer than 64 KiB (200000 bytes)"),
    (BOM + CLOCK + b"\n", "line 9 starts with a UTF-8 byte order mark (allowed only at the "
                          "start of the input)"),
    (b"\n", None),
    (b'{"type": "clock", "ts": 1770130801', "line 11 is not valid JSON: the line ends inside "
                                            "an object at column 35"),
]
DATA = b"".join(raw for raw, _ in LINES)
EXPECTED = [(n, why) for n, (_, why) in enumerate(LINES, 1) if why is not None]


def _rejected(stdout: bytes) -> list[tuple[int, str]]:
    recs: list[dict[str, Any]] = [json.loads(x) for x in stdout.splitlines()]
    return [(r["line"], r["error"]) for r in recs if r["kind"] == "rejected"]


def _run(args: list[str], tmp: Path, name: str, stdin: bytes = b"") -> list[tuple[int, str]]:
    res = subprocess.run(
        [sys.executable, "-m", "riskterm", "--no-ui", *args, "--db", str(tmp / f"{name}.db")],
        input=stdin, capture_output=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr.decode(errors="replace")
    assert b"Traceback" not in res.stderr
    return _rejected(res.stdout)


def test_file_and_stdin_reject_the_same_lines_with_the_same_sentences(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(DATA)
    from_file = _run(["--source", f"replay:{path}"], tmp_path, "file")
    from_stdin = _run(["--source", "-"], tmp_path, "stdin", DATA)
    assert from_file == EXPECTED
    assert from_stdin == EXPECTED


@pytest.mark.skipif(sys.platform != "linux", reason="parse-ahead forks (Linux)")
def test_the_parse_ahead_child_rejects_the_same_lines(tmp_path: Path) -> None:
    # enough valid padding lines after the mix to make the file big enough for the fork
    pad = _padded(60_000) + b"\n"
    filler = pad * (parse_ahead.MIN_BYTES // len(pad) + 1)
    path = tmp_path / "big.jsonl"
    path.write_bytes(DATA + b"\n" + filler)
    assert parse_ahead.usable(str(path))
    assert _run(["--source", f"replay:{path}", "--speed", "0"], tmp_path, "ahead") == EXPECTED


def test_a_bom_is_skipped_on_line_1_only() -> None:
    assert parse_line(BOM + CLOCK, 1) == {"type": "clock", "ts": 1770130800.0}
    assert parse_line(BOM + b"\n", 1) is None  # a BOM and nothing else: a blank line
    assert parse_line(BOM + CLOCK, 2) == ("line 2 starts with a UTF-8 byte order mark "
                                          "(allowed only at the start of the input)")


def test_end_of_line_columns_do_not_depend_on_the_terminator() -> None:
    for end in (b"", b"\n", b"\r", b"\r\n"):
        assert parse_line(b'{"a":' + end, 1) == (
            "line 1 is not valid JSON: the line ends before a value at column 6"), end
