"""JobActionsTable: a job's actions log (step, action, arguments, reason, confidence, result)."""

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


class JobActionsTable(LiveTable):
    COLUMNS = (
        ("step", "#", 3),
        ("action", "Action", 15),
        ("arguments", "Arguments", 20),
        ("reason", "Reason", 25),
        ("confidence", "Conf", 4),
        ("result", "Result", 11),
    )

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
