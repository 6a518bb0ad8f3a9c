"""Symbols and contract months (CONTRACT §1): the one place that decides a symbol's root.

A futures symbol may carry a contract month: a root, a month code (F G H J K M N Q U V X Z) and a
one- or two-digit year (``MNQH6``, ``MNQH26`` -> ``MNQ``). Wherever rules.yaml names a symbol
(``instruments``, ``max_contracts_per_instrument.limits``, ``symbol_blocks.symbols``) the name
matches the symbol itself or, when the symbol is not listed as it is, its root.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from functools import lru_cache
from typing import TypeVar

_CONTRACT_MONTH = re.compile(r"(.+?)[FGHJKMNQUVXZ]\d{1,2}")

T = TypeVar("T")


@lru_cache(maxsize=8192)
def root(symbol: str) -> str | None:
    """The root of a contract-month symbol (``MNQH26`` -> ``MNQ``); None when it has no month."""
    m = _CONTRACT_MONTH.fullmatch(symbol)
    return m[1] if m else None


def names(symbol: str) -> tuple[str, ...]:
    """The names rules.yaml may list `symbol` under, the symbol itself first."""
    r = root(symbol)
    return (symbol,) if r is None else (symbol, r)


def lookup(table: Mapping[str, T], symbol: str) -> T | None:
    """``table[symbol]``, else ``table[root]``; None when neither is listed."""
    found = table.get(symbol)
    if found is not None or symbol in table:
        return found
    r = root(symbol)
    return None if r is None else table.get(r)


def match(patterns: Iterable[str], symbol: str) -> str | None:
    """The first fnmatch pattern (case-insensitive) matching the symbol or its root."""
    candidates = [n.upper() for n in names(symbol)]
    for pattern in patterns:
        upper = pattern.upper()
        if any(fnmatchcase(c, upper) for c in candidates):
            return pattern
    return None
