"""The tools a Smart Risk Manager planner may call, their JSON schemas and argument checks.

Information tools answer from the account snapshot the job works on. Recommendation tools only
record a proposal; the graph validates proposals (guardrails) and acts on them later.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

INFO_TOOLS = ("get_positions", "get_working_orders", "get_pnl_and_limits",
              "get_recent_violations", "get_price_history")
ACTION_TOOLS = ("close_position", "reduce_position", "set_stop_loss", "set_take_profit",
                "cancel_orders")
FINISH = "finish"

_SYMBOL = {"type": "string", "minLength": 1, "description": "symbol of an open position"}
_REASON = {"type": "string", "minLength": 1, "description": "why, in one sentence"}
_CONF = {"type": "number", "minimum": 0, "maximum": 1,
         "description": "confidence from 0 to 1"}


def _obj(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}


def _action(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return _obj({**props, "reason": _REASON, "confidence": _CONF}, [*required, "reason"])


SPECS: dict[str, tuple[str, dict[str, Any]]] = {
    "get_positions": ("Open positions: symbol, signed qty (+long/-short), avg_price, mark, "
                      "unrealized_pnl, point_value and the working protective stops.",
                      _obj({}, [])),
    "get_working_orders": ("Working orders of the account.", _obj({}, [])),
    "get_pnl_and_limits": ("Balance, equity, start-of-day balance, realized and unrealized P&L of "
                           "the trading day, the account state (active/reducing/halted), "
                           "active lockouts and the configured risk rule limits.", _obj({}, [])),
    "get_recent_violations": ("Recent risk rule violations of the account, newest last.",
                              _obj({"limit": {"type": "integer", "minimum": 1,
                                              "maximum": 20}}, [])),
    "get_price_history": ("Recent marks of a symbol, oldest first.",
                          _obj({"symbol": _SYMBOL}, ["symbol"])),
    "close_position": ("Recommend closing a whole position.", _action({"symbol": _SYMBOL},
                                                                     ["symbol"])),
    "reduce_position": ("Recommend reducing a position by qty contracts (never past flat).",
                        _action({"symbol": _SYMBOL,
                                 "qty": {"type": "integer", "minimum": 1}}, ["symbol", "qty"])),
    "set_stop_loss": ("Recommend a protective stop for a position at price (below the mark for "
                      "a long, above it for a short).",
                      _action({"symbol": _SYMBOL, "price": {"type": "number",
                                                            "exclusiveMinimum": 0}},
                              ["symbol", "price"])),
    "set_take_profit": ("Recommend a take-profit limit order for a position at price.",
                        _action({"symbol": _SYMBOL, "price": {"type": "number",
                                                              "exclusiveMinimum": 0}},
                                ["symbol", "price"])),
    "cancel_orders": ("Recommend cancelling all working orders of the account.", _action({}, [])),
    FINISH: ("Finish the review with a short summary for the trader.",
             _obj({"summary": {"type": "string", "minLength": 1}}, ["summary"])),
}


def openai_tools(allow: tuple[str, ...] | list[str]) -> list[dict[str, Any]]:
    """Function definitions for chat-completions tool calling (only allowed actions)."""
    names = [*INFO_TOOLS, *(a for a in ACTION_TOOLS if a in allow), FINISH]
    return [{"type": "function", "function": {"name": n, "description": SPECS[n][0],
                                              "parameters": SPECS[n][1]}} for n in names]


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return (isinstance(value, int | float) and not isinstance(value, bool)
                and math.isfinite(value))
    return True


def validate(name: str, args: Any) -> str | None:
    """Check arguments against the tool's schema; returns what is wrong, or None."""
    if name not in SPECS:
        return f"unknown tool {name!r}; the tools are " + ", ".join(SPECS)
    if not isinstance(args, dict):
        return "arguments must be a JSON object"
    schema = SPECS[name][1]
    props = schema["properties"]
    for key in schema["required"]:
        if key not in args:
            return f"missing required argument {key!r}"
    for key, value in args.items():
        prop = props.get(key)
        if prop is None:
            return f"unknown argument {key!r}; expected " + (", ".join(props) or "no arguments")
        if not _type_ok(prop["type"], value):
            return f"argument {key!r} must be a{'n' if prop['type'][0] in 'ai' else ''} " \
                   f"{prop['type']}, got {json.dumps(value)}"
        if prop["type"] == "string" and len(value) < prop.get("minLength", 0):
            return f"argument {key!r} must not be empty"
        if "minimum" in prop and value < prop["minimum"]:
            return f"argument {key!r} must be at least {prop['minimum']}, got {value}"
        if "maximum" in prop and value > prop["maximum"]:
            return f"argument {key!r} must be at most {prop['maximum']}, got {value}"
        if "exclusiveMinimum" in prop and value <= prop["exclusiveMinimum"]:
            return f"argument {key!r} must be greater than {prop['exclusiveMinimum']}, got {value}"
    return None


def parse_arguments(raw: Any) -> tuple[dict[str, Any] | None, str | None]:
    """Arguments arrive as a JSON string (chat completions) or already as an object."""
    if raw is None or raw == "":
        return {}, None
    if isinstance(raw, dict):
        return raw, None
    if not isinstance(raw, str):
        return None, "arguments must be a JSON object encoded as a string"
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, "arguments are nested too deeply"
    if not isinstance(value, dict):
        return None, "arguments must be a JSON object"
    return value, None


@dataclass
class ToolBox:
    """Answers tool calls for one job from its snapshot and collects proposals."""

    snapshot: dict[str, Any]
    proposals: list[dict[str, Any]] = field(default_factory=list)
    summary: str | None = None
    finished: bool = False

    def call(self, name: str, raw_args: Any, iteration: int) -> tuple[bool, str]:
        """Run one call: (ok, the text returned to the planner). Invalid calls do nothing."""
        args, error = parse_arguments(raw_args)
        if error is None:
            error = validate(name, args)
        if error is not None:
            return False, f"error: {error}. Nothing was done; fix the call and try again."
        assert args is not None
        if name in INFO_TOOLS:
            return True, json.dumps(self._info(name, args), default=str)
        if name == FINISH:
            self.finished, self.summary = True, args["summary"]
            return True, "finished"
        arguments = {k: v for k, v in args.items() if k not in ("reason", "confidence")}
        self.proposals.append({
            "step": iteration, "action": name, "arguments": arguments,
            "reason": args["reason"], "confidence": args.get("confidence"), "result": None,
        })
        return True, (f"proposal {len(self.proposals)} recorded; it is checked by guardrails "
                      "before anything is done")

    def _info(self, name: str, args: dict[str, Any]) -> Any:
        snap = self.snapshot
        if name == "get_positions":
            return snap.get("positions", [])
        if name == "get_working_orders":
            return snap.get("working_orders", [])
        if name == "get_pnl_and_limits":
            keys = ("account", "state", "balance", "equity", "start_balance", "realized_pnl",
                    "unrealized_pnl", "limits", "lockouts")
            return {k: snap.get(k) for k in keys}
        if name == "get_recent_violations":
            return (snap.get("recent_violations") or [])[-int(args.get("limit", 20)):]
        symbol = args["symbol"]
        return {"symbol": symbol, "marks": (snap.get("price_history") or {}).get(symbol, [])}
