"""Text from outside (a broker, a file, a model) made safe to show on a terminal.

Account names, symbols, order ids, messages and model text may hold control characters: an ESC
or a C1 CSI (U+009B) starts an escape sequence that retitles the window, clears the screen or
worse, and a bidi override reorders what the operator reads. Shown, they are made visible,
never interpreted: one convention everywhere, the Python escape of the code point — `\\x1b`,
`\\x7f`, `\\x9b`, `\\u202e` — so `B\\x1b]0;x\\x07` reads as typed.

`visible` is for text on a screen (the dashboard, `jobs list` / `jobs show`);
`escape_json_controls` for JSON text written where a person may read it (records on stdout).
"""

from __future__ import annotations

import re

# C0, DEL, C1, and the bidi controls: the Arabic letter mark, LRM / RLM, the embeddings and
# overrides (U+202A-202E) and the isolates (U+2066-2069)
_REST = "\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"  # DEL, C1, bidi
_ONE_LINE = re.compile(f"[\x00-\x1f{_REST}]")
_MULTI_LINE = re.compile(f"[\x00-\x09\x0b-\x1f{_REST}]")  # all but the newline
# what JSON's own escaping leaves raw: orjson and json.dumps(ensure_ascii=False) escape C0 but
# write DEL, C1 and the bidi controls as they are (json.dumps's default escapes all but DEL)
_JSON_RAW = re.compile(f"[{_REST}]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, newlines: bool = False) -> str:
    """`text` with every control character written as its escape (`\\x1b`). A newline is kept
    only with `newlines=True` (a multi-line body); in a one-line label it is shown as `\\x0a`."""
    if text.isascii() and text.isprintable():  # the common case: nothing to do, no regex
        return text
    return (_MULTI_LINE if newlines else _ONE_LINE).sub(_escape, text)


def has_controls(text: str, *, newlines: bool = False) -> bool:
    if text.isascii() and text.isprintable():
        return False
    return (_MULTI_LINE if newlines else _ONE_LINE).search(text) is not None


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def escape_json_controls(body: str) -> str:
    """JSON text with DEL, C1 and bidi controls written as `\\u007f` ... (still the same JSON
    value: outside strings JSON text is ASCII, so every such character is inside a string)."""
    if body.isascii() and "\x7f" not in body:  # two C scans, no regex: records are mostly ASCII
        return body
    return _JSON_RAW.sub(_json_escape, body)
