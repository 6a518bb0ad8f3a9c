"""The header and the portfolio comparison of the job detail screen, as Rich renderables."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from riskterm.tui import formatting as fmt
from riskterm.tui.job_queue_table import STATUS_STYLE


def job_header(job: dict[str, Any], tz: ZoneInfo) -> RenderableType:
    """Every value is shown with fmt.safe: the account comes from the broker, the step, model,
    instructions and error from the job and its model."""
    safe = fmt.safe
    status = safe(job.get("status", ""))
    text = Text()
    text.append(f"Job {safe(job.get('id'))}  ", style="bold")
    text.append(f" {status.upper()} ", style=f"reverse {STATUS_STYLE.get(status, '')}")
    text.append(f"  {safe(job.get('kind', ''))} · account ")
    text.append(safe(job.get("account", "")), style="bold cyan")
    text.append(f" · attempt {job.get('attempts', fmt.DASH)}")
    progress = job.get("progress")
    if progress is not None:
        text.append(f" · {float(progress) * 100:.0f}%")
        if job.get("step"):
            text.append(f" ({safe(job['step'])})", style="dim")
    text.append("\nmodel ", style="dim")
    text.append(safe(job.get("model_used") or fmt.DASH))
    text.append("   duration ", style="dim")
    duration = job.get("duration_s")
    text.append(fmt.duration(duration) if duration is not None else fmt.DASH)
    text.append("   created ", style="dim")
    text.append(fmt.stamp(fmt.parse_ts(job.get("created_at")), tz))
    text.append("   iterations ", style="dim")
    text.append(str(job.get("iteration_count", fmt.DASH)))
    text.append("   actions taken ", style="dim")
    text.append(str(job.get("actions_taken", fmt.DASH)))
    text.append("\ninstructions ", style="dim")
    text.append(safe(job.get("user_instructions") or "none"),
                style="italic" if job.get("user_instructions") else "dim")
    if job.get("error"):
        text.append("\nerror ", style="bold red")
        text.append(safe(job["error"]), style="red")
    pending = pending_recommendations(job)
    if pending and status == "completed":
        text.append(f"\n{pending} recommended action{'s' if pending != 1 else ''} awaiting "
                    "approval — press a to approve", style="bold yellow")
    return text


def pending_recommendations(job: dict[str, Any]) -> int:
    return sum(1 for e in job.get("actions_log") or () if e.get("result") == "recommended")


def _change(before: float | None, after: float | None) -> tuple[Text, Text]:
    if before is None or after is None:
        return Text(fmt.DASH, style="dim"), Text(fmt.DASH, style="dim")
    delta = after - before
    pct = Text(fmt.DASH, style="dim") if not before else Text(
        f"{delta / abs(before) * 100:+.2f}%", style="green" if delta > 0 else
        "red" if delta < 0 else "dim")
    return fmt.pnl(delta), pct


def portfolio(job: dict[str, Any]) -> RenderableType:
    table = Table(box=None, expand=False, pad_edge=False, header_style="bold")
    for name in ("", "Before", "After", "Change", "%"):
        table.add_column(name, justify="right" if name else "left")
    for label, before_key, after_key in (("Equity", "initial_equity", "final_equity"),
                                         ("Balance", "initial_balance", "final_balance")):
        before, after = job.get(before_key), job.get(after_key)
        delta, pct = _change(before, after)
        table.add_row(label, fmt.money(before), fmt.money(after), delta, pct)
    return Group(Text("Portfolio", style="bold"), table)
