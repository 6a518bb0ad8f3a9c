"""The planner's API key: read from the environment, checked, and redacted in every form.

A key is read with the whitespace around it stripped (a `.env` saved on Windows ends it in CR).
A key with a control or non-ASCII character inside cannot be sent in a header: it is refused
with an error that names the variable, never the key.

An endpoint or a library may write the key back escaped, so redaction does not look for the raw
text only. It decodes the text into a canonical form (JSON and Python escapes, percent and HTML
escapes decoded; backslashes dropped; `+` read as a space) that maps back to the original
positions, and replaces every run of the text that spells at least FRAGMENT consecutive
characters of the key (the whole key, or a piece of a key that was cut) by REDACTED.
"""

from __future__ import annotations

import bisect
import os
import re

from riskterm.jobs.errors import PermanentError

REDACTED = "[redacted]"
FRAGMENT = 8  # characters: a shorter piece of a key is not worth hiding (nor recognisable)

_ENTITIES = {"quot": '"', "amp": "&", "lt": "<", "gt": ">", "apos": "'"}
# One token of text: a run of plain characters, or one escaped character, or backslashes.
_TOKEN = re.compile(r"""
    (?P<plain>(?:[^\\%&]+|%(?!(?:25)*[0-9A-Fa-f]{2})|&(?!\#|(?:quot|amp|lt|gt|apos);))+)
  | \\+(?:u(?P<u>[0-9A-Fa-f]{4})|U(?P<U>[0-9A-Fa-f]{8})|x(?P<x>[0-9A-Fa-f]{2}))
  | %(?:25)*(?P<pct>[0-9A-Fa-f]{2})
  | &(?:\#(?P<dec>[0-9]{1,7})|\#[xX](?P<hex>[0-9A-Fa-f]{1,6})|(?P<name>quot|amp|lt|gt|apos));
  | (?P<other>[\s\S])
""", re.VERBOSE)


def read_key(env_name: str) -> str | None:
    """The key in $env_name without surrounding whitespace, or None when unset or blank."""
    key = (os.environ.get(env_name) or "").strip()
    if not key:
        return None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in key):
        raise PermanentError(f"the API key in the environment variable {env_name} contains a "
                             "control character (a line break, a tab, ...) inside it; only "
                             f"whitespace around a key is ignored: fix {env_name}")
    if not key.isascii():
        raise PermanentError(f"the API key in the environment variable {env_name} contains a "
                             f"character that is not ASCII, which cannot be sent: fix {env_name}")
    return key


_BASES = {"u": 16, "U": 16, "x": 16, "pct": 16, "dec": 10, "hex": 16}


def _piece(match: re.Match[str]) -> tuple[str, bool]:
    """What a token stands for in the canonical form, and whether it is plain text."""
    kind = match.lastgroup
    if kind in ("plain", "other"):
        return match.group().replace("\\", "").replace("+", " "), True
    if kind == "name":
        return _ENTITIES[match.group(kind)], False
    code = int(match.group(kind), _BASES[str(kind)])
    char = chr(code) if code <= 0x10FFFF else "\ufffd"
    return ("" if char == "\\" else " " if char == "+" else char), False


class _Canonical:
    """The canonical form of a text and its segments, each (canonical start, original start,
    original end, plain): a plain segment maps character for character, an escape is one
    character of the canonical form."""

    def __init__(self, text: str) -> None:
        parts: list[str] = []
        self.starts: list[int] = []
        self.segments: list[tuple[int, int, bool]] = []
        n = 0
        for m in _TOKEN.finditer(text):
            piece, plain = _piece(m)
            if not piece:
                continue
            self.starts.append(n)
            self.segments.append((m.start(), m.end(), plain))
            parts.append(piece)
            n += len(piece)
        self.text = "".join(parts)

    def span(self, first: int, last: int) -> tuple[int, int]:
        """The original range of canonical characters first..last - 1."""
        return self._position(first)[0], self._position(last - 1)[1]

    def _position(self, i: int) -> tuple[int, int]:
        seg = bisect.bisect_right(self.starts, i) - 1
        start, end, plain = self.segments[seg]
        if plain:
            start += i - self.starts[seg]
            end = start + 1
        return start, end


class Redactor:
    """Replaces the key, in any of its written forms and any piece of FRAGMENT characters or
    more, by REDACTED."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        canon = _Canonical(key).text if key else ""
        self._size = min(FRAGMENT, len(canon))
        self._grams = {canon[i:i + self._size] for i in range(len(canon) - self._size + 1)} \
            if canon else set()

    def __call__(self, text: str) -> str:
        if not self._grams or not text:
            return text
        canon = _Canonical(text)
        spans = self._spans(canon.text)
        if not spans:
            return text
        out: list[str] = []
        pos = 0
        for first, last in spans:
            start, end = canon.span(first, last)
            while start > pos and text[start - 1] == "\\":  # the escape of the first character
                start -= 1
            out += [text[pos:start], REDACTED]
            pos = end
        out.append(text[pos:])
        return "".join(out)

    def _spans(self, canon: str) -> list[tuple[int, int]]:
        """Merged canonical ranges covered by a piece of the key."""
        size = self._size
        hits: list[tuple[int, int]] = []
        for gram in self._grams:
            i = canon.find(gram)
            while i >= 0:
                hits.append((i, i + size))
                i = canon.find(gram, i + 1)
        hits.sort()
        merged: list[tuple[int, int]] = []
        for first, last in hits:
            if merged and first <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(merged[-1][1], last))
            else:
                merged.append((first, last))
        return merged
