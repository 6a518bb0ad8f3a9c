"""Actions log entries: running one through the engine and describing them.

An entry is {step, action, arguments, reason, confidence, result}; result is "recommended"
(awaiting approval), "rejected: why", or the enforcement outcome "ok: detail", "dry_run: ...",
"failed: ...", "skipped: ...".
"""

from __future__ import annotations

from typing import Any

RECOMMENDED = "recommended"
EXECUTED = ("ok", "dry_run")  # enforcement statuses that count as an action taken


async def execute_entry(engine: Any, account: str, job_id: str,
                        entry: dict[str, Any]) -> tuple[list[dict[str, Any]], bool]:
    """Send an entry through the engine's enforcement path and wait for a live broker's
    confirmation (riskterm.confirmations); sets entry["result"]."""
    args = entry["arguments"]
    try:
        records = engine.execute_action(
            account, entry["action"], symbol=args.get("symbol"), qty=args.get("qty"),
            price=args.get("price"), job_id=job_id, reason=entry.get("reason") or "")
    except Exception as exc:
        entry["result"] = f"failed: {type(exc).__name__}: {exc}"
        return [], False
    if not records:
        entry["result"] = "skipped: the engine wrote no enforcement"
        return [], False
    confirmations = getattr(engine, "confirmations", None)
    if confirmations is not None:
        await confirmations.settled(records)
    entry["result"] = "; ".join(f"{r.get('status')}: {r.get('detail') or ''}".rstrip(": ")
                                for r in records)
    return records, any(r.get("status") in EXECUTED for r in records)


def describe(entry: dict[str, Any]) -> str:
    args = entry.get("arguments") or {}
    text = entry["action"]
    if args.get("symbol"):
        text += f" {args['symbol']}"
    if args.get("qty") is not None:
        text += f" x{args['qty']}"
    if args.get("price") is not None:
        text += f" @ {args['price']:g}"
    return text


def summarize(log: list[dict[str, Any]]) -> str:
    """One line: what was done, what waits for approval, what was rejected."""
    groups: dict[str, list[str]] = {"executed": [], "recommended": [], "rejected": [],
                                    "not executed": []}
    for entry in log:
        result = str(entry.get("result") or "")
        if result == RECOMMENDED:
            groups["recommended"].append(describe(entry))
        elif result.startswith("rejected"):
            groups["rejected"].append(describe(entry))
        elif result.split(":", 1)[0] in EXECUTED:
            groups["executed"].append(describe(entry))
        else:
            groups["not executed"].append(describe(entry))
    parts = [f"{len(items)} {name} ({', '.join(items)})" for name, items in groups.items() if items]
    return "; ".join(parts) if parts else "no actions"
