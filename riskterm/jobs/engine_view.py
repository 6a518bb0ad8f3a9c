"""What a job sees of the engine (implemented by riskterm.engine.Engine)."""

from __future__ import annotations

from typing import Protocol


class EngineView(Protocol):
    is_replay: bool  # replay: the job sees the account as it was when enqueued; live: at job start

    def known_accounts(self) -> list[str]: ...

    def account_snapshot(self, account: str) -> dict | None: ...

    def execute_action(self, account: str, action: str, *, symbol: str | None = None,
                       qty: int | None = None, price: float | None = None,
                       job_id: str | None = None, reason: str = "") -> list[dict]: ...
    # action in close_position, reduce_position (qty = contracts to remove), set_stop_loss (price),
    # set_take_profit (price), cancel_orders; goes through the engine's enforcement path
    # (rule "smart_risk") and returns the `enforcement` records written

    def now(self) -> float: ...  # engine clock, epoch seconds
