"""Strict JSON: no NaN/Infinity tokens. Finite but enormous prices can overflow P&L to inf/nan;
JSON has no such numbers, so they are written as null."""

from __future__ import annotations

import json
import math
from typing import Any

from riskterm.safetext import escape_json_controls


def finite(value: Any) -> Any:
    """`value` with every non-finite float (at any depth) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite(v) for v in value]
    return value


def strict_dumps(value: Any, **options: Any) -> str:
    """json.dumps (with its `options`) that writes null for NaN and ±Infinity, and DEL, C1 and
    bidi controls as escapes (`\\u007f`) even with ensure_ascii=False: JSON a terminal shows."""
    try:
        text = json.dumps(value, allow_nan=False, **options)
    except ValueError:
        text = json.dumps(finite(value), allow_nan=False, **options)
    return escape_json_controls(text)
