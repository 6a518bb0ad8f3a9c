"""What the engine takes from its source: `--accounts` (which events) and `--record` (a copy).

`tap` puts one function in front of `Engine.process`, the single door every event goes through
(the host's replay and simulator loops, the engine's own re-sync and a quote below zero that its
instrument allows). Without either option nothing is installed: the hot path is unchanged.

The recording is CONTRACT section 1's JSON Lines: each event's fields in the order section 1 lists
them, `ts` the instant the engine took it at (wall time for a live source, the event's own time in
a replay), internal fields (`_realized`) left out. `--source replay:PATH` of the file reproduces
the session, and recording that replay again reproduces the file byte for byte.
"""

from __future__ import annotations

import os
import re
import time
import typing
from collections.abc import Callable
from fnmatch import translate
from pathlib import Path
from typing import Any

import orjson

from riskterm import events as _events
from riskterm.timefmt import iso

FLUSH_BYTES = 64 * 1024  # buffered bytes that are written at once, between the host's flushes
_APPEND = orjson.OPT_APPEND_NEWLINE


class RecordingError(Exception):
    """The recording file cannot be opened for appending (the message names it)."""


def _layouts() -> dict[str, tuple[tuple[str, ...], tuple[str, ...]]]:
    """type -> (its fields in section 1's order, the money fields among them), from the
    parser's own definitions, so a recording's lines are what a replay of them parses back to
    (a money field as a float: the parser turns 100 into 100.0)."""
    out = {}
    union = typing.get_args(_events.Event)[0]
    for cls in typing.get_args(union):
        hints = typing.get_type_hints(cls, include_extras=True)
        money = []
        for name, hint in hints.items():
            if typing.get_origin(hint) in (typing.Required, typing.NotRequired):
                hint = typing.get_args(hint)[0]
            if (name != "ts" and typing.get_origin(hint) is typing.Annotated
                    and typing.get_args(hint)[0] is float):
                money.append(name)
        etype = typing.get_args(typing.get_args(hints["type"])[0])[0]
        out[etype] = (tuple(hints), tuple(money))
    return out


def stamp(ts: float) -> str | float:
    """`ts` as ISO-8601 UTC when that is exact (to the millisecond, as records are), else as
    epoch seconds, which a replay reads back to the same float (a replayed file's own
    sub-millisecond times)."""
    return iso(ts) if round(ts * 1000) / 1000 == ts else ts


class Recording:
    """Appends events to a file; buffered, written at `flush` (the host calls it before each
    commit and at shutdown). A failing write (a full disk) is said once and ends the recording;
    the engine goes on."""

    def __init__(self, path: Path, say: Callable[[str], None], *, parsed: bool = False) -> None:
        """`parsed`: the events come from the parser (a replay, stdin): section 1's fields in
        its order, money as floats, and after them only what the engine added (`_realized`,
        `_before`); a live source's are put in that form here."""
        self.path = path
        self.say = say
        self.fd = open_for_append(path)
        self.buf = bytearray()
        self.failed = False
        self.lines = 0
        self.parsed = parsed
        self._layout = _layouts()
        self._ts: float | None = None  # the last instant stamped (a feed repeats them)
        self._stamp: str | float = ""

    def write(self, ev: dict[str, Any], ts: float) -> None:
        if self.failed:
            return
        if self.parsed:
            out = ev.copy()
            while next(reversed(out))[0] == "_":  # the engine's own fields, added last
                del out[next(reversed(out))]
        elif (layout := self._layout.get(ev["type"])) is None:
            # a type this parser does not define: its fields as they are
            out = {k: v for k, v in ev.items() if not k.startswith("_")}
        else:
            names, money = layout
            out = {k: ev[k] for k in names if k in ev}
            for k in money:
                v = out.get(k)
                if v.__class__ is int:
                    out[k] = float(v)  # type: ignore[arg-type]
        if ts != self._ts:
            self._ts, self._stamp = ts, stamp(ts)
        out["ts"] = self._stamp
        self.buf += orjson.dumps(out, option=_APPEND)
        self.lines += 1
        if len(self.buf) >= FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        if not self.buf or self.failed:
            return
        view = memoryview(self.buf)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except OSError as exc:
            self.failed = True
            self.say(f"recording to {self.path} stopped: {exc.strerror or exc}; "
                     "the engine goes on without it")
        finally:
            view.release()
            self.buf.clear()

    def close(self) -> None:
        if self.fd < 0:
            return
        self.flush()
        try:
            os.close(self.fd)
        except OSError as exc:  # a late write error (NFS) shows at close
            if not self.failed:
                self.say(f"recording to {self.path}: {exc.strerror or exc}")
        self.fd = -1


def open_for_append(path: Path) -> int:
    """Open (create) `path` for appending; RecordingError naming it when it cannot be."""
    try:
        return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise RecordingError(f"cannot record to {path}: {exc.strerror or exc}") from None


def check_record_path(path: Path, replay_path: str | None) -> None:
    """At start: `path` can be appended to and is not the file being replayed (reading a file
    while appending its own lines to it would never end). Raises RecordingError."""
    if replay_path is not None:
        try:
            same = path.exists() and os.path.samefile(path, replay_path)
        except OSError:
            same = False
        if same:
            raise RecordingError(f"cannot record to {path}: it is the file being replayed")
    os.close(open_for_append(path))


def parse_patterns(text: str) -> tuple[str, ...]:
    """`A*,PA-*` -> ("A*", "PA-*"); blanks around commas are dropped. ValueError when empty."""
    patterns = tuple(p.strip() for p in text.split(",") if p.strip())
    if not patterns:
        raise ValueError("--accounts needs at least one pattern (fnmatch, comma separated)")
    return patterns


class AccountFilter:
    """Account name -> watched? (fnmatch patterns, case-sensitive; answers cached by name)."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        self._match = re.compile("|".join(f"(?:{translate(p)})" for p in patterns)).match
        self._known: dict[str, bool] = {}

    def __call__(self, name: str) -> bool:
        hit = self._known.get(name)
        if hit is None:
            if len(self._known) > 100_000:
                self._known.clear()
            hit = self._known[name] = self._match(name) is not None
        return hit

    def restrict(self, state: Any) -> None:
        """Drop what a RestoredState holds of unwatched accounts: the database keeps it, the
        engine neither judges nor enforces it."""
        state.accounts = {k: v for k, v in state.accounts.items() if self(k)}
        state.positions = [row for row in state.positions if self(row[0])]
        state.lockouts = [lk for lk in state.lockouts if self(lk.account)]


class LiveWall:
    """A live engine's wall clock, to the millisecond (the precision of a recording's `ts`, so
    its replay runs on the same clock); `pin` keeps the first instant given since it was
    cleared: the one Engine.process took its event at."""

    __slots__ = ("pin",)

    def __init__(self) -> None:
        self.pin: float | None = None

    def __call__(self) -> float:
        now = round(time.time() * 1000) / 1000
        if self.pin is None:
            self.pin = now
        return now


def tap(engine: Any, *, recording: Recording | None, watch: AccountFilter | None,
        wall: LiveWall | None) -> None:
    """Put the filter and the recording in front of engine.process (see the module doc).
    `wall`: the engine's clock when it is live (it must be the engine's `wall`)."""
    take = engine.process

    if recording is None:
        if watch is None:
            return

        def watched(ev: dict[str, Any], line: int | None = None) -> None:
            name = ev.get("account")
            if name is None or watch(name):
                take(ev, line)

        engine.process = watched
        return

    write = recording.write

    def recorded(ev: dict[str, Any], line: int | None = None) -> None:
        if watch is not None:
            name = ev.get("account")
            if name is not None and not watch(name):
                return
        before = engine.n_events
        if wall is not None:
            wall.pin = None
        take(ev, line)
        if engine.n_events != before:  # taken (a line too far ahead is rejected instead)
            ts = ev["ts"] if wall is None or wall.pin is None else wall.pin
            write(ev, ts)

    engine.process = recorded
