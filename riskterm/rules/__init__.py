"""The rule catalog (CONTRACT §5): one module per rule id, each exporting RULE.

Adding a rule is adding a module here (and its parameters in params.py); modules are found by
name, so nothing else needs registering.
"""

from __future__ import annotations

import pkgutil
from functools import cache
from importlib import import_module

from riskterm.rules.base import Rule

_NOT_RULES = {"base", "params"}


@cache
def rule_classes() -> dict[str, type[Rule]]:
    classes: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(__path__):
        if info.name in _NOT_RULES or info.name.startswith("_"):
            continue
        module = import_module(f"{__name__}.{info.name}")
        cls = getattr(module, "RULE", None)
        if cls is not None:
            classes[cls.id] = cls
    return classes
