"""JobActionsTable: a job's actions log (step, action, arguments, reason, confidence, result).

Narrower than its 90 cells, the reason narrows to 12 cells, the arguments and the result to 8 and
the action to 10 (cut with an ellipsis; enter opens the row whole), then columns drop in this
order: confidence, arguments."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rich.console import RenderableType
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.live_table import LiveTable


def action_rows(log: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    rows: dict[str, tuple[Any, ...]] = {}
    for i, entry in enumerate(log):
        args = entry.get("arguments")
        rows[str(i)] = (
            entry.get("step", i + 1), str(entry.get("action") or ""),
            json.dumps(args, sort_keys=True) if isinstance(args, dict | list) else str(args or ""),
            str(entry.get("reason") or ""), entry.get("confidence"),
            str(entry.get("result") or ""),
        )
    return rows


def action_text(entry: dict[str, Any]) -> Text:
    """One entry of the actions log whole: action, arguments (indented JSON), confidence,
    reason and result, each on its own lines (for the row's own view)."""
    text = Text()
    text.append(fmt.safe(entry.get("action") or fmt.DASH), style="bold")
    text.append(f"   step {fmt.safe(entry.get('step', fmt.DASH))}", style="dim")
    confidence = entry.get("confidence")
    if confidence is not None:
        text.append(f" · confidence {fmt.safe(confidence)}", style="dim")
    args = entry.get("arguments")
    shown = (json.dumps(args, indent=2, sort_keys=True) if isinstance(args, dict | list)
             else str(args or ""))
    for label, value, style in (("arguments", shown, "cyan"),
                                ("reason", str(entry.get("reason") or ""), ""),
                                ("result", str(entry.get("result") or ""), "bold")):
        text.append(f"\n\n{label}\n", style="bold underline")
        text.append(fmt.safe(value, newlines=True) or fmt.DASH, style=style)
    return text


class JobActionsTable(LiveTable):
    COLUMNS = (
        ("step", "#", 3),
        ("action", "Action", 15),
        ("arguments", "Arguments", 20),
        ("reason", "Reason", 25),
        ("confidence", "Conf", 4),
        ("result", "Result", 11),
    )
    NARROW = {"reason": 12, "arguments": 8, "result": 8, "action": 10}
    DROP = ("confidence", "arguments")

    def render_row(self, raw: tuple[Any, ...]) -> Sequence[RenderableType]:
        step, action, args, reason, confidence, result = raw
        conf = fmt.DASH if confidence is None else (
            f"{confidence:.2f}" if isinstance(confidence, float) else str(confidence))
        result_style = ("green" if result.startswith(("ok", "dry_run"))
                        else "red" if result.startswith(("failed", "rejected"))
                        else "bold yellow" if result == "recommended" else "yellow")
        return [
            fmt.right(str(step)),
            Text(fmt.safe(action), style="bold"),
            Text(fmt.safe(args), no_wrap=True, overflow="ellipsis", style="cyan"),
            Text(fmt.safe(reason), no_wrap=True, overflow="ellipsis"),
            fmt.right(conf),
            Text(fmt.safe(result) or fmt.DASH, style=result_style, no_wrap=True,
                 overflow="ellipsis"),
        ]
